//! `baton-controller`: serve the Baton API (`run`, the default), check a
//! config (`validate`), make the store (`init`) or the TLS files (`tls init`),
//! copy an SQLite store into PostgreSQL (`migrate-store`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use baton_controller::config::{Config, Flags, StoreConfig};
use baton_controller::logging;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// `println!` that tolerates a closed stdout (`validate | grep -q …`): the
/// reader has what it wanted, so a broken pipe is not a crash.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(&format!($($arg)*))
    };
}

fn say_line(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    // A failed write (closed pipe, full disk) has nobody left to tell.
    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
}

#[derive(Parser, Debug)]
#[command(
    name = "baton-controller",
    version,
    about = "The Baton controller",
    after_help = baton_proto::env::help(baton_proto::env::CONTROLLER)
)]
struct Cli {
    /// Config file (TOML).
    #[arg(long, short, env = baton_proto::env::CONTROLLER_CONFIG.name, global = true)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8420 (port 0 picks one; see <state-dir>/listen.addr).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// State directory (database, listen.addr).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API (default).
    Run,
    /// Load and check the configuration, then exit.
    Validate,
    /// Create the store and the first admin token, print the token once, exit.
    Init,
    /// TLS files for the controller, its agents and batonctl.
    #[command(subcommand)]
    Tls(TlsCmd),
    /// Copy an SQLite store into a new PostgreSQL database (several
    /// controllers), then exit. Needs no config.
    ///
    /// Every job, attempt, token, agent identity, enrollment, audit row,
    /// drill, schedule and pipeline is copied in one transaction; a target
    /// that already holds a store is refused; counts are checked before the
    /// commit; the source file is only read. Stop the controller first (a
    /// running one keeps writing after the copy's snapshot). The target's
    /// password comes from --to-password-file or
    /// BATON_CONTROLLER_STORE_PASSWORD, never from the URL.
    ///
    /// Example: baton-controller migrate-store --from sqlite:/var/lib/baton/controller/baton.db --to postgres://baton@db1:5432/baton --to-password-file /etc/baton/pg.password
    MigrateStore(MigrateStoreArgs),
}

