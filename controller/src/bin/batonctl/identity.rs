//! Identity commands: enrollment tokens, operator tokens, agent revocation,
//! the audit log and `whoami`.
//!
//! Secrets (`enroll create`, `tokens create`) go alone on stdout, so
//! `batonctl enroll create --group g > token` captures only the secret; the
//! human line goes to stderr.

use std::process::ExitCode;

use anyhow::Result;
use baton_proto::AgentList;
use baton_proto::auth::{
    AgentRevoked, AuditList, EnrollmentTokenCreate, EnrollmentTokenCreated, EnrollmentTokenList,
    EnrollmentTokenView, OperatorTokenCreate, OperatorTokenCreated, OperatorTokenList,
    OperatorTokenView, Role, WhoAmI,
};
use clap::{Args, Subcommand};

use crate::client::{Answer, Api, AuditQuery, segment};
use crate::submit::parse_duration_ms;
use crate::{decode, out, out_json, render_auth};

/// Lifetime of an enrollment token when `--expires` is not given.
pub const DEFAULT_ENROLL_EXPIRY: &str = "24h";

/// `batonctl enroll ...`.
#[derive(Debug, Subcommand)]
pub enum EnrollCmd {
    /// Create a single-use enrollment token; the secret is printed alone on stdout.
    ///
    /// Example: batonctl enroll create --group nightly --expires 2h > enroll.token
    Create(EnrollCreateArgs),
    /// List enrollment tokens, newest first.
    List,
    /// Revoke an enrollment token that is not used yet.
    Revoke {
        /// Enrollment token id.
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

/// `batonctl enroll create` flags.
#[derive(Debug, Clone, Args)]
pub struct EnrollCreateArgs {
    /// Group an agent enrolled with the token may serve, repeatable.
    #[arg(long = "group", value_name = "G", required = true, value_parser = parse_name)]
    pub groups: Vec<String>,
    /// How long the token stays usable (e.g. 2h, 7d; the controller allows at most 30 days).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_ENROLL_EXPIRY,
          value_parser = parse_expiry_ms)]
    pub expires: u64,
    /// Free text for operators (e.g. which hosts it is for).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

impl EnrollCreateArgs {
    /// The request body.
    pub fn request(&self) -> EnrollmentTokenCreate {
        EnrollmentTokenCreate {
            groups: self.groups.clone(),
            expires_in_ms: self.expires,
            note: self.note.clone().unwrap_or_default(),
        }
    }
}

/// `batonctl tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// Create an operator token; the secret is printed alone on stdout.
    ///
    /// Example: batonctl tokens create --name ci --role viewer > ci.token
    Create {
        /// Who or what uses it (unique among active tokens).
        #[arg(long, value_name = "N", value_parser = parse_name)]
        name: String,
        /// What it may do: viewer, operator or admin.
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: Role,
    },
    /// List operator tokens, oldest first.
    List,
    /// Revoke an operator token (its next call is refused).
    Revoke {
        /// Operator token id.
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

/// `batonctl agents [list|revoke ID]`.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub command: Option<AgentsCmd>,
}

/// `batonctl agents ...` (no subcommand lists).
#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// List agents (the default).
    List,
    /// Revoke an agent: its calls are refused and the jobs it held are queued again.
    Revoke {
        /// Agent id.
        #[arg(value_parser = parse_id)]
        id: String,
    },
    /// Drain an agent: it takes no new work; the jobs it runs finish.
    Drain {
        /// Agent id.
        #[arg(value_parser = parse_id)]
        id: String,
    },
    /// Lift a drain: the agent takes new work again.
    Resume {
        /// Agent id.
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

/// `batonctl audit` flags.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// At most this many entries (1-1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only entries older than this id (the next page).
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
    /// Only entries of this actor (e.g. token:ci, agent:db1).
    #[arg(long, value_name = "A")]
    pub actor: Option<String>,
}

impl AuditArgs {
    /// The query of `GET /v1/audit`.
    pub fn query(&self) -> AuditQuery {
        AuditQuery {
            limit: self.limit,
            before: self.before,
            actor: self.actor.clone(),
        }
    }
}

/// Parse a role name.
pub fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s.trim().to_ascii_lowercase().as_str())
        .ok_or_else(|| format!("unknown role `{s}` (expected one of: viewer, operator, admin)"))
}

/// Parse an id given on the command line: not empty, not a dot segment.
pub fn parse_id(s: &str) -> Result<String, String> {
    let id = s.trim();
    if id.is_empty() {
        return Err("the id is empty".to_owned());
    }
    if id == "." || id == ".." {
        return Err(format!("`{s}` is not an id"));
    }
    Ok(id.to_owned())
}

