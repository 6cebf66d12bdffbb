use super::*;

#[test]
fn one_url_per_host_keeping_user_database_and_parameters() {
    let urls = split_hosts(
        "postgres://baton@h1:5432,h2:5433/db?target_session_attrs=read-write&sslmode=require",
    )
    .expect("split");
    assert_eq!(
        urls,
        [
            "postgres://baton@h1:5432/db?sslmode=require",
            "postgres://baton@h2:5433/db?sslmode=require"
        ]
    );
    assert_eq!(
        split_hosts("postgres://h:1/db").expect("one"),
        ["postgres://h:1/db"]
    );
    assert_eq!(
        split_hosts("postgres://u@h:1/db?target_session_attrs=read-write").expect("bare"),
        ["postgres://u@h:1/db"]
    );
}

#[test]
fn a_url_without_scheme_or_host_is_refused() {
    assert!(split_hosts("h1:5432/db").is_err());
    assert!(split_hosts("postgres://u@/db").is_err());
}

#[test]
fn a_password_in_the_userinfo_or_the_query_is_seen() {
    assert!(url_has_password("postgres://baton:pw@db/baton"));
    assert!(url_has_password("postgres://baton@db/baton?password=pw"));
    assert!(!url_has_password(
        "postgres://baton@db1:5432,db2:5432/baton"
    ));
    assert!(!url_has_password("postgres://db/baton"));
}
