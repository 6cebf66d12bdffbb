use super::*;

#[test]
fn parses_proc_texts() {
    let stat = "4242 (baton ctl (x)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615";
    let boot = "cpu  1 2 3\nbtime 1764892800\nprocesses 10\n";
    let status = "Name:\tbaton-controller\nVmRSS:\t   20480 kB\nThreads:\t9\n";
    let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
    let f = parse(stat, boot, status, limits).expect("parses");
    assert_eq!(f.cpu_seconds, 3.25);
    assert_eq!(f.resident_bytes, 20480 * 1024);
    assert_eq!(f.virtual_bytes, 987_654_321);
    assert_eq!(f.max_fds, Some(1024));
    assert_eq!(f.start_time_seconds, 1_764_892_800.0 + 1234.56);
    assert!(parse("garbage", boot, status, limits).is_none());
}

#[cfg(target_os = "linux")]
#[test]
fn reads_this_process() {
    let f = read().expect("/proc/self");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(f.start_time_seconds <= now + 1.0, "{f:?}");
    assert!(f.start_time_seconds > now - 86_400.0, "{f:?}");
    assert!(
        f.resident_bytes > 0 && f.virtual_bytes >= f.resident_bytes,
        "{f:?}"
    );
    assert!(f.open_fds >= 3, "{f:?}");
}
