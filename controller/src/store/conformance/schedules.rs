use baton_proto::schedule::{
    DEFAULT_CATCHUP_CAP, DEFAULT_CATCHUP_WINDOW_MS, JobTemplate, OccurrenceState,
    OccurrenceTrigger, ScheduleSpec,
};
use baton_proto::{CompleteRequest, Completion, JobKind, JobResult, JobSpec, JobState, NoopSpec};

use crate::store::schedules::{Active, Advance, Cursor, Firing, NewOccurrence};
use crate::store::{Error, GrantRequest, Store};

/// A schedule every minute of a noop job to group `g`.
pub(crate) fn spec(name: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        group: Some("g".into()),
        cron: None,
        tz: None,
        every_ms: Some(60_000),
        anchor: None,
        between: None,
        start_at: None,
        end_at: None,
        jitter_ms: 0,
        overlap: Default::default(),
        catchup: Default::default(),
        catchup_window_ms: DEFAULT_CATCHUP_WINDOW_MS,
        catchup_cap: DEFAULT_CATCHUP_CAP,
        alert_after_ms: None,
        job: Some(JobTemplate {
            spec: JobSpec::Noop(NoopSpec::default()),
            priority: 0,
            retry: Default::default(),
            timeout_ms: None,
            lease_ttl_ms: None,
            labels: Default::default(),
        }),
        pipeline: None,
        paused: false,
    }
}

pub(crate) fn at(cursor: i64) -> Cursor {
    Cursor::Set {
        cursor: Some(cursor),
        next_fire_at: Some(cursor),
    }
}

pub(crate) fn occ(nominal: i64, state: OccurrenceState) -> NewOccurrence {
    NewOccurrence {
        nominal,
        last_nominal: None,
        count: 1,
        trigger: OccurrenceTrigger::Schedule,
        state,
        reason: (state != OccurrenceState::Fired).then(|| "because".to_owned()),
        fire_at: nominal,
    }
}

pub(crate) fn firing(
    id: i64,
    advance: Option<(i64, i64)>,
    occurrences: Vec<NewOccurrence>,
) -> Firing {
    Firing {
        schedule_id: id,
        advance: advance.map(|(expect, next)| Advance {
            expect,
            cursor: Some(next),
            next_fire_at: Some(next),
        }),
        occurrences,
        cancel_active: false,
        supersede_pending: false,
        default_lease_ttl_ms: 15_000,
    }
}

/// Grant the next job of group `g` to `agent` and complete it as `how`.
pub(crate) async fn run_one(
    s: &Store,
    agent: &str,
    how: Completion,
    stdout: &str,
    now: i64,
) -> i64 {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop, JobKind::Command];
    let g = s
        .grant(
            &GrantRequest {
                agent_id: agent,
                groups: &groups,
                kinds: &kinds,
                connections: &[],
                stores: &[],
                max: 1,
            },
            now,
        )
        .await
        .expect("grant");
    let grant = g.grants.first().expect("a job to grant");
    s.complete(
        grant.job_id,
        agent,
        &CompleteRequest {
            started_after_ms: None,
            token: grant.token,
            completion: how,
            result: JobResult {
                stdout: stdout.into(),
                exit_code: Some(0),
                ..JobResult::default()
            },
            error: None,
        },
        now + 1,
    )
    .await
    .expect("complete");
    grant.job_id
}

/// Conformance case `a_firing_is_all_or_nothing_and_keyed_by_nominal`.
pub async fn a_firing_is_all_or_nothing_and_keyed_by_nominal(s: &Store) {
    let (sched, created) = s
        .put_schedule(&spec("nightly"), at(1000), true, 0)
        .await
        .expect("create");
    assert!(created);
    assert_eq!(sched.cursor, Some(1000));
    let fired = s
        .fire(
            &firing(
                sched.id,
                Some((1000, 61_000)),
                vec![occ(1000, OccurrenceState::Fired)],
            ),
            1000,
        )
        .await
        .expect("fire");
    assert!(!fired.raced);
    assert_eq!(fired.woken, vec!["g".to_string()]);
    let job_id = fired.occurrences[0].job_id.expect("job made");
    let job = s.get_job(job_id).await.expect("job");
    assert_eq!((job.group.as_str(), job.state), ("g", JobState::Queued));
    // The same plan again (a second controller, a retry): nothing written.
    let again = s
        .fire(
            &firing(
                sched.id,
                Some((1000, 61_000)),
                vec![occ(1000, OccurrenceState::Fired)],
            ),
            1001,
        )
        .await
        .expect("fire again");
    assert!(again.raced);
    // An occurrence already recorded fails the whole firing: the cursor stays.
    let dup = s
        .fire(
            &firing(
                sched.id,
                Some((61_000, 121_000)),
                vec![
                    occ(61_000, OccurrenceState::Missed),
                    occ(1000, OccurrenceState::Fired),
                ],
            ),
            61_000,
        )
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    let now = s.get_schedule("nightly").await.expect("get");
    assert_eq!(now.cursor, Some(61_000));
    let history = s.history(sched.id, None, 10).await.expect("history");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].state, OccurrenceState::Fired);
    assert_eq!(history[0].job_id, Some(job_id));
    assert_eq!(history[0].outcome.as_deref(), Some("queued"));
}

