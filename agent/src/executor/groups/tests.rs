use super::*;
use std::os::unix::process::CommandExt;

#[test]
fn leftovers_of_a_previous_run_are_killed_and_recycled_pids_spared() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = dir.path().join("running");
    let mut child = std::process::Command::new("/bin/sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("spawn");
    let pgid = child.id() as i32;
    {
        // A "previous run" records the group, then dies without cleaning up.
        let previous = ProcessGroups::persistent(running.clone()).expect("dir");
        previous.insert(pgid);
    }
    // A recorded group whose start time no longer matches (pid recycled): spared.
    let me = std::process::id() as i32;
    std::fs::write(running.join(me.to_string()), "1").expect("write");
    let next = ProcessGroups::persistent(running.clone()).expect("dir");
    assert_eq!(next.kill_leftovers(), 1);
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the orphan was killed");
    assert_eq!(std::fs::read_dir(&running).expect("dir").count(), 0);
}

#[test]
fn start_time_reads_proc() {
    assert!(start_time(std::process::id() as i32).is_some());
    assert!(start_time(i32::MAX).is_none());
}
