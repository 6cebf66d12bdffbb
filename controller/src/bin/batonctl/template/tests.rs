use super::*;
use crate::{Cli, Command};
use clap::Parser;

fn parse(args: &[&str]) -> Result<TemplateArgs, clap::Error> {
    let mut all = vec!["batonctl", "pipeline", "create"];
    all.extend_from_slice(args);
    let cli = Cli::try_parse_from(all)?;
    let Command::Pipeline(crate::pipeline::PipelineCmd::Create { file, template }) = cli.command
    else {
        panic!("not pipeline create");
    };
    assert!(file.is_none());
    Ok(template)
}

#[test]
fn a_restore_drill_restores_the_newest_object_into_scratch_then_always_drops_it() {
    let args = parse(&[
        "--template",
        "restore-drill",
        "--connection",
        "shop",
        "--store",
        "offsite",
    ])
    .expect("parse");
    let t = expand(&args).expect("expand");
    let p = &t.pipeline;
    assert_eq!(p.name, "restore-drill-shop");
    assert_eq!(p.group, "default");
    assert!(t.schedule.is_none());
    let [restore, drop] = p.steps.as_slice() else {
        panic!("two steps: {p:#?}");
    };
    let JobSpec::Restore(r) = &restore.job.spec else {
        panic!("{restore:#?}");
    };
    assert_eq!(r.connection, "shop");
    assert_eq!(r.database, "baton_drill_shop");
    assert!(r.replace, "a scratch left by an earlier drill is replaced");
    assert_eq!(
        r.source.origin(),
        Ok(baton_proto::RestoreOrigin::Latest {
            store: "offsite",
            prefix: "shop/"
        })
    );
    assert_eq!(drop.depends_on, ["restore"]);
    assert_eq!(
        drop.on,
        StepCondition::Always,
        "dropped even when the compare fails"
    );
    assert_eq!(drop.same_agent_as.as_deref(), Some("restore"));
    let JobSpec::Sql(sql) = &drop.job.spec else {
        panic!("{drop:#?}");
    };
    assert_eq!(sql.sql, "DROP DATABASE IF EXISTS `baton_drill_shop`");
    assert_eq!(sql.connection, "shop");
}

#[test]
fn flags_name_group_prefix_and_schedule() {
    let args = parse(&[
        "--template",
        "restore-drill",
        "--connection",
        "drill-host",
        "--store",
        "offsite",
        "--prefix",
        "prod/shop/",
        "--name",
        "Weekly.Drill",
        "--group",
        "dbhosts",
        "--schedule",
        "0 4 * * 0",
        "--tz",
        "Europe/Berlin",
    ])
    .expect("parse");
    let t = expand(&args).expect("expand");
    assert_eq!(t.pipeline.name, "Weekly.Drill");
    assert_eq!(t.pipeline.group, "dbhosts");
    let JobSpec::Restore(r) = &t.pipeline.steps[0].job.spec else {
        panic!()
    };
    assert_eq!(r.database, "baton_drill_weekly_drill");
    assert_eq!(r.source.key_prefix.as_deref(), Some("prod/shop/"));
    let s = t.schedule.expect("schedule");
    assert_eq!(s.name, "Weekly.Drill");
    assert_eq!(s.pipeline.as_deref(), Some("Weekly.Drill"));
    assert_eq!(s.cron.as_deref(), Some("0 4 * * 0"));
    assert_eq!(s.tz.as_deref(), Some("Europe/Berlin"));
    assert!(s.job.is_none());
}

#[test]
fn missing_flags_are_named() {
    let e = expand(&parse(&["--template", "restore-drill", "--store", "s"]).expect("parse"))
        .expect_err("no connection");
    assert!(e.contains("--connection"), "{e}");
    let e = expand(&parse(&["--template", "restore-drill", "--connection", "c"]).expect("parse"))
        .expect_err("no store");
    assert!(e.contains("--store"), "{e}");
    // A file and a template, a template flag without --template, neither.
    assert!(parse(&["-f", "x.toml", "--template", "restore-drill"]).is_err());
    assert!(parse(&["--connection", "c"]).is_err());
    assert!(parse(&[]).is_err());
}

#[test]
fn scratch_names_are_plain_and_bounded() {
    assert_eq!(scratch_database("restore-drill-main"), "baton_drill_main");
    assert_eq!(scratch_database("a-b.C"), "baton_drill_a_b_c");
    let long = scratch_database(&"x".repeat(64));
    assert_eq!(long.len(), 64);
    assert!(baton_proto::restore::database_refusal(&long).is_none());
}
