//! Schedules with several replicas on one database: two [`PgStore`]s
//! opened on the same scratch database are two controllers. Jobs are ended
//! with plain SQL (as a completion leaves them: ended, `followup` still
//! set), so these cases need nothing of the lease area.

use std::collections::BTreeSet;

use baton_proto::schedule::{OccurrenceState, OccurrenceTrigger};

use super::super::PgStore;
use super::super::testutil;
use crate::store::conformance::schedules::{at, firing, occ, spec};
use crate::store::schedules::{DueSchedule, Fired, Firing, ScheduleStore};
use crate::store::{Error, Result};

const MINUTE: i64 = 60_000;
const TTL: u64 = 15_000;

/// What a timer plans for due schedules: fire the cursor's occurrence and
/// move the cursor one minute on.
fn plan(due: &[DueSchedule]) -> Vec<Firing> {
    due.iter()
        .map(|d| {
            let c = d.schedule.cursor.expect("a due schedule has a cursor");
            firing(
                d.schedule.id,
                Some((c, c + MINUTE)),
                vec![occ(c, OccurrenceState::Fired)],
            )
        })
        .collect()
}

/// End job `id` as a completion does (state and finish time; the
/// follow-up mark stays set).
async fn end_job(s: &PgStore, id: i64, now: i64) {
    sqlx::query(
        "UPDATE jobs SET state = 'succeeded', finished_at = $1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(s.pool())
    .await
    .expect("end job");
}

async fn scalar(s: &PgStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(s.pool())
        .await
        .expect(sql)
}

/// The firings one replica did in a round, as (schedule id, fired, raced);
/// the jobs made go to `made` with the schedule they were answered for.
fn outcomes(
    firings: &[Firing],
    done: Vec<Result<Fired>>,
    made: &mut Vec<(i64, i64)>,
) -> Vec<(i64, usize, bool)> {
    firings
        .iter()
        .zip(done)
        .map(|(f, r)| {
            let fired = r.unwrap_or_else(|e| panic!("schedule {}: {e}", f.schedule_id));
            made.extend(
                fired
                    .occurrences
                    .iter()
                    .filter_map(|o| o.job_id)
                    .map(|j| (f.schedule_id, j)),
            );
            (f.schedule_id, fired.occurrences.len(), fired.raced)
        })
        .collect()
}

/// Replica b fires one round: all in one call, in the same or the reverse
/// order (locks taken in another order: a deadlock is retried), or one
/// schedule at a time.
async fn fire_b(b: &PgStore, firings: &[Firing], round: i64, now: i64) -> Vec<Result<Fired>> {
    match round % 3 {
        0 => b.fire_all(firings, now).await.expect("fire_all on b"),
        1 => {
            let reversed: Vec<Firing> = firings.iter().rev().cloned().collect();
            let mut done = b.fire_all(&reversed, now).await.expect("fire_all on b");
            done.reverse();
            done
        }
        _ => {
            let mut done = Vec::new();
            for f in firings {
                done.push(b.fire(f, now).await);
            }
            done
        }
    }
}

#[tokio::test]
async fn two_replicas_firing_the_same_due_schedules_record_each_occurrence_and_job_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    const SCHEDULES: i64 = 12;
    const ROUNDS: i64 = 24;
    for i in 0..SCHEDULES {
        a.put_schedule(&spec(&format!("s{i}")), at(0), true, 0)
            .await
            .expect("create");
    }
    let mut made = Vec::new();
    for round in 0..ROUNDS {
        let now = round * MINUTE;
        // Both timers read the same due schedules and plan the same firings.
        let (due_a, due_b) = tokio::join!(a.due_schedules(now, 500), b.due_schedules(now, 500));
        let (fa, fb) = (plan(&due_a.expect("due a")), plan(&due_b.expect("due b")));
        assert_eq!(fa.len() as i64, SCHEDULES, "round {round}: all due on a");
        assert_eq!(fa, fb, "round {round}: both replicas plan the same");
        let (da, db) = tokio::join!(a.fire_all(&fa, now), fire_b(&b, &fb, round, now));
        let oa = outcomes(&fa, da.expect("fire_all on a"), &mut made);
        let ob = outcomes(&fb, db, &mut made);
        for ((id, na, raced_a), (_, nb, raced_b)) in oa.iter().zip(&ob) {
            // Exactly one replica fired it (one occurrence); the other raced
            // and wrote nothing — never an error.
            assert!(
                (*na, *raced_a, *nb, *raced_b) == (1, false, 0, true)
                    || (*na, *raced_a, *nb, *raced_b) == (0, true, 1, false),
                "round {round} schedule {id}: a ({na}, raced {raced_a}), b ({nb}, raced {raced_b})"
            );
        }
    }
    let total = SCHEDULES * ROUNDS;
    assert_eq!(scalar(&a, "SELECT COUNT(*) FROM occurrences").await, total);
    assert_eq!(
        scalar(&a, "SELECT COUNT(*) FROM occurrences WHERE state = 'fired'").await,
        total
    );
    assert_eq!(scalar(&a, "SELECT COUNT(*) FROM jobs").await, total);
    // Each occurrence names a job of its own schedule and nominal time.
    assert_eq!(
        scalar(
            &a,
            "SELECT COUNT(*) FROM occurrences o JOIN jobs j ON j.id = o.job_id
             WHERE j.schedule_id = o.schedule_id AND j.nominal_at = o.nominal"
        )
        .await,
        total
    );
    for s in a.list_schedules().await.expect("list") {
        assert_eq!(s.cursor, Some(ROUNDS * MINUTE), "{}", s.spec.name);
    }
    // Each answer named a job of the schedule it was for (results come
    // back in the callers' order, whatever order the rows were locked in).
    assert_eq!(made.len() as i64, total);
    for (schedule, job) in made {
        let of: i64 = sqlx::query_scalar("SELECT schedule_id FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(a.pool())
            .await
            .expect("job's schedule");
        assert_eq!(of, schedule, "job {job}");
    }
}

#[tokio::test]
async fn two_replicas_triggering_one_nominal_time_make_one_job() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let (sched, _) = a
        .put_schedule(&spec("manual"), at(0), true, 0)
        .await
        .expect("create");
    for i in 0..20 {
        // A trigger does not move the cursor: the schedule row's lock and
        // the unique occurrence key decide.
        let nominal = 1_000 + i;
        let mut o = occ(nominal, OccurrenceState::Fired);
        o.trigger = OccurrenceTrigger::Manual;
        let f = firing(sched.id, None, vec![o]);
        let (ra, rb) = tokio::join!(a.fire(&f, nominal), b.fire(&f, nominal));
        let won = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Ok(fired) if fired.occurrences.len() == 1))
            .count();
        let refused = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(Error::Conflict(_))))
            .count();
        assert_eq!((won, refused), (1, 1), "trigger {i}: {ra:?} / {rb:?}");
    }
    assert_eq!(scalar(&a, "SELECT COUNT(*) FROM jobs").await, 20);
    assert_eq!(scalar(&a, "SELECT COUNT(*) FROM occurrences").await, 20);
}

