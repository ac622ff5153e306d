//! Every real-kernel capture (testdata/kernel-6.1) decodes, re-encodes byte for byte in both
//! encodings, replays to the TPM's PCR values in both banks, and stops replaying once any
//! byte of any digest is flipped.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use ima_core::codec::{Endian, Reader};
use ima_core::hash::HashAlgo;
use ima_core::log::binary::{self, RawEntry};
use ima_core::log::replay::{self, PcrBank};
use ima_core::log::{ListFormat, ascii};
use ima_core::template::{Field, FieldValue, TemplateDesc};

struct Capture {
    name: String,
    binary: Vec<u8>,
    ascii: Vec<u8>,
    banks: Vec<PcrBank>,
}

fn captures() -> Vec<Capture> {
    let names = ima_test::kernel_captures();
    assert_eq!(names.len(), 10, "testdata/kernel-6.1 captures: {names:?}");
    names
        .into_iter()
        .map(|name| {
            let dir = ima_test::kernel_capture(&name);
            let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
            let banks = ima_test::kernel_capture_banks(&name)
                .into_iter()
                .map(|b| {
                    let text = String::from_utf8(read(&format!("pcrs_{b}.txt"))).unwrap();
                    PcrBank::parse(&text, b.parse().unwrap()).unwrap()
                })
                .collect();
            Capture {
                binary: read("ima/binary_runtime_measurements"),
                ascii: read("ima/ascii_runtime_measurements"),
                banks,
                name,
            }
        })
        .collect()
}

#[test]
fn round_trips_byte_for_byte() {
    let f = ListFormat::default();
    for c in captures() {
        let from_bin = binary::decode(&c.binary, f).unwrap();
        let from_ascii = ascii::decode(&c.ascii, HashAlgo::SHA1, &[], Endian::Little).unwrap();
        assert_eq!(from_bin, from_ascii, "{}", c.name);
        assert_eq!(binary::encode(&from_ascii, f), c.binary, "{}", c.name);
        assert_eq!(
            ascii::encode(&from_bin, &[], Endian::Little).unwrap(),
            c.ascii,
            "{}",
            c.name
        );
        // Every logged template digest (sha1 list) is the digest of the data, except
        // violations.
        for e in &from_bin {
            if !e.is_violation() {
                assert_eq!(
                    e.template_digest_in(HashAlgo::SHA1, Endian::Little)
                        .unwrap(),
                    e.template_digest,
                    "{}",
                    c.name
                );
            }
        }
    }
}

#[test]
fn replays_to_the_tpm_values() {
    let f = ListFormat::default();
    for c in captures() {
        let raw: Vec<RawEntry<'_>> = binary::raw_entries(&c.binary, f)
            .collect::<Result<_, _>>()
            .unwrap();
        let algos = [HashAlgo::SHA1, HashAlgo::SHA256];
        let exp = [Some(&c.banks[0]), Some(&c.banks[1])];
        let r = replay::replay(&raw, HashAlgo::SHA1, &algos, &exp, Endian::Little).unwrap();
        assert!(r.ok(), "{}: {r:?}", c.name);
        assert_eq!(r.entries, raw.len());
        for b in &r.banks {
            assert!(b.pcrs.iter().any(|p| p.index == 10), "{}", c.name);
            for p in &b.pcrs {
                assert!(p.matches() && p.last_match == Some(raw.len() - 1) || p.index != 10);
            }
        }
        // The same through owned entries.
        let owned = binary::decode(&c.binary, f).unwrap();
        let r2 = replay::replay(&owned, HashAlgo::SHA1, &algos, &exp, Endian::Little).unwrap();
        assert_eq!(r, r2, "{}", c.name);
    }
}

#[test]
fn boot_aggregate_equals_the_first_entry() {
    for c in captures() {
        let first = &binary::decode(&c.binary, ListFormat::default()).unwrap()[0];
        let desc = TemplateDesc::lookup(&first.template_name).unwrap();
        let (algo, digest) = match desc.fields()[0].decode(&first.data.fields()[0], Endian::Little)
        {
            FieldValue::Digest { algo, digest, .. } => (
                std::str::from_utf8(algo)
                    .unwrap()
                    .parse::<HashAlgo>()
                    .unwrap(),
                digest,
            ),
            FieldValue::Bytes(d) if desc.fields()[0] == Field::D => (HashAlgo::SHA1, d),
            other => panic!("{}: {other:?}", c.name),
        };
        let bank = c.banks.iter().find(|b| b.algo() == algo).unwrap();
        assert_eq!(
            replay::boot_aggregate(bank).unwrap().as_bytes(),
            digest,
            "{}",
            c.name
        );
        // The kernel's bank rule picks that bank for the capture's ima_hash.
        let ima_hash = ["sha1", "sha384"]
            .into_iter()
            .find(|h| c.name.contains(h))
            .map_or(HashAlgo::SHA256, |h| h.parse().unwrap());
        let algos: Vec<HashAlgo> = c.banks.iter().map(PcrBank::algo).collect();
        assert_eq!(
            replay::boot_aggregate_bank(&algos, ima_hash),
            Some(algo),
            "{}",
            c.name
        );
    }
}

/// Byte ranges (in the binary list) of every digest: each entry's template digest and the
/// digest inside its first field (`d`, `d-ng` or `d-ngv2`).
fn digest_ranges(bytes: &[u8]) -> Vec<(usize, std::ops::Range<usize>)> {
    let f = ListFormat::default();
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    let mut i = 0;
    while !r.is_empty() {
        let e = RawEntry::decode(&mut r, f).unwrap();
        out.push((i, e.offset + 4..e.offset + 24));
        match e.body {
            binary::RawBody::Legacy { digest, .. } => {
                let at = digest.as_ptr() as usize - bytes.as_ptr() as usize;
                out.push((i, at..at + 20));
            }
            binary::RawBody::Fields {
                bytes: fields,
                base,
            } => {
                let len = u32::from_le_bytes(fields[..4].try_into().unwrap()) as usize;
                let field = &fields[4..4 + len];
                let nul = field.iter().position(|&b| b == 0).unwrap();
                out.push((i, base + 4 + nul + 1..base + 4 + len));
            }
        }
        i += 1;
    }
    out
}

#[test]
fn flipping_any_digest_byte_fails_verification() {
    let f = ListFormat::default();
    let algos = [HashAlgo::SHA1, HashAlgo::SHA256];
    let mut flips = 0;
    for c in captures() {
        let exp = [Some(&c.banks[0]), Some(&c.banks[1])];
        for (entry, range) in digest_ranges(&c.binary) {
            for at in range {
                let mut bytes = c.binary.clone();
                bytes[at] ^= 0x01;
                let raw: Vec<RawEntry<'_>> = binary::raw_entries(&bytes, f)
                    .collect::<Result<_, _>>()
                    .unwrap();
                let r = replay::replay(&raw, HashAlgo::SHA1, &algos, &exp, Endian::Little).unwrap();
                assert!(
                    !r.ok(),
                    "{}: flipping byte {at} (entry {entry}) went unnoticed",
                    c.name
                );
                // The failing PCR names the flipped entry (or, for a flipped violation,
                // the entry itself) as the point from which it can no longer match.
                for b in &r.banks {
                    let p = b.pcrs.iter().find(|p| p.index == raw[entry].pcr).unwrap();
                    if !p.matches() {
                        assert_eq!(p.first_unmatchable, Some(entry), "{} byte {at}", c.name);
                    }
                }
                flips += 1;
            }
        }
    }
    assert!(flips > 4000, "{flips}");
}
