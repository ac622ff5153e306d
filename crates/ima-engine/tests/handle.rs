//! The engine as the single writer of a long-running process: group commit by deadline
//! (polled, and by waiting callers through `Shared`), a failed commit refusing further use,
//! and a quote taken together with the list it covers (against swtpm).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use ima_core::codec::Endian;
use ima_core::hash::{Digest, HashAlgo};
use ima_core::log::{Entry, ListFormat};
use ima_core::template::{Event, TemplateDesc};
use ima_engine::{Added, Config, Engine, EngineError, Shared};

/// However slow the machine, a deadline of well under a second is met long before this.
const EVENTUALLY: Duration = Duration::from_secs(20);

fn event(name: &str) -> Event<'_> {
    Event {
        digest: Some(HashAlgo::SHA256.digest(name.as_bytes()).unwrap()),
        name: name.as_bytes(),
        ..Event::default()
    }
}

fn ima_ng() -> TemplateDesc {
    TemplateDesc::lookup("ima-ng").unwrap()
}

fn config(dir: &Path, deadline: Option<Duration>) -> Config {
    let mut cfg = Config::new(dir.to_path_buf()).unwrap();
    cfg.commit_deadline = deadline;
    cfg
}

/// The list as it is on disk (the journal: durable before anything is extended).
fn on_disk(dir: &Path) -> Vec<Entry> {
    let list = std::fs::read(dir.join("binary_runtime_measurements")).unwrap();
    ima_core::log::binary::decode(&list, ListFormat::default()).unwrap()
}

/// The `n-ng` field (the second of ima-ng, NUL-terminated) of each entry.
fn names(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let n = &e.data.fields()[1];
            String::from_utf8_lossy(n.strip_suffix(b"\0").unwrap_or(n)).into_owned()
        })
        .collect()
}

/// PCR 10 of `bank` as the replay of `entries` gives it.
fn replay(entries: &[Entry], bank: HashAlgo) -> Digest {
    let mut v = Digest::zero(bank).unwrap();
    for e in entries {
        v = v
            .extend(&e.extend_value(bank, Endian::Little).unwrap())
            .unwrap();
    }
    v
}

#[test]
fn without_a_deadline_nothing_is_due_and_nothing_commits_by_itself() {
    let d = tempfile::tempdir().unwrap();
    let mut e = Engine::open_tcti(config(d.path(), None), None).unwrap();
    e.add(&event("/a"), &ima_ng(), 10).unwrap();
    assert_eq!((e.len(), e.committed()), (3, 2));
    assert_eq!(e.commit_due(), None);
    assert!(!e.commit_if_due().unwrap());
    assert_eq!(on_disk(d.path()).len(), 2);
    e.commit().unwrap();
    assert_eq!(on_disk(d.path()).len(), 3);
}

#[test]
fn a_polled_deadline_commits_a_lone_entry() {
    let d = tempfile::tempdir().unwrap();
    let mut e =
        Engine::open_tcti(config(d.path(), Some(Duration::from_millis(100))), None).unwrap();
    let start = Instant::now();
    e.add(&event("/lone"), &ima_ng(), 10).unwrap();
    // No more entries come: the caller sleeps until the deadline and asks.
    while e.committed() < e.len() {
        assert!(start.elapsed() < EVENTUALLY, "not committed");
        let due = e.commit_due().expect("an entry is pending");
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        e.commit_if_due().unwrap();
    }
    assert_eq!(e.commit_due(), None);
    let list = on_disk(d.path());
    assert_eq!(names(&list)[2], "/lone");
    assert_eq!(
        e.pcr_read(HashAlgo::SHA256, &[10]).unwrap(),
        vec![replay(&list, HashAlgo::SHA256)]
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("runtime_measurements_count")).unwrap(),
        "3\n"
    );
}