/// Follow up on `s` in batches of `limit` until nothing is left; the jobs
/// it acted on.
async fn drain(s: &PgStore, now: i64, limit: u32) -> Vec<i64> {
    let mut jobs = Vec::new();
    loop {
        let done = s.follow_up(now, limit, TTL).await.expect("follow up");
        if done.jobs.is_empty() {
            return jobs;
        }
        jobs.extend(done.jobs);
    }
}

/// Both replicas follow up at once; each ended job must be acted on by
/// exactly one of them. Returns every job acted on.
async fn follow_up_on_both(a: &PgStore, b: &PgStore, now: i64, limit: u32) -> BTreeSet<i64> {
    let (ja, jb) = tokio::join!(drain(a, now, limit), drain(b, now, limit));
    let mut all = BTreeSet::new();
    for j in ja.iter().chain(&jb) {
        assert!(
            all.insert(*j),
            "job {j} followed up twice: a {ja:?}, b {jb:?}"
        );
    }
    all
}

/// The id of the job schedule `id` made for `nominal`, if any.
async fn job_of(s: &PgStore, id: i64, nominal: i64) -> Option<i64> {
    sqlx::query_scalar("SELECT id FROM jobs WHERE schedule_id = $1 AND nominal_at = $2")
        .bind(id)
        .bind(nominal)
        .fetch_optional(s.pool())
        .await
        .expect("job of")
}