#[derive(clap::Args, Debug)]
struct MigrateStoreArgs {
    /// The SQLite store: sqlite:PATH (or PATH).
    #[arg(long, value_name = "sqlite:PATH")]
    from: String,
    /// The PostgreSQL database: postgres://user@host:port/db (several hosts:
    /// host1:port,host2:port — the primary is used).
    #[arg(long, value_name = "postgres://…")]
    to: String,
    /// A file holding the target's password.
    #[arg(long, value_name = "FILE")]
    to_password_file: Option<PathBuf>,
    /// Verify the target's TLS certificate against this CA (TLS required).
    #[arg(long, value_name = "FILE")]
    to_ca_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum TlsCmd {
    /// Make a private CA (10 years), the controller's certificate for --san
    /// (2 years) and client certificates for --agent (2 years), then print the
    /// config lines to paste.
    ///
    /// Files in DIR: ca.pem, ca.key, controller.pem, controller.key,
    /// agent-NAME.pem, agent-NAME.key (keys 0600, certificates 0644; DIR made
    /// 0700). An existing CA in DIR is reused, never replaced. Needs no config.
    ///
    /// Example: baton-controller tls init --dir /etc/baton/tls --san ctl.example.org,10.0.0.5 --agent db1
    Init(TlsInitArgs),
}

#[derive(clap::Args, Debug)]
struct TlsInitArgs {
    /// Directory for the files (created 0700 if absent).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The names agents and batonctl reach the controller by: DNS names and IP
    /// addresses, comma-separated (exactly these go into the certificate).
    #[arg(long, value_name = "HOST,IP,...")]
    san: Option<String>,
    /// Also make a client certificate for this agent (repeatable).
    #[arg(long, value_name = "NAME")]
    agent: Vec<String>,
    /// Replace existing controller and agent files (the CA is always kept).
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    if let Some(Command::Tls(TlsCmd::Init(args))) = &cli.command {
        return tls_init(args);
    }
    if let Some(Command::MigrateStore(args)) = &cli.command {
        return migrate_store(args);
    }
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BATON_"))
        .collect();
    let flags = Flags {
        listen: cli.listen.clone(),
        state_dir: cli.state_dir.clone(),
    };
    let config = match Config::load(cli.config.as_deref(), &env, &flags) {
        Ok(c) => c,
        Err(e) => {
            // An old name may be why the config is incomplete: say so first.
            let is_set = |n: &str| env.contains_key(n);
            for w in baton_proto::env::old_name_warnings(baton_proto::env::CONTROLLER_OLD, is_set) {
                eprintln!("warning: {w}");
            }
            eprintln!("{e}");
            return ExitCode::from(baton_proto::config::EX_CONFIG as u8);
        }
    };
    if matches!(cli.command, Some(Command::Validate)) {
        for w in &config.warnings {
            eprintln!("warning: {w}");
        }
        say!(
            "Config OK: listen {} ({}), {}",
            config.listen,
            match &config.tls {
                Some(t) if t.client_ca_file.is_some() => "HTTPS, client certificates verified",
                Some(_) => "HTTPS",
                None => "plain HTTP",
            },
            match &config.store {
                StoreConfig::Postgres(o) => format!("store PostgreSQL {}", o.url),
                StoreConfig::Sqlite { path, .. } => format!("database {}", path.display()),
            },
        );
        say_nofile_limit();
        if let StoreConfig::Postgres(opts) = &config.store {
            return check_postgres(&baton_controller::server::pg_options(opts));
        }
        return ExitCode::SUCCESS;
    }
    if matches!(cli.command, Some(Command::Init)) {
        return init(&config);
    }
    let log = match logging::init(&config.log_level, config.log_format) {
        Ok(reload) => reload,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &config.warnings {
        tracing::warn!(detail = %w, "Config warning");
    }
    let reload = Reload {
        cli,
        env,
        flags,
        log,
    };
    match run(config, reload) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "Controller failed");
            ExitCode::FAILURE
        }
    }
}

/// `validate` with `[store] url = "postgres://…"`: reach the primary,
/// check its migrations and what a crash or failover can lose. Errors exit
/// 78 (as a config error does); warnings do not.
fn check_postgres(opts: &baton_controller::store::postgres::PgOptions) -> ExitCode {
    use baton_controller::store::postgres::check::{Level, check};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for f in rt.block_on(check(opts)) {
        match f.level {
            Level::Ok => say!("{}", f.text),
            Level::Warning => eprintln!("warning: {}", f.text),
            Level::Error => {
                failed = true;
                eprintln!("error: {}", f.text);
            }
        }
    }
    if failed {
        ExitCode::from(baton_proto::config::EX_CONFIG as u8)
    } else {
        ExitCode::SUCCESS
    }
}

/// `validate`: show the open-file limit (the controller raises the soft limit
/// to the hard one when it starts, so the hard limit is what counts).
#[cfg(unix)]
fn say_nofile_limit() {
    use baton_controller::listener::FLEET_DESCRIPTORS;
    use nix::sys::resource::{Resource, getrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        say!("Open file limit: cannot be read");
        return;
    };
    say!(
        "Open file limit: soft {soft}, hard {hard} (a fleet of 10,000 agents wants {FLEET_DESCRIPTORS})"
    );
    if hard < FLEET_DESCRIPTORS {
        say!(
            "Warning: the hard open-file limit {hard} is below {FLEET_DESCRIPTORS}: every agent holds a connection, so about {} agents can poll at once; raise LimitNOFILE",
            hard.saturating_sub(1024)
        );
    } else if soft < FLEET_DESCRIPTORS {
        say!(
            "Note: the soft limit {soft} is below {FLEET_DESCRIPTORS}; the controller raises it to the hard limit {hard} when it starts"
        );
    }
}

