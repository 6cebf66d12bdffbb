use super::*;

fn names(vars: &[EnvVar]) -> Vec<&'static str> {
    vars.iter().map(|v| v.name).collect()
}

#[test]
fn the_three_tables_are_disjoint_and_keep_to_their_prefixes() {
    let (agent, controller, ctl) = (names(AGENT), names(CONTROLLER), names(BATONCTL));
    for a in &agent {
        assert!(a.starts_with("BATON_AGENT_"), "{a}");
        assert!(!controller.contains(a) && !ctl.contains(a), "{a} is shared");
    }
    for c in &controller {
        assert!(c.starts_with("BATON_CONTROLLER_"), "{c}");
        assert!(!ctl.contains(c), "{c} is shared");
    }
    for b in &ctl {
        assert!(
            !b.starts_with("BATON_AGENT_") && !b.starts_with("BATON_CONTROLLER_"),
            "{b}"
        );
    }
    for list in [&agent, &controller, &ctl] {
        let mut sorted = list.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), list.len(), "a name is listed twice: {list:?}");
    }
}

#[test]
fn old_names_are_not_read_and_point_at_a_name_of_the_same_program() {
    for (old, new) in AGENT_OLD {
        assert!(!names(AGENT).contains(old), "{old}");
        assert!(new.is_none_or(|n| names(AGENT).contains(&n)), "{new:?}");
    }
    for (old, new) in CONTROLLER_OLD {
        assert!(!names(CONTROLLER).contains(old), "{old}");
        assert!(
            new.is_some_and(|n| names(CONTROLLER).contains(&n)),
            "{new:?}"
        );
    }
    // An old name that is batonctl's now gives no warning.
    for (old, new) in AGENT_OLD.iter().chain(CONTROLLER_OLD) {
        assert_eq!(new.is_none(), names(BATONCTL).contains(old), "{old}");
    }
}

#[test]
fn old_name_warnings_name_the_new_variable_and_skip_batonctl_names() {
    let set = ["BATON_STATE_DIR", "BATON_TOKEN_FILE", "BATON_URL"];
    let w = old_name_warnings(AGENT_OLD, |n| set.contains(&n));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("BATON_STATE_DIR") && w[0].contains("BATON_AGENT_STATE_DIR"));
    assert!(old_name_warnings(AGENT_OLD, |_| false).is_empty());
}

#[test]
fn help_lists_every_variable_with_its_meaning() {
    for table in [AGENT, CONTROLLER, BATONCTL] {
        let h = help(table);
        for v in table {
            assert!(h.contains(v.name) && h.contains(v.meaning), "{h}");
        }
    }
}

#[test]
fn secret_mode_refuses_any_group_or_other_bit() {
    for ok in [0o600, 0o400, 0o700, 0o100600] {
        assert_eq!(secret_mode_problem("/s", ok), None, "{ok:o}");
    }
    for bad in [0o644, 0o640, 0o604, 0o610, 0o601, 0o100644] {
        let m = secret_mode_problem("/etc/s", bad).expect("refused");
        assert!(m.contains("chmod 600 /etc/s"), "{m}");
        assert!(m.contains(&format!("mode {:04o}", bad & 0o7777)), "{m}");
    }
    let m = secret_mode_problem("/p", 0o644).expect("refused");
    assert!(m.contains("mode 0644"), "{m}");
}