/// Threads that each add entries and wait for them: every wait returns only once its entry
/// is in the journal and extended, all within the deadline's reach, a duplicate of a pending
/// entry included.
#[test]
fn waiters_return_only_once_their_entries_are_committed() {
    let d = tempfile::tempdir().unwrap();
    let e = Engine::open_tcti(config(d.path(), Some(Duration::from_millis(200))), None).unwrap();
    let shared = Shared::new(e);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..6 {
            let shared = &shared;
            let dir = d.path();
            s.spawn(move || {
                for i in 0..4 {
                    let name = format!("/t{t}/f{i}");
                    let (added, ticket) = shared.add(&event(&name), &ima_ng(), 10).unwrap();
                    assert!(matches!(added, Added::New(_)));
                    shared.wait(ticket).unwrap();
                    assert!(names(&on_disk(dir)).contains(&name), "{name} not durable");
                    // The same measurement again (the original possibly committed by now).
                    let (added, ticket) = shared.add(&event(&name), &ima_ng(), 10).unwrap();
                    assert_eq!(added, Added::Duplicate);
                    shared.wait(ticket).unwrap();
                }
            });
        }
    });
    assert!(start.elapsed() < EVENTUALLY);
    // A duplicate found while its original is still pending waits for the original.
    let (added, first) = shared.add(&event("/dup"), &ima_ng(), 10).unwrap();
    assert!(matches!(added, Added::New(_)));
    let (added, second) = shared.add(&event("/dup"), &ima_ng(), 10).unwrap();
    assert_eq!(added, Added::Duplicate);
    shared.wait(second).unwrap();
    assert!(names(&on_disk(d.path())).contains(&"/dup".to_owned()));
    shared.wait(first).unwrap();
    let mut e = shared.into_inner();
    assert_eq!((e.len(), e.committed()), (2 + 24 + 1, 2 + 24 + 1));
    let list = on_disk(d.path());
    assert_eq!(list.len(), 27);
    assert_eq!(
        e.pcr_read(HashAlgo::SHA1, &[10]).unwrap(),
        vec![replay(&list, HashAlgo::SHA1)]
    );
    e.close().unwrap();
}

/// A commit that fails part-way (here the TPM goes away before the extend) leaves the handle
/// refusing everything (a retry could append or extend twice).
#[test]
fn a_failed_commit_refuses_further_use() {
    let sw = ima_test::Swtpm::start();
    let d = tempfile::tempdir().unwrap();
    let mut e = Engine::open_tcti(config(d.path(), None), Some(&sw.tcti())).unwrap();
    e.add(&event("/before"), &ima_ng(), 10).unwrap();
    drop(sw);
    let err = e.commit().unwrap_err();
    assert!(matches!(err, EngineError::Tpm(_)), "{err}");
    for r in [e.commit(), e.add(&event("/after"), &ima_ng(), 10).map(drop)] {
        let err = r.unwrap_err();
        assert!(matches!(err, EngineError::CommitFailed { .. }), "{err}");
    }
    assert!(e.close().is_err());
    // The entry reached the journal before the extend was tried (journal first).
    assert_eq!(names(&on_disk(d.path()))[2], "/before");
}

#[test]
fn a_quote_comes_with_exactly_the_list_it_covers() {
    let sw = ima_test::Swtpm::start();
    let d = tempfile::tempdir().unwrap();
    let mut e = Engine::open_tcti(config(d.path(), None), Some(&sw.tcti())).unwrap();
    for n in ["/a", "/b", "/c"] {
        e.add(&event(n), &ima_ng(), 10).unwrap();
    }
    assert_eq!(e.committed(), 2);
    let nonce = b"fresh nonce";
    let sel = vec![(HashAlgo::SHA256, vec![10]), (HashAlgo::SHA1, vec![0, 10])];
    let lq = e.quote(nonce, &sel).unwrap();
    // The pending entries were committed first; the list is the journal as quoted.
    assert_eq!((lq.entries, e.committed()), (5, 5));
    assert_eq!(
        lq.list,
        std::fs::read(d.path().join("binary_runtime_measurements")).unwrap()
    );
    let list = ima_core::log::binary::decode(&lq.list, ListFormat::default()).unwrap();
    assert_eq!(list.len(), 5);
    let q = &lq.quote;
    let check =
        ima_tpm::quote::verify(&q.ak, &q.attest, &q.signature, nonce, Some(&q.pcrs)).unwrap();
    assert!(check.ok(), "{check:?}");
    for bank in [HashAlgo::SHA256, HashAlgo::SHA1] {
        let quoted = q.pcrs.iter().find(|b| b.algo() == bank).unwrap();
        assert_eq!(quoted.get(10), Some(&replay(&list, bank)), "{bank}");
    }
    // An entry added after the quote is not in it; the next quote covers it.
    e.add(&event("/d"), &ima_ng(), 10).unwrap();
    assert_eq!(lq.entries, 5);
    let again = e.quote(b"another", &sel).unwrap();
    assert_eq!(again.entries, 6);
    assert!(again.list.starts_with(&lq.list));
    e.close().unwrap();
    // A directory without a list is not given one by a reader.
    let empty = tempfile::tempdir().unwrap();
    let mut cfg = config(empty.path(), None);
    cfg.create = false;
    let err = Engine::open_tcti(cfg, Some(&sw.tcti())).unwrap_err();
    assert!(matches!(err, EngineError::NoList { .. }), "{err}");
    assert!(!empty.path().join("binary_runtime_measurements").exists());
}
