use super::*;
use baton_proto::drill::DrillMethod;

fn req(method: DrillMethod) -> DrillStart {
    DrillStart {
        group: "g".into(),
        method,
        duration_ms: None,
        job: None,
        rto_ms: None,
        lease_ttl_ms: Some(2000),
        agent: None,
    }
}

const SPEC: usize = 256 << 10;
const LIMITS: Limits = Limits {
    default_ttl_ms: 15_000,
    max_spec_bytes: SPEC,
    allow_controller_crash: false,
};

fn field(e: Error) -> Option<String> {
    match e {
        Error::Invalid { field, .. } | Error::Unfit { field, .. } => Some(field),
        _ => None,
    }
}

#[test]
fn probe_defaults() {
    let (d, j) = plan(&req(DrillMethod::Crash), LIMITS, "ops").expect("plan");
    assert_eq!(d.duration_ms, 4000);
    assert_eq!(d.lease_ttl_ms, 2000);
    assert_eq!(d.rto_ms, DEFAULT_RTO_MS);
    assert_eq!(d.created_by, "token:ops");
    assert_eq!(j.submit.spec, JobSpec::Noop(NoopSpec { sleep_ms: 4000 }));
    assert_eq!(j.submit.retry.initial_backoff_ms, 0);
    let (d, _) = plan(
        &DrillStart {
            lease_ttl_ms: None,
            ..req(DrillMethod::Freeze)
        },
        LIMITS,
        "ops",
    )
    .expect("plan");
    assert_eq!((d.lease_ttl_ms, d.duration_ms), (15_000, 30_000));
}

#[test]
fn errors_name_the_field() {
    let short = DrillStart {
        duration_ms: Some(2000),
        ..req(DrillMethod::Freeze)
    };
    assert_eq!(
        field(plan(&short, LIMITS, "o").expect_err("short")).as_deref(),
        Some("duration_ms")
    );
    let ttl = DrillStart {
        lease_ttl_ms: Some(10),
        ..req(DrillMethod::Freeze)
    };
    assert_eq!(
        field(plan(&ttl, LIMITS, "o").expect_err("ttl")).as_deref(),
        Some("lease_ttl_ms")
    );
    let mut template = JobSubmit {
        allow_unplaced: false,
        group: "other".into(),
        spec: JobSpec::Noop(NoopSpec::default()),
        priority: 0,
        retry: RetryPolicy::default(),
        timeout_ms: None,
        lease_ttl_ms: None,
        labels: Default::default(),
    };
    let wrong_group = DrillStart {
        job: Some(template.clone()),
        ..req(DrillMethod::Crash)
    };
    assert_eq!(
        field(plan(&wrong_group, LIMITS, "o").expect_err("group")).as_deref(),
        Some("job.group")
    );
    template.group = "g".into();
    template.retry.max_attempts = 1;
    let no_retry = DrillStart {
        job: Some(template.clone()),
        ..req(DrillMethod::Crash)
    };
    assert_eq!(
        field(plan(&no_retry, LIMITS, "o").expect_err("retry")).as_deref(),
        Some("job.retry")
    );
    template.retry.max_attempts = 3;
    let ok = DrillStart {
        job: Some(template),
        ..req(DrillMethod::Crash)
    };
    let (_, j) = plan(&ok, LIMITS, "o").expect("template");
    assert_eq!(j.submit.lease_ttl_ms, Some(2000), "the drill's TTL wins");
    let bad_group = DrillStart {
        group: "a b".into(),
        ..req(DrillMethod::Crash)
    };
    assert_eq!(
        field(plan(&bad_group, LIMITS, "o").expect_err("group")).as_deref(),
        Some("group")
    );
    for rto in [0, MAX_RTO_MS + 1, u64::MAX] {
        let bad_rto = DrillStart {
            rto_ms: Some(rto),
            ..req(DrillMethod::Crash)
        };
        assert_eq!(
            field(plan(&bad_rto, LIMITS, "o").expect_err("rto")).as_deref(),
            Some("rto_ms"),
            "{rto}"
        );
    }
}

