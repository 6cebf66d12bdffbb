//! A batch of firings against the same firings one by one: a backend may
//! apply `fire_all` in set-based statements, but what it writes and
//! answers must be what `fire` gives for each.

use baton_proto::pipeline::{PipelineSpec, StepCondition, StepSpec};
use baton_proto::schedule::{OccurrenceState, OccurrenceView, ScheduleSpec};

use super::schedules::{at, firing, occ, spec};
use crate::store::schedules::{Fired, Firing};
use crate::store::{Error, Store};

/// A schedule `name` (the every-minute noop of [`spec`], changed by `f`)
/// with its cursor at 1000.
async fn put(s: &Store, name: String, f: impl FnOnce(&mut ScheduleSpec)) -> i64 {
    let mut sp = spec(&name);
    f(&mut sp);
    s.put_schedule(&sp, at(1000), true, 0)
        .await
        .expect("schedule")
        .0
        .id
}

/// The kinds of firing a look can hold, for schedules named `{p}…`, in two
/// batches: every schedule once, then one twice.
async fn schedules_and_firings(s: &Store, p: &str) -> [Vec<Firing>; 2] {
    let name = |n: &str| format!("{p}{n}");
    let plain = put(s, name("plain"), |_| {}).await;
    let ttl = put(s, name("ttl"), |sp| {
        sp.group = Some("h".into());
        if let Some(j) = sp.job.as_mut() {
            j.lease_ttl_ms = Some(5_000);
            j.priority = 7;
        }
    })
    .await;
    let catchup = put(s, name("catchup"), |_| {}).await;
    let skip = put(s, name("skip"), |_| {}).await;
    let pend = put(s, name("pend"), |_| {}).await;
    let replace = put(s, name("replace"), |_| {}).await;
    let raced = put(s, name("raced"), |_| {}).await;
    let twice = put(s, name("twice"), |_| {}).await;
    let manual = put(s, name("manual"), |_| {}).await;
    let piped = put(s, name("piped"), |sp| {
        sp.job = None;
        sp.pipeline = Some("p".into());
    })
    .await;
    // An active job for the pending and the cancel_previous firings.
    for id in [pend, replace] {
        s.fire(
            &firing(id, None, vec![occ(500, OccurrenceState::Fired)]),
            600,
        )
        .await
        .expect("active job");
    }
    let mut missed = occ(-300_000, OccurrenceState::Missed);
    missed.last_nominal = Some(-180_000);
    missed.count = 3;
    let mut replacing = firing(
        replace,
        Some((1000, 61_000)),
        vec![occ(1000, OccurrenceState::Fired)],
    );
    replacing.cancel_active = true;
    replacing.supersede_pending = true;
    let fired = |n: i64| vec![occ(n, OccurrenceState::Fired)];
    let first = vec![
        firing(plain, Some((1000, 61_000)), fired(1000)),
        firing(ttl, Some((1000, 61_000)), fired(1000)),
        firing(
            catchup,
            Some((1000, 241_000)),
            vec![
                missed,
                occ(1000, OccurrenceState::Fired),
                occ(61_000, OccurrenceState::Fired),
            ],
        ),
        firing(
            skip,
            Some((1000, 61_000)),
            vec![occ(1000, OccurrenceState::Skipped)],
        ),
        firing(
            pend,
            Some((1000, 61_000)),
            vec![occ(1000, OccurrenceState::Pending)],
        ),
        replacing,
        // Planned from a cursor that is not the stored one: raced.
        firing(raced, Some((999, 61_000)), fired(1000)),
        firing(twice, Some((1000, 61_000)), fired(1000)),
        firing(piped, Some((1000, 61_000)), fired(1000)),
        // No cursor to move (trigger now).
        firing(manual, None, fired(30_000)),
    ];
    // The same schedule twice in one batch: the second plan is raced.
    let second = vec![
        firing(twice, Some((61_000, 121_000)), fired(61_000)),
        firing(twice, Some((61_000, 121_000)), fired(61_000)),
        firing(plain, None, fired(30_000)),
    ];
    [first, second]
}

/// An occurrence as both ways must record it: its job or run only as
/// made or not (their ids differ).
fn shape(o: &OccurrenceView) -> Shape {
    (
        o.nominal_at.to_rfc3339(),
        o.state,
        o.reason.clone(),
        o.count,
        o.job_id.is_some(),
        o.run_id.is_some(),
    )
}

type Shape = (String, OccurrenceState, Option<String>, u32, bool, bool);

