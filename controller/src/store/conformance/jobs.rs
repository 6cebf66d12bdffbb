use baton_proto::{JobId, JobSpec, JobState, JobSummary, RetryPolicy};

use crate::store::jobs::{JobFilter, NewBatch};
use crate::store::testutil::new_job;
use crate::store::{Error, Store};

/// Conformance case `lists_hold_summaries_with_long_texts_cut`.
pub async fn lists_hold_summaries_with_long_texts_cut(s: &Store) {
    let mut job = new_job("g", None, "h");
    job.submit.spec = JobSpec::Command(baton_proto::CommandSpec {
        program: format!("/opt/{}", "p".repeat(300)),
        args: vec!["secret-looking-arg".into()],
        ..Default::default()
    });
    let id = s.submit(job, 1000).await.expect("submit").job.id;
    let list = s
        .list_jobs(&JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    let j = &list.jobs[0];
    assert_eq!(j.id, id);
    assert_eq!(j.max_attempts, RetryPolicy::default().max_attempts);
    let what = j.what.as_deref().expect("what");
    assert!(what.starts_with("/opt/pp") && what.ends_with('…'), "{what}");
    assert_eq!(what.chars().count(), JobSummary::MAX_TEXT + 1);
    let wire = serde_json::to_string(&list).expect("json");
    assert!(!wire.contains("secret-looking-arg"), "{wire}");
    // An export's summary is its query.
    let mut job = new_job("g", None, "h2");
    job.submit.spec = JobSpec::Export(baton_proto::ExportSpec {
        connection: "c".into(),
        query: "SELECT id FROM orders".into(),
        params: vec![],
        format: Default::default(),
        compression: Default::default(),
        prefix: None,
    });
    let id = s.submit(job, 1001).await.expect("submit").job.id;
    let list = s
        .list_jobs(&JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    let j = list.jobs.iter().find(|j| j.id == id).expect("listed");
    assert_eq!(j.what.as_deref(), Some("SELECT id FROM orders"));
}

/// Conformance case `submit_get_list`.
pub async fn submit_get_list(s: &Store) {
    let a = s
        .submit(new_job("g", None, "h"), 1000)
        .await
        .expect("submit");
    assert!(a.created);
    assert_eq!(a.job.state, JobState::Queued);
    assert_eq!(s.get_job(a.job.id).await.expect("get"), a.job);
    let b = s
        .submit(new_job("h", None, "h"), 1001)
        .await
        .expect("submit");
    let all = s
        .list_jobs(&JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        all.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![b.job.id, a.job.id]
    );
    let g = s
        .list_jobs(&JobFilter {
            group: Some("g".into()),
            label: Some(("team".into(), "dba".into())),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(g.jobs.len(), 1);
    let none = s
        .list_jobs(&JobFilter {
            label: Some(("team".into(), "web".into())),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(none.jobs.is_empty());
    let page = s
        .list_jobs(&JobFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.next_before, Some(b.job.id));
}

/// Conformance case `idempotency_key`.
pub async fn idempotency_key(s: &Store) {
    let a = s
        .submit(new_job("g", Some("k"), "h1"), 1)
        .await
        .expect("submit");
    let b = s
        .submit(new_job("g", Some("k"), "h1"), 2)
        .await
        .expect("again");
    assert!(!b.created);
    assert_eq!(a.job.id, b.job.id);
    let c = s.submit(new_job("g", Some("k"), "h2"), 3).await;
    assert!(matches!(c, Err(Error::IdempotencyConflict(_))));
}

/// Conformance case `batch_submit_in_order_and_idempotent_on_the_whole_body`.
pub async fn batch_submit_in_order_and_idempotent_on_the_whole_body(s: &Store) {
    let batch = |key: Option<&str>, hash: &str| NewBatch {
        jobs: vec![
            new_job("g", None, "a"),
            new_job("h", None, "b"),
            new_job("g", None, "c"),
        ],
        idempotency_key: key.map(str::to_owned),
        request_hash: hash.into(),
    };
    let a = s
        .submit_batch(batch(Some("bk"), "B1"), 10)
        .await
        .expect("batch");
    assert!(a.created);
    let ids: Vec<JobId> = a.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(
        a.jobs.iter().map(|j| j.group.as_str()).collect::<Vec<_>>(),
        vec!["g", "h", "g"]
    );
    assert!(a.jobs.iter().all(|j| j.state == JobState::Queued));
    for j in &a.jobs {
        // The answer is what reading the row back gives.
        assert_eq!(&s.get_job(j.id).await.expect("get"), j);
    }
    // The same body again: the same jobs, nothing new.
    let again = s
        .submit_batch(batch(Some("bk"), "B1"), 11)
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(again.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
    // Another body with the key, or a single submit with it: conflict.
    assert!(matches!(
        s.submit_batch(batch(Some("bk"), "B2"), 12).await,
        Err(Error::IdempotencyConflict(_))
    ));
    assert!(matches!(
        s.submit(new_job("g", Some("bk"), "a"), 13).await,
        Err(Error::IdempotencyConflict(_))
    ));
    let all = s
        .list_jobs(&JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(all.jobs.len(), 3);
    // Without a key every call creates.
    let b = s.submit_batch(batch(None, "B1"), 14).await.expect("batch");
    assert!(b.created);
    assert_eq!(b.jobs[0].id, ids[2] + 1);
    // Several multi-row INSERT chunks: still in order, ids consecutive.
    let many = NewBatch {
        jobs: (0..130)
            .map(|i| {
                let mut j = new_job("g", None, "x");
                j.submit.priority = i;
                j
            })
            .collect(),
        idempotency_key: None,
        request_hash: "many".into(),
    };
    let m = s.submit_batch(many, 15).await.expect("many");
    assert_eq!(m.jobs.len(), 130);
    for (i, j) in m.jobs.iter().enumerate() {
        assert_eq!(j.id, m.jobs[0].id + i as i64);
        assert_eq!(j.priority, i as i32);
    }
    let last = m.jobs.last().expect("last");
    assert_eq!(&s.get_job(last.id).await.expect("get"), last);
}

/// Conformance case `cancel_and_retry_rules`.
pub async fn cancel_and_retry_rules(s: &Store) {
    let a = s
        .submit(new_job("g", None, "h"), 1)
        .await
        .expect("submit")
        .job;
    let c = s.cancel(a.id, 2).await.expect("cancel");
    assert_eq!(c.state, JobState::Cancelled);
    assert!(matches!(s.cancel(a.id, 3).await, Err(Error::Conflict(_))));
    let r = s.retry(a.id, 4).await.expect("retry");
    assert_eq!(r.state, JobState::Queued);
    assert!(matches!(s.retry(a.id, 5).await, Err(Error::Conflict(_))));
    assert!(matches!(s.get_job(999).await, Err(Error::NotFound(999))));
}

/// Conformance case `jobs_name_the_schedule_and_run_that_made_them`: a
/// schedule's job names the schedule and the nominal time, a pipeline
/// step's job its run and step (and the schedule that fired the run); the
/// list says the same and filters by schedule; a plain job names none.
pub async fn jobs_name_the_schedule_and_run_that_made_them(s: &Store) {
    use baton_proto::pipeline::{PipelineSpec, StepCondition, StepSpec};
    use baton_proto::schedule::OccurrenceState;

    use super::schedules::{occ, spec};
    use crate::store::rows_ts;
    use crate::store::schedules::{Cursor, Firing};

    let plain = s
        .submit(crate::store::testutil::new_job("g", None, "h"), 1)
        .await
        .expect("submit")
        .job;
    assert_eq!(
        (&plain.schedule, plain.nominal_at, plain.run_id, &plain.step),
        (&None, None, None, &None)
    );
    let template = spec("x").job.expect("template");
    let p = PipelineSpec {
        name: "p".into(),
        group: "g".into(),
        timeout_ms: None,
        steps: vec![StepSpec {
            name: "dump".into(),
            depends_on: Vec::new(),
            on: StepCondition::Success,
            same_agent_as: None,
            group: None,
            job: template,
        }],
    };
    s.put_pipeline(&p, true, 0).await.expect("pipeline");
    let mut by_pipeline = spec("nightly-p");
    by_pipeline.job = None;
    by_pipeline.pipeline = Some("p".into());
    let mut made = Vec::new();
    for sched in [spec("nightly"), by_pipeline] {
        let (stored, _) = s
            .put_schedule(&sched, Cursor::Keep, true, 0)
            .await
            .expect("schedule");
        let firing = Firing {
            schedule_id: stored.id,
            advance: None,
            occurrences: vec![occ(60_000, OccurrenceState::Fired)],
            cancel_active: false,
            supersede_pending: false,
            default_lease_ttl_ms: 15_000,
        };
        made.push(s.fire(&firing, 60_500).await.expect("fire").occurrences[0].clone());
    }
    let job = s.get_job(made[0].job_id.expect("job")).await.expect("job");
    assert_eq!(job.schedule.as_deref(), Some("nightly"));
    assert_eq!(job.nominal_at, Some(rows_ts(60_000)));
    assert_eq!((job.run_id, job.step.as_deref()), (None, None));
    let run = s.get_run(made[1].run_id.expect("run")).await.expect("run");
    let step_job = s
        .get_job(run.steps[0].job_id.expect("step job"))
        .await
        .expect("job");
    assert_eq!(step_job.schedule.as_deref(), Some("nightly-p"));
    assert_eq!(step_job.nominal_at, Some(rows_ts(60_000)));
    assert_eq!(step_job.run_id, Some(run.id));
    assert_eq!(step_job.step.as_deref(), Some("dump"));

    let list = |schedule: Option<&str>| {
        let (s, schedule) = (s.clone(), schedule.map(str::to_owned));
        async move {
            s.list_jobs(&JobFilter {
                schedule,
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list")
            .jobs
        }
    };
    let all = list(None).await;
    assert_eq!(all.len(), 3);
    let summary = all.iter().find(|j| j.id == step_job.id).expect("listed");
    assert_eq!(
        (
            summary.schedule.as_deref(),
            summary.nominal_at,
            summary.run_id,
            summary.step.as_deref()
        ),
        (
            Some("nightly-p"),
            Some(rows_ts(60_000)),
            Some(run.id),
            Some("dump")
        )
    );
    let ids = |jobs: Vec<JobSummary>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(list(Some("nightly")).await), [job.id]);
    assert_eq!(ids(list(Some("nightly-p")).await), [step_job.id]);
    assert!(list(Some("nobody")).await.is_empty());
}

/// Conformance case `queue_figures_count_by_group_and_state`.
pub async fn queue_figures_count_by_group_and_state(s: &Store) {
    use crate::store::jobs::QueueFigure;
    for (g, at) in [("g", 1000), ("h", 1050), ("g", 1100)] {
        s.submit(new_job(g, None, "h"), at).await.expect("submit");
    }
    // Finished: one job cancelled at 1200.
    let gone = s
        .submit(new_job("h", None, "h"), 1150)
        .await
        .expect("submit");
    s.cancel(gone.job.id, 1200).await.expect("cancel");
    let groups = vec!["g".to_string()];
    let kinds = vec![baton_proto::JobKind::Noop];
    let granted = s
        .grant(&super::lease::req("a", &groups, &kinds), 2000)
        .await
        .expect("grant");
    assert_eq!(granted.grants.len(), 1);
    // The grant tells when its job became ready (its submit).
    assert_eq!(granted.ready_at, vec![1000]);
    let mut figures = s.queue_figures(3000, 1100).await.expect("figures");
    figures.sort_by(|a, b| (&a.group, a.state.as_str()).cmp(&(&b.group, b.state.as_str())));
    let f = |group: &str, state, count, oldest_ready_at| QueueFigure {
        group: group.into(),
        state,
        count,
        oldest_ready_at,
    };
    assert_eq!(
        figures,
        vec![
            f("g", JobState::Queued, 1, Some(1100)),
            f("g", JobState::Running, 1, None),
            f("h", JobState::Cancelled, 1, None),
            f("h", JobState::Queued, 1, Some(1050)),
        ]
    );
    // A job that finished before `finished_since` is not read.
    let later = s.queue_figures(3000, 1200).await.expect("figures");
    assert!(
        !later.iter().any(|x| x.state == JobState::Cancelled),
        "{later:?}"
    );
    // A job not ready yet at `now` is counted but is not the oldest ready.
    let early = s.queue_figures(1060, 0).await.expect("figures");
    let g = early
        .iter()
        .find(|x| x.group == "g" && x.state == JobState::Queued)
        .expect("g queued");
    assert_eq!((g.count, g.oldest_ready_at), (1, None));
}

/// Conformance case `lists_each_state_newest_first_in_pages`: the listing
/// by each state (the backends read the active and the failed/cancelled
/// ones through partial indexes) returns exactly that state's jobs, newest
/// first, page by page, and combines with the other filters.
pub async fn lists_each_state_newest_first_in_pages(s: &Store) {
    use baton_proto::{CompleteRequest, Completion, JobKind, JobResult};
    let mut ids = Vec::new();
    for i in 0..10 {
        let j = s.submit(new_job("g", None, "h"), 1000 + i).await;
        ids.push(j.expect("submit").job.id);
    }
    let (groups, kinds) = (vec!["g".to_string()], vec![JobKind::Noop]);
    let mut req = super::lease::req("a", &groups, &kinds);
    req.max = 6;
    let granted = s.grant(&req, 2000).await.expect("grant");
    let running: Vec<JobId> = granted.grants.iter().map(|g| g.job_id).collect();
    assert_eq!(running, ids[..6], "the oldest six granted");
    for (i, ok) in [(0, true), (1, false), (2, true), (3, false)] {
        let completion = if ok {
            Completion::Succeeded
        } else {
            Completion::Failed { retryable: false }
        };
        let done = CompleteRequest {
            started_after_ms: None,
            token: granted.grants[i].token,
            completion,
            result: JobResult::default(),
            error: (!ok).then(|| "boom".to_owned()),
        };
        s.complete(ids[i], "a", &done, 3000)
            .await
            .expect("complete");
    }
    for i in [6, 9] {
        s.cancel(ids[i], 3000).await.expect("cancel");
    }
    let expect = [
        (JobState::Queued, vec![ids[8], ids[7]]),
        (JobState::Running, vec![ids[5], ids[4]]),
        (JobState::Succeeded, vec![ids[2], ids[0]]),
        (JobState::Failed, vec![ids[3], ids[1]]),
        (JobState::Cancelled, vec![ids[9], ids[6]]),
    ];
    for (state, want) in expect {
        let mut filter = JobFilter {
            state: Some(state),
            limit: 1,
            ..Default::default()
        };
        let mut got = Vec::new();
        loop {
            let page = s.list_jobs(&filter).await.expect("list");
            assert!(page.jobs.iter().all(|j| j.state == state), "{page:?}");
            got.extend(page.jobs.iter().map(|j| j.id));
            match page.next_before {
                Some(b) => filter.before = Some(b),
                None => break,
            }
            assert!(got.len() <= want.len(), "{state}: {got:?}");
        }
        assert_eq!(got, want, "{state}, one per page");
        // A page starting below the newest, and another filter beside the state.
        filter.before = Some(want[0]);
        filter.limit = 10;
        let rest: Vec<JobId> = s
            .list_jobs(&filter)
            .await
            .expect("list")
            .jobs
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(rest, want[1..], "{state}, below {}", want[0]);
        filter.before = None;
        filter.group = Some("other".into());
        assert!(
            s.list_jobs(&filter).await.expect("list").jobs.is_empty(),
            "{state} of another group"
        );
    }
}
