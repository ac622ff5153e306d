//! Attestation throughput (`ima_core::attest::verify`): a 100,000-entry ima-ng list against a
//! 100,000-digest reference set (quote outcome given, replay into sha1 + sha256, boot_aggregate,
//! every entry looked up), and an incremental round of 100 new entries on top of a
//! 1,000,000-entry checkpoint. `cargo bench -p ima-core --bench attest`

#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ima_core::attest::{self, Checkpoint, List, Policy, Quoted, RefDigest, Refs};
use ima_core::codec::Endian;
use ima_core::digsig::Keyring;
use ima_core::hash::{Digest, HashAlgo};
use ima_core::log::replay::{self, PcrBank};
use ima_core::log::{Entry, ListFormat, binary};
use ima_core::template::{Event, TemplateDesc};

const BANKS: [HashAlgo; 2] = [HashAlgo::SHA1, HashAlgo::SHA256];

fn name(i: usize) -> String {
    format!("/usr/lib/x86_64-linux-gnu/pkg-{}/lib{i}.so.1", i % 997)
}

fn digest(i: usize) -> Digest {
    HashAlgo::SHA256.digest(&i.to_le_bytes()).unwrap()
}

/// boot_aggregate (PCRs 0-9 all zero) and then `n` files from `from` on.
fn entries(from: usize, n: usize, boot: bool) -> Vec<Entry> {
    let ng = TemplateDesc::builtin("ima-ng").unwrap();
    let mut out = Vec::with_capacity(n + 1);
    let mk = |d: Digest, name: &[u8]| {
        let ev = Event {
            digest: Some(d),
            name,
            ..Event::default()
        };
        let data = ng.build(&ev, Endian::Little).unwrap();
        Entry::new(10, &ng, data, HashAlgo::SHA1, Endian::Little).unwrap()
    };
    if boot {
        let agg = replay::boot_aggregate(&zeros(HashAlgo::SHA256)).unwrap();
        out.push(mk(agg, b"boot_aggregate"));
    }
    for i in from..from + n {
        out.push(mk(digest(i), name(i).as_bytes()));
    }
    out
}

fn zeros(algo: HashAlgo) -> PcrBank {
    let mut b = PcrBank::new(algo);
    for i in 0..24 {
        b.set(i, Digest::zero(algo).unwrap());
    }
    b
}

fn quoted(list: &[u8]) -> Quoted {
    let f = ListFormat::default();
    let raw: Vec<_> = binary::raw_entries(list, f).map(|e| e.unwrap()).collect();
    let r = replay::replay(&raw, HashAlgo::SHA1, &BANKS, &[None, None], Endian::Little).unwrap();
    let pcrs = r
        .banks
        .iter()
        .map(|b| {
            let mut z = zeros(b.algo);
            for p in &b.pcrs {
                z.set(p.index, p.value);
            }
            z
        })
        .collect();
    Quoted {
        signature_ok: true,
        nonce_ok: true,
        pcr_digest_ok: true,
        reset_count: 1,
        restart_count: 0,
        clock: 0,
        pcrs,
    }
}

fn refs(from: usize, n: usize) -> Refs {
    let mut r = Refs::new();
    for i in from..from + n {
        r.add_file(&name(i), RefDigest::from(&digest(i)));
    }
    r
}

fn bench(c: &mut Criterion) {
    let f = ListFormat::default();
    let keys = Keyring::new();

    let n = 100_000;
    let list = binary::encode(&entries(0, n, true), f);
    let q = quoted(&list);
    let r = refs(0, n);
    let policy = Policy {
        refs: &r,
        keys: &keys,
    };
    let mut g = c.benchmark_group("attest");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("verify_100k_ima_ng_against_100k_refs", |b| {
        b.iter(|| {
            let v = attest::verify(&q, &List::new(&list, f, &[]), &policy, None).unwrap();
            assert!(v.trusted());
            v
        })
    });

    // 1,000,000 entries verified (replay only), then 100 new ones.
    let big = 1_000_000;
    let mut all = binary::encode(&entries(0, big, true), f);
    let cp: Checkpoint = {
        let q = quoted(&all);
        let none = Refs::new();
        let p = Policy {
            refs: &none,
            keys: &keys,
        };
        attest::verify(&q, &List::new(&all, f, &[]), &p, None)
            .unwrap()
            .checkpoint
            .unwrap()
    };
    all.extend(binary::encode(&entries(big, 100, false), f));
    let q = quoted(&all);
    let r = refs(big, 100);
    let policy = Policy {
        refs: &r,
        keys: &keys,
    };
    g.throughput(Throughput::Elements(100));
    g.bench_function("incremental_100_after_1m_checkpoint", |b| {
        b.iter(|| {
            let v = attest::verify(&q, &List::new(&all, f, &[]), &policy, Some(&cp)).unwrap();
            assert!(v.trusted() && v.stats.entries == 100);
            v
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
