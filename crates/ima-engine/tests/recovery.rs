//! Crash recovery on the software bank, with the crash states built by hand: a torn journal
//! tail, durable entries not yet extended, and a TPM that is ahead of the list.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::io::Write;
use std::path::Path;

use ima_core::hash::HashAlgo;
use ima_core::log::binary::encode_entry;
use ima_core::log::{Entry, ListFormat};
use ima_core::template::{Event, TemplateDesc};
use ima_engine::{Added, Config, Engine, EngineError};
use ima_tpm::{SoftPcrs, Tpm};

fn open(dir: &Path) -> Result<Engine, EngineError> {
    Engine::open_tcti(Config::new(dir.to_path_buf()).unwrap(), None)
}

fn entry(name: &str) -> (Event<'_>, TemplateDesc) {
    let ev = Event {
        digest: Some(HashAlgo::SHA256.digest(name.as_bytes()).unwrap()),
        name: name.as_bytes(),
        ..Event::default()
    };
    (ev, TemplateDesc::lookup("ima-ng").unwrap())
}

fn soft(dir: &Path) -> SoftPcrs {
    SoftPcrs::open(&ima_engine::soft_pcrs_path(dir)).unwrap()
}

fn replays(dir: &Path) -> bool {
    let list = std::fs::read(dir.join("binary_runtime_measurements")).unwrap();
    let entries = ima_core::log::binary::decode(&list, ListFormat::default()).unwrap();
    let mut s = soft(dir);
    [HashAlgo::SHA1, HashAlgo::SHA256].iter().all(|b| {
        let mut v = ima_core::hash::Digest::zero(*b).unwrap();
        for e in &entries {
            v = v
                .extend(&e.extend_value(*b, ima_core::codec::Endian::Little).unwrap())
                .unwrap();
        }
        s.pcr_read(*b, &[10]).unwrap()[0] == v
    })
}

#[test]
fn new_list_starts_with_boot_aggregate_and_suppresses_duplicates() {
    let d = tempfile::tempdir().unwrap();
    let mut e = open(d.path()).unwrap();
    assert_eq!(e.len(), 2, "boot_aggregate and the boot entry");
    let (ev, t) = entry("/a");
    assert!(matches!(e.add(&ev, &t, 10).unwrap(), Added::New(_)));
    assert_eq!(e.add(&ev, &t, 10).unwrap(), Added::Duplicate);
    // Another PCR is independent, as in the kernel.
    assert!(matches!(e.add(&ev, &t, 11).unwrap(), Added::New(_)));
    e.add_violation(&Event {
        name: b"/tomtou",
        ..Event::default()
    })
    .unwrap();
    assert_eq!(e.violations(), 1);
    e.close().unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path().join("violations")).unwrap(),
        "1\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("runtime_measurements_count")).unwrap(),
        "5\n"
    );
    // Reopening keeps the duplicate table.
    let mut e = open(d.path()).unwrap();
    assert_eq!(e.add(&ev, &t, 10).unwrap(), Added::Duplicate);
    assert!(!e.recovery().any());
}

#[test]
fn torn_tail_is_cut_and_unextended_entries_are_rolled_forward() {
    let d = tempfile::tempdir().unwrap();
    let mut e = open(d.path()).unwrap();
    let (ev, t) = entry("/a");
    e.add(&ev, &t, 10).unwrap();
    e.close().unwrap();
    // Crash state: two entries durable in the journal but never extended, then half of a
    // third one.
    let mut extra = Vec::new();
    for n in ["/b", "/c"] {
        let (ev, t) = entry(n);
        let data = t.build(&ev, ima_core::codec::Endian::Little).unwrap();
        let en = Entry::new(
            10,
            &t,
            data,
            HashAlgo::SHA1,
            ima_core::codec::Endian::Little,
        )
        .unwrap();
        encode_entry(&en, ListFormat::default(), &mut extra);
    }
    let full = extra.len();
    extra.extend_from_slice(&extra.clone()[..full / 3]);
    let mut j = std::fs::OpenOptions::new()
        .append(true)
        .open(d.path().join("binary_runtime_measurements_sha1"))
        .unwrap();
    j.write_all(&extra).unwrap();
    drop(j);
    let e = open(d.path()).unwrap();
    let r = e.recovery();
    assert_eq!(r.rolled_forward, 2);
    assert_eq!(r.truncated_bytes, (full / 3) as u64);
    assert!(r.regenerated);
    assert_eq!(e.len(), 5);
    drop(e);
    assert!(replays(d.path()));
    let ascii =
        std::fs::read_to_string(d.path().join("ascii_runtime_measurements_sha256")).unwrap();
    assert_eq!(ascii.lines().count(), 5, "{ascii}");
    assert!(ascii.lines().last().unwrap().ends_with(" /c"));
}

#[test]
fn a_tpm_ahead_of_the_list_is_an_error_not_a_repair() {
    let d = tempfile::tempdir().unwrap();
    open(d.path()).unwrap().close().unwrap();
    let mut s = soft(d.path());
    let ds = [HashAlgo::SHA1, HashAlgo::SHA256].map(|b| b.digest(b"rogue").unwrap());
    s.extend(10, &ds).unwrap();
    s.flush().unwrap();
    let err = open(d.path()).unwrap_err().to_string();
    assert!(err.contains("does not replay"), "{err}");
    // And a tampered journal entry is named by its offset.
    let d = tempfile::tempdir().unwrap();
    open(d.path()).unwrap().close().unwrap();
    let p = d.path().join("binary_runtime_measurements_sha1");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 3] ^= 1;
    std::fs::write(&p, b).unwrap();
    let err = open(d.path()).unwrap_err().to_string();
    assert!(err.contains("template digest does not match"), "{err}");
    assert!(err.contains("entry at byte offset "), "{err}");
}

