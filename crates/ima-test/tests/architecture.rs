//! ARCHITECTURE.md's workspace invariants, checked against the sources and manifests:
//! - only `ima-sys` has `unsafe`, FFI and the raw-syscall crates (`libc`, `rustix`, `nix`);
//!   the other crates do their I/O through `std` and `ima-sys` (test code and this fixture
//!   crate, never shipped, may use `rustix` too);
//! - every crate but `ima-sys` takes the workspace lints (`unsafe_code = "forbid"`);
//! - every `[workspace.dependencies]` entry is used by a member or the fuzz crate.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};

const RAW: [&str; 3] = ["libc", "rustix", "nix"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn members() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| (p.file_name().unwrap().to_str().unwrap().to_owned(), p))
        .collect();
    out.sort();
    assert!(out.len() >= 6, "too few crates found: {out:?}");
    out
}

/// The lines of a manifest section (`[dependencies]`), up to the next section.
fn section<'a>(manifest: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("[{name}]");
    manifest
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect()
}

fn dep_name(line: &str) -> &str {
    line.split(['.', '=', ' ']).next().unwrap_or("").trim()
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines of non-test code in `src/` that use `unsafe`, FFI or a raw-syscall crate.
fn raw_uses(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let mut hits = Vec::new();
    for f in files {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        for (i, line) in fs::read_to_string(&f).unwrap().lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[cfg(test)]") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            let words: Vec<&str> = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .collect();
            let raw = words.iter().any(|w| {
                RAW.iter()
                    .any(|r| w.starts_with(&format!("{r}::")) || w.starts_with(&format!("::{r}::")))
            });
            if raw || words.contains(&"unsafe") || code.contains("extern \"C\"") {
                hits.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    hits
}

#[test]
fn only_ima_sys_has_unsafe_and_raw_syscalls() {
    for (name, dir) in members() {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        if name == "ima-sys" {
            // The checker finds what is there: ima-sys does use them.
            assert!(!raw_uses(&dir.join("src")).is_empty());
            continue;
        }
        let lints = section(&manifest, "lints");
        assert!(
            lints.iter().any(|l| l.replace(' ', "") == "workspace=true"),
            "{name}: [lints] workspace = true (unsafe_code = \"forbid\") is missing"
        );
        assert!(
            !manifest.contains("unsafe_code"),
            "{name} overrides unsafe_code"
        );
        if name == "ima-test" {
            continue; // test fixtures, never shipped: rustix for socketpairs
        }
        for line in section(&manifest, "dependencies") {
            assert!(
                !RAW.contains(&dep_name(line)),
                "{name} depends on {} (only ima-sys may): {line}",
                dep_name(line)
            );
        }
        let hits = raw_uses(&dir.join("src"));
        assert!(
            hits.is_empty(),
            "{name}: outside ima-sys:\n{}",
            hits.join("\n")
        );
    }
}

#[test]
fn the_checker_sees_raw_uses() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("a.rs"),
        "// libc::close in a comment\nfn f() { let _ = libc::getpid(); }\n\
         fn g() { unsafe { h() } }\n#[cfg(test)]\nmod tests { use rustix::fs; }\n",
    )
    .unwrap();
    let hits = raw_uses(dir.path());
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(
        hits[0].ends_with(":2: fn f() { let _ = libc::getpid(); }"),
        "{hits:?}"
    );
}

#[test]
fn every_workspace_dependency_is_used() {
    let ws = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut manifests: Vec<String> = members()
        .iter()
        .map(|(_, d)| fs::read_to_string(d.join("Cargo.toml")).unwrap())
        .collect();
    manifests.push(fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap());
    let declared: Vec<&str> = section(&ws, "workspace.dependencies")
        .into_iter()
        .map(dep_name)
        .collect();
    assert!(declared.len() > 20, "{declared:?}");
    let unused: Vec<&&str> = declared
        .iter()
        .filter(|d| {
            !manifests
                .iter()
                .any(|m| m.lines().any(|l| dep_name(l.trim_start()) == **d))
        })
        .collect();
    assert!(
        unused.is_empty(),
        "unused [workspace.dependencies]: {unused:?}"
    );
}
