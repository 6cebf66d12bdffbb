use super::*;

#[test]
fn reads_own_process() {
    let m = mem(0).expect("own status");
    assert!(m.vm_rss_kb > 0);
    assert!(cpu_ticks(0).is_ok());
    let mc = Machine::detect();
    assert!(mc.nproc >= 1);
    assert!(mc.ram_mib > 0);
}

#[test]
fn meminfo_fields() {
    let t = "MemTotal:       24684000 kB\nMemFree: 1 kB\n";
    assert_eq!(field_kb(t, "MemTotal:"), Some(24_684_000));
    assert_eq!(field_kb(t, "Nope:"), None);
}
