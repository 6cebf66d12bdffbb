//! Database errors name the agent's connection and where it points, with
//! real processes and no database listening (no MariaDB needed).

use std::time::Duration;

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use baton_tests::mariadb::write_password_file;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_names_the_connection_and_the_endpoint() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let secrets = tempfile::tempdir().expect("tmp");
    let pw = secrets.path().join("pw");
    write_password_file(&pw, "x").expect("password file");
    let conn = format!(
        "[connections.orders]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         user = \"baton\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    let c = Cluster::start_with(1, "", move |o| o.extra = conn.clone())
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let job = c
        .api
        .submit(json!({"group": "default", "retry": {"max_attempts": 1},
            "spec": {"kind": "sql", "connection": "orders", "sql": "SELECT 1"}}))
        .await
        .expect("submit");
    let done = c
        .api
        .wait_terminal(job.id, Duration::from_secs(60))
        .await
        .expect("terminal");
    assert_eq!(done.state, JobState::Failed, "{}", c.logs());
    let error = done.error.unwrap_or_default();
    assert!(
        error.contains(&format!("connection orders (127.0.0.1:{port})")),
        "{error}"
    );
}