/// Conformance case `a_pending_occurrence_starts_when_the_active_job_ends`.
pub async fn a_pending_occurrence_starts_when_the_active_job_ends(s: &Store) {
    let (sched, _) = s
        .put_schedule(&spec("p"), at(1000), true, 0)
        .await
        .expect("create");
    s.fire(
        &firing(
            sched.id,
            Some((1000, 61_000)),
            vec![occ(1000, OccurrenceState::Fired)],
        ),
        1000,
    )
    .await
    .expect("fire");
    s.fire(
        &firing(
            sched.id,
            Some((61_000, 121_000)),
            vec![occ(61_000, OccurrenceState::Pending)],
        ),
        61_000,
    )
    .await
    .expect("pend");
    let (active, pending) = s.schedule_activity(sched.id).await.expect("activity");
    assert!(matches!(active, Some(Active::Queued(_))), "{active:?}");
    assert_eq!(pending, 1);
    // Nothing ended yet: the follow-up starts nothing.
    let idle = s.follow_up(62_000, 100, 15_000).await.expect("follow up");
    assert!(idle.jobs.is_empty());
    run_one(s, "a1", Completion::Succeeded, "", 62_000).await;
    let done = s.follow_up(63_000, 100, 15_000).await.expect("follow up");
    assert_eq!(done.jobs.len(), 1);
    assert_eq!(done.woken, vec!["g".to_string()]);
    let history = s.history(sched.id, None, 10).await.expect("history");
    assert_eq!(history[0].state, OccurrenceState::Fired, "{history:?}");
    assert!(history[0].job_id.is_some());
    let (active, pending) = s.schedule_activity(sched.id).await.expect("activity");
    assert!(matches!(active, Some(Active::Queued(_))));
    assert_eq!(pending, 0);
    // Acted on once: a second follow-up finds nothing.
    assert!(
        s.follow_up(64_000, 100, 15_000)
            .await
            .expect("again")
            .jobs
            .is_empty()
    );
    let stats = s.schedule_stats(sched.id).await.expect("stats");
    assert_eq!(stats.counts.fired, 2);
    assert_eq!(stats.last_success_at, Some(62_001));
}

/// Conformance case `cancel_previous_cancels_then_starts_the_new_one`.
pub async fn cancel_previous_cancels_then_starts_the_new_one(s: &Store) {
    let (sched, _) = s
        .put_schedule(&spec("c"), at(1000), true, 0)
        .await
        .expect("create");
    let first = s
        .fire(
            &firing(
                sched.id,
                Some((1000, 61_000)),
                vec![occ(1000, OccurrenceState::Fired)],
            ),
            1000,
        )
        .await
        .expect("fire");
    let old = first.occurrences[0].job_id.expect("job");
    let mut f = firing(
        sched.id,
        Some((61_000, 121_000)),
        vec![occ(61_000, OccurrenceState::Pending)],
    );
    f.cancel_active = true;
    let fired = s.fire(&f, 61_000).await.expect("fire");
    assert_eq!(
        s.get_job(old).await.expect("old").state,
        JobState::Cancelled
    );
    // The old job was only queued: it ended at once, so the new one started.
    let history = s.history(sched.id, None, 10).await.expect("history");
    assert_eq!(
        history[0].state,
        OccurrenceState::Fired,
        "{history:?} {fired:?}"
    );
    let new = history[0].job_id.expect("new job");
    assert_ne!(new, old);
    assert_eq!(s.get_job(new).await.expect("new").state, JobState::Queued);
}