#[tokio::test]
async fn two_replicas_follow_up_each_ended_job_once_and_start_a_pending_occurrence_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    const SCHEDULES: usize = 8;
    const ROUNDS: i64 = 12;
    let mut ids = Vec::new();
    for i in 0..SCHEDULES {
        let (s, _) = a
            .put_schedule(&spec(&format!("q{i}")), at(0), true, 0)
            .await
            .expect("create");
        a.fire(
            &firing(
                s.id,
                Some((0, MINUTE)),
                vec![occ(0, OccurrenceState::Fired)],
            ),
            0,
        )
        .await
        .expect("first");
        ids.push(s.id);
    }
    for round in 1..=ROUNDS {
        let nominal = round * MINUTE;
        // Each schedule's job still runs: its next occurrence waits.
        let mut ended = BTreeSet::new();
        for id in &ids {
            let f = firing(
                *id,
                Some((nominal, nominal + MINUTE)),
                vec![occ(nominal, OccurrenceState::Pending)],
            );
            let fired = a.fire(&f, nominal).await.expect("pend");
            assert_eq!(fired.occurrences[0].state, OccurrenceState::Pending);
            let active = job_of(&a, *id, nominal - MINUTE).await.expect("active job");
            end_job(&a, active, nominal + 1).await;
            ended.insert(active);
        }
        // Small batches, so both replicas take some.
        let acted = follow_up_on_both(&a, &b, nominal + 2, 3).await;
        assert_eq!(acted, ended, "round {round}");
        for id in &ids {
            assert!(
                job_of(&a, *id, nominal).await.is_some(),
                "round {round}: schedule {id}'s pending occurrence started"
            );
            let (_, pending) = a.schedule_activity(*id).await.expect("activity");
            assert_eq!(pending, 0, "round {round} schedule {id}");
        }
    }
    let n = (SCHEDULES as i64) * (ROUNDS + 1);
    assert_eq!(scalar(&a, "SELECT COUNT(*) FROM jobs").await, n);
    assert_eq!(
        scalar(&a, "SELECT COUNT(*) FROM occurrences WHERE state = 'fired'").await,
        n
    );
}

#[tokio::test]
async fn two_ended_jobs_of_one_schedule_followed_up_on_two_replicas_start_its_pending_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    for i in 0..16 {
        let (s, _) = a
            .put_schedule(&spec(&format!("two{i}")), at(0), true, 0)
            .await
            .expect("create");
        // Two jobs running at once (overlap = allow), a third occurrence
        // waiting for them.
        let f = firing(
            s.id,
            Some((0, 3 * MINUTE)),
            vec![
                occ(0, OccurrenceState::Fired),
                occ(MINUTE, OccurrenceState::Fired),
                occ(2 * MINUTE, OccurrenceState::Pending),
            ],
        );
        let fired = a.fire(&f, 0).await.expect("fire");
        let jobs: BTreeSet<i64> = fired.occurrences.iter().filter_map(|o| o.job_id).collect();
        assert_eq!(jobs.len(), 2);
        for j in &jobs {
            end_job(&a, *j, 10).await;
        }
        // One job per replica when they overlap (limit 1): both see the
        // schedule idle with one pending occurrence; the schedule's row
        // lock lets one start it.
        let acted = follow_up_on_both(&a, &b, 20, 1).await;
        assert_eq!(acted, jobs, "schedule {i}");
        assert!(job_of(&a, s.id, 2 * MINUTE).await.is_some(), "schedule {i}");
        let (active, pending) = a.schedule_activity(s.id).await.expect("activity");
        assert!(
            active.is_some() && pending == 0,
            "schedule {i}: {active:?} {pending}"
        );
    }
    assert_eq!(scalar(&a, "SELECT COUNT(*) FROM jobs").await, 16 * 3);
}

