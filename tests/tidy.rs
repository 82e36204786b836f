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
    ("share", &["protocol"]),
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
    "share",
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

// ---- RefCell borrows and spawn_local -------------------------------------------------------
//
// glommio's `spawn_local` polls the new task at once, inside the caller: a `RefCell` borrow
// the caller holds across the call is still held while the new task runs, and the task's own
// borrow panics (issue 15: `reschedule()` held the groups' `borrow_mut()` while spawning a
// timer already due, whose `on_timer` borrowed them again). clippy's
// `await_holding_refcell_ref` (denied in Cargo.toml) covers borrows held across `.await`; this
// check covers spawns. It is textual and pragmatic, not a borrow checker:
//
// * a guard is a `let x = <expr>.borrow();` / `.borrow_mut();` binding, live until `drop(x)`
//   or the end of its block; a `.borrow()` in the scrutinee of `match`, `if let`, `while let`
//   or `for` is live for that whole block (edition 2021 temporary scopes);
// * a spawn is `spawn_local(`, `spawn_local_into(` or `spawn_contained(`, or a call
//   `self.f(` of a method `f` of the same file that (transitively, within the file) spawns;
// * flagged: a spawn while a guard is live, or in a statement that also borrows (the
//   temporary lives until the end of the statement).
//
// It cannot see a guard passed to another function, a spawn behind a call into another
// file, or borrows through other names (`Ref::map`, `try_borrow`); review those by hand.

