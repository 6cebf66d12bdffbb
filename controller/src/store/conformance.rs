//! The store conformance suite: backend-neutral cases every store backend
//! must pass, whatever it stores in.
//!
//! Each case is a `pub async fn case(s: &Store)` in the module of its area
//! ([`jobs`], [`lease`], [`agents`], [`identity`], [`audit`], [`drills`],
//! [`rebase`], [`retention`], [`schedules`], [`firing`], [`pipelines`], [`notifications`]) that gets a fresh, empty store and asserts on what the
//! [`crate::store::Backend`] methods answer — never on a backend's tables,
//! so a second backend runs them unchanged. Times are passed in as `now`,
//! so no case waits.
//!
//! A backend runs the whole suite with one line in its test module:
//!
//! ```ignore
//! crate::store::conformance::suite!(crate::store::testutil::store);
//! ```
//!
//! where the argument is an `async fn() -> (Store, Guard)` opening a fresh
//! store (the guard keeps it alive: a temp dir, a scratch database), or
//! `-> Option<(Store, Guard)>` for a backend that may be absent (the
//! PostgreSQL cases skip without a server). The
//! macro makes one `#[tokio::test]` per case, named `<area>::<case>`;
//! [`tests`] runs it against SQLite. A new case goes in its area's module
//! and in the list in [`suite!`], so every backend runs it. What is about one
//! backend's internals (SQLite's group-commit writer, its error codes, its
//! file size after vacuum) stays in that backend's own tests.

pub mod agents;
pub mod audit;
pub mod drills;
pub mod firing;
pub mod identity;
pub mod jobs;
pub mod lease;
pub mod notifications;
pub mod pipelines;
pub mod rebase;
pub mod retention;
pub mod schedules;
#[cfg(test)]
mod tests;

/// One `#[tokio::test]` per conformance case, run against the stores
/// `$open` makes (`async fn() -> (Store, Guard)`, a fresh store per case).
macro_rules! suite {
    ($open:path) => {
        $crate::store::conformance::suite!(@areas $open;
            jobs: [
                lists_hold_summaries_with_long_texts_cut,
                submit_get_list,
                idempotency_key,
                batch_submit_in_order_and_idempotent_on_the_whole_body,
                cancel_and_retry_rules,
                jobs_name_the_schedule_and_run_that_made_them,
                queue_figures_count_by_group_and_state,
                lists_each_state_newest_first_in_pages,
            ],
            lease: [
                grant_once_tokens_increase_and_expiry_requeues,
                the_first_reported_start_is_kept_and_bounded,
                heartbeat_after_deadline_is_lease_lost_even_before_the_reaper,
                attempts_exhausted_fail_and_release_spends_nothing,
                not_retryable_fails_at_once_and_cancel_reaches_heartbeat,
                grants_respect_group_kind_connection_priority,
                submit_and_grant_hands_the_new_job_over_in_one_call,
                grants_and_hand_offs_respect_the_store,
                a_drained_agent_is_granted_nothing_until_resumed,
                abandon_ends_only_the_callers_current_lease,
                ready_in_sees_only_queued_jobs_past_their_backoff,
                cancelled_holders_are_the_agents_of_cancelled_running_leases,
            ],
            agents: [
                presence_and_blocked_reason,
                a_pinned_step_waits_for_its_agent_and_says_why,
                fleet_figures_by_group_and_state,
                placement_reads_each_distinct_pair_once,
            ],
            identity: [
                operator_tokens_lifecycle,
                enrollment_is_single_use_and_expires,
                revoking_an_agent_requeues_its_jobs_without_spending_attempts,
                dashboard_sessions_expire_and_end_with_their_token,
            ],
            audit: [
                append_filter_page,
                an_unkeyed_submit_writes_its_audit_row_with_the_job,
                a_handed_over_submit_writes_its_audit_row_with_the_job,
            ],
            drills: [
                crash_drill_timeline_and_report,
                the_verdict_never_precedes_the_finish_it_judges,
                rto_shorter_than_the_takeover_fails_with_the_reason,
                a_job_that_ends_before_any_heartbeat_is_an_error,
                unknown_drills_are_missing,
                a_controller_crash_drill_claims_only_for_its_agent_and_records_the_failover,
            ],
            rebase: [
                a_forward_step_while_down_expires_no_lease_early,
                a_backward_step_while_down_keeps_a_dead_lease_one_ttl_only,
                backoffs_last_seen_and_drills_from_the_future_are_capped,
            ],
            retention: [
                old_finished_jobs_go_oldest_first_and_everything_else_stays,
                old_audit_rows_go_in_bounded_batches,
                old_occurrences_go_but_totals_pending_newest_and_last_success_stay,
                ended_runs_go_with_their_steps_and_jobs,
            ],
            schedules: [
                a_firing_is_all_or_nothing_and_keyed_by_nominal,
                a_pending_occurrence_starts_when_the_active_job_ends,
                cancel_previous_cancels_then_starts_the_new_one,
                due_pause_resume_and_replace,
                ranges_count_in_full_and_spans_are_found,
                an_operator_retry_of_a_scheduled_job_is_followed_up_again,
                firings_in_one_batch_stand_or_fall_alone,
                a_completion_says_whether_a_schedule_made_the_job,
            ],
            firing: [
                a_batch_fires_as_each_firing_would_alone,
            ],
            notifications: [
                a_failed_job_is_one_event_sent_to_matching_webhooks_until_delivered,
                a_success_after_a_retry_and_service_events_are_written_once,
                a_failed_drill_is_an_event,
                a_failed_run_is_an_event,
                missed_occurrences_are_events,
                old_events_go_once_their_deliveries_ended,
            ],
            pipelines: [
                a_run_follows_its_graph_pins_and_resolves,
                a_failure_runs_its_handler_skips_the_rest_and_retry_reruns_only_those,
                cancel_and_timeout_stop_a_run_once_its_steps_stop,
                pipelines_are_named_once_and_kept_while_scheduled,
                a_step_pinned_to_a_revoked_agent_fails_with_the_reason,
                a_queued_step_whose_agent_is_gone_fails_and_its_run_ends,
            ],
        );
    };
    (@areas $open:path; $($area:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $area {
                $(
                    #[tokio::test]
                    async fn $case() {
                        let Some((store, _guard)) =
                            $crate::store::conformance::Opened::opened($open().await)
                        else {
                            return; // the opener said why it skips
                        };
                        $crate::store::conformance::$area::$case(&store).await;
                    }
                )*
            }
        )*
    };
}
pub(crate) use suite;

/// What an opener returns: a store and its guard, or `None` when the
/// backend is not available here (the opener prints why; the case skips).
pub trait Opened<G> {
    /// The store and its guard, if any.
    fn opened(self) -> Option<(crate::store::Store, G)>;
}

impl<G> Opened<G> for (crate::store::Store, G) {
    fn opened(self) -> Option<(crate::store::Store, G)> {
        Some(self)
    }
}

impl<G> Opened<G> for Option<(crate::store::Store, G)> {
    fn opened(self) -> Option<(crate::store::Store, G)> {
        self
    }
}
