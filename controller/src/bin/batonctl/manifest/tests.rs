use super::*;
use baton_proto::job::{CommandSpec, DumpSpec, NoopSpec, RetryPolicy};

const FULL: &str = r#"
[[pipeline]]
name = "nightly-dump"
group = "db"
timeout = "2h"

[[pipeline.step]]
name = "dump"
kind = "dump"
connection = "shop"
database = "shop"
verify = true
timeout = "30m"

[[pipeline.step]]
name = "copy"
depends_on = ["dump"]
same_agent_as = "dump"
group = "db-hosts"
program = "/usr/local/bin/copy-off-host"
args = ["${steps.dump.result.file}"]
priority = 3
timeout_ms = 60000
lease_ttl = "20s"
labels = { team = "dba" }
retry = { max_attempts = 5, retry_on = ["timeout"] }

[[pipeline.step]]
name = "alert"
depends_on = ["dump", "copy"]
on = "failure"
kind = "noop"

[[schedule]]
name = "nightly"
cron = "30 2 * * *"
tz = "Europe/Berlin"
pipeline = "nightly-dump"
overlap = "buffer_one"
catchup = "all"
catchup_window = "3h"
catchup_cap = 5
jitter = "1m 30s"
between = "01:00-05:00"
start_at = 2027-01-01T00:00:00Z
end_at = "2028-01-01T00:00:00+01:00"
alert_after = "26h"
paused = true

[[schedule]]
name = "ping"
group = "ops"
every = "15m"
anchor = 2027-01-01T00:00:07Z

[schedule.job]
program = "/bin/echo"
args = ["ping"]
env = { A = "1" }
working_dir = "/tmp"
"#;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

