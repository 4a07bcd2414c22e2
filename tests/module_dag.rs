//! The crate's top-level modules form a DAG: no module reaches, directly or through others, back
//! into itself (issue 15). Checked from the source text: every `crate::X` path (in `use` lines,
//! grouped `use crate::{X, Y}` lists and inline paths), outside comments, strings and character
//! literals, is an edge from the module whose file holds it to `X`. Test code (`tests.rs` files,
//! `#[cfg(test)] mod … { … }` blocks) is left out: it is not part of the built crate.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → modules it refers to → where (file:line), first few places only.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

#[test]
fn top_level_modules_form_a_dag() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = crate_graph(&src);
    assert!(
        graph.len() > 5,
        "the checker found too few modules to mean anything: {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "{}", describe(&graph, &cycles));
}

/// Positive control: the cycle finder finds a cycle in a hand-made graph, and none in its DAG.
#[test]
fn cycle_finder_finds_a_hand_made_cycle() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "d")] {
        add_edge(&mut graph, from, to, "test:1".into());
    }
    let found = cycles(&graph);
    assert_eq!(found, vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    assert!(describe(&graph, &found).contains("c -> a (test:1)"));

    graph.get_mut("c").unwrap().remove("a");
    assert!(cycles(&graph).is_empty());
}

/// Positive control: the reader sees grouped, nested, inline and `pub(crate)` paths, and not
/// those in comments, strings or character literals.
#[test]
fn reader_finds_paths_the_way_rustc_would() {
    let text = r##"
        use crate::{alpha::A, beta::{self, B}};
        pub(crate) use crate::gamma;
        fn f() { crate::delta::go(); let c = '"'; let d = '\''; }
        // use crate::comment_line;
        /* crate::comment_block */
        const S: &str = "crate::in_string";
        const R: &str = r#"crate::in_raw "string""#;
        fn g<'a>(x: &'a str) -> &'a str { crate::epsilon::id(x) }
        #[cfg(test)]
        mod tests { use crate::in_tests; fn t() { if true { crate::also_in_tests::f(); } } }
        fn h() { crate::zeta::after_tests(); }
    "##;
    let found: BTreeSet<String> = referenced_modules(text)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    let want: BTreeSet<String> = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, want);
}

fn crate_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let Some(module) = top_module(rel) else {
            continue;
        };
        if rel.file_stem().is_some_and(|s| s == "tests") {
            continue;
        }
        graph.entry(module.clone()).or_default();
        let text = std::fs::read_to_string(&file).unwrap();
        for (target, line) in referenced_modules(&text) {
            if target != module {
                let at = format!("src/{}:{line}", rel.display());
                add_edge(&mut graph, &module, &target, at);
            }
        }
    }
    graph
}

fn add_edge(graph: &mut Graph, from: &str, to: &str, at: String) {
    graph.entry(to.to_string()).or_default();
    let places = graph
        .entry(from.to_string())
        .or_default()
        .entry(to.to_string())
        .or_default();
    if places.len() < 3 {
        places.push(at);
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// `pool/mod.rs` → `pool`, `limits.rs` → `limits`; the crate root and the binary are no module.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        _ => Some(first.trim_end_matches(".rs").to_string()),
    }
}

/// Every `crate::X` in `text`, with its line, skipping comments, strings and char literals.
fn referenced_modules(text: &str) -> Vec<(String, usize)> {
    let code = without_test_modules(&code_only(text));
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(pos) = code[at..].find("crate::") {
        let start = at + pos;
        at = start + "crate::".len();
        let preceded_by_ident = start > 0 && is_ident(bytes[start - 1]);
        if preceded_by_ident {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        let rest = code[at..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            for name in group_heads(group) {
                found.push((name, line));
            }
        } else if let Some(name) = leading_ident(rest) {
            found.push((name, line));
        }
    }
    found
}

/// `code` (already without comments and strings) with each `#[cfg(test)] mod name { … }` blanked.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(pos) = out[from..].find("#[cfg(test)]") {
        let start = from + pos;
        from = start + 1;
        let after = out[start + "#[cfg(test)]".len()..].trim_start();
        let Some(rest) = after.strip_prefix("mod") else {
            continue;
        };
        let name_end = rest.trim_start();
        let Some(name) = leading_ident(name_end) else {
            continue;
        };
        if !name_end[name.len()..].trim_start().starts_with('{') {
            continue; // `mod tests;`: a file of its own, skipped by name
        }
        let open = start + out[start..].find('{').unwrap();
        let mut depth = 0;
        let mut end = out.len();
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blanked: String = out[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(start..end, &blanked);
    }
    out
}