/// `validate`: no open-file limit on this platform.
#[cfg(not(unix))]
fn say_nofile_limit() {}

fn init(config: &Config) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(baton_controller::server::init(config)) {
        Ok(secret) => {
            eprintln!("Created the first admin token. It is shown only now; keep it safe:");
            say!("{secret}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `migrate-store`: no config needed.
fn migrate_store(args: &MigrateStoreArgs) -> ExitCode {
    use baton_controller::store::{migrate, postgres::PgOptions};
    let from = PathBuf::from(args.from.strip_prefix("sqlite:").unwrap_or(&args.from));
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        eprintln!("error: --to must be a postgres:// URL");
        return ExitCode::from(2);
    }
    if baton_controller::pgurl::url_has_password(&args.to) {
        eprintln!(
            "error: --to holds a password (visible in ps): use --to-password-file or {}",
            baton_proto::env::CONTROLLER_STORE_PASSWORD.name
        );
        return ExitCode::from(2);
    }
    let password = match (
        &args.to_password_file,
        std::env::var(baton_proto::env::CONTROLLER_STORE_PASSWORD.name),
    ) {
        (Some(f), _) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => {
                eprintln!("error: --to-password-file {}: {e}", f.display());
                return ExitCode::from(2);
            }
        },
        (None, Ok(p)) => Some(p),
        (None, Err(_)) => None,
    };
    let to = PgOptions {
        url: args.to.clone(),
        password,
        ca_file: args.to_ca_file.clone(),
        pool_size: 2,
        poll_only: true,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(migrate::copy(&from, &to)) {
        Ok(copied) => {
            for (table, rows) in &copied.0 {
                say!("{table:<20} {rows:>10} rows");
            }
            say!(
                "Copied {} into the PostgreSQL database; counts match. Set [store] url to it and start the controllers; keep {} as a backup.",
                from.display(),
                from.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tls init`: no config needed (the config wants the files this makes).
fn tls_init(args: &TlsInitArgs) -> ExitCode {
    use baton_controller::pki;
    let sans = match args.san.as_deref().map(pki::parse_sans).transpose() {
        Ok(sans) => sans.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = pki::Plan {
        dir: args.dir.clone(),
        sans,
        agents: args.agent.clone(),
        force: args.force,
    };
    match pki::make(&plan, chrono::Utc::now().date_naive()) {
        Ok(made) => {
            say!("{}", pki::instructions(&plan, &made).trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            let usage = matches!(
                e,
                pki::Error::San(_) | pki::Error::AgentName(_) | pki::Error::Nothing
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// What the controller needs to reload its config on SIGHUP.
struct Reload {
    cli: Cli,
    env: BTreeMap<String, String>,
    flags: Flags,
    log: logging::Reloader,
}

impl Reload {
    /// Read the config again and apply what can change while running: the log
    /// level (the controller logs to stderr, so there is no file to reopen).
    fn apply(&self) -> Result<String, String> {
        let config = Config::load(self.cli.config.as_deref(), &self.env, &self.flags)
            .map_err(|e| format!("the config does not load: {e}"))?;
        (self.log)(&config.log_level)?;
        Ok(format!(
            "log_level {:?} (other settings apply at the next start)",
            config.log_level
        ))
    }
}

fn run(config: Config, reload: Reload) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone(), reload));
        baton_controller::server::run(config, shutdown).await?;
        Ok(())
    })
}

/// SIGTERM or Ctrl-C stops the controller; SIGHUP reloads (never stops it).
async fn signals(shutdown: CancellationToken, reload: Reload) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!("Cannot install the signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = hup.recv() => match reload.apply() {
                    Ok(reloaded) => tracing::info!(%reloaded, "Received SIGHUP; reloaded"),
                    Err(e) => tracing::warn!(error = %e, "Received SIGHUP; nothing reloaded"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