#[test]
fn every_key_converts() {
    let m = parse_manifest("all.toml", FULL).expect("parse");
    assert_eq!(m.pipelines.len(), 1);
    assert_eq!(m.schedules.len(), 2);
    let p = &m.pipelines[0];
    assert_eq!(p.file, "all.toml");
    assert_eq!(p.spec.name, "nightly-dump");
    assert_eq!(p.spec.group, "db");
    assert_eq!(p.spec.timeout_ms, Some(7_200_000));
    let [dump, copy, alert] = &p.spec.steps[..] else {
        panic!("steps: {:?}", p.spec.steps)
    };
    assert_eq!(
        dump.job.spec,
        JobSpec::Dump(DumpSpec {
            connection: "shop".into(),
            database: "shop".into(),
            verify: true
        })
    );
    assert_eq!(dump.job.timeout_ms, Some(1_800_000));
    assert_eq!(dump.on, StepCondition::Success);
    assert_eq!(copy.depends_on, ["dump"]);
    assert_eq!(copy.same_agent_as.as_deref(), Some("dump"));
    assert_eq!(copy.group.as_deref(), Some("db-hosts"));
    assert_eq!(
        copy.job.spec,
        JobSpec::Command(CommandSpec {
            program: "/usr/local/bin/copy-off-host".into(),
            args: vec!["${steps.dump.result.file}".into()],
            env: BTreeMap::new(),
            working_dir: None,
        })
    );
    assert_eq!(copy.job.priority, 3);
    assert_eq!(copy.job.timeout_ms, Some(60_000));
    assert_eq!(copy.job.lease_ttl_ms, Some(20_000));
    assert_eq!(copy.job.labels.get("team").map(String::as_str), Some("dba"));
    assert_eq!(copy.job.retry.max_attempts, 5);
    assert_eq!(
        copy.job.retry.initial_backoff_ms,
        RetryPolicy::default().initial_backoff_ms
    );
    assert_eq!(alert.on, StepCondition::Failure);
    assert_eq!(alert.job.spec, JobSpec::Noop(NoopSpec { sleep_ms: 0 }));

    let s = &m.schedules[0].spec;
    assert_eq!(s.name, "nightly");
    assert_eq!(s.group, None);
    assert_eq!(s.cron.as_deref(), Some("30 2 * * *"));
    assert_eq!(s.tz.as_deref(), Some("Europe/Berlin"));
    assert_eq!(s.pipeline.as_deref(), Some("nightly-dump"));
    assert_eq!(s.job, None);
    assert_eq!(s.overlap, Overlap::BufferOne);
    assert_eq!(s.catchup, Catchup::All);
    assert_eq!(s.catchup_window_ms, 10_800_000);
    assert_eq!(s.catchup_cap, 5);
    assert_eq!(s.jitter_ms, 90_000);
    assert_eq!(s.between.as_deref(), Some("01:00-05:00"));
    assert_eq!(s.start_at, Some(t("2027-01-01T00:00:00Z")));
    assert_eq!(s.end_at, Some(t("2027-12-31T23:00:00Z")));
    assert_eq!(s.alert_after_ms, Some(26 * 3_600_000));
    assert!(s.paused);

    let s = &m.schedules[1].spec;
    assert_eq!(s.every_ms, Some(900_000));
    assert_eq!(s.anchor, Some(t("2027-01-01T00:00:07Z")));
    assert_eq!(s.group.as_deref(), Some("ops"));
    assert_eq!(s.overlap, Overlap::Skip);
    assert_eq!(s.catchup, Catchup::Latest);
    assert_eq!(
        s.catchup_window_ms,
        baton_proto::schedule::DEFAULT_CATCHUP_WINDOW_MS
    );
    assert_eq!(s.catchup_cap, baton_proto::schedule::DEFAULT_CATCHUP_CAP);
    assert!(!s.paused);
    let job = s.job.as_ref().expect("job");
    let JobSpec::Command(c) = &job.spec else {
        panic!("not a command: {:?}", job.spec)
    };
    assert_eq!(c.program, "/bin/echo");
    assert_eq!(c.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(c.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(job.retry, RetryPolicy::default());
}

/// Parse `src`, expecting an error at `key` on `line` whose text contains `what`.
fn fails(src: &str, key: &str, line: usize, what: &str) {
    let err = parse_manifest("bad.toml", src).expect_err(src);
    let text = err.to_string();
    let Error::At {
        file,
        key: k,
        line: l,
        message,
    } = err
    else {
        panic!("not a keyed error: {text}")
    };
    assert_eq!(file, "bad.toml");
    assert_eq!(k, key, "{text}");
    assert_eq!(l, Some(line), "{text}");
    assert!(message.contains(what), "{text}");
    let prefix = if key.is_empty() {
        format!("bad.toml, line {line}: ")
    } else {
        format!("bad.toml, line {line}, key `{key}`: ")
    };
    assert!(text.starts_with(&prefix), "{text}");
}

const SCHED: &str = "[[schedule]]\nname = \"s\"\ncron = \"* * * * *\"\ngroup = \"g\"\n";

#[test]
fn unknown_keys_name_file_key_and_line() {
    fails(
        "[[schedule]]\nname = \"s\"\ncorn = \"x\"\n",
        "schedule[0].corn",
        3,
        "unknown key `corn`",
    );
    fails(
        &format!("{SCHED}[schedule.job]\nprogram = \"/bin/true\"\nprogramme = \"x\"\n"),
        "schedule[0].job.programme",
        7,
        "unknown field `programme`",
    );
    fails(
        &format!("{SCHED}[schedule.job]\nprogram = \"/bin/true\"\ngroup = \"x\"\n"),
        "schedule[0].job.group",
        7,
        "unknown key `group`",
    );
    fails(
        "[[pipeline]]\nname = \"p\"\ngroup = \"g\"\n[[pipeline.step]]\nname = \"a\"\nkind = \"noop\"\n\
         [[pipeline.step]]\nname = \"b\"\nsleep_ms = 5\ndepend_on = [\"a\"]\nkind = \"noop\"\n",
        "pipeline[0].step[1].depend_on",
        10,
        "unknown field `depend_on`",
    );
    fails("colour = 1\n", "colour", 1, "unknown key");
    fails(
        &format!(
            "{SCHED}[schedule.job]\nprogram = \"/bin/true\"\nretry = {{ max_attempts = 2, jiter = 1 }}\n"
        ),
        "schedule[0].job.retry.jiter",
        7,
        "unknown field",
    );
}

#[test]
fn bad_values_name_their_key() {
    fails(
        &format!("{SCHED}every = \"fortnightly\"\n[schedule.job]\nprogram = \"p\"\n"),
        "schedule[0].every",
        5,
        "fortnightly",
    );
    fails(
        &format!("{SCHED}overlap = \"queue\"\n[schedule.job]\nprogram = \"p\"\n"),
        "schedule[0].overlap",
        5,
        "buffer_one",
    );
    fails(
        &format!("{SCHED}start_at = 2027-01-01T00:00:00\n[schedule.job]\nprogram = \"p\"\n"),
        "schedule[0].start_at",
        5,
        "RFC 3339",
    );
    fails(
        &format!("{SCHED}jitter = 30\n[schedule.job]\nprogram = \"p\"\n"),
        "schedule[0].jitter",
        5,
        "duration string",
    );
    fails(
        &format!("{SCHED}[schedule.job]\nkind = \"rm\"\n"),
        "schedule[0].job.kind",
        6,
        "unknown kind `rm`",
    );
    fails(
        &format!("{SCHED}[schedule.job]\nprogram = \"p\"\nargs = [\"a\", 2]\n"),
        "schedule[0].job.args[1]",
        7,
        "",
    );
    fails(
        &format!("{SCHED}[schedule.job]\nprogram = \"p\"\ntimeout = \"1m\"\ntimeout_ms = 5\n"),
        "schedule[0].job.timeout_ms",
        8,
        "not both",
    );
    fails(
        "[[schedule]]\nname = \"a b\"\n",
        "schedule[0].name",
        2,
        "not a valid name",
    );
    fails("[schedule]\nname = \"s\"\n", "schedule", 1, "[[schedule]]");
    fails("[[schedule]]\nname = \"s\"\ncron = \n", "", 3, "");
}

#[test]
fn missing_and_conflicting_keys() {
    let job = "[schedule.job]\nprogram = \"p\"\n";
    fails(
        &format!("{SCHED}every = \"1m\"\n{job}"),
        "schedule[0]",
        1,
        "either `cron` or `every`",
    );
    fails(
        &format!("[[schedule]]\nname = \"s\"\ngroup = \"g\"\n{job}"),
        "schedule[0]",
        1,
        "give `cron` or `every`",
    );
    fails(
        SCHED,
        "schedule[0]",
        1,
        "[schedule.job] table or `pipeline`",
    );
    fails(
        &format!("{SCHED}pipeline = \"p\"\n{job}"),
        "schedule[0]",
        1,
        "not both",
    );
    fails(
        &format!("[[schedule]]\nname = \"s\"\ncron = \"* * * * *\"\n{job}"),
        "schedule[0]",
        1,
        "needs `group`",
    );
    fails(
        "[[pipeline]]\nname = \"p\"\ngroup = \"g\"\n",
        "pipeline[0]",
        1,
        "at least one",
    );
    fails(
        "[[pipeline]]\nname = \"p\"\ngroup = \"g\"\n[[pipeline.step]]\nname = \"a\"\n",
        "pipeline[0].step[0]",
        4,
        "no job",
    );
}

#[test]
fn duplicates_across_files_are_refused() {
    let mut m = parse_manifest("a.toml", FULL).expect("a");
    let again = parse_manifest("b.toml", FULL).expect("b");
    let err = m.merge(again).expect_err("duplicate");
    assert_eq!(
        err.to_string(),
        "pipeline `nightly-dump` is defined twice: in a.toml and in b.toml"
    );
    let err = parse_manifest(
        "c.toml",
        &format!("{FULL}\n[[schedule]]\nname = \"ping\"\ncron = \"* * * * *\"\npipeline = \"x\"\n"),
    )
    .expect_err("duplicate in one file");
    assert!(
        err.to_string().contains("schedule `ping` is defined twice"),
        "{err}"
    );
}

#[test]
fn job_table_file() {
    let job = parse_job_table(
        "job.toml",
        "kind = \"sql\"\nconnection = \"main\"\nsql = \"select 1\"\nexactly_once = true\npriority = -2\n\
         timeout = \"5m\"\n[labels]\nteam = \"dba\"\n",
    )
    .expect("job");
    assert_eq!(job.priority, -2);
    assert_eq!(job.timeout_ms, Some(300_000));
    assert!(matches!(&job.spec, JobSpec::Sql(s) if s.exactly_once && s.sql == "select 1"));
    let err = parse_job_table("job.toml", "program = \"p\"\nname = \"x\"\n").expect_err("name");
    assert_eq!(
        err.to_string(),
        "job.toml, line 2, key `name`: unknown key `name`"
    );
    let err = parse_job_table("job.toml", "priority = 1\n").expect_err("no spec");
    assert!(err.to_string().contains("no job"), "{err}");
    let job = parse_job_table(
        "job.toml",
        "kind = \"sql\"\nconnection = \"main\"\nsql = \"select now()\"\n\
         session = { time_zone = \"+00:00\", lock_wait_timeout = 5 }\n",
    )
    .expect("a job with session settings");
    let session = job.spec.session().expect("sql has a session");
    assert_eq!(
        session.get("lock_wait_timeout"),
        Some(&baton_proto::SessionValue::Int(5))
    );
}

#[test]
fn the_readme_example_parses() {
    let readme = include_str!("../../../../../README.md");
    let section = readme
        .split("### Schedules and pipelines")
        .nth(1)
        .expect("README section");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("toml block");
    let m = parse_manifest("README.md", toml).expect("README example");
    assert_eq!(m.pipelines[0].spec.steps.len(), 4);
    assert_eq!(
        m.schedules[0].spec.pipeline.as_deref(),
        Some("nightly-dump")
    );
}

#[test]
fn an_export_job_table_keeps_its_params_format_and_compression() {
    let job = parse_job_table(
        "job.toml",
        "kind = \"export\"\nconnection = \"shop\"\nquery = \"SELECT * FROM t WHERE d = ?\"\n\
         params = [{ type = \"date\", value = \"2026-12-05\" }]\nformat = \"jsonl\"\n\
         compression = \"gzip\"\nprefix = \"orders\"\n",
    )
    .expect("export job");
    let JobSpec::Export(e) = &job.spec else {
        panic!("not an export: {:?}", job.spec);
    };
    assert_eq!(
        e.params,
        vec![baton_proto::ParamValue::Date("2026-12-05".into())]
    );
    assert_eq!(e.format, baton_proto::ExportFormat::Jsonl);
    assert_eq!(e.compression, baton_proto::ExportCompression::Gzip);
    assert_eq!(e.prefix.as_deref(), Some("orders"));
    let err = parse_job_table(
        "job.toml",
        "kind = \"export\"\nconnection = \"shop\"\nquery = \"q\"\nformat = \"xml\"\n",
    )
    .expect_err("unknown format");
    assert!(err.to_string().contains("format"), "{err}");
}

#[test]
fn the_readme_restore_step_parses() {
    let readme = include_str!("../../../../../README.md");
    let step = readme
        .split("**Restores.**")
        .nth(1)
        .and_then(|s| s.split("```toml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README restore block");
    let src = format!(
        "[[pipeline]]\nname = \"p\"\ngroup = \"db\"\n\n[[pipeline.step]]\nname = \"dump\"\nkind = \"dump\"\nconnection = \"shop\"\ndatabase = \"shop\"\n\n{step}"
    );
    let m = parse_manifest("README.md", &src).expect("README restore step");
    let restore = &m.pipelines[0].spec.steps[1];
    assert_eq!(restore.same_agent_as.as_deref(), Some("dump"));
    match &restore.job.spec {
        JobSpec::Restore(r) => {
            assert_eq!(r.source.file.as_deref(), Some("${steps.dump.result.file}"));
            assert_eq!((r.database.as_str(), r.replace), ("shop_copy", false));
        }
        other => panic!("not a restore: {other:?}"),
    }
}
