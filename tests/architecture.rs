//! The dependency rules of `docs/ARCHITECTURE.md`, checked on the source: no import cycle
//! between files, and top-level modules only import layers below their own.
//!
//! `cargo modules dependencies --acyclic` does the same with rust-analyzer, but building it
//! takes longer than the whole suite on a CI machine, so this test reads `src/` itself: it
//! lexes each file (comments and string literals removed), expands `use` trees, and resolves
//! every `crate::`/`super::`/`self::` path to the deepest module that is a file. A `mod x;`
//! declaration is ownership, not a dependency; a `pub use` re-export is a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first. A top-level module may import only modules of a lower layer.
const LAYERS: &[&[&str]] = &[
    // Protocol core and process-wide facades that import nothing of the crate.
    &["rtmp", "metrics", "tls"],
    // Media: registry, fan-out, sinks and sources; the state store.
    &["media", "state"],
    &["config"],
    // The Wasm application host.
    &["apps"],
    // The gateway core: state and operations on it (streams, clients, kick, stats, reload).
    &["gateway"],
    // The connection driver (one RTMP session over any byte stream) and the test client.
    &["driver", "client"],
    // RTMP relays between nodes (push, pull): the RTMP client over the gateway core.
    &["relay"],
    // Transports, listeners and views.
    &["tunnel", "admin", "web"],
    // Listeners and wiring.
    &["server"],
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Colons,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

/// Tokens of a Rust source with comments, strings and char literals dropped, with line numbers.
fn lex(src: &str) -> Vec<(Tok, usize)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if b[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    if i < b.len() && b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push((Tok::Other, line));
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && raw_string_at(b, i) => {
                let mut j = i + 1;
                let mut hashes = 0;
                while b[j] == b'#' {
                    hashes += 1;
                    j += 1;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&h| h == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    if b[j] == b'\n' {
                        line += 1;
                    }
                    j += 1;
                }
                i = j;
                out.push((Tok::Other, line));
            }
            b'\'' => {
                // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                    i += 1;
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
                out.push((Tok::Other, line));
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push((Tok::Colons, line));
                i += 2;
            }
            b'{' => {
                out.push((Tok::Open, line));
                i += 1;
            }
            b'}' => {
                out.push((Tok::Close, line));
                i += 1;
            }
            b',' => {
                out.push((Tok::Comma, line));
                i += 1;
            }
            b';' => {
                out.push((Tok::Semi, line));
                i += 1;
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let s = i;
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                // A byte string b"..." or raw identifier r#x: the prefix is not an identifier.
                let word = &src[s..i];
                if word == "b" && b.get(i) == Some(&b'"') {
                    continue;
                }
                if word == "br" && matches!(b.get(i), Some(b'"') | Some(b'#')) {
                    i -= 1; // let the raw-string arm take it from the `r`
                    continue;
                }
                out.push((Tok::Ident(word.to_owned()), line));
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                out.push((Tok::Other, line));
                i += 1;
            }
        }
    }
    out
}

fn raw_string_at(b: &[u8], i: usize) -> bool {
    // `r"` or `r#...#"`, not an identifier that starts with r.
    if i > 0 && (b[i - 1] == b'_' || b[i - 1].is_ascii_alphanumeric()) {
        return false;
    }
    let mut j = i + 1;
    while j < b.len() && b[j] == b'#' {
        j += 1;
    }
    j < b.len() && b[j] == b'"'
}

/// One path a file refers to: its segments (first is `crate`, `super` or `self`) and line.
struct PathRef {
    segs: Vec<String>,
    line: usize,
    /// Inline modules (`mod tests { .. }`) the path sits in, for `super::` resolution.
    inline_depth: usize,
}