/// Parse a name (group, token name): not empty, no whitespace.
pub fn parse_name(s: &str) -> Result<String, String> {
    let name = s.trim();
    if name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{s}`: a name holds no spaces"));
    }
    Ok(name.to_owned())
}

/// Parse the lifetime of an enrollment token (not zero).
pub fn parse_expiry_ms(s: &str) -> Result<u64, String> {
    match parse_duration_ms(s)? {
        0 => Err(format!("`{s}`: the token would expire at once")),
        ms => Ok(ms),
    }
}

/// Print a created secret: alone on stdout, the human line on stderr.
fn out_secret(answer: &Answer, json: bool, secret: &str, note: &str) -> Result<ExitCode> {
    if json {
        out_json(answer)?;
    } else {
        out(secret)?;
        eprintln!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Print the JSON answer, or the text `render` makes of its decoded body.
fn show<T: serde::de::DeserializeOwned>(
    answer: &Answer,
    json: bool,
    what: &str,
    render: impl FnOnce(&T) -> String,
) -> Result<ExitCode> {
    if json {
        out_json(answer)?;
    } else {
        let value: T = decode(&answer.body, what)?;
        out(&render(&value))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// `batonctl enroll ...`.
pub async fn enroll(api: &Api, cmd: EnrollCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        EnrollCmd::Create(args) => {
            let answer = api
                .post_json("/v1/enrollment-tokens", Some(&args.request()))
                .await?;
            let created: EnrollmentTokenCreated = decode(&answer.body, "enrollment token")?;
            let note = render_auth::enroll_created_note(&created.view);
            out_secret(&answer, json, &created.token, &note)
        }
        EnrollCmd::List => {
            let answer = api.get_json("/v1/enrollment-tokens", &[]).await?;
            show(
                &answer,
                json,
                "enrollment token list",
                |l: &EnrollmentTokenList| render_auth::render_enroll_list(l, now()),
            )
        }
        EnrollCmd::Revoke { id } => {
            let path = format!("/v1/enrollment-tokens/{}/revoke", segment(&id));
            let answer = api.post_json::<()>(&path, None).await?;
            show(
                &answer,
                json,
                "enrollment token",
                |v: &EnrollmentTokenView| render_auth::enroll_revoked_line(v),
            )
        }
    }
}

/// `batonctl tokens ...`.
pub async fn tokens(api: &Api, cmd: TokensCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        TokensCmd::Create { name, role } => {
            let body = OperatorTokenCreate { name, role };
            let answer = api.post_json("/v1/tokens", Some(&body)).await?;
            let created: OperatorTokenCreated = decode(&answer.body, "operator token")?;
            let note = render_auth::token_created_note(&created.view);
            out_secret(&answer, json, &created.token, &note)
        }
        TokensCmd::List => {
            let answer = api.get_json("/v1/tokens", &[]).await?;
            show(
                &answer,
                json,
                "operator token list",
                |l: &OperatorTokenList| render_auth::render_tokens_list(l, now()),
            )
        }
        TokensCmd::Revoke { id } => {
            let path = format!("/v1/tokens/{}/revoke", segment(&id));
            let answer = api.post_json::<()>(&path, None).await?;
            show(&answer, json, "operator token", |v: &OperatorTokenView| {
                render_auth::token_revoked_line(v)
            })
        }
    }
}

/// `batonctl agents [list|revoke ID]`.
pub async fn agents(api: &Api, args: AgentsArgs, json: bool) -> Result<ExitCode> {
    match args.command.unwrap_or(AgentsCmd::List) {
        AgentsCmd::List => {
            let answer = api.agents().await?;
            let now = answer.now();
            show(&answer, json, "agent list", |l: &AgentList| {
                crate::render::render_agents(l, now)
            })
        }
        AgentsCmd::Revoke { id } => {
            let path = format!("/v1/agents/{}/revoke", segment(&id));
            let answer = api.post_json::<()>(&path, None).await?;
            show(&answer, json, "agent revocation", |r: &AgentRevoked| {
                render_auth::agent_revoked_line(r)
            })
        }
        AgentsCmd::Drain { id } => drain(api, &id, "drain", json).await,
        AgentsCmd::Resume { id } => drain(api, &id, "resume", json).await,
    }
}

async fn drain(api: &Api, id: &str, action: &str, json: bool) -> Result<ExitCode> {
    let path = format!("/v1/agents/{}/{action}", segment(id));
    let answer = api.post_json::<()>(&path, None).await?;
    show(
        &answer,
        json,
        "agent drain state",
        |d: &baton_proto::AgentDrain| crate::render::agent_drain_line(d),
    )
}

/// `batonctl audit`: a page of the audit log, newest first.
pub async fn audit(api: &Api, args: &AuditArgs, json: bool) -> Result<ExitCode> {
    let answer = api.get_json("/v1/audit", &args.query().pairs()).await?;
    if json {
        out_json(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list: AuditList = decode(&answer.body, "audit log")?;
    out(&render_auth::render_audit(&list))?;
    if let Some(next) = list.next_before {
        eprintln!("(more entries: add --before {next})");
    }
    Ok(ExitCode::SUCCESS)
}

/// `batonctl whoami`.
pub async fn whoami(api: &Api, json: bool) -> Result<ExitCode> {
    let answer = api.get_json("/v1/whoami", &[]).await?;
    show(&answer, json, "identity", |w: &WhoAmI| {
        render_auth::whoami_line(w)
    })
}

#[cfg(test)]
mod tests;