/// The source with comments, and the contents of string and char literals, blanked out
/// (newlines kept, so positions map to the same lines).
fn code_only(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in out.iter_mut().take(to).skip(from) {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            let end = (i..chars.len()).find(|&j| chars[j] == '\n').unwrap_or(chars.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(&['/', '*']) {
            let end = (i + 2..chars.len())
                .find(|&j| chars[j - 1] == '*' && chars[j] == '/')
                .map_or(chars.len(), |j| j + 1);
            blank(&mut out, i, end);
            i = end;
        } else if chars[i] == 'r'
            && (rest.starts_with(&['r', '"']) || rest.starts_with(&['r', '#']))
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                i += 1;
                continue;
            }
            let start = i + 2 + hashes;
            let mut j = start;
            while j < chars.len() {
                if chars[j] == '"' && chars[j + 1..].iter().take(hashes).all(|c| *c == '#') {
                    break;
                }
                j += 1;
            }
            blank(&mut out, start, j);
            i = j + 1 + hashes;
        } else if chars[i] == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(chars.len()));
            i = j + 1;
        } else if chars[i] == '\'' {
            // A char literal ('x', '\n', '\u{7f}'), or a lifetime ('a) left alone.
            if rest.get(1) == Some(&'\\') {
                let end = (i + 2..chars.len()).find(|&j| chars[j] == '\'').unwrap_or(i + 1);
                blank(&mut out, i + 1, end);
                i = end + 1;
            } else if rest.get(2) == Some(&'\'') {
                blank(&mut out, i + 1, i + 2);
                i += 3;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

const SPAWNS: &[&str] = &["spawn_local(", "spawn_local_into(", "spawn_contained("];

/// A live borrow: the binding's name (empty for a scrutinee's temporary) and the block depth
/// it lives in.
struct Guard {
    name: String,
    depth: usize,
    line: usize,
}

/// The `let` name bound by `stmt` when it binds a `RefCell` guard.
fn guard_binding(stmt: &str) -> Option<String> {
    let stmt = stmt.trim();
    let rest = stmt.strip_prefix("let ")?;
    if !(stmt.ends_with(".borrow()") || stmt.ends_with(".borrow_mut()")) {
        return None;
    }
    let rest = rest.trim_start().strip_prefix("mut ").unwrap_or(rest).trim_start();
    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

fn borrows(stmt: &str) -> bool {
    stmt.contains(".borrow()") || stmt.contains(".borrow_mut()")
}

/// Whether a block header keeps its scrutinee's temporaries for the whole block.
fn scrutinee_lives_in_block(header: &str) -> bool {
    let h = header.trim();
    let h = h.strip_prefix("let ").map_or(h, |rest| rest.split_once('=').map_or("", |x| x.1));
    let h = h.trim_start();
    h.starts_with("match ")
        || h.starts_with("if let ")
        || h.starts_with("while let ")
        || h.starts_with("for ")
        || h.contains(" match ")
}

/// Names of the methods defined in `code` whose bodies spawn (directly, or through a `self.`
/// call of another such method of the same code).
fn spawning_methods(code: &str) -> Vec<String> {
    let mut bodies: Vec<(String, String)> = Vec::new();
    let mut search = 0;
    while let Some(at) = code[search..].find("fn ") {
        let start = search + at + 3;
        search = start;
        if start > 3 && code[..start - 3].chars().last().is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        let name: String =
            code[start..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let Some(open) = code[start..].find(['{', ';']).map(|o| start + o) else { break };
        if !code[open..].starts_with('{') {
            continue;
        }
        let mut depth = 0;
        let mut end = open;
        for (k, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        bodies.push((name, code[open..end].to_owned()));
    }
    let mut spawning: Vec<String> = Vec::new();
    loop {
        let before = spawning.len();
        for (name, body) in &bodies {
            let calls_one = spawning.iter().any(|s| body.contains(&format!("self.{s}(")));
            if !spawning.contains(name) && (SPAWNS.iter().any(|s| body.contains(s)) || calls_one) {
                spawning.push(name.clone());
            }
        }
        if spawning.len() == before {
            return spawning;
        }
    }
}

/// Every place in `text` where a spawn happens while a `RefCell` borrow may be live.
fn borrows_across_spawns(text: &str) -> Vec<(usize, String)> {
    let code: String = code_only(text).into_iter().collect();
    let spawning = spawning_methods(&code);
    let spawns_in = |stmt: &str| {
        SPAWNS.iter().any(|s| stmt.contains(s))
            || spawning.iter().any(|m| stmt.contains(&format!("self.{m}(")))
    };
    let mut found = Vec::new();
    let mut guards: Vec<Guard> = Vec::new();
    let (mut depth, mut line, mut stmt_line) = (0usize, 1usize, 1usize);
    let mut stmt = String::new();
    for c in code.chars() {
        if c == '\n' {
            line += 1;
        }
        if !matches!(c, ';' | '{' | '}') {
            if stmt.trim().is_empty() {
                stmt_line = line;
            }
            stmt.push(c);
            continue;
        }
        if spawns_in(&stmt) {
            if let Some(g) = guards.last() {
                let held = if g.name.is_empty() { "a scrutinee's borrow" } else { &g.name };
                found.push((stmt_line, format!("spawn while {held} (line {}) is live", g.line)));
            } else if borrows(&stmt) {
                found.push((stmt_line, "spawn in a statement that borrows".to_owned()));
            }
        }
        match c {
            ';' => {
                if let Some(name) = guard_binding(&stmt) {
                    guards.push(Guard { name, depth, line: stmt_line });
                }
                let dropped = stmt.trim().strip_prefix("drop(").and_then(|r| r.strip_suffix(')'));
                if let Some(name) = dropped {
                    guards.retain(|g| g.name != name.trim());
                }
            }
            '{' => {
                depth += 1;
                if borrows(&stmt) && scrutinee_lives_in_block(&stmt) {
                    guards.push(Guard { name: String::new(), depth, line: stmt_line });
                }
            }
            _ => {
                depth = depth.saturating_sub(1);
                guards.retain(|g| g.depth <= depth);
            }
        }
        stmt.clear();
    }
    found
}

#[test]
fn no_refcell_borrow_is_held_across_a_spawn() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, what) in borrows_across_spawns(&text) {
            violations.push(format!("{}:{line}: {what}", file.display()));
        }
    }
    assert!(
        violations.is_empty(),
        "RefCell borrows live across a spawn:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_spawn_check_finds_what_it_documents() {
    // issue 15's bug, in miniature: a guard live while a method of the file spawns.
    let reschedule = r#"
        impl C {
            fn reschedule(&self) {
                let mut groups = self.groups.borrow_mut();
                let task = glommio::spawn_local(async move { on_timer("}").await });
                groups.insert(1, task);
            }
            fn heartbeat(&self) { let g = self.groups.borrow_mut(); self.reschedule(); }
            fn fine(&self) {
                let n = { let g = self.groups.borrow(); g.len() };
                let g = self.groups.borrow_mut();
                drop(g);
                spawn_local(async {});
                if let Some(x) = self.groups.borrow_mut().get_mut(&1) { x.touch(); }
                spawn_local(async {});
                match self.groups.borrow().get(&1) { Some(_) => spawn_local(async {}), None => {} }
                spawn_local(run(self.groups.borrow().len()));
            }
        }
    "#;
    let found: Vec<usize> = borrows_across_spawns(reschedule).into_iter().map(|f| f.0).collect();
    assert_eq!(found, vec![5, 8, 16, 17], "{:?}", borrows_across_spawns(reschedule));
}
