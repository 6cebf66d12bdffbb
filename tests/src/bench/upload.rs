//! `upload`: issue 19 point 9. A 1 GiB file of random bytes (made once per
//! invocation, with its manifest, under a dump directory) copied to a local
//! S3-compatible server (moto, `scripts/s3server`, a fresh server per run)
//! twice in each run, in alternating order:
//! - by a real agent's `upload` job (default 8 MiB parts, 4 in flight):
//!   from its `Upload starting` line to its `Upload done` line (the
//!   multipart upload, the read-back check and the manifest), and the
//!   agent's peak RSS (VmHWM of a fresh agent, read after the job);
//! - by the reference client, boto3's `upload_file` with its default
//!   transfer settings (`scripts/s3server upload`: the call alone).
//!
//! Figures: MiB/s of both, the agent's share of the reference (target
//! ≥ 80 %), the agent's VmHWM (target ≤ 64 MiB). Never a test: 1 GiB on
//! disk and 2 GiB in moto's memory per run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use baton_proto::{JobId, JobState};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::json;
use sha2::Digest;

use super::report::{ScenarioReport, Series, Target};
use super::sysinfo::peak_rss_kb;
use super::{Args, Bench, GROUP, ms_between};
use crate::s3::S3Server;

const BUCKET: &str = "baton-bench";
const SIZE: u64 = 1024 * 1024 * 1024;
const MIB: f64 = 1024.0 * 1024.0;
const NAME: &str = "20261206T010203Z-job1.sql.zst";
const WAIT: Duration = Duration::from_secs(1800);
const AGENT: &str = "agent upload job";
const REFERENCE: &str = "reference: boto3 upload_file";

/// Run the scenario `--runs` times (default 3).
pub async fn run(args: &Args) -> Result<ScenarioReport> {
    if let Some(why) = crate::s3::skip_reason() {
        bail!("{why}");
    }
    let runs = args.runs.unwrap_or(3);
    let mut rep = ScenarioReport::new("upload", args.transport(), runs);
    rep.param("size_mib", SIZE / 1024 / 1024);
    rep.param("part_size_mib", args.part_mb.unwrap_or(8));
    rep.param("concurrency", args.parts.unwrap_or(4));
    let tmp = tempfile::Builder::new()
        .prefix("baton-bench-upload-")
        .disable_cleanup(args.keep)
        .tempdir()?;
    let dumps = tmp.path().join("dumps");
    let file = make_file(&dumps.join("main").join("sales")).await?;
    let pw = tmp.path().join("pw");
    crate::mariadb::write_password_file(&pw, "unused")?;
    let mut s = Series::default();
    for i in 0..runs {
        let s3 = S3Server::start()?;
        s3.make_bucket(BUCKET)?;
        let agent_first = i % 2 == 0;
        if !agent_first {
            reference(&s3, &file, &mut s)?;
        }
        agent(args, &s3, &file, &dumps, &pw, &mut s).await?;
        if agent_first {
            reference(&s3, &file, &mut s)?;
        }
        let listing = s3.list(BUCKET)?;
        let sizes: Vec<u64> = listing
            .objects
            .iter()
            .filter(|o| !o.key.ends_with(".manifest.json"))
            .map(|o| o.size)
            .collect();
        if sizes != [SIZE, SIZE] || !listing.uploads.is_empty() {
            bail!("run {}: unexpected bucket contents: {listing:?}", i + 1);
        }
    }
    let (a, r) = (s.get(AGENT).to_vec(), s.get(REFERENCE).to_vec());
    for (x, y) in a.iter().zip(&r) {
        s.push("agent / reference", 100.0 * x / y);
    }
    rep.add_rows(
        &s,
        &[
            (AGENT, "MiB/s", None),
            (REFERENCE, "MiB/s", None),
            ("agent / reference", "%", Some(Target::Ge(80.0))),
            ("agent peak RSS (VmHWM)", "MiB", Some(Target::Le(64.0))),
            ("agent VmHWM before the job", "MiB", None),
        ],
    );
    rep.notes.push(
        "the ratio is per run (both copies in the same run, to the same fresh moto server, \
         order alternating), then the median; moto (Python) on the same 2 cores bounds both"
            .into(),
    );
    rep.notes.push(
        "agent: `Upload starting` → `Upload done` in its log (multipart upload, HEAD and tail \
         read-back, manifest PUT); reference: the upload_file call (8 MiB parts, 10 threads, \
         its default checksums); the file is in the page cache for both"
            .into(),
    );
    Ok(rep)
}

