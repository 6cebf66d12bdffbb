//! Layers only point down: every `crate::` path in the controller's and the
//! agent's non-test sources names a module of the same layer or a lower one,
//! and modules of one layer do not import each other in a circle.
//!
//! The layers are the tables below (ARCHITECTURE.md, "Layers"). A module that
//! is in no table fails the test: a new module is placed on purpose. Tests
//! (`tests.rs`, `*_tests.rs`, `testutil.rs`, the agent's fake controller) may
//! reach across layers to build their fixtures and are not checked.
//!
//! `BATON_LAYERS_PRINT=1 cargo test -p baton-tests --test layers -- --nocapture`
//! prints every import between modules with its layers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The controller: L0 plain building blocks, L1 the store, L2 services,
/// L3 the HTTP edge, L4 wiring.
const CONTROLLER: &[(&str, u8)] = &[
    ("clock", 0),
    ("config", 0),
    ("validate", 0),
    ("credentials", 0),
    ("logging", 0),
    ("pipeline", 0),
    ("trigger", 0),
    ("pki", 0),
    ("pgurl", 0),
    ("telemetry", 0),
    ("store", 1),
    ("dispatch", 2),
    ("presence", 2),
    ("notify", 2),
    ("placement", 2),
    ("jobs", 2),
    ("drills", 2),
    ("retention", 2),
    ("schedules", 2),
    ("services", 2),
    ("listener", 3),
    ("api", 3),
    ("ui", 3),
    ("server", 4),
];

/// The agent: L0 plain building blocks, L1 executors and (apart) the HTTP
/// transport, L2 the lease keeper and durable delivery, L3 one job's run and
/// the poll loop, L4 wiring and the process shell.
const AGENT: &[(&str, u8)] = &[
    ("backoff", 0),
    ("config", 0),
    ("secret", 0),
    ("shutdown", 0),
    ("logging", 0),
    ("fault", 0),
    ("tls", 0),
    ("identity", 0),
    ("objstore", 0),
    ("executor", 1),
    ("upload", 1),
    ("db", 1),
    ("transport", 1),
    ("lease", 2),
    ("outbox", 2),
    ("delivery", 2),
    ("runner", 3),
    ("poller", 3),
    ("enroll", 3),
    ("agent", 4),
    ("service", 4),
    ("cli", 4),
];

/// Pairs that must not know each other although the layers allow it:
/// executors never see HTTP, and the transport never sees executors.
const AGENT_APART: &[(&str, &str)] = &[
    ("executor", "transport"),
    ("db", "transport"),
    ("transport", "executor"),
    ("transport", "db"),
    ("upload", "transport"),
    ("transport", "upload"),
];

/// One `crate::` reference.
#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    file: String,
    line: usize,
    text: String,
}

fn src(crate_dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read source dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || name == "testutil.rs"
        || name == "fake_controller.rs"
        || rel.components().any(|c| c.as_os_str() == "tests")
}

/// The top-level module a file belongs to (`None`: a crate root or a binary).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    if rel.components().count() == 1 {
        let stem = first.strip_suffix(".rs")?;
        return (!matches!(stem, "lib" | "main")).then(|| stem.to_owned());
    }
    (first != "bin").then_some(first)
}

/// Code of a line without its comment (good enough for `crate::` paths).
fn code(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with("//") {
        return "";
    }
    match line.find("//") {
        Some(i) if !line[..i].contains('"') => &line[..i],
        _ => line,
    }
}

fn edges(root: &Path, crate_dir: &str) -> Vec<Edge> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(root).expect("under src").to_path_buf();
        if is_test_file(&rel) {
            continue;
        }
        let Some(from) = module_of(&rel) else {
            continue;
        };
        let text = fs::read_to_string(&path).expect("read source");
        // The code without comments and without `#[cfg(test)]` items (their
        // bodies live in test files), one entry per line.
        let mut lines: Vec<&str> = Vec::new();
        let mut skip_next = false;
        for line in text.lines() {
            let test_attr = line.trim_start().starts_with("#[cfg(test)]");
            lines.push(if test_attr || skip_next {
                ""
            } else {
                code(line)
            });
            skip_next = test_attr;
        }
        let joined = lines.join("\n");
        let line_of = |at: usize| joined[..at].matches('\n').count();
        let mut from_at = 0;
        while let Some(found) = joined[from_at..].find("crate::") {
            let at = from_at + found;
            from_at = at + "crate::".len();
            let before = &joined[..at];
            if before.ends_with(|ch: char| ch.is_alphanumeric() || ch == '_') {
                continue; // `baton_crate::` and the like
            }
            for name in names_after(&joined[from_at..]) {
                if name == from {
                    continue;
                }
                let line = line_of(at);
                out.push(Edge {
                    from: from.clone(),
                    to: name,
                    file: format!("{crate_dir}/src/{}", rel.display()),
                    line: line + 1,
                    text: text.lines().nth(line).unwrap_or("").trim().to_owned(),
                });
            }
        }
    }
    out
}

