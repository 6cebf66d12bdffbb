//! Issue 16 points 9 and 14 through the whole stack: batonctl → controller →
//! agent → a real MariaDB. A procedure's OUT parameters need no value, a
//! job's `session` settings pin CURRENT_DATE and the time zone, and what the
//! controller refuses names the field (`spec.params[0].value`,
//! `spec.session.KEY`).

use std::path::Path;
use std::process::{Command, Output};

use baton_proto::{JobState, JobView};
use baton_tests::cluster::Cluster;
use baton_tests::mariadb;
use baton_tests::proc::bin;
use serde_json::{Value, json};

/// The README's example procedure.
const SETUP: &str = "CREATE TABLE orders (shop_id INT, created_at DATETIME)
//
INSERT INTO orders VALUES (1, '2026-11-26 09:00:00'), (1, '2026-11-26 17:30:00'),
  (1, '2026-11-25 23:00:00'), (2, '2026-11-26 10:00:00')
//
CREATE PROCEDURE day_report(IN p_shop INT, OUT p_orders INT, OUT p_day DATE)
BEGIN
  SET p_day = CURRENT_DATE;
  SELECT COUNT(*) INTO p_orders FROM orders
   WHERE shop_id = p_shop AND DATE(created_at) = CURRENT_DATE;
END";

fn ctl(c: &Cluster, args: &[&str]) -> Output {
    Command::new(bin("batonctl").expect("bin"))
        .args(args)
        .env("BATON_URL", c.controller.url())
        .env("BATON_TOKEN", &c.controller.admin_token)
        .output()
        .expect("run batonctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_json(dir: &Path, name: &str, v: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v).expect("json")).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_params_without_values_and_session_settings_from_batonctl() {
    baton_tests::require_mariadb!();
    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("sess").expect("database");
    mdb.sql(Some(&db), &format!("DELIMITER //\n{SETUP}\n//"))
        .expect("setup sql");
    let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("shop.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let conn = mdb.connection_toml("shop", &db, &user, &pw);
    let c = Cluster::start_with(1, "", move |o| o.extra = conn.clone())
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");

    // The README's job: OUT parameters without values, the day pinned.
    let job = json!({"group": "default", "spec": {"kind": "procedure", "connection": "shop",
        "procedure": "day_report",
        "params": [{"name": "p_shop", "value": {"type": "int", "value": 1}},
                   {"name": "p_orders", "mode": "out"}, {"name": "p_day", "mode": "out"}],
        "session": {"time_zone": "+00:00", "timestamp": "2026-11-26T12:00:00Z"}}});
    let file = write_json(dir.path(), "day_report.json", &job);
    let out = ctl(&c, &["-o", "json", "submit", "-f", &file, "--wait"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let view: JobView = serde_json::from_str(&stdout).expect("job json");
    assert_eq!(view.state, JobState::Succeeded);
    let data = view.result.and_then(|r| r.data).expect("data");
    assert_eq!(
        data["out"],
        json!({"p_orders": 2, "p_day": "2026-11-26"}),
        "{data}"
    );

    // As the README shows it.
    let out = ctl(&c, &["submit", "-f", &file, "--wait"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    println!("{stdout}");
    assert!(
        stdout.contains("OUT parameters:")
            && stdout.contains("p_orders = 2")
            && stdout.contains("  p_orders (out)\n")
            && stdout.contains("Session:\n  time_zone = \"+00:00\""),
        "{stdout}"
    );

    // --session over the file's settings: the next day, in another zone.
    let out = ctl(
        &c,
        &[
            "-o",
            "json",
            "submit",
            "-f",
            &file,
            "--session",
            "timestamp=2026-11-25T23:30:00Z",
            "--session",
            "time_zone=+01:00",
            "--wait",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let view: JobView = serde_json::from_slice(&out.stdout).expect("job json");
    let data = view.result.and_then(|r| r.data).expect("data");
    assert_eq!(
        data["out"],
        json!({"p_orders": 2, "p_day": "2026-11-26"}),
        "{data}"
    );

    // An sql job with --session.
    let out = ctl(
        &c,
        &[
            "-o",
            "json",
            "submit",
            "--kind",
            "sql",
            "--connection",
            "shop",
            "--sql",
            "SELECT @@session.time_zone AS tz",
            "--session",
            "time_zone=-03:00",
            "--wait",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let view: JobView = serde_json::from_slice(&out.stdout).expect("job json");
    let data = view.result.and_then(|r| r.data).expect("data");
    assert_eq!(
        data["result_sets"][0]["rows"],
        json!([["-03:00"]]),
        "{data}"
    );

    // Refusals name the field, before anything runs.
    let mut no_value = job.clone();
    no_value["spec"]["params"][0] = json!({"name": "p_shop"});
    let file = write_json(dir.path(), "no_value.json", &no_value);
    let out = ctl(&c, &["submit", "-f", &file]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("spec.params[0].value"), "{stderr}");
    let file = write_json(dir.path(), "day_report2.json", &job);
    let out = ctl(&c, &["submit", "-f", &file, "--session", "autocommit=0"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("spec.session.autocommit"), "{stderr}");
    let out = ctl(&c, &["submit", "-f", &file, "--session", "time_zone=x'y"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("spec.session.time_zone"), "{stderr}");
    let mut date_without_value = job.clone();
    date_without_value["spec"]["params"][0]["value"] = json!({"type": "date"});
    let file = write_json(dir.path(), "date.json", &date_without_value);
    let out = ctl(&c, &["submit", "-f", &file]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("spec.params[0].value"), "{stderr}");
}