/// The 1 GiB file of random bytes and its manifest in `dir`.
async fn make_file(dir: &Path) -> Result<PathBuf> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(NAME);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let mut hasher = sha2::Sha256::new();
        let mut chunk = vec![0u8; 1024 * 1024];
        let mut rng = rand::rng();
        for _ in 0..SIZE / chunk.len() as u64 {
            rng.fill_bytes(&mut chunk);
            hasher.update(&chunk);
            f.write_all(&chunk)?;
        }
        f.flush()?;
        let manifest = json!({
            "file": NAME, "connection": "main", "database": "sales",
            "sha256": hex::encode(hasher.finalize()),
            "started_at": "2026-12-06T01:02:03.000Z",
        });
        std::fs::write(
            dir.join(NAME.replace(".sql.zst", ".manifest.json")),
            manifest.to_string(),
        )?;
        Ok(file)
    })
    .await
    .context("the file maker panicked")?
}

/// The reference copy: MiB/s.
fn reference(s3: &S3Server, file: &Path, s: &mut Series) -> Result<()> {
    let secs = s3.upload_timed(BUCKET, &format!("reference/{NAME}"), file)?;
    s.push(REFERENCE, SIZE as f64 / MIB / secs);
    Ok(())
}

/// The agent's copy: a fresh controller and agent, one upload job.
async fn agent(
    args: &Args,
    s3: &S3Server,
    file: &Path,
    dumps: &Path,
    pw: &Path,
    s: &mut Series,
) -> Result<()> {
    let mut b = Bench::start(args, "").await?;
    let extra = format!(
        "[connections.main]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n\
         password_file = \"{}\"\ndump_dir = \"{}\"\n\n\
         [stores.bench]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{BUCKET}\"\n\
         prefix = \"agent\"\npath_style = true\naccess_key_file = \"{}\"\nsecret_key_file = \"{}\"\n{}",
        pw.display(),
        dumps.display(),
        s3.url,
        s3.access_key_file().display(),
        s3.secret_key_file().display(),
        transfer_keys(args),
    );
    b.add_agent_with(1, &extra).await?;
    b.wait_online(1).await?;
    let pid = b.agents[0]
        .proc
        .as_ref()
        .and_then(|p| p.pid())
        .context("agent is not running")?
        .as_raw();
    s.push(
        "agent VmHWM before the job",
        peak_rss_kb(pid)? as f64 / 1024.0,
    );
    let job = b
        .api
        .submit(json!({
            "group": GROUP,
            "spec": {"kind": "upload", "store": "bench", "file": file.display().to_string()},
            "retry": {"max_attempts": 1},
        }))
        .await?;
    let done = b.api.wait_terminal(job.id, WAIT).await?;
    if done.state != JobState::Succeeded {
        bail!("the upload job ended {:?}: {:?}", done.state, done.error);
    }
    s.push("agent peak RSS (VmHWM)", peak_rss_kb(pid)? as f64 / 1024.0);
    let log = b.agents[0].log_text();
    let at = |what: &str| line_time(&log, what, job.id);
    let (start, end) = (at("Upload starting")?, at("Upload done")?);
    let secs = ms_between(start, end) / 1000.0;
    s.push(AGENT, SIZE as f64 / MIB / secs);
    b.check_alive()
}

/// The store's transfer keys `--parts` and `--part-mb` ask for (none: the
/// agent's defaults).
fn transfer_keys(args: &Args) -> String {
    let mut keys = String::new();
    if let Some(n) = args.parts {
        keys.push_str(&format!("concurrency = {n}\n"));
    }
    if let Some(mb) = args.part_mb {
        keys.push_str(&format!("part_size_mb = {mb}\n"));
    }
    keys
}

/// The timestamp of the agent log line with `message` for job `id`.
fn line_time(log: &str, message: &str, id: JobId) -> Result<DateTime<Utc>> {
    let field = format!("job_id={id}");
    log.lines()
        .filter(|l| l.contains(message) && l.split_whitespace().any(|w| w == field))
        .find_map(|l| l.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no `{message}` line for job {id} in the agent's log"))
}