/// The top-level module names a path after `crate::` starts with: one for
/// `a::b`, each group member's first segment for `{a::b, c, d::{e, f}}`.
fn names_after(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        let name = ident(rest);
        return if name.is_empty() { vec![] } else { vec![name] };
    };
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut member_start = true;
    for (i, ch) in group.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => member_start = true,
            c if member_start && !c.is_whitespace() => {
                member_start = false;
                let name = ident(&group[i..]);
                if !name.is_empty() && name != "self" {
                    names.push(name);
                }
            }
            _ => {}
        }
    }
    names
}

/// Modules that are functions or items of the crate root (not modules).
fn is_root_item(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_uppercase()) || name == "install_crypto_provider"
}

fn check(
    root: &Path,
    crate_dir: &str,
    layers: &[(&str, u8)],
    apart: &[(&str, &str)],
) -> Vec<String> {
    let layer: BTreeMap<&str, u8> = layers.iter().copied().collect();
    let all = edges(root, crate_dir);
    let print = std::env::var("BATON_LAYERS_PRINT").is_ok_and(|v| v == "1");
    let mut bad = Vec::new();
    let mut same_layer: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &all {
        if is_root_item(&e.to) {
            continue;
        }
        let (Some(&lf), Some(&lt)) = (layer.get(e.from.as_str()), layer.get(e.to.as_str())) else {
            let unknown = if layer.contains_key(e.from.as_str()) {
                &e.to
            } else {
                &e.from
            };
            bad.push(format!(
                "{}:{}: module `{unknown}` has no layer (add it to the table in tests/tests/layers.rs and ARCHITECTURE.md): {}",
                e.file, e.line, e.text
            ));
            continue;
        };
        if print {
            println!(
                "L{lf} {} -> L{lt} {}   {}:{}: {}",
                e.from, e.to, e.file, e.line, e.text
            );
        }
        if lt > lf {
            bad.push(format!(
                "{}:{}: upward import, {} (L{lf}) -> {} (L{lt}): {}",
                e.file, e.line, e.from, e.to, e.text
            ));
        }
        if apart.contains(&(e.from.as_str(), e.to.as_str())) {
            bad.push(format!(
                "{}:{}: {} must not know {}: {}",
                e.file, e.line, e.from, e.to, e.text
            ));
        }
        if lt == lf {
            same_layer
                .entry(e.from.clone())
                .or_default()
                .insert(e.to.clone());
        }
    }
    // Circles within a layer: a module reaching itself again.
    for start in same_layer.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((m, path)) = stack.pop() {
            for next in same_layer.get(&m).into_iter().flatten() {
                // Each circle once: from its alphabetically first module.
                if next == start && path.iter().min() == Some(start) {
                    let lines: Vec<String> = all
                        .iter()
                        .filter(|e| {
                            path.contains(&e.from) && (path.contains(&e.to) || &e.to == start)
                        })
                        .map(|e| format!("    {}:{}: {}", e.file, e.line, e.text))
                        .collect();
                    bad.push(format!(
                        "import circle {} -> {start}:\n{}",
                        path.join(" -> "),
                        lines.join("\n")
                    ));
                } else if next != start && seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn controller_imports_only_point_down() {
    let bad = check(&src("controller"), "controller", CONTROLLER, &[]);
    assert!(
        bad.is_empty(),
        "{} violations:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn agent_imports_only_point_down() {
    let bad = check(&src("agent"), "agent", AGENT, AGENT_APART);
    assert!(
        bad.is_empty(),
        "{} violations:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn the_checker_finds_upward_imports_circles_and_unplaced_modules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    };
    write("lib.rs", "pub mod api;\npub mod store;\n");
    write(
        "store/mod.rs",
        "use crate::config::SyncMode;\nuse crate::api::ApiError;\n",
    );
    write("store/tests.rs", "use crate::server::run;\n");
    write(
        "api/mod.rs",
        "use crate::listener::PeerAddr; // crate::server\n",
    );
    write("listener.rs", "pub use crate::api::auth::Verified;\n");
    write("server.rs", "use crate::api::router;\n/// [`crate::x`]\n");
    write("widget.rs", "use crate::store::Store;\n");
    write(
        "validate.rs",
        "use crate::{\n    clock::now,\n    config::{A, B},\n    jobs::Jobs,\n};\n",
    );
    let bad = check(dir.path(), "c", CONTROLLER, &[]);
    let text = bad.join("\n");
    assert!(
        text.contains("c/src/store/mod.rs:2: upward import, store (L1) -> api (L3)"),
        "{text}"
    );
    assert!(
        text.contains("import circle api -> listener -> api"),
        "{text}"
    );
    assert!(text.contains("module `widget` has no layer"), "{text}");
    // A group import is read member by member (across lines).
    assert!(
        text.contains("c/src/validate.rs:1: upward import, validate (L0) -> jobs (L2)"),
        "{text}"
    );
    // Downward imports, tests, comments and doc links are not violations.
    assert_eq!(bad.len(), 4, "{text}");
    assert_eq!(
        names_after("{a::b, c, d::{e, f}, self}"),
        vec!["a", "c", "d"]
    );
}
