//! Completions riding the next poll, against the fake controller.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::tests::{SECRET, config, grant, identity, noop, spawn_agent};
use crate::fake_controller::Fake;

const LIMIT: Duration = Duration::from_secs(10);

/// A one-slot agent against a fake (`refuse`: one older than completions in
/// a poll) with job 1 queued.
struct OneSlot {
    fake: Fake,
    state: tempfile::TempDir,
    task: JoinHandle<()>,
    shutdown: CancellationToken,
}

impl OneSlot {
    async fn start(refuse: bool) -> Self {
        let fake = Fake::start().await;
        {
            let mut s = fake.script();
            s.secret = Some(SECRET.into());
            s.refuse_poll_completions = refuse;
            s.grants.push_back(grant(1, 5_000, noop(0)));
        }
        let state = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(&fake.url, state.path(), LIMIT);
        cfg.slots = 1;
        let (task, shutdown) = spawn_agent(cfg, &identity(&fake.url));
        OneSlot {
            fake,
            state,
            task,
            shutdown,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}

/// A one-slot agent: the finished job's completion goes in the next poll
/// (one request), recorded once, and the outbox empties.
#[tokio::test]
async fn a_completion_rides_the_next_poll() {
    let agent = OneSlot::start(false).await;
    let fake = &agent.fake;
    assert!(fake.until(LIMIT, |s| s.ridden == [1]).await, "rode a poll");
    {
        let s = fake.script();
        assert_eq!(s.completes.len(), 1, "recorded once");
        assert_eq!(s.complete_attempts, 1, "sent once");
        let carrier = s
            .polls
            .iter()
            .find(|p| !p.completions.is_empty())
            .expect("a poll carried it");
        assert_eq!(carrier.completions[0].job_id, 1);
        assert_eq!(carrier.completions[0].token, 11);
        assert_eq!(carrier.free_slots, 1);
    }
    let drained = async {
        while !crate::outbox::waiting(agent.state.path())
            .expect("outbox")
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(LIMIT, drained)
        .await
        .expect("the poll's answer marked it done");
    agent.stop().await;
}

/// A controller that refuses the field: the completion goes on its own,
/// the poll is sent again without it, and no later poll carries any.
#[tokio::test]
async fn a_controller_without_the_field_gets_completions_on_their_own() {
    let agent = OneSlot::start(true).await;
    let fake = &agent.fake;
    assert!(fake.until(LIMIT, |s| s.completes.len() == 1).await);
    fake.script().grants.push_back(grant(2, 5_000, noop(0)));
    assert!(fake.until(LIMIT, |s| s.completes.len() == 2).await);
    {
        let s = fake.script();
        assert!(s.ridden.is_empty());
        assert_eq!(s.refused_polls, 1, "riding ends at the first refusal");
        let ids: Vec<_> = s.completes.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2]);
    }
    agent.stop().await;
}