#[test]
fn a_controller_crash_needs_the_setting_and_an_agent() {
    let crash = DrillStart {
        agent: Some("db1".into()),
        ..req(DrillMethod::ControllerCrash)
    };
    match plan(&crash, LIMITS, "o").expect_err("not allowed") {
        Error::NotAllowed { field, message } => {
            assert_eq!(field, "method");
            assert!(message.contains("allow_controller_crash"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let allowed = Limits {
        allow_controller_crash: true,
        ..LIMITS
    };
    let (d, j) = plan(&crash, allowed, "o").expect("allowed");
    assert_eq!(d.method, DrillMethod::ControllerCrash);
    assert_eq!(d.agent.as_deref(), Some("db1"));
    assert_eq!(j.submit.group, "g");
    let no_agent = req(DrillMethod::ControllerCrash);
    assert_eq!(
        field(plan(&no_agent, allowed, "o").expect_err("no agent")).as_deref(),
        Some("agent")
    );
    let bad_agent = DrillStart {
        agent: Some("two words".into()),
        ..req(DrillMethod::ControllerCrash)
    };
    assert_eq!(
        field(plan(&bad_agent, allowed, "o").expect_err("bad agent")).as_deref(),
        Some("agent")
    );
    let agent_elsewhere = DrillStart {
        agent: Some("db1".into()),
        ..req(DrillMethod::Crash)
    };
    assert_eq!(
        field(plan(&agent_elsewhere, allowed, "o").expect_err("not for crash")).as_deref(),
        Some("agent")
    );
}

/// A drill without a watcher (the controller that started it died) still
/// gets its verdict from any controller's sweep, with no read of it.
#[tokio::test]
async fn the_sweep_ends_a_drill_whose_watcher_is_gone() {
    let (store, _dir) = crate::store::testutil::store().await;
    let jobs = Jobs::new(store.clone());
    let (drill, job) = plan(&req(DrillMethod::Crash), LIMITS, "ops").expect("plan");
    // Created as `start` does, but no watcher is spawned.
    let view = jobs
        .create_drill(&drill, job, now_ms())
        .await
        .expect("drill");
    let job_id = view.job_id.expect("the drill has its job");
    jobs.cancel(job_id, now_ms()).await.expect("cancel");
    let running = |s: &Store| {
        let s = s.clone();
        async move { s.running_drills().await.expect("running") }
    };
    assert_eq!(running(&store).await, vec![view.id], "no verdict yet");
    let shutdown = CancellationToken::new();
    let sweeping = tokio::spawn(sweep(store.clone(), shutdown.clone()));
    let end = std::time::Instant::now() + 10 * SWEEP_EVERY;
    while !running(&store).await.is_empty() {
        assert!(std::time::Instant::now() < end, "the sweep ended nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    sweeping.await.expect("the sweep stops at shutdown");
    let d = store.get_drill(view.id).await.expect("drill");
    assert_eq!(
        d.state,
        DrillState::Error,
        "the job ended before any fault: {d:?}"
    );
}

/// Found by `positive_data_acceptance`: a TTL of an hour and no
/// `duration_ms` is valid by the document, but the default duration (two
/// TTLs) is past the bound: 422 (`Unfit`), not 400, naming `duration_ms`.
#[test]
fn a_default_duration_past_the_bound_is_unfit() {
    let long = DrillStart {
        lease_ttl_ms: Some(3_600_000),
        ..req(DrillMethod::Partition)
    };
    match plan(&long, LIMITS, "o").expect_err("two hours") {
        Error::Unfit { field, message } => {
            assert_eq!(field, "duration_ms");
            assert!(message.contains("lease_ttl_ms"), "{message}");
        }
        other => panic!("not unfit: {other:?}"),
    }
    let given = DrillStart {
        duration_ms: Some(3_600_001),
        ..req(DrillMethod::Partition)
    };
    assert!(matches!(
        plan(&given, LIMITS, "o").expect_err("given"),
        Error::Invalid { .. }
    ));
}
