use super::*;

fn me() -> ProcessIdentity {
    ProcessIdentity {
        pid: 4242,
        start_ticks: 1_000,
        boot_id: "boot-a".into(),
        pid_namespace: 4_026_531_836,
        host: "build-7".into(),
    }
}

#[test]
fn a_reader_that_does_not_know_itself_cannot_call_anything_gone() {
    assert_eq!(me().liveness_from(None), Liveness::Unknown);
}

#[test]
fn a_reader_sees_itself_alive() {
    assert_eq!(me().liveness_from(Some(&me())), Liveness::Alive);
}

#[test]
fn a_process_of_an_earlier_boot_of_this_host_is_gone() {
    let earlier = ProcessIdentity { boot_id: "boot-0".into(), ..me() };
    assert_eq!(earlier.liveness_from(Some(&me())), Liveness::Gone);
}

#[test]
fn a_process_of_another_host_or_pid_namespace_is_unknown() {
    let elsewhere = ProcessIdentity { boot_id: "boot-b".into(), host: "build-8".into(), ..me() };
    assert_eq!(elsewhere.liveness_from(Some(&me())), Liveness::Unknown);
    let container = ProcessIdentity { pid: 1, pid_namespace: 4_026_532_000, ..me() };
    assert_eq!(container.liveness_from(Some(&me())), Liveness::Unknown);
}

#[cfg(target_os = "linux")]
mod linux {
    use std::time::{Duration, Instant};

    use super::super::os::{self, Stat, liveness_of, parse_stat};
    use super::*;
    use crate::testing::{dead_process, reap, spawn_child};

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis_of_the_command_name() {
        let text = "77 (a (b) c) S 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 3 0 86484 3133440 380 0 0\n";
        assert_eq!(parse_stat(text), Some(Stat { state: 'S', threads: 3, start_ticks: 86_484 }));
        assert_eq!(parse_stat("77 (cut) S 1 77"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn a_zombie_is_gone_unless_other_threads_still_run() {
        let zombie = Stat { state: 'Z', threads: 1, start_ticks: 5 };
        assert_eq!(liveness_of(&zombie, 5), Liveness::Gone);
        let leader_exited = Stat { threads: 4, ..zombie };
        assert_eq!(liveness_of(&leader_exited, 5), Liveness::Alive);
        assert_eq!(liveness_of(&Stat { state: 'S', threads: 1, start_ticks: 5 }, 5), Liveness::Alive);
    }

    #[test]
    fn the_current_process_knows_its_identity_and_is_alive() {
        let current = ProcessIdentity::current().expect("procfs is readable");
        assert_eq!(current.pid, std::process::id());
        assert!(!current.boot_id.is_empty() && !current.host.is_empty());
        assert_eq!(current.liveness_from(Some(&current)), Liveness::Alive);
        // What another reader of this machine finds in procfs.
        assert_eq!(os::probe(current.pid, current.start_ticks), Liveness::Alive);
    }

    #[test]
    fn a_running_child_is_alive_and_a_reaped_one_is_gone() {
        let me = ProcessIdentity::current();
        let child = spawn_child();
        let identity = identity_of(child.id()).unwrap();
        assert_eq!(identity.liveness_from(me.as_ref()), Liveness::Alive);
        reap(child);
        assert_eq!(identity.liveness_from(me.as_ref()), Liveness::Gone);
        assert_eq!(dead_process().liveness_from(me.as_ref()), Liveness::Gone);
    }

    #[test]
    fn a_pid_reused_by_a_later_process_is_gone() {
        let current = ProcessIdentity::current().unwrap();
        let earlier = ProcessIdentity { start_ticks: current.start_ticks.wrapping_sub(1), ..current.clone() };
        assert_eq!(earlier.liveness_from(Some(&current)), Liveness::Gone);
    }

    #[test]
    fn a_child_that_exited_but_was_not_reaped_is_gone() {
        let mut child = spawn_child();
        let identity = identity_of(child.id()).unwrap();
        drop(child.stdin.take());
        // Poll until the kernel shows the exit, without reaping it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let stat = loop {
            let text = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
            let stat = parse_stat(&text).unwrap();
            if stat.state == 'Z' || Instant::now() > deadline {
                break stat;
            }
            std::thread::yield_now();
        };
        assert_eq!(stat.state, 'Z', "the child did not exit");
        assert_eq!(identity.liveness_from(ProcessIdentity::current().as_ref()), Liveness::Gone);
        child.wait().unwrap();
    }
}