fn fired_shape(f: &Fired) -> (bool, Vec<String>, Vec<String>, Vec<Shape>) {
    (
        f.raced,
        f.woken.clone(),
        f.told.clone(),
        f.occurrences.iter().map(shape).collect(),
    )
}

/// Conformance case `a_batch_fires_as_each_firing_would_alone`.
pub async fn a_batch_fires_as_each_firing_would_alone(s: &Store) {
    let pipeline = PipelineSpec {
        name: "p".into(),
        group: "g".into(),
        timeout_ms: None,
        steps: vec![StepSpec {
            name: "only".into(),
            depends_on: vec![],
            on: StepCondition::Success,
            same_agent_as: None,
            group: None,
            job: spec("t").job.expect("a template"),
        }],
    };
    s.put_pipeline(&pipeline, true, 0).await.expect("pipeline");
    let together = schedules_and_firings(s, "a-").await;
    let alone = schedules_and_firings(s, "b-").await;
    for (round, (ta, tb)) in together.iter().zip(&alone).enumerate() {
        let batch = s.fire_all(ta, 1500).await.expect("fire_all");
        let mut one_by_one = Vec::new();
        for f in tb {
            one_by_one.push(s.fire(f, 1500).await);
        }
        assert_eq!(batch.len(), one_by_one.len());
        for (i, (a, b)) in batch.iter().zip(&one_by_one).enumerate() {
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(fired_shape(a), fired_shape(b), "batch {round}, firing {i}");
                    for (oa, ob) in a.occurrences.iter().zip(&b.occurrences) {
                        if let (Some(ja), Some(jb)) = (oa.job_id, ob.job_id) {
                            same_job(s, ja, jb).await;
                        }
                    }
                }
                (Err(Error::Conflict(_)), Err(Error::Conflict(_))) => {}
                (a, b) => panic!("batch {round}, firing {i}: batch {a:?}, alone {b:?}"),
            }
        }
        let made = batch
            .iter()
            .filter(|f| matches!(f, Ok(f) if !f.raced))
            .count();
        assert!(made > 1, "batch {round}: {batch:?}");
    }
    // What the store keeps matches too: cursors, histories, active work.
    for (fa, fb) in together[0].iter().zip(&alone[0]) {
        let (a, b) = (fa.schedule_id, fb.schedule_id);
        let (ha, hb) = (history(s, a).await, history(s, b).await);
        assert_eq!(ha, hb, "schedules {a} and {b}");
        let (aa, pa) = s.schedule_activity(a).await.expect("a");
        let (ab, pb) = s.schedule_activity(b).await.expect("b");
        assert_eq!(
            (aa.is_some(), pa),
            (ab.is_some(), pb),
            "schedules {a} and {b}"
        );
    }
    let cursors = |p: &'static str| async move {
        let mut out = Vec::new();
        for n in [
            "plain", "ttl", "catchup", "skip", "pend", "replace", "raced", "twice", "piped",
        ] {
            let sc = s.get_schedule(&format!("{p}{n}")).await.expect("schedule");
            out.push((n, sc.cursor, sc.next_fire_at));
        }
        out
    };
    assert_eq!(cursors("a-").await, cursors("b-").await);
}

/// Schedule `id`'s occurrences as [`shape`]s, newest first.
async fn history(s: &Store, id: i64) -> Vec<Shape> {
    let h = s.history(id, None, 20).await.expect("history");
    h.iter().map(shape).collect()
}

/// Jobs `a` (made in the batch) and `b` (made alone) are the same job.
async fn same_job(s: &Store, a: i64, b: i64) {
    let ja = s.get_job(a).await.expect("job a");
    let jb = s.get_job(b).await.expect("job b");
    assert_eq!(
        (
            &ja.group,
            &ja.spec,
            ja.state,
            ja.priority,
            ja.lease_ttl_ms,
            &ja.retry,
            &ja.labels
        ),
        (
            &jb.group,
            &jb.spec,
            jb.state,
            jb.priority,
            jb.lease_ttl_ms,
            &jb.retry,
            &jb.labels
        ),
        "jobs {a} and {b}"
    );
    assert_eq!(ja.nominal_at, jb.nominal_at, "jobs {a} and {b}");
    let (sa, sb) = (
        ja.schedule.expect("made by a"),
        jb.schedule.expect("made by b"),
    );
    assert_eq!(
        sa.strip_prefix("a-"),
        sb.strip_prefix("b-"),
        "jobs {a} and {b}"
    );
    assert_eq!(ja.created_at, jb.created_at, "jobs {a} and {b}");
}