/// Firing throughput on this machine's PostgreSQL, one replica and two
/// replicas firing the same due schedules (not a test of speed: prints the
/// figures for the report). `cargo test … -- --ignored --nocapture
/// store::postgres::schedules::tests::firing_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn firing_rate() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    const SCHEDULES: i64 = 500;
    const ROUNDS: i64 = 10;
    for i in 0..SCHEDULES {
        a.put_schedule(&spec(&format!("r{i}")), at(0), true, 0)
            .await
            .expect("create");
    }
    // One replica: a look of 500 due schedules is one fire_all.
    let t = std::time::Instant::now();
    for round in 0..ROUNDS {
        let now = round * MINUTE;
        let f = plan(&a.due_schedules(now, 500).await.expect("due"));
        a.fire_all(&f, now).await.expect("fire_all");
    }
    let one = t.elapsed();
    // Two replicas at once, as two timers: one fires, the other races.
    let t = std::time::Instant::now();
    for round in ROUNDS..2 * ROUNDS {
        let now = round * MINUTE;
        let (da, db) = tokio::join!(a.due_schedules(now, 500), b.due_schedules(now, 500));
        let (fa, fb) = (plan(&da.expect("due a")), plan(&db.expect("due b")));
        let (ra, rb) = tokio::join!(a.fire_all(&fa, now), b.fire_all(&fb, now));
        ra.expect("fire_all a");
        rb.expect("fire_all b");
    }
    let two = t.elapsed();
    let n = (SCHEDULES * ROUNDS) as f64;
    eprintln!(
        "firing {SCHEDULES} schedules x {ROUNDS} looks: one replica {:.0} firings/s ({:.1} ms a look); two replicas racing {:.0} firings/s ({:.1} ms a look)",
        n / one.as_secs_f64(),
        one.as_secs_f64() * 1000.0 / ROUNDS as f64,
        n / two.as_secs_f64(),
        two.as_secs_f64() * 1000.0 / ROUNDS as f64,
    );
    assert_eq!(
        scalar(&a, "SELECT COUNT(*) FROM jobs").await,
        SCHEDULES * 2 * ROUNDS
    );
}

#[tokio::test]
async fn two_replicas_creating_one_schedule_make_one_row() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    for i in 0..20 {
        // `apply` on both (create or replace): one creates, the other
        // replaces the row it finds — never a database error.
        let name = format!("apply{i}");
        let sp = spec(&name);
        let (ra, rb) = tokio::join!(
            a.put_schedule(&sp, at(0), false, 0),
            b.put_schedule(&sp, at(0), false, 0)
        );
        let (ra, rb) = (ra.expect("put on a"), rb.expect("put on b"));
        assert!(ra.1 != rb.1, "{name}: created once, replaced once");
        assert_eq!(ra.0.id, rb.0.id, "{name}: one row");
        // `create` on both: one creates, the other is a conflict.
        let name = format!("create{i}");
        let sp = spec(&name);
        let (ra, rb) = tokio::join!(
            a.put_schedule(&sp, at(0), true, 0),
            b.put_schedule(&sp, at(0), true, 0)
        );
        let created = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Ok((_, true))))
            .count();
        let refused = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(Error::Conflict(_))))
            .count();
        assert_eq!((created, refused), (1, 1), "{name}: {ra:?} / {rb:?}");
    }
    assert_eq!(scalar(&a, "SELECT COUNT(*) FROM schedules").await, 40);
}
