//! `baton-agent`: parse the command line, load the config, then run, enroll or validate;
//! `service run|install|uninstall` for the Windows service.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use baton_agent::agent::Agent;
use baton_agent::cli::{Cli, Cmd, ServiceCmd};
use baton_agent::config::{self, Config, ConnectionConfig, Flags, LogFormat};
use baton_agent::executor::keeper::{self, KEEPER_ARG};
use baton_agent::identity::Identity;
use baton_agent::service::{self, InstallOptions, Session, paths::Layout};
use baton_agent::shutdown::{Reload, Signals};
use baton_agent::transport::{self, Transport};
use baton_agent::{enroll, logging};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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

/// Exit code after a second signal (128 + SIGINT, as shells report an interrupt).
const EXIT_FORCED: i32 = 130;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(KEEPER_ARG)) {
        keeper::run();
        return ExitCode::SUCCESS;
    }
    baton_agent::install_crypto_provider();
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let cmd = cli.cmd();
    if let Cmd::Service { action } = cmd {
        return service_command(action, cli.flags(), env);
    }
    let flags = platform_flags(cli.flags(), &env);
    #[cfg(windows)]
    if cmd != Cmd::Validate {
        let layout = Layout::from_env(&env);
        if let Err(e) = layout.ensure(false, |d| service::paths::restrict_acl(d, &env)) {
            return fail(1, &e);
        }
    }
    let loaded = config::load(&flags, &env).and_then(|c| {
        if cmd != Cmd::Validate {
            c.prepare_state_dir()?;
        }
        Ok(c)
    });
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            // An old name may be why the config is incomplete: say so first.
            let is_set = |n: &str| env.contains_key(n);
            for w in baton_proto::env::old_name_warnings(baton_proto::env::AGENT_OLD, is_set) {
                eprintln!("warning: {w}");
            }
            return fail(e.exit_code(), &e);
        }
    };
    match cmd {
        Cmd::Validate => validate(&config),
        Cmd::Enroll { token_file } => with_runtime(&config, |rt| {
            rt.block_on(enroll_command(&config, token_file.as_deref()))
        }),
        Cmd::Run => with_runtime(&config, |rt| {
            rt.block_on(run_console(config.clone(), reloader(flags, env)))
        }),
        Cmd::Service { .. } => ExitCode::FAILURE,
    }
}

/// The flags, plus the Windows defaults (`%ProgramData%\Baton\agent.toml`, `state\`)
/// where nothing else names a config file or a state directory.
fn platform_flags(flags: Flags, env: &BTreeMap<String, String>) -> Flags {
    if cfg!(windows) {
        with_windows_defaults(flags, env)
    } else {
        flags
    }
}

fn with_windows_defaults(mut flags: Flags, env: &BTreeMap<String, String>) -> Flags {
    let layout = Layout::from_env(env);
    let d = service::paths::defaults(
        &layout,
        flags.config.as_deref(),
        flags.state_dir.is_some(),
        env,
        |p| std::fs::read_to_string(p).ok(),
    );
    if d.config.is_some() {
        flags.config = d.config;
    }
    if d.state_dir.is_some() {
        flags.state_dir = d.state_dir;
    }
    flags
}

