//! The Service Control Manager glue (Windows only): service main and status
//! reports, the control handler feeding the shutdown token, install, uninstall
//! and the recovery (restart-on-failure) actions.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::{
    DESCRIPTION, DISPLAY_NAME, Entry, Error, FAILURE_RESET, InstallOptions, RESTART_DELAYS,
    SERVICE_NAME, Session, launch_arguments, stop_wait_hint,
};

/// Win32 ERROR_SERVICE_DOES_NOT_EXIST.
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
/// How long `uninstall` waits for the service to stop.
const UNINSTALL_STOP_WAIT: Duration = Duration::from_secs(120);

/// The agent to run, handed from `main` to the service thread.
static ENTRY: Mutex<Option<Entry>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

fn scm(action: &str) -> impl FnOnce(windows_service::Error) -> Error + '_ {
    move |e| Error::Scm {
        action: action.to_owned(),
        reason: describe(&e),
    }
}

/// The error with its cause (windows-service's own text omits the Windows error).
fn describe(e: &windows_service::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Start the dispatcher; returns when the service has stopped.
pub fn run(entry: Entry) -> Result<(), Error> {
    *ENTRY.lock().unwrap_or_else(PoisonError::into_inner) = Some(entry);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(scm(
        "cannot connect to the Service Control Manager (`service run` is started by the SCM, \
         not from a console; use `baton-agent run` there)",
    ))
}

/// Reports status changes; the control handler and the agent thread share it.
struct Reporter {
    handle: OnceLock<service_control_handler::ServiceStatusHandle>,
    checkpoint: AtomicU32,
    /// StopPending wait hint in milliseconds.
    stop_hint_ms: AtomicU32,
}

impl Reporter {
    fn set(&self, state: ServiceState, exit_code: ServiceExitCode, wait_hint: Duration) {
        let Some(handle) = self.handle.get() else {
            return;
        };
        let pending = matches!(
            state,
            ServiceState::StartPending | ServiceState::StopPending
        );
        let controls_accepted = if state == ServiceState::Running {
            ServiceControlAccept::STOP
                | ServiceControlAccept::SHUTDOWN
                | ServiceControlAccept::PRESHUTDOWN
        } else {
            ServiceControlAccept::empty()
        };
        let status = ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted,
            exit_code,
            checkpoint: if pending {
                self.checkpoint.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                0
            },
            wait_hint: if pending { wait_hint } else { Duration::ZERO },
            process_id: None,
        };
        if let Err(e) = handle.set_service_status(status) {
            warn!(state = ?state, error = %describe(&e), "Cannot report the service status");
        }
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let entry = ENTRY.lock().unwrap_or_else(PoisonError::into_inner).take();
    let Some(entry) = entry else { return };
    let shutdown = CancellationToken::new();
    let reporter = Arc::new(Reporter {
        handle: OnceLock::new(),
        checkpoint: AtomicU32::new(0),
        stop_hint_ms: AtomicU32::new(duration_ms(stop_wait_hint(Duration::ZERO))),
    });
    let on_control = {
        let shutdown = shutdown.clone();
        let reporter = reporter.clone();
        move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                info!(control = ?control, "Service stop requested");
                let hint =
                    Duration::from_millis(u64::from(reporter.stop_hint_ms.load(Ordering::Relaxed)));
                reporter.set(ServiceState::StopPending, ServiceExitCode::NO_ERROR, hint);
                shutdown.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let handle = match service_control_handler::register(SERVICE_NAME, on_control) {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %describe(&e), "Cannot register the service control handler");
            return;
        }
    };
    let _ = reporter.handle.set(handle);
    reporter.set(
        ServiceState::StartPending,
        ServiceExitCode::NO_ERROR,
        Duration::from_secs(30),
    );
    let started = {
        let reporter = reporter.clone();
        let shutdown = shutdown.clone();
        Arc::new(move |grace: Duration| {
            reporter
                .stop_hint_ms
                .store(duration_ms(stop_wait_hint(grace)), Ordering::Relaxed);
            if !shutdown.is_cancelled() {
                reporter.set(
                    ServiceState::Running,
                    ServiceExitCode::NO_ERROR,
                    Duration::ZERO,
                );
            }
        })
    };
    ensure_failure_actions();
    let code = entry(Session::new(shutdown, started));
    let exit = if code == 0 {
        ServiceExitCode::NO_ERROR
    } else {
        ServiceExitCode::ServiceSpecific(code)
    };
    info!(code, "Service stopped");
    reporter.set(ServiceState::Stopped, exit, Duration::ZERO);
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn failure_actions() -> ServiceFailureActions {
    ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(FAILURE_RESET),
        reboot_msg: None,
        command: None,
        actions: Some(
            RESTART_DELAYS
                .iter()
                .map(|delay| ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: *delay,
                })
                .collect(),
        ),
    }
}

