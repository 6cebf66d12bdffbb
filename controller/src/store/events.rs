//! Signals between controllers sharing one store (PostgreSQL replicas).
//!
//! A signal is a wake-up only: it names what to look at again (the groups
//! that may have work, the agents whose leases were cancelled, "a
//! credential was revoked"), never the change itself, which every replica
//! reads from the store. A lost signal costs latency, never correctness:
//! each replica also looks at the store every [`LOOK_EVERY`]
//! ([`EventStore::look`]), and wakes everything once when its listener
//! comes back after a loss.
//!
//! On the wire (PostgreSQL `NOTIFY baton_events`) a payload is
//! `<sender>|w:<group>,<group>…` (work), `<sender>|c:<agent>,<agent>…`
//! (cancel marks: agent ids, since a mark is per agent) or `r` (a
//! credential revoked, sent by the identity paths inside their
//! transaction), each under [`MAX_PAYLOAD`] bytes; the sender tag lets a
//! replica skip its own signals. A work item `<group>*<n>` announces `n`
//! jobs (the receiver wakes that many polls, each handing the wake on when
//! it cannot take the work); a bare `<group>` wakes every poll of the group
//! (a drain or resume, and what replicas before counts sent). Group names
//! never contain `*`. On SQLite (one controller) nothing is
//! sent and nothing is received: every method has a default that does
//! nothing.

use std::time::Duration;

use async_trait::async_trait;
use baton_proto::JobId;
use tokio::sync::mpsc;

use super::Result;

/// How often a replica looks at the store for what signals may have missed.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The longest payload sent (PostgreSQL's limit is 8000 bytes).
pub const MAX_PAYLOAD: usize = 7900;

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// These groups may have work: wake their held polls ([`work_item`]).
    Work(Vec<String>),
    /// A lease of each of these agents was cancelled: mark and wake them.
    Cancel(Vec<String>),
    /// A credential was revoked: forget the cached ones.
    Revoke,
}

/// What a replica's listener hands to the services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Another replica's signal.
    Signal(Signal),
    /// The listener is (again) subscribed; signals sent while it was not
    /// are lost: look at everything once.
    Up,
    /// The listener lost its connection: until [`Inbound::Up`] only the
    /// periodic look brings other replicas' changes.
    Down,
}

/// Ready queued work of one group, as [`EventStore::look`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWork {
    /// The group.
    pub group: String,
    /// Changes whenever a job enters or leaves the group's ready queue
    /// (count, sum of ids, sum of fencing tokens: a job granted and
    /// requeued comes back with a larger token).
    pub fingerprint: String,
}

impl GroupWork {
    /// How many ready jobs the fingerprint counts (at least 1).
    pub fn count(&self) -> usize {
        self.fingerprint
            .split(':')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1)
            .max(1)
    }
}

/// A work signal's item: `group*n` for `n` jobs, `group` for every poll.
pub fn work_item(group: &str, n: Option<usize>) -> String {
    match n {
        Some(n) => format!("{group}*{n}"),
        None => group.to_owned(),
    }
}

/// The group and count of a work signal's item ([`work_item`]); an item
/// without a count (or a count not understood) wakes every poll.
pub fn parse_work_item(item: &str) -> (&str, Option<usize>) {
    match item.rsplit_once('*') {
        Some((g, n)) => (g, n.parse().ok().map(|n: usize| n.max(1))),
        None => (item, None),
    }
}

/// What the periodic look found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Looked {
    /// The asked groups that have ready queued work.
    pub work: Vec<GroupWork>,
    /// Running leases of the asked agents with a cancel requested: job,
    /// token, agent.
    pub cancels: Vec<(JobId, i64, String)>,
    /// Drained agents with their groups (when asked).
    pub drained: Vec<(String, Vec<String>)>,
}

/// Signals between replicas (a backend of one controller keeps the
/// defaults: nothing to send, nothing to hear).
#[async_trait]
pub trait EventStore {
    /// Whether other controllers may share this store.
    fn shared(&self) -> bool {
        false
    }

    /// Send `signals` to the other replicas. Call it after the commit of
    /// what they announce.
    async fn publish(&self, _signals: &[Signal]) -> Result<()> {
        Ok(())
    }

    /// Start listening for the other replicas' signals (at most once per
    /// store); `None` when there is nothing to hear (one controller, or
    /// `poll_only`: the periodic look only).
    fn subscribe(&self) -> Option<mpsc::Receiver<Inbound>> {
        None
    }

    /// The periodic look: ready queued work of `groups`, cancelled running
    /// leases of `agents`, and (when `drains`) the drained agents, at `now`.
    async fn look(
        &self,
        _groups: &[String],
        _agents: &[String],
        _drains: bool,
        _now: i64,
    ) -> Result<Looked> {
        Ok(Looked::default())
    }
}

/// The payloads of `signals` from `sender` (each under [`MAX_PAYLOAD`];
/// long lists are split).
pub fn encode(sender: &str, signals: &[Signal]) -> Vec<String> {
    let mut out = Vec::new();
    for s in signals {
        let (kind, names) = match s {
            Signal::Work(g) => ("w", g),
            Signal::Cancel(a) => ("c", a),
            Signal::Revoke => {
                out.push("r".to_owned());
                continue;
            }
        };
        let head = format!("{sender}|{kind}:");
        let mut cur = head.clone();
        for n in names {
            if cur.len() > head.len() && cur.len() + 1 + n.len() > MAX_PAYLOAD {
                out.push(std::mem::replace(&mut cur, head.clone()));
            }
            if cur.len() > head.len() {
                cur.push(',');
            }
            cur.push_str(n);
        }
        if cur.len() > head.len() {
            out.push(cur);
        }
    }
    out
}

/// The payload of `sender`'s heartbeat number `seq`: a notification a
/// replica sends itself so that hearing it proves it heard every one
/// committed before (`store::postgres::events`). Other replicas ignore it.
pub fn heartbeat(sender: &str, seq: u64) -> String {
    format!("{sender}|h:{seq}")
}

/// The number of `me`'s own heartbeat in `payload`, if it is one.
pub fn heartbeat_of(me: &str, payload: &str) -> Option<u64> {
    let (sender, body) = payload.split_once('|')?;
    if sender != me {
        return None;
    }
    body.strip_prefix("h:")?.parse().ok()
}

/// The signal in `payload`, unless it is `me`'s own or not understood.
pub fn decode(me: &str, payload: &str) -> Option<Signal> {
    if payload == "revoke" || payload == "r" {
        return Some(Signal::Revoke);
    }
    let (sender, body) = payload.split_once('|')?;
    if sender == me {
        return None;
    }
    let (kind, list) = body.split_once(':')?;
    let names: Vec<String> = list
        .split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    match kind {
        "w" => Some(Signal::Work(names)),
        "c" => Some(Signal::Cancel(names)),
        "r" => Some(Signal::Revoke),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
