use super::*;
use serde_json::json;

const FILE: &str = r#"
[[pipeline]]
name = "nightly-dump"
group = "db"

[[pipeline.step]]
name = "dump"
kind = "dump"
connection = "shop"
database = "shop"

[[pipeline.step]]
name = "copy"
depends_on = ["dump"]
same_agent_as = "dump"
program = "/usr/local/bin/copy"
args = ["${steps.dump.result.file}"]

[[schedule]]
name = "nightly"
cron = "30 2 * * *"
tz = "Europe/Berlin"
pipeline = "nightly-dump"

[[schedule]]
name = "ping"
group = "ops"
every = "15m"
[schedule.job]
program = "/bin/true"
"#;

fn manifest(src: &str) -> Manifest {
    manifest::parse_manifest("f.toml", src).expect("manifest")
}

fn specs(m: &Manifest) -> (Vec<PipelineSpec>, Vec<ScheduleSpec>) {
    (
        m.pipelines.iter().map(|p| p.spec.clone()).collect(),
        m.schedules.iter().map(|s| s.spec.clone()).collect(),
    )
}

fn ops(actions: &[Action]) -> Vec<(Kind, &str, Op)> {
    actions
        .iter()
        .map(|a| (a.kind, a.name.as_str(), a.op))
        .collect()
}

#[test]
fn first_apply_creates_pipelines_before_schedules_and_second_changes_nothing() {
    let m = manifest(FILE);
    let first = plan(&m, &[], &[], false).expect("plan");
    assert_eq!(
        ops(&first),
        [
            (Kind::Pipeline, "nightly-dump", Op::Create),
            (Kind::Schedule, "nightly", Op::Create),
            (Kind::Schedule, "ping", Op::Create),
        ]
    );
    assert!(first.iter().all(|a| a.spec.is_some()));
    assert_eq!(
        render_summary(&first, false),
        "Applied: 3 created, 0 updated, 0 unchanged, 0 deleted.\n"
    );
    assert_eq!(
        render_summary(&first, true),
        "Dry run, nothing sent: 3 to create, 0 to update, 0 unchanged, 0 to delete.\n"
    );
    // What the controller holds after the first apply: the same specs,
    // round-tripped through its JSON.
    let (p, s) = specs(&m);
    let p: Vec<PipelineSpec> =
        serde_json::from_value(serde_json::to_value(&p).expect("json")).expect("p");
    let s: Vec<ScheduleSpec> =
        serde_json::from_value(serde_json::to_value(&s).expect("json")).expect("s");
    let second = plan(&m, &p, &s, true).expect("plan");
    assert!(
        second
            .iter()
            .all(|a| a.op == Op::Unchanged && a.spec.is_none()),
        "{second:?}"
    );
    assert_eq!(
        render_summary(&second, false),
        "Nothing changed: 1 pipeline(s) and 2 schedule(s) are up to date.\n"
    );
    assert_eq!(
        render_action(&second[1], false),
        "schedule nightly: unchanged\n"
    );
}