/// Conformance case `due_pause_resume_and_replace`.
pub async fn due_pause_resume_and_replace(s: &Store) {
    let (a, _) = s
        .put_schedule(&spec("a"), at(5000), true, 0)
        .await
        .expect("a");
    s.put_schedule(&spec("b"), at(3000), true, 0)
        .await
        .expect("b");
    assert_eq!(s.next_schedule_fire().await.expect("next"), Some(3000));
    assert!(s.due_schedules(2999, 10).await.expect("due").is_empty());
    let due = s.due_schedules(6000, 10).await.expect("due");
    let names: Vec<&str> = due.iter().map(|d| d.schedule.spec.name.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
    let paused = s
        .set_paused("b", true, Cursor::Keep, 100)
        .await
        .expect("pause");
    assert!(paused.paused && paused.spec.paused);
    assert_eq!(paused.paused_at, Some(100));
    assert_eq!(s.due_schedules(6000, 10).await.expect("due").len(), 1);
    assert_eq!(s.next_schedule_fire().await.expect("next"), Some(5000));
    let resumed = s
        .set_paused("b", false, Cursor::Keep, 200)
        .await
        .expect("resume");
    assert_eq!(
        (resumed.paused_at, resumed.resumed_at),
        (Some(100), Some(200))
    );
    assert_eq!(resumed.cursor, Some(3000));
    // Create-only refuses a name in use; a replace keeps the cursor when
    // asked to, and the pause state always.
    let dup = s.put_schedule(&spec("a"), at(1), true, 300).await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    s.set_paused("a", true, Cursor::Keep, 300)
        .await
        .expect("pause a");
    let mut changed = spec("a");
    changed.jitter_ms = 5;
    let (kept, created) = s
        .put_schedule(&changed, Cursor::Keep, false, 400)
        .await
        .expect("put");
    assert!(!created);
    assert_eq!(
        (kept.cursor, kept.paused, kept.spec.jitter_ms),
        (Some(5000), true, 5)
    );
    assert_eq!(kept.id, a.id);
    let list = s.list_schedules().await.expect("list");
    assert_eq!(list.len(), 2);
    // A pipeline that does not exist cannot be named.
    let mut p = spec("p");
    p.job = None;
    p.pipeline = Some("nope".into());
    assert!(matches!(
        s.put_schedule(&p, at(1), true, 0).await,
        Err(Error::Missing(_))
    ));
    s.delete_schedule("a").await.expect("delete");
    assert!(matches!(s.get_schedule("a").await, Err(Error::Missing(_))));
    assert!(matches!(
        s.delete_schedule("a").await,
        Err(Error::Missing(_))
    ));
}

/// Conformance case `ranges_count_in_full_and_spans_are_found`.
pub async fn ranges_count_in_full_and_spans_are_found(s: &Store) {
    let (sched, _) = s
        .put_schedule(&spec("r"), at(0), true, 0)
        .await
        .expect("create");
    let mut range = occ(0, OccurrenceState::Missed);
    range.last_nominal = Some(240_000);
    range.count = 5;
    s.fire(
        &firing(
            sched.id,
            Some((0, 360_000)),
            vec![range, occ(300_000, OccurrenceState::Fired)],
        ),
        300_000,
    )
    .await
    .expect("fire");
    let totals = s.occurrence_totals().await.expect("totals");
    assert_eq!((totals.missed, totals.fired), (5, 1));
    let spans = s
        .recorded_between(sched.id, 60_000, 300_000)
        .await
        .expect("spans");
    assert_eq!(spans, vec![(0, 240_000), (300_000, 300_000)]);
    assert!(
        s.recorded_between(sched.id, 301_000, 900_000)
            .await
            .expect("none")
            .is_empty()
    );
    let history = s
        .history(sched.id, Some(300_000), 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].count, 5);
}

/// Conformance case `an_operator_retry_of_a_scheduled_job_is_followed_up_again`.
pub async fn an_operator_retry_of_a_scheduled_job_is_followed_up_again(s: &Store) {
    let (sched, _) = s
        .put_schedule(&spec("o"), at(1000), true, 0)
        .await
        .expect("create");
    s.fire(
        &firing(
            sched.id,
            Some((1000, 61_000)),
            vec![occ(1000, OccurrenceState::Fired)],
        ),
        1000,
    )
    .await
    .expect("fire");
    s.fire(
        &firing(
            sched.id,
            Some((61_000, 121_000)),
            vec![occ(61_000, OccurrenceState::Pending)],
        ),
        61_000,
    )
    .await
    .expect("pend");
    let first = run_one(s, "a1", Completion::Failed { retryable: false }, "", 62_000).await;
    // The operator retries it before the timer looked: it is active again,
    // so the pending occurrence waits ...
    s.retry(first, 62_500).await.expect("retry");
    s.follow_up(63_000, 100, 15_000).await.expect("follow up");
    let (active, pending) = s.schedule_activity(sched.id).await.expect("activity");
    assert_eq!((active, pending), (Some(Active::Queued(first)), 1));
    // ... and when the retried job ends, its end is followed up again.
    run_one(s, "a1", Completion::Succeeded, "", 64_000).await;
    let done = s.follow_up(65_000, 100, 15_000).await.expect("follow up");
    assert_eq!(done.jobs, vec![first]);
    let (active, pending) = s.schedule_activity(sched.id).await.expect("activity");
    assert!(
        matches!(active, Some(Active::Queued(j)) if j != first),
        "{active:?}"
    );
    assert_eq!(pending, 0);
}

