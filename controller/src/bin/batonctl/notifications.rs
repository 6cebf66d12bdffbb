//! `batonctl notifications ls`: recent webhook deliveries and their result.

use std::process::ExitCode;

use anyhow::Result;
use baton_proto::notify::{DeliveryList, DeliveryState};
use clap::{Args, Subcommand, ValueEnum};

use crate::client::Api;
use crate::render::{finish, one_line, table, truncate};
use crate::render_auth::fmt_utc;
use crate::{decode, out, out_json};

/// Widest error shown in the table.
const ERROR_WIDTH: usize = 60;

#[derive(Debug, Subcommand)]
pub enum NotificationsCmd {
    /// List webhook deliveries, newest first, with their last result.
    Ls(LsArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only deliveries in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// At most this many (1-1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only deliveries older than this id (the next page).
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Pending,
    Delivered,
    Failed,
}

impl LsArgs {
    /// The query of `GET /v1/notifications/deliveries`.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = self.state {
            let s = match s {
                StateArg::Pending => DeliveryState::Pending,
                StateArg::Delivered => DeliveryState::Delivered,
                StateArg::Failed => DeliveryState::Failed,
            };
            q.push(("state", s.as_str().to_owned()));
        }
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(b) = self.before {
            q.push(("before", b.to_string()));
        }
        q
    }
}

/// `batonctl notifications …`.
pub async fn notifications(api: &Api, cmd: NotificationsCmd, json: bool) -> Result<ExitCode> {
    let NotificationsCmd::Ls(args) = cmd;
    let answer = api
        .get_json("/v1/notifications/deliveries", &args.pairs())
        .await?;
    if json {
        out_json(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list: DeliveryList = decode(&answer.body, "deliveries")?;
    out(&render(&list))?;
    if let Some(next) = list.next_before {
        eprintln!("(more deliveries: add --before {next})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The deliveries as a table.
pub fn render(list: &DeliveryList) -> String {
    let mut t = table(&[
        "ID", "EVENT", "SUBJECT", "WEBHOOK", "STATE", "ATTEMPTS", "HTTP", "ERROR", "EVENT AT",
        "NEXT",
    ]);
    for d in &list.deliveries {
        t.add_row(vec![
            d.id.to_string(),
            d.event.clone(),
            d.subject.clone(),
            d.webhook.clone(),
            d.state.as_str().to_owned(),
            d.attempts.to_string(),
            d.last_status
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            d.last_error
                .as_deref()
                .map_or_else(|| "-".to_owned(), |e| truncate(&one_line(e), ERROR_WIDTH)),
            fmt_utc(d.event_at),
            d.next_at.map_or_else(|| "-".to_owned(), fmt_utc),
        ]);
    }
    finish(t)
}

#[cfg(test)]
mod tests;
