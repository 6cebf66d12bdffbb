use super::*;

fn lines(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| (*s).to_owned()).collect()
}

const MARIADB: &str = "10.11.19-MariaDB-0+deb12u1";

fn names(m: &[Missing]) -> Vec<&'static str> {
    m.iter().map(|m| m.grant).collect()
}

#[test]
fn a_least_privilege_dump_login_lacks_the_verify_grants() {
    let g = lines(&[
        "GRANT USAGE ON *.* TO `du`@`localhost` IDENTIFIED BY PASSWORD '*B6'",
        "GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON `shop`.* TO `du`@`localhost`",
    ]);
    assert_eq!(
        names(&missing(&g, MARIADB)),
        vec![
            "ALL ON `baton\\_verify\\_%`.*",
            "SET USER ON *.*",
            "SELECT ON mysql.proc"
        ]
    );
    assert!(
        names(&missing(&g, "8.0.36"))
            .contains(&"SET_USER_ID ON *.* (MySQL 8.0; SET_ANY_DEFINER from 8.2)")
    );
    assert_eq!(missing(&g, "8.0.36").len(), 2, "MySQL 8 has no mysql.proc");
}

#[test]
fn the_full_verify_login_lacks_nothing() {
    let g = lines(&[
        "GRANT SET USER ON *.* TO `dv`@`localhost` IDENTIFIED BY PASSWORD '*B6'",
        "GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON `shop`.* TO `dv`@`localhost`",
        "GRANT ALL PRIVILEGES ON `baton\\_verify\\_%`.* TO `dv`@`localhost`",
        "GRANT SELECT ON `mysql`.`proc` TO `dv`@`localhost`",
    ]);
    assert_eq!(missing(&g, MARIADB), Vec::new());
    let root = lines(&[
        "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
        "GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION",
    ]);
    assert_eq!(missing(&root, MARIADB), Vec::new());
}

#[test]
fn patterns_that_do_not_cover_the_scratch_databases_are_not_enough() {
    for target in ["`baton\\_verify`.*", "`shop`.*", "`baton\\_verify\\_%`.`t`"] {
        let g = lines(&[
            &format!("GRANT ALL PRIVILEGES ON {target} TO `u`@`%`"),
            "GRANT SUPER, SELECT ON *.* TO `u`@`%`",
        ]);
        assert_eq!(
            names(&missing(&g, MARIADB)),
            vec!["ALL ON `baton\\_verify\\_%`.*"],
            "{target}"
        );
    }
    let g = lines(&[
        "GRANT CREATE, DROP ON `baton%`.* TO `u`@`%`",
        "GRANT ALL PRIVILEGES ON `baton%`.* TO `u`@`%`",
        "GRANT SELECT (a, b), SET USER ON *.* TO `u`@`%`",
    ]);
    assert_eq!(
        missing(&g, MARIADB),
        Vec::new(),
        "wider pattern, column list"
    );
}

#[test]
fn like_matches_as_the_server_does() {
    assert!(like("baton\\_verify\\_%", "baton_verify_1_ab"));
    assert!(!like("baton\\_verify\\_%", "batonXverify_1"));
    assert!(like("b_t%", "bat"));
    assert!(!like("b_t%", "bt"));
}
