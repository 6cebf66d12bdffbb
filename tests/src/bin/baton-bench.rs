//! `baton-bench`: Baton's benchmark harness (issue 8). Starts real controller
//! and agent processes on loopback and prints what it measured, with targets.
//! See `baton-bench --help` and [`baton_tests::bench`].

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    baton_tests::init_crypto();
    let args = match baton_tests::bench::Args::parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            eprintln!("baton-bench: {e:#}");
            std::process::exit(2);
        }
    };
    match baton_tests::bench::run(args).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("baton-bench: {e:#}");
            std::process::exit(1);
        }
    }
}