#[test]
fn updates_carry_a_diff_and_extras_are_pruned_schedules_first() {
    let m = manifest(FILE);
    let (mut p, mut s) = specs(&m);
    s[0].cron = Some("0 3 * * *".into());
    s[0].jitter_ms = 5000;
    p[0].steps[1].job.spec = baton_proto::JobSpec::Command(baton_proto::CommandSpec {
        program: "/usr/local/bin/copy".into(),
        args: vec!["--old".into()],
        env: Default::default(),
        working_dir: None,
    });
    let mut old_sched = s[1].clone();
    old_sched.name = "old".into();
    s.push(old_sched);
    let mut old_pipe = p[0].clone();
    old_pipe.name = "old-pipe".into();
    p.push(old_pipe);

    let actions = plan(&m, &p, &s, true).expect("plan");
    assert_eq!(
        ops(&actions),
        [
            (Kind::Pipeline, "nightly-dump", Op::Update),
            (Kind::Schedule, "nightly", Op::Update),
            (Kind::Schedule, "ping", Op::Unchanged),
            (Kind::Schedule, "old", Op::Delete),
            (Kind::Pipeline, "old-pipe", Op::Delete),
        ]
    );
    assert_eq!(
        render_action(&actions[0], false),
        "pipeline nightly-dump: updated\n  steps[copy].job.spec.args[0]: \"--old\" → \"${steps.dump.result.file}\"\n"
    );
    assert_eq!(
        render_action(&actions[1], true),
        "schedule nightly: would be updated\n  cron: \"0 3 * * *\" → \"30 2 * * *\"\n  jitter_ms: 5000 → 0\n"
    );
    assert_eq!(render_action(&actions[3], false), "schedule old: deleted\n");
    assert_eq!(
        render_summary(&actions, false),
        "Applied: 0 created, 2 updated, 1 unchanged, 2 deleted.\n"
    );

    // Paused by an operator since: not a difference.
    let mut paused = s.clone();
    paused[2].paused = true;
    let actions = plan(&m, &p, &paused, false).expect("plan");
    assert_eq!(actions[2].op, Op::Unchanged, "{actions:?}");

    let kept = plan(&m, &p, &s, false).expect("plan");
    assert_eq!(kept[3].op, Op::Keep);
    assert_eq!(
        render_action(&kept[4], false),
        "pipeline old-pipe: not in the files (kept; --prune deletes it)\n"
    );
}

#[test]
fn diff_names_keys_steps_and_order() {
    let old = json!({"name": "p", "timeout_ms": 10, "steps": [
        {"name": "a", "job": {"x": 1}}, {"name": "b", "job": {"x": 2}}, {"name": "c"}]});
    let new = json!({"name": "p", "group": "g", "steps": [
        {"name": "b", "job": {"x": 3}}, {"name": "a", "job": {"x": 1}}, {"name": "d"}]});
    let d = diff(&old, &new);
    let lines: Vec<String> = d
        .iter()
        .map(|c| format!("{}: {} → {}", c.path, shown(&c.old), shown(&c.new)))
        .collect();
    assert_eq!(
        lines,
        [
            "group: (unset) → \"g\"",
            "steps[b].job.x: 2 → 3",
            "steps[c]: {\"name\":\"c\"} → (unset)",
            "steps[d]: (unset) → {\"name\":\"d\"}",
            "steps (order): [\"a\",\"b\"] → [\"b\",\"a\"]",
            "timeout_ms: 10 → (unset)",
        ]
    );
    // Arrays without names: by index when the lengths match, else whole.
    let d = diff(&json!({"args": ["a", "b"]}), &json!({"args": ["a", "c"]}));
    assert_eq!(d[0].path, "args[1]");
    let d = diff(&json!({"args": ["a"]}), &json!({"args": ["a", "c"]}));
    assert_eq!((d.len(), d[0].path.as_str()), (1, "args"));
    assert!(diff(&old, &old).is_empty());
}

#[test]
fn files_of_a_directory_are_sorted_toml_only_and_checked_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("b.toml"),
        "[[schedule]]\nname = \"s\"\ncron = \"* * * * *\"\npipeline = \"p\"\n",
    )
    .expect("b");
    std::fs::write(dir.path().join("a.toml"), FILE).expect("a");
    std::fs::write(dir.path().join("notes.txt"), "not toml").expect("txt");
    std::fs::create_dir(dir.path().join("sub.toml")).expect("dir");
    let found = files(dir.path()).expect("files");
    let names: Vec<String> = found
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.toml", "b.toml"]);
    let m = load(&found).expect("load");
    assert_eq!(m.schedules.len(), 3);
    assert_eq!(m.schedules[2].file, found[1].display().to_string());

    std::fs::write(
        dir.path().join("c.toml"),
        "[[schedule]]\nname = \"ping\"\nevery = \"1m\"\npipeline = \"p\"\n",
    )
    .expect("c");
    let err = load(&files(dir.path()).expect("files")).expect_err("duplicate");
    assert!(err.is::<crate::client::UsageError>());
    assert!(
        err.to_string().contains("schedule `ping` is defined twice"),
        "{err}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    assert!(files(empty.path()).is_err());
    assert!(files(&empty.path().join("missing.toml")).is_err());
}