fn service_command(action: ServiceCmd, flags: Flags, env: BTreeMap<String, String>) -> ExitCode {
    let done = match action {
        ServiceCmd::Run => {
            service::run(Box::new(move |session| service_entry(flags, &env, session)))
                .map(|()| String::new())
        }
        ServiceCmd::Install => install_options(&flags)
            .and_then(|o| service::install(&o).map(|warnings| (o, warnings)))
            .map(|(o, warnings)| {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                format!(
                    "Installed the service {} (automatic start, LocalSystem, restart on failure) \
                     running {} {}.\nStart it with: sc.exe start {}",
                    service::SERVICE_NAME,
                    o.executable.display(),
                    service::launch_arguments(o.config.as_deref())
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" "),
                    service::SERVICE_NAME,
                )
            }),
        ServiceCmd::Uninstall => service::uninstall().map(|()| {
            format!(
                "Removed the service {}; the files under %ProgramData%\\Baton are kept.",
                service::SERVICE_NAME
            )
        }),
    };
    match done {
        Ok(msg) => {
            if !msg.is_empty() {
                say!("{msg}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, &e),
    }
}

fn install_options(flags: &Flags) -> Result<InstallOptions, service::Error> {
    let executable = std::env::current_exe()
        .map_err(|e| service::Error::io("cannot find the agent executable", e))?;
    let config = match &flags.config {
        Some(p) => Some(
            std::path::absolute(p)
                .map_err(|e| service::Error::io(format!("bad path {}", p.display()), e))?,
        ),
        None => None,
    };
    Ok(InstallOptions { executable, config })
}

/// The agent under the Service Control Manager: files and ACL, config, log file,
/// Running, then the same run as the console's with the service's shutdown token.
fn service_entry(flags: Flags, env: &BTreeMap<String, String>, session: Session) -> u32 {
    let layout = Layout::from_env(env);
    #[cfg(windows)]
    let prepared = layout.ensure(true, |d| service::paths::restrict_acl(d, env));
    #[cfg(not(windows))]
    let prepared = layout.ensure(true, |_| Ok(()));
    if let Err(e) = prepared {
        // No log file without the folder: the exit code is all the SCM shows.
        eprintln!("baton-agent: {e}");
        return 1;
    }
    let log_file = layout.log_file();
    let flags = with_windows_defaults(flags, env);
    if flags.config.is_none() && !env.contains_key(config::ENV_CONFIG) {
        // Started by the MSI before any config exists: stay up, say what to do.
        if service::logfile::init("info", LogFormat::default(), &log_file).is_ok() {
            error!(
                config = %layout.config.display(),
                "No config file: copy agent.example.toml from the install folder there, set \
                 controller_url and enrollment_token_file (or run `baton-agent enroll`), then \
                 restart the service"
            );
        }
        session.started(std::time::Duration::ZERO);
        return match runtime() {
            Ok(rt) => {
                rt.block_on(session.shutdown.cancelled());
                0
            }
            Err(_) => 1,
        };
    }
    let loaded = config::load(&flags, env).and_then(|c| c.prepare_state_dir().map(|()| c));
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            if service::logfile::init("info", LogFormat::default(), &log_file).is_ok() {
                error!(error = %e, "Invalid config");
            }
            return code_u32(e.exit_code());
        }
    };
    if let Err(e) = service::logfile::init(&config.log_level, config.log_format, &log_file) {
        eprintln!("baton-agent: {e}");
        return 1;
    }
    for w in &config.warnings {
        warn!(detail = %w, "Config warning");
    }
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config = ?config.config_file,
        "Service starting"
    );
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "Cannot start the async runtime");
            return 1;
        }
    };
    session.started(config.shutdown_grace);
    let result = rt.block_on(run(config, session.shutdown, std::future::pending()));
    match result {
        Ok(()) => 0,
        Err((code, e)) => {
            error!(error = %e, "Agent failed");
            code_u32(code)
        }
    }
}

