//! Checks the module layering written in `src/lib.rs`: dependencies point one way, from the
//! network edge down to storage. A `use crate::x` (or `crate::x::` path) in a module that may
//! not import `x` fails this test.

use std::path::Path;

/// Base modules: any module may import them, and they import nothing from the crate
/// (`metrics` may import `config` only; `config` imports nothing).
const BASE: &[&str] = &["config", "metrics"];

/// (module, modules it may import besides the base modules).
const ALLOWED: &[(&str, &[&str])] = &[
    ("record_batch", &[]),
    ("protocol", &["record_batch"]),
    ("runtime", &[]),
    ("storage", &["record_batch", "runtime"]),
    ("controller", &["storage", "runtime", "protocol", "security"]),
    ("group", &["storage", "runtime", "protocol", "record_batch"]),
    ("txn", &["protocol"]),
    ("security", &["protocol"]),
    ("bench", &["protocol", "record_batch", "runtime", "security"]),
    ("client", &["protocol", "record_batch", "security"]),
    ("config", &[]),
    ("metrics", &[]),
];

const MODULES: &[&str] = &[
    "config",
    "record_batch",
    "protocol",
    "runtime",
    "storage",
    "controller",
    "group",
    "txn",
    "security",
    "server",
    "bench",
    "client",
    "metrics",
];

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if !path.exists() {
        return;
    }
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn modules_import_only_what_lib_rs_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (module, allowed) in ALLOWED {
        let mut files = Vec::new();
        sources(&src.join(module), &mut files);
        sources(&src.join(format!("{module}.rs")), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let is_base = BASE.contains(module);
            for other in MODULES.iter().filter(|m| *m != module) {
                // Other modules may use the base ones; a base module uses none but `config`.
                if *other == "config" || (!is_base && BASE.contains(other)) {
                    continue;
                }
                let used = text.contains(&format!("crate::{other}::"))
                    || text.contains(&format!("crate::{other};"))
                    || text.contains(&format!("crate::{{{other}"));
                if used && !allowed.contains(other) {
                    violations.push(format!("{} imports crate::{other}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn no_line_is_longer_than_100_columns() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .enumerate()
                .filter(|(_, l)| l.chars().count() > 100)
                .map(|(i, _)| format!("{}:{}", f.display(), i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(long.is_empty(), "lines over 100 columns:\n{}", long.join("\n"));
}