/// Expands a path (or a `use` tree) starting at `toks[i]`; returns the index after it.
fn parse_path(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: Vec<String>,
    depth: usize,
    out: &mut Vec<PathRef>,
) -> usize {
    let mut segs = prefix;
    let line = toks[i].1;
    loop {
        match toks.get(i) {
            Some((Tok::Ident(s), _)) => {
                segs.push(s.clone());
                i += 1;
                if toks.get(i).map(|t| &t.0) == Some(&Tok::Colons) {
                    i += 1;
                    continue;
                }
                break;
            }
            Some((Tok::Open, _)) => {
                i += 1;
                while i < toks.len() {
                    match &toks[i].0 {
                        Tok::Close => {
                            i += 1;
                            return i;
                        }
                        Tok::Comma => i += 1,
                        Tok::Ident(_) | Tok::Open => {
                            i = parse_path(toks, i, segs.clone(), depth, out);
                        }
                        _ => i += 1,
                    }
                }
                return i;
            }
            _ => break,
        }
    }
    // `self` inside a group means the group's prefix itself.
    if segs.last().map(String::as_str) == Some("self") && segs.len() > 1 {
        segs.pop();
    }
    out.push(PathRef {
        segs,
        line,
        inline_depth: depth,
    });
    i
}

/// Every crate-relative path in one file.
fn paths_in(src: &str) -> Vec<PathRef> {
    let toks = lex(src);
    let mut out = Vec::new();
    // Brace depths at which inline modules opened.
    let mut inline: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let prev_is_colons = i > 0 && toks[i - 1].0 == Tok::Colons;
        match &toks[i].0 {
            Tok::Open => {
                braces += 1;
                i += 1;
            }
            Tok::Close => {
                braces = braces.saturating_sub(1);
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some((Tok::Ident(_), _)), Some((Tok::Open, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push(braces);
                    braces += 1;
                    i += 3;
                } else {
                    i += 1;
                }
            }
            // `crate::`, `super::`, `self::`, or a path that may start with a child module
            // (`use host::ClientMeta`, `engine::Module`); the graph keeps only those that
            // resolve to a module file.
            Tok::Ident(_)
                if !prev_is_colons && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Colons) =>
            {
                let before = out.len();
                let next = parse_path(&toks, i, Vec::new(), inline.len(), &mut out);
                // Braces inside a use tree are balanced by parse_path.
                debug_assert!(out.len() >= before);
                i = next.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// `src/a/b.rs` -> `["a", "b"]`; `src/a/mod.rs` -> `["a"]`; `src/lib.rs` -> `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs").to_owned();
    if stem != "mod" && stem != "lib" {
        parts.push(stem);
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            // `src/bin/` holds separate binaries that use the library from outside.
            if p.file_name().is_some_and(|n| n == "bin") && p.parent() == Some(&src_dir()) {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs")
            && !(p.parent() == Some(&src_dir()) && p.file_name().is_some_and(|n| n == "main.rs"))
        {
            out.push(p);
        }
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// An import edge: from module, to module, and where (file:line) it was seen first.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn build_graph() -> Graph {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| {
            (
                module_of(f.strip_prefix(&src).expect("under src")),
                f.clone(),
            )
        })
        .collect();
    let mut graph = Graph::new();
    for (module, file) in &modules {
        let name = module.join("::");
        graph.entry(name.clone()).or_default();
        let text = std::fs::read_to_string(file).expect("read source");
        for p in paths_in(&text) {
            // Where the path starts: the crate root, or this module (plus inline modules).
            let mut base: Vec<String> = module.clone();
            for _ in 0..p.inline_depth {
                base.push("<inline>".into());
            }
            let mut segs = p.segs.iter().peekable();
            match segs.peek().map(|s| s.as_str()) {
                Some("crate") => {
                    base.clear();
                    segs.next();
                }
                Some("self") | Some("super") => {
                    if segs.peek().map(|s| s.as_str()) == Some("self") {
                        segs.next();
                    }
                }
                // A relative path: only a child module of this file counts (anything else is
                // an external crate, a type or a variable).
                Some(first) => {
                    let mut child = module.clone();
                    child.push(first.to_owned());
                    if p.inline_depth > 0 || !modules.contains_key(&child) {
                        continue;
                    }
                }
                None => continue,
            }
            while segs.peek().map(|s| s.as_str()) == Some("super") {
                base.pop();
                segs.next();
            }
            let mut target = base;
            target.extend(segs.cloned());
            // The deepest prefix that is a file module (items and inline modules are not).
            while !target.is_empty() && !modules.contains_key(&target) {
                target.pop();
            }
            let to = target.join("::");
            if to != name {
                let at = format!(
                    "{}:{}",
                    file.strip_prefix(&src).expect("under src").display(),
                    p.line
                );
                graph
                    .entry(name.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(at);
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        on: BTreeSet<&'a str>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(st: &mut St<'a>, v: &'a str) {
        st.index.insert(v, st.next);
        st.low.insert(v, st.next);
        st.next += 1;
        st.stack.push(v);
        st.on.insert(v);
        let g = st.g;
        for w in g.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !st.index.contains_key(w) {
                visit(st, w);
                let lw = st.low[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if st.on.contains(w) {
                let iw = st.index[w];
                let lv = st.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                st.out.push(comp);
            }
        }
    }
    let mut st = St {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !st.index.contains_key(v.as_str()) {
            visit(&mut st, v);
        }
    }
    st.out
}

fn describe_cycle(graph: &Graph, comp: &[String]) -> String {
    let set: BTreeSet<&String> = comp.iter().collect();
    let mut lines = vec![format!("cycle among {}:", comp.join(", "))];
    for from in comp {
        for (to, at) in &graph[from] {
            if set.contains(to) {
                lines.push(format!("  {from} -> {to}  ({at})"));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn no_import_cycle_between_files() {
    let graph = build_graph();
    assert!(graph.len() > 20, "found only {} modules", graph.len());
    let found = cycles(&graph);
    let report: Vec<String> = found.iter().map(|c| describe_cycle(&graph, c)).collect();
    assert!(
        found.is_empty(),
        "import cycles (break them; see docs/ARCHITECTURE.md):\n{}",
        report.join("\n")
    );
}

#[test]
fn top_level_modules_import_only_lower_layers() {
    let graph = build_graph();
    let layer_of = |m: &str| {
        let top = m.split("::").next().unwrap_or_default();
        LAYERS
            .iter()
            .position(|l| l.contains(&top))
            .map(|n| (n, top.to_owned()))
    };
    let mut bad = Vec::new();
    for (from, tos) in &graph {
        if from.is_empty() {
            continue; // lib.rs declares the modules
        }
        let Some((lf, tf)) = layer_of(from) else {
            bad.push(format!("{from}: top-level module not in a layer of LAYERS"));
            continue;
        };
        for (to, at) in tos {
            if to.is_empty() {
                bad.push(format!("{from} -> crate root ({at})"));
                continue;
            }
            let Some((lt, tt)) = layer_of(to) else {
                continue; // reported as its own entry
            };
            if tf != tt && lt >= lf {
                bad.push(format!(
                    "{from} (layer {lf}) -> {to} (layer {lt})  ({at}): imports must point down"
                ));
            }
        }
    }
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_sees_use_trees_super_and_inline_modules() {
    let src = r#"
        use crate::{a::{b, c::D}, e};
        use super::f::G;
        pub use child::Thing;
        fn x() { let s = "crate::not::a::path"; crate::h::i(); } // crate::comment
        mod tests { use super::*; use super::super::j; }
    "#;
    let got: Vec<(String, usize)> = paths_in(src)
        .into_iter()
        .map(|p| (p.segs.join("::"), p.inline_depth))
        .collect();
    let want = [
        ("crate::a::b", 0),
        ("crate::a::c::D", 0),
        ("crate::e", 0),
        ("super::f::G", 0),
        ("child::Thing", 0),
        ("crate::h::i", 0),
        ("super", 1),
        ("super::super::j", 1),
    ];
    let want: Vec<(String, usize)> = want.iter().map(|(s, d)| (s.to_string(), *d)).collect();
    assert_eq!(got, want);
    let mut g = Graph::new();
    g.entry("a".into())
        .or_default()
        .insert("b".into(), "x".into());
    g.entry("b".into())
        .or_default()
        .insert("a".into(), "y".into());
    g.entry("c".into())
        .or_default()
        .insert("a".into(), "z".into());
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
}