/// Restart on failure. Returns a warning when a stop with a non-zero exit code
/// cannot be made to count as a failure (crashes still restart).
fn set_failure_actions(
    service: &windows_service::service::Service,
) -> Result<Option<String>, Error> {
    service
        .update_failure_actions(failure_actions())
        .map_err(scm("cannot set the restart-on-failure actions"))?;
    // A stop with a non-zero exit code counts as a failure too, not only a crash.
    Ok(service
        .set_failure_actions_on_non_crash_failures(true)
        .err()
        .map(|e| {
            format!(
                "cannot apply the restart actions to non-crash failures ({}); \
                 only crashes restart the service",
                describe(&e)
            )
        }))
}

/// The MSI registers the service without recovery actions (wixl has no
/// ServiceConfig): the service sets them on itself at each start.
fn ensure_failure_actions() {
    let result = ServiceManager::local_computer(None::<&OsStr>, ServiceManagerAccess::CONNECT)
        .map_err(scm("cannot open the Service Control Manager"))
        .and_then(|m| {
            m.open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)
                .map_err(scm("cannot open the service"))
        })
        .and_then(|s| set_failure_actions(&s));
    match result {
        Ok(None) => {}
        Ok(Some(w)) => warn!(detail = %w, "Service recovery actions incomplete"),
        Err(e) => warn!(error = %e, "Cannot set the service's recovery actions"),
    }
}

/// Register the service; returns warnings.
pub fn install(options: &InstallOptions) -> Result<Vec<String>, Error> {
    let manager = ServiceManager::local_computer(
        None::<&OsStr>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(scm(
        "cannot open the Service Control Manager (run as Administrator)",
    ))?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: options.executable.clone(),
        launch_arguments: launch_arguments(options.config.as_deref()),
        dependencies: Vec::new(),
        // LocalSystem.
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(
            &info,
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_STATUS | ServiceAccess::DELETE,
        )
        .map_err(scm("cannot create the service BatonAgent"))?;
    let configured = service
        .set_description(DESCRIPTION)
        .map_err(scm("cannot set the service description"))
        .and_then(|()| set_failure_actions(&service));
    if configured.is_err() {
        // Leave nothing half-configured behind.
        let _ = service.delete();
    }
    configured.map(|w| w.into_iter().collect())
}

/// Stop (waiting for the drain) and delete the service.
pub fn uninstall() -> Result<(), Error> {
    let manager = ServiceManager::local_computer(None::<&OsStr>, ServiceManagerAccess::CONNECT)
        .map_err(scm(
            "cannot open the Service Control Manager (run as Administrator)",
        ))?;
    let service = match manager.open_service(
        SERVICE_NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    ) {
        Ok(s) => s,
        Err(windows_service::Error::Winapi(e))
            if e.raw_os_error() == Some(ERROR_SERVICE_DOES_NOT_EXIST) =>
        {
            return Err(Error::Scm {
                action: "cannot uninstall".into(),
                reason: "the service BatonAgent is not installed".into(),
            });
        }
        Err(e) => return Err(scm("cannot open the service BatonAgent")(e)),
    };
    // Mark for deletion first: the SCM removes it once it has stopped.
    service
        .delete()
        .map_err(scm("cannot delete the service BatonAgent"))?;
    let status = service
        .query_status()
        .map_err(scm("cannot query the service"))?;
    if status.current_state != ServiceState::Stopped {
        if status.current_state != ServiceState::StopPending {
            service.stop().map_err(scm("cannot stop the service"))?;
        }
        let since = Instant::now();
        loop {
            let state = service
                .query_status()
                .map_err(scm("cannot query the service"))?
                .current_state;
            if state == ServiceState::Stopped {
                break;
            }
            if since.elapsed() > UNINSTALL_STOP_WAIT {
                warn!("The service is still stopping; it is removed once it stops");
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}