/// Conformance case `firings_in_one_batch_stand_or_fall_alone`.
pub async fn firings_in_one_batch_stand_or_fall_alone(s: &Store) {
    let (a, _) = s
        .put_schedule(&spec("a"), at(1000), true, 0)
        .await
        .expect("a");
    let (b, _) = s
        .put_schedule(&spec("b"), at(1000), true, 0)
        .await
        .expect("b");
    let (c, _) = s
        .put_schedule(&spec("c"), at(1000), true, 0)
        .await
        .expect("c");
    s.fire(
        &firing(
            b.id,
            Some((1000, 2000)),
            vec![occ(1000, OccurrenceState::Fired)],
        ),
        1000,
    )
    .await
    .expect("b once");
    let batch = [
        // Fires a job, then fails on an occurrence recorded twice: nothing of it stays.
        firing(
            a.id,
            Some((1000, 61_000)),
            vec![
                occ(1000, OccurrenceState::Fired),
                occ(1000, OccurrenceState::Missed),
            ],
        ),
        // Planned from a cursor that moved: raced, nothing written.
        firing(
            b.id,
            Some((1000, 61_000)),
            vec![occ(1000, OccurrenceState::Fired)],
        ),
        firing(
            c.id,
            Some((1000, 61_000)),
            vec![occ(1000, OccurrenceState::Fired)],
        ),
    ];
    let done = s.fire_all(&batch, 1500).await.expect("batch");
    assert!(matches!(done[0], Err(Error::Conflict(_))), "{:?}", done[0]);
    assert!(matches!(&done[1], Ok(f) if f.raced), "{:?}", done[1]);
    assert!(
        matches!(&done[2], Ok(f) if !f.raced && f.occurrences.len() == 1),
        "{:?}",
        done[2]
    );
    assert!(s.history(a.id, None, 10).await.expect("a").is_empty());
    assert_eq!(s.get_schedule("a").await.expect("a").cursor, Some(1000));
    assert_eq!(s.get_schedule("c").await.expect("c").cursor, Some(61_000));
    let jobs = s
        .list_jobs(&crate::store::jobs::JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("jobs");
    assert_eq!(jobs.jobs.len(), 2, "b's first job and c's: none of a's");
}

/// Grant the next job of group `g` to `a1` and complete it as `how`:
/// `(job id, made)` — what the completion says of its maker.
async fn complete_next(s: &Store, how: Completion, now: i64) -> (i64, bool) {
    let g = crate::store::testutil::grant_noop(&**s, "a1", now).await;
    let grant = g.grants.first().expect("a job to grant");
    let req = CompleteRequest {
        started_after_ms: None,
        token: grant.token,
        completion: how,
        result: JobResult::default(),
        error: (how != Completion::Succeeded).then(|| "boom".to_owned()),
    };
    let (_, dup, _, made) = s
        .complete(grant.job_id, "a1", &req, now + 1)
        .await
        .expect("complete");
    assert!(!dup);
    (grant.job_id, made)
}

/// Conformance case `a_completion_says_whether_a_schedule_made_the_job`:
/// the end of a plain job needs no follow-up (the jobs service then leaves
/// the schedule timer asleep), the end of a scheduled one does — on the
/// one-statement success path and on the full path alike.
pub async fn a_completion_says_whether_a_schedule_made_the_job(s: &Store) {
    for (i, how) in [
        Completion::Succeeded,
        Completion::Failed { retryable: false },
    ]
    .into_iter()
    .enumerate()
    {
        let now = 1_000 + 100_000 * i as i64;
        let plain = s
            .submit(crate::store::testutil::new_job("g", None, "h"), now)
            .await
            .expect("submit");
        let (id, made) = complete_next(s, how, now + 10).await;
        assert_eq!((id, made), (plain.job.id, false), "{how:?}");
        let name = format!("made{i}");
        let (sched, _) = s
            .put_schedule(&spec(&name), at(now), true, now)
            .await
            .expect("create");
        let fired = s
            .fire(
                &firing(
                    sched.id,
                    Some((now, now + 60_000)),
                    vec![occ(now, OccurrenceState::Fired)],
                ),
                now + 20,
            )
            .await
            .expect("fire");
        let job_id = fired.occurrences[0].job_id.expect("job made");
        let (id, made) = complete_next(s, how, now + 30).await;
        assert_eq!((id, made), (job_id, true), "{how:?}");
    }
}