/// The first path segment of each item of a `{…}` group (its text after the `{`).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                item_start = false;
                if let Some(name) = leading_ident(&group[i..]) {
                    if name != "self" {
                        heads.push(name);
                    }
                }
            }
            _ => {}
        }
    }
    heads
}

fn leading_ident(s: &str) -> Option<String> {
    let end = s.bytes().position(|b| !is_ident(b)).unwrap_or(s.len());
    (end > 0).then(|| s[..end].to_string())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `text` with comments, string and character literals blanked (newlines kept, for line numbers).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend(bytes.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            block_comment_end(b, i)
        } else if let Some(end) = raw_string_end(b, i) {
            end
        } else if rest[0] == b'"' {
            quoted_end(b, i, b'"')
        } else if rest[0] == b'\'' {
            char_literal_end(b, i).unwrap_or(i + 1)
        } else {
            out.push(b[i]);
            i += 1;
            continue;
        };
        blank(&mut out, &b[i..end]);
        i = end;
    }
    String::from_utf8(out).unwrap()
}

fn block_comment_end(b: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < b.len() {
        if &b[i..i + 2] == b"/*" {
            depth += 1;
            i += 2;
        } else if &b[i..i + 2] == b"*/" {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `r"…"`, `r#"…"#`, `br"…"` starting at `start` (not inside an identifier).
fn raw_string_end(b: &[u8], start: usize) -> Option<usize> {
    if start > 0 && is_ident(b[start - 1]) {
        return None;
    }
    let mut i = start;
    if b.get(i) == Some(&b'b') {
        i += 1;
    }
    if b.get(i) != Some(&b'r') {
        return None;
    }
    i += 1;
    let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
    i += hashes;
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut closing = vec![b'"'];
    closing.extend(std::iter::repeat_n(b'#', hashes));
    let body = i + 1;
    let found = b[body..]
        .windows(closing.len())
        .position(|w| w == closing.as_slice());
    Some(found.map_or(b.len(), |p| body + p + closing.len()))
}

fn quoted_end(b: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// `'x'`, `'\n'`, `'\''`, `'\u{..}'`; `None` for a lifetime or label (`'a`).
fn char_literal_end(b: &[u8], start: usize) -> Option<usize> {
    if b.get(start + 1) == Some(&b'\\') {
        return Some(quoted_end(b, start, b'\''));
    }
    // One character (up to 4 bytes of UTF-8) then the closing quote.
    (2..=5)
        .find(|&n| {
            b.get(start + n) == Some(&b'\'')
                && std::str::from_utf8(&b[start + 1..start + n])
                    .is_ok_and(|s| s.chars().count() == 1)
        })
        .map(|n| start + n + 1)
}

/// The strongly connected components with more than one module (Tarjan), each sorted, listed
/// in order.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let graph = self.graph;
            for w in graph[v].keys() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// Each cycle's modules and the references that tie them together.
fn describe(graph: &Graph, cycles: &[Vec<String>]) -> String {
    let mut s = format!(
        "{} import cycle(s) between top-level modules:\n",
        cycles.len()
    );
    for component in cycles {
        s.push_str(&format!("cycle: {}\n", component.join(", ")));
        for from in component {
            for (to, places) in &graph[from] {
                if component.contains(to) {
                    s.push_str(&format!("  {from} -> {to} ({})\n", places.join(", ")));
                }
            }
        }
    }
    s
}
