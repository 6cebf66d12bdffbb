use baton_proto::JobState;

use super::list_sql;
use crate::store::jobs::JobFilter;
use crate::store::sqlite::SqliteStore;

/// The listing's plan for `state`, with no other filter.
async fn plan(s: &SqliteStore, state: Option<JobState>) -> Vec<String> {
    let f = JobFilter {
        state,
        limit: 10,
        ..Default::default()
    };
    s.query_plan(&list_sql(&f), &[]).await
}

/// A state a partial index holds is read through it, and a page below an
/// id starts there (`id<?`), in order: no sort, no walk of other jobs. A
/// page of failed jobs had walked every job by id (migration 0014 to 0015).
#[tokio::test]
async fn listing_a_state_reads_its_partial_index_from_the_page_end() {
    let (s, _d) = SqliteStore::temp().await;
    for (state, index) in [
        (JobState::Queued, "jobs_active"),
        (JobState::Running, "jobs_active"),
        (JobState::Failed, "jobs_unhappy"),
        (JobState::Cancelled, "jobs_unhappy"),
    ] {
        let detail = plan(&s, Some(state)).await;
        let want = format!("SEARCH jobs USING INDEX {index} (state=? AND id<?)");
        assert!(detail.contains(&want), "{state}: {detail:?}");
        assert!(
            !detail.iter().any(|d| d.contains("TEMP B-TREE")),
            "{state}: {detail:?}"
        );
    }
}

/// Succeeded jobs (most of the table) and the unfiltered listing walk the
/// table by id from the page's end, in order.
#[tokio::test]
async fn listing_succeeded_or_all_walks_the_table_from_the_page_end() {
    let (s, _d) = SqliteStore::temp().await;
    for state in [None, Some(JobState::Succeeded)] {
        let detail = plan(&s, state).await;
        assert!(
            detail
                .iter()
                .any(|d| d == "SEARCH jobs USING INTEGER PRIMARY KEY (rowid<?)"),
            "{state:?}: {detail:?}"
        );
        assert!(
            !detail.iter().any(|d| d.contains("TEMP B-TREE")),
            "{state:?}: {detail:?}"
        );
    }
}
