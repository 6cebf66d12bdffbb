//! Rules that hold for every statement of the SQLite backend.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, tests left out.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// Where `sql` binds a LIMIT or OFFSET to a bare parameter (`LIMIT ?`,
/// `LIMIT ?3`, `OFFSET $1`), which makes SQLite prepare the statement again
/// at every run (see the module header).
fn bare_bound_limits(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let upper = line.to_ascii_uppercase();
        for kw in ["LIMIT", "OFFSET"] {
            let mut rest = upper.as_str();
            while let Some(at) = rest.find(kw) {
                let after = rest[at + kw.len()..].trim_start();
                if after.starts_with('?') || after.starts_with('$') {
                    found.push(n + 1);
                }
                rest = &rest[at + kw.len()..];
            }
        }
    }
    found
}

#[test]
fn the_scan_sees_a_bare_bound_limit() {
    assert_eq!(bare_bound_limits("SELECT 1 LIMIT ?"), vec![1]);
    assert_eq!(bare_bound_limits("x\n ORDER BY id LIMIT  ?3\""), vec![2]);
    assert_eq!(bare_bound_limits("DELETE ... limit ?2)"), vec![1]);
    assert!(bare_bound_limits("SELECT 1 LIMIT +?3 OFFSET +?4").is_empty());
    assert!(bare_bound_limits("SELECT 1 LIMIT 1").is_empty());
}

#[test]
fn no_bare_bound_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/sqlite");
    let mut files = vec![root.with_extension("rs")];
    sources(&root, &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        for line in bare_bound_limits(&text) {
            bad.push(format!("{}:{line}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "write a bound LIMIT/OFFSET as `LIMIT +?N` (see store::sqlite's header): {bad:?}"
    );
}
