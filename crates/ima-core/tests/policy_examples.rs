//! Every rule example of the kernel's ABI document and of our specification parses (strict
//! kernel mode) and round-trips through the read-back format.

#![allow(clippy::unwrap_used)] // test code

use std::path::{Path, PathBuf};

use ima_core::policy::{ParseOptions, Policy, PolicyErrorKind, Rule};

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/policies")
}

fn rules_of(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| (i + 1, l))
        .collect()
}

fn check_all(file: &str, expect_rejected: &[&str]) -> usize {
    let text = std::fs::read_to_string(policies().join(file)).unwrap();
    let mut n = 0;
    for (line, l) in rules_of(&text) {
        let parsed = ima_core::policy::parse::parse_rule(l, line, &ParseOptions::strict());
        if expect_rejected.contains(&l) {
            let e = parsed.unwrap_err();
            assert!(
                matches!(e.kind, PolicyErrorKind::UnknownTemplate(_)),
                "{file}:{e}"
            );
            continue;
        }
        let r = parsed.unwrap_or_else(|e| panic!("{file}:{e}"));
        assert_eq!(Rule::parse(&r.to_string()).unwrap(), r, "{file}:{line}");
        n += 1;
    }
    n
}

#[test]
fn abi_document_examples_parse() {
    // The ABI document names `template=ima-sigv3`, which no kernel defines.
    let bad = ["measure func=BPRM_CHECK digest_type=verity template=ima-sigv3"];
    assert_eq!(check_all("abi-ima_policy-examples.policy", &bad), 42);
}

#[test]
fn specification_examples_parse() {
    assert_eq!(check_all("kernel-ima-md-examples.policy", &[]), 48);
}

#[test]
fn capture_policy_parses_strictly() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/kernel-6.1/d-custom-policy-ngv2-buf/policy.written");
    let text = std::fs::read_to_string(p).unwrap();
    let policy = Policy::parse_with(&text, &ParseOptions::strict()).unwrap();
    assert_eq!(policy.len(), 20);
    // Read-back order is fixed (pcr= before uid=), not the order written.
    assert_eq!(
        policy.rules[18].rule.to_string(),
        "measure func=FILE_CHECK mask=MAY_READ pcr=11 uid=0 fowner=1000 template=ima-ng "
    );
}