fn code_u32(code: i32) -> u32 {
    u32::try_from(code).unwrap_or(1)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn fail(code: i32, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("baton-agent: {e}");
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Whether the URL's host is under `.invalid` (the packaged default config's
/// placeholder, RFC 2606).
fn placeholder_url(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    host.ends_with(".invalid")
}

fn validate(config: &Config) -> ExitCode {
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    for url in &config.controller_urls {
        if transport::plain_http_remote(url) {
            eprintln!("warning: Talking to the controller {url} over plain HTTP");
        }
        if placeholder_url(url) {
            eprintln!(
                "warning: controller_url is the packaged placeholder ({url}): set it to your controller"
            );
        }
    }
    say!("Config OK: {}", config.summary());
    mysql_grant_warnings(config);
    match Identity::load(&config.state_dir) {
        Ok(Some(id)) => {
            say!(
                "Identity: enrolled as {} (groups: {})",
                id.agent_id,
                id.groups.join(", ")
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            let next = if config.enrollment_token.is_some() {
                "`run` enrolls with the configured enrollment token"
            } else {
                "run `baton-agent enroll --token-file FILE` or set enrollment_token_file"
            };
            say!("Identity: not enrolled yet; {next}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(config::Error::EXIT_CODE, &e),
    }
}

/// For each MySQL/MariaDB connection, the grants `dump --verify` (and
/// `--routines` on MariaDB) needs that its login lacks: warnings only (the
/// database may be down at validate time).
fn mysql_grant_warnings(config: &Config) {
    let mysql: Vec<_> = config
        .connections
        .values()
        .filter_map(|c| match c {
            ConnectionConfig::Mysql(m) => Some(m),
            _ => None,
        })
        .collect();
    if mysql.is_empty() {
        return;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warning: cannot check the MySQL grants: no async runtime: {e}");
            return;
        }
    };
    for conn in mysql {
        for w in rt.block_on(baton_agent::db::mysql::grants::warnings(conn)) {
            eprintln!("warning: {w}");
        }
    }
}

/// Logging and a single-threaded runtime, then `f`.
fn with_runtime(config: &Config, f: impl FnOnce(&tokio::runtime::Runtime) -> ExitCode) -> ExitCode {
    if let Err(e) = logging::init(&config.log_level, config.log_format) {
        return fail(1, &e);
    }
    for w in &config.warnings {
        warn!(detail = %w, "Config warning");
    }
    match runtime() {
        Ok(rt) => f(&rt),
        Err(e) => fail(1, &format!("cannot start the async runtime: {e}")),
    }
}

async fn enroll_command(config: &Config, token_file: Option<&Path>) -> ExitCode {
    let transport = match Transport::with_urls(&config.controller_urls, &config.tls) {
        Ok(t) => t,
        Err(e) => return fail(1, &e),
    };
    match enroll::command(config, &transport, token_file, enroll::PATIENCE).await {
        Ok(id) => {
            say!(
                "Enrolled as {} (groups: {})",
                id.agent_id,
                id.groups.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.exit_code(), &e),
    }
}

/// What SIGHUP reloads: the config is read again and its `log_level` applied
/// (the agent logs to stderr, so there is no log file to reopen); every other
/// setting takes effect at the next start.
fn reloader(flags: Flags, env: BTreeMap<String, String>) -> Reload {
    Box::new(move || {
        let config =
            config::load(&flags, &env).map_err(|e| format!("the config does not load: {e}"))?;
        match logging::reload(&config.log_level) {
            Ok(true) => Ok(format!(
                "log_level {:?} (other settings apply at the next start)",
                config.log_level
            )),
            Ok(false) => Err("no reloadable logger".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
}

/// `run` from a console (or systemd): signals feed the shutdown token.
async fn run_console(config: Config, reload: Reload) -> ExitCode {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(1, &e),
    };
    let shutdown = CancellationToken::new();
    let watch = signals.watch(shutdown.clone(), reload);
    match run(config, shutdown, watch).await {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => fail(code, &e),
    }
}

/// Enroll if needed, then run the agent until `shutdown` and the drain are done.
/// `watch` returning means "exit at once" (a second signal).
async fn run(
    config: Config,
    shutdown: CancellationToken,
    watch: impl Future<Output = ()>,
) -> Result<(), (i32, String)> {
    tokio::pin!(watch);
    let transport = Transport::with_urls(&config.controller_urls, &config.tls)
        .map_err(|e| (1, e.to_string()))?;
    let found = tokio::select! {
        r = enroll::identity_for_run(&config, &transport, enroll::PATIENCE, &shutdown) => r,
        () = &mut watch => std::process::exit(EXIT_FORCED),
    };
    let identity = match found {
        Ok(id) => id,
        Err(enroll::Error::Stopped) => {
            info!("Agent stopped before enrolling");
            return Ok(());
        }
        Err(e) => return Err((e.exit_code(), e.to_string())),
    };
    let agent = Agent::new(config, &identity, &transport)
        .map_err(|e| (1, format!("cannot start the agent: {e}")))?;
    let groups = agent.process_groups();
    #[cfg(unix)]
    match keeper::Keeper::start() {
        Ok(k) => {
            groups.attach_keeper(k);
        }
        Err(e) => warn!(error = %e, "Commands may outlive a crash of the agent"),
    }
    tokio::select! {
        () = agent.run(shutdown.clone()) => Ok(()),
        () = &mut watch => {
            groups.kill_all();
            std::process::exit(EXIT_FORCED)
        }
    }
}

#[cfg(test)]
mod tests;