/// A crash in the middle of archiving (plan written, only the journal moved): the next open
/// finishes the move, then starts a new list on a fresh software bank.
#[test]
fn an_interrupted_archive_is_finished_on_open() {
    let d = tempfile::tempdir().unwrap();
    let mut e = open(d.path()).unwrap();
    let (ev, t) = entry("/a");
    e.add(&ev, &t, 10).unwrap();
    e.close().unwrap();
    // (The crash came before the archive directory was even made.)
    let target = d.path().join("archive/1-crashed");
    std::fs::write(d.path().join(".engine/archiving"), "1-crashed\nsoft-pcrs\n").unwrap();
    let e = open(d.path()).unwrap();
    assert_eq!(e.len(), 2, "a new list: boot_aggregate and boot entry only");
    drop(e);
    assert!(!d.path().join(".engine/archiving").exists());
    for f in [
        "binary_runtime_measurements_sha1",
        "binary_runtime_measurements_sha256",
        "ascii_runtime_measurements_sha1",
        "runtime_measurements_count",
        "boot",
        "soft-pcrs",
    ] {
        assert!(target.join(f).exists(), "{f} not archived");
    }
    assert_eq!(
        std::fs::read_to_string(target.join("runtime_measurements_count")).unwrap(),
        "3\n"
    );
    // A crash after the journal alone was moved.
    let mut e = open(d.path()).unwrap();
    let (ev, t) = entry("/b");
    e.add(&ev, &t, 10).unwrap();
    e.close().unwrap();
    let target = d.path().join("archive/2-crashed");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(d.path().join(".engine/archiving"), "2-crashed\nsoft-pcrs\n").unwrap();
    std::fs::rename(
        d.path().join("binary_runtime_measurements_sha1"),
        target.join("binary_runtime_measurements_sha1"),
    )
    .unwrap();
    let e = open(d.path()).unwrap();
    assert_eq!(e.len(), 2, "a new list: boot_aggregate and boot entry only");
    drop(e);
    assert!(!d.path().join(".engine/archiving").exists());
    for f in [
        "binary_runtime_measurements_sha1",
        "binary_runtime_measurements_sha256",
        "ascii_runtime_measurements_sha1",
        "runtime_measurements_count",
        "boot",
        "soft-pcrs",
    ] {
        assert!(target.join(f).exists(), "{f} not archived");
    }
    assert_eq!(
        std::fs::read_to_string(target.join("runtime_measurements_count")).unwrap(),
        "3\n"
    );
    assert!(replays(d.path()));
}

/// The engine on the `device:` backend (swtpm chardev over a socketpair, since there is no
/// /dev/tpm* here): a new list records the TPM's identity, and reopening it on the same TPM
/// finds every entry anchored.
#[test]
fn a_list_on_the_device_backend() {
    let mut sw = ima_test::SwtpmChardev::start();
    let file = sw.take_device();
    // A second descriptor on the same socket keeps swtpm's end open across the reopen.
    let again = file.try_clone().unwrap();
    let dev = ima_tpm::DeviceTransport::from_file(file, "swtpm chardev");
    let tpm = Box::new(ima_tpm::HwTpm::new(dev).unwrap());
    let d = tempfile::tempdir().unwrap();
    let cfg = Config::new(d.path().to_path_buf()).unwrap();
    let mut e = Engine::open(cfg.clone(), tpm).unwrap();
    for n in ["/a", "/b"] {
        let (ev, t) = entry(n);
        e.add(&ev, &t, 10).unwrap();
    }
    e.commit().unwrap();
    let list = std::fs::read(d.path().join("binary_runtime_measurements")).unwrap();
    let entries = ima_core::log::binary::decode(&list, ListFormat::default()).unwrap();
    assert_eq!(entries.len(), 4);
    let mut v = ima_core::hash::Digest::zero(HashAlgo::SHA256).unwrap();
    for en in &entries {
        v = v
            .extend(
                &en.extend_value(HashAlgo::SHA256, ima_core::codec::Endian::Little)
                    .unwrap(),
            )
            .unwrap();
    }
    assert_eq!(e.pcr_read(HashAlgo::SHA256, &[10]).unwrap(), vec![v]);
    let record = std::fs::read_to_string(d.path().join(".engine/boot")).unwrap();
    assert!(
        record.contains("tpm TPM device swtpm chardev\ntpm_id ak-sha256:"),
        "{record}"
    );
    // Hand the same TPM connection to a reopened list: nothing to roll forward.
    e.close().unwrap();
    let dev = ima_tpm::DeviceTransport::from_file(again, "swtpm chardev");
    let e = Engine::open(cfg, Box::new(ima_tpm::HwTpm::new(dev).unwrap())).unwrap();
    assert_eq!(e.len(), 4);
    assert!(!e.recovery().any());
}
