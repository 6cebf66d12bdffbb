use super::*;
use std::sync::Mutex;

#[test]
fn launch_arguments_with_and_without_config() {
    assert_eq!(launch_arguments(None), ["service", "run"]);
    assert_eq!(
        launch_arguments(Some(Path::new(r"D:\baton\agent.toml"))),
        ["service", "run", "--config", r"D:\baton\agent.toml"]
    );
}

#[test]
fn the_wait_hint_covers_the_grace() {
    assert_eq!(
        stop_wait_hint(Duration::from_secs(60)),
        Duration::from_secs(90)
    );
    assert_eq!(stop_wait_hint(Duration::MAX), Duration::MAX);
}

#[test]
fn restart_delays_grow_and_the_name_matches_the_msi() {
    assert!(RESTART_DELAYS.windows(2).all(|w| w[0] < w[1]));
    let wxs = include_str!("../../../packaging/msi/baton-agent.wxs");
    assert!(wxs.contains(&format!("Name=\"{SERVICE_NAME}\"")));
    assert!(wxs.contains("Arguments=\"service run\""));
}

#[test]
fn session_started_reports_the_grace() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let session = Session::new(
        CancellationToken::new(),
        Arc::new(move |d| sink.lock().expect("lock").push(d)),
    );
    session.started(Duration::from_secs(5));
    assert_eq!(*seen.lock().expect("lock"), [Duration::from_secs(5)]);
}

#[cfg(not(windows))]
#[test]
fn service_commands_fail_clearly_off_windows() {
    let options = InstallOptions {
        executable: PathBuf::from("/usr/bin/baton-agent"),
        config: None,
    };
    assert!(matches!(install(&options), Err(Error::Unsupported)));
    assert!(matches!(uninstall(), Err(Error::Unsupported)));
    assert!(matches!(run(Box::new(|_| 0)), Err(Error::Unsupported)));
    assert!(Error::Unsupported.to_string().contains("only on Windows"));
}
