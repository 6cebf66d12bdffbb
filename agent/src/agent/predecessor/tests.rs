//! The previous run's leases against the fake controller: reported at start
//! in the background (polling goes on through an outage of the report), those
//! with a completion in the outbox left to the outbox, and this run's leases
//! recorded while held and forgotten when they end.

use std::path::Path;
use std::time::Duration;

use baton_proto::{CompleteRequest, Completion, Grant, JobResult, JobSpec, LeaseRef, NoopSpec};

use crate::agent::tests::{SECRET, config, identity, spawn_agent};
use crate::fake_controller::Fake;
use crate::lease::record::LeaseRecords;
use crate::outbox::{Entry, Outbox};

const LIMIT: Duration = Duration::from_secs(10);

fn noop_grant(job_id: i64, sleep_ms: u64) -> Grant {
    Grant {
        job_id,
        attempt: 1,
        token: 10 + job_id,
        lease_ttl_ms: 5_000,
        held_ms: 0,
        timeout_ms: None,
        group: "g".into(),
        spec: JobSpec::Noop(NoopSpec { sleep_ms }),
        retry_codes: Vec::new(),
    }
}

fn recorded(state: &Path) -> Vec<LeaseRef> {
    crate::lease::record::recorded(state).expect("read")
}

async fn until_recorded(state: &Path, cond: impl Fn(&[LeaseRef]) -> bool) -> bool {
    let end = tokio::time::Instant::now() + LIMIT;
    while tokio::time::Instant::now() < end {
        if cond(&recorded(state)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn the_previous_runs_leases_are_reported_in_the_background_and_forgotten() {
    let fake = Fake::start().await;
    {
        let mut s = fake.script();
        s.secret = Some(SECRET.into());
        s.abandon_unavailable = u32::MAX;
    }
    let state = tempfile::tempdir().expect("tempdir");
    // The previous run died holding job 5 (running) and job 6 (its
    // completion already in the outbox).
    let previous = LeaseRecords::open(state.path()).expect("records");
    assert!(previous.record(5, 3));
    assert!(previous.record(6, 4));
    let done = Entry {
        job_id: 6,
        request: CompleteRequest {
            started_after_ms: None,
            token: 4,
            completion: Completion::Succeeded,
            result: JobResult::default(),
            error: None,
        },
    };
    Outbox::open(state.path())
        .expect("outbox")
        .write(&done)
        .expect("write");

    let cfg = config(&fake.url, state.path(), Duration::from_millis(200));
    let (task, shutdown) = spawn_agent(cfg, &identity(&fake.url));
    // The report fails for now; the agent polls meanwhile.
    assert!(
        fake.until(LIMIT, |s| s.abandon_attempts >= 2 && !s.polls.is_empty())
            .await,
        "no poll while the report was failing"
    );
    assert!(fake.script().abandons.is_empty());
    fake.script().abandon_unavailable = 0;
    assert!(fake.until(LIMIT, |s| !s.abandons.is_empty()).await);
    {
        let s = fake.script();
        assert_eq!(s.abandons.len(), 1);
        assert_eq!(
            s.abandons[0].leases,
            vec![LeaseRef {
                job_id: 5,
                token: 3
            }],
            "job 6's completion goes through the outbox, not as abandoned"
        );
        assert!(s.completes.iter().any(|(id, r)| *id == 6 && r.token == 4));
    }
    assert!(
        until_recorded(state.path(), |r| r.is_empty()).await,
        "answered records stay: {:?}",
        recorded(state.path())
    );

    // This run's leases: recorded while held, gone when they end.
    fake.script()
        .grants
        .extend([noop_grant(7, 60_000), noop_grant(8, 0)]);
    let job7 = LeaseRef {
        job_id: 7,
        token: 17,
    };
    assert!(until_recorded(state.path(), |r| r.contains(&job7)).await);
    assert!(
        fake.until(LIMIT, |s| s.completes.iter().any(|(id, _)| *id == 8))
            .await
    );
    assert!(until_recorded(state.path(), |r| r == [job7]).await);
    shutdown.cancel();
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("agent stops")
        .expect("no panic");
    assert!(fake.script().releases.iter().any(|(id, _)| *id == 7));
    assert!(
        recorded(state.path()).is_empty(),
        "released lease still recorded"
    );
    assert_eq!(fake.script().abandons.len(), 1, "reported again");
}
