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
    }
}

const SPEC: usize = 256 << 10;

fn field(e: Error) -> Option<String> {
    match e {
        Error::Invalid { field, .. } => Some(field),
        _ => None,
    }
}

#[test]
fn probe_defaults() {
    let (d, j) = plan(&req(DrillMethod::Crash), 15_000, SPEC, "ops").expect("plan");
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
        15_000,
        SPEC,
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
        field(plan(&short, 15_000, SPEC, "o").expect_err("short")).as_deref(),
        Some("duration_ms")
    );
    let ttl = DrillStart {
        lease_ttl_ms: Some(10),
        ..req(DrillMethod::Freeze)
    };
    assert_eq!(
        field(plan(&ttl, 15_000, SPEC, "o").expect_err("ttl")).as_deref(),
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
        field(plan(&wrong_group, 15_000, SPEC, "o").expect_err("group")).as_deref(),
        Some("job.group")
    );
    template.group = "g".into();
    template.retry.max_attempts = 1;
    let no_retry = DrillStart {
        job: Some(template.clone()),
        ..req(DrillMethod::Crash)
    };
    assert_eq!(
        field(plan(&no_retry, 15_000, SPEC, "o").expect_err("retry")).as_deref(),
        Some("job.retry")
    );
    template.retry.max_attempts = 3;
    let ok = DrillStart {
        job: Some(template),
        ..req(DrillMethod::Crash)
    };
    let (_, j) = plan(&ok, 15_000, SPEC, "o").expect("template");
    assert_eq!(j.submit.lease_ttl_ms, Some(2000), "the drill's TTL wins");
    let bad_group = DrillStart {
        group: "a b".into(),
        ..req(DrillMethod::Crash)
    };
    assert_eq!(
        field(plan(&bad_group, 15_000, SPEC, "o").expect_err("group")).as_deref(),
        Some("group")
    );
    for rto in [0, MAX_RTO_MS + 1, u64::MAX] {
        let bad_rto = DrillStart {
            rto_ms: Some(rto),
            ..req(DrillMethod::Crash)
        };
        assert_eq!(
            field(plan(&bad_rto, 15_000, SPEC, "o").expect_err("rto")).as_deref(),
            Some("rto_ms"),
            "{rto}"
        );
    }
}
