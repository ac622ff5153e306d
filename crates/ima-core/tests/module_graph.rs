//! ima-core's modules form a DAG: no module reaches back to one that builds on it (the
//! `appraise` ↔ `evm` and `xattr` ↔ `digsig` cycles ended with `integrity`). The graph is
//! read from the sources: every `crate::NAME` in non-comment, non-test code of a top-level
//! module's files (`src/NAME.rs`, `src/NAME/**`) is an edge to `NAME`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn ima_core_modules_are_acyclic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // The graph read is the real one: these edges exist (a parser that finds nothing passes
    // every acyclicity check).
    for (from, to) in [
        ("appraise", "integrity"),
        ("evm", "integrity"),
        ("xattr", "digsig"),
    ] {
        assert!(
            graph.get(from).is_some_and(|d| d.contains(to)),
            "expected edge {from} -> {to} in {graph:?}"
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle in ima-core: {}", cycle.join(" -> "));
    }
}

#[test]
fn cycle_finder_finds_cycles() {
    let g: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .into_iter()
        .fold(Graph::new(), |mut g, (f, t)| {
            g.entry(f.into()).or_default().insert(t.into());
            g
        });
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let mut dag = g.clone();
    dag.get_mut("c").map(|d| d.remove("a"));
    assert_eq!(find_cycle(&dag), None);
}

#[test]
fn edges_come_from_code_not_comments_or_tests() {
    let text = "//! see [`crate::zz::X`]\nuse crate::{aa::A, bb};\nfn f() { crate::cc::g() }\n\
                #[cfg(test)]\nmod tests { use crate::dd; }\n";
    let mut deps = BTreeSet::new();
    edges_in(text, &mut deps);
    assert_eq!(deps, ["aa", "bb", "cc"].map(String::from).into());
}

fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for entry in fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "rs") || name == "lib" {
            continue;
        }
        let mut files = vec![path.clone()];
        rs_files(&src.join(&name), &mut files);
        let deps = graph.entry(name.clone()).or_default();
        for f in files {
            if f.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            edges_in(&fs::read_to_string(&f).unwrap(), deps);
        }
        deps.remove(&name);
    }
    assert!(
        graph.len() >= 10,
        "too few modules found in {}: {graph:?}",
        src.display()
    );
    graph
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for entry in rd {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Adds the top-level modules `text` names through `crate::`, up to its `#[cfg(test)]`.
fn edges_in(text: &str, deps: &mut BTreeSet<String>) {
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    add_ident(item.trim(), deps);
                }
            } else {
                add_ident(rest, deps);
            }
        }
    }
}

fn add_ident(s: &str, deps: &mut BTreeSet<String>) {
    let id: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !id.is_empty() {
        deps.insert(id);
    }
}

/// A cycle as its node list (first node repeated at the end), by depth-first search.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}
