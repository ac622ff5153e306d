//! Measurement-list throughput: binary decode (borrowed and owned), ascii render and parse,
//! and replay into the sha1 and sha256 banks (template digests in parallel, then the
//! sequential extend chains). `cargo bench -p ima-core --bench log`

#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ima_core::codec::Endian;
use ima_core::hash::HashAlgo;
use ima_core::log::binary::{self, RawEntry};
use ima_core::log::replay;
use ima_core::log::{Entry, ListFormat, ascii};
use ima_core::template::{Event, TemplateDesc};

const N: usize = 100_000;

fn list() -> Vec<Entry> {
    let ng = TemplateDesc::builtin("ima-ng").unwrap();
    (0..N)
        .map(|i| {
            let name = format!("/usr/lib/x86_64-linux-gnu/pkg-{}/lib{i}.so.1", i % 997);
            let ev = Event {
                digest: Some(HashAlgo::SHA256.digest(&i.to_le_bytes()).unwrap()),
                name: name.as_bytes(),
                ..Event::default()
            };
            let data = ng.build(&ev, Endian::Little).unwrap();
            Entry::new(10, &ng, data, HashAlgo::SHA1, Endian::Little).unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let f = ListFormat::default();
    let entries = list();
    let bin = binary::encode(&entries, f);
    let text = ascii::encode(&entries, &[], Endian::Little).unwrap();
    let mut g = c.benchmark_group("log_100k_ima_ng");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("binary_decode_borrowed", |b| {
        b.iter(|| binary::raw_entries(&bin, f).filter(|e| e.is_ok()).count())
    });
    g.bench_function("binary_decode_owned", |b| {
        b.iter(|| binary::decode(&bin, f).unwrap())
    });
    g.bench_function("binary_encode", |b| b.iter(|| binary::encode(&entries, f)));
    g.bench_function("ascii_render", |b| {
        b.iter(|| ascii::encode(&entries, &[], Endian::Little).unwrap())
    });
    g.bench_function("ascii_parse", |b| {
        b.iter(|| ascii::decode(&text, HashAlgo::SHA1, &[], Endian::Little).unwrap())
    });
    let raw: Vec<RawEntry<'_>> = binary::raw_entries(&bin, f).map(|e| e.unwrap()).collect();
    let banks = [HashAlgo::SHA1, HashAlgo::SHA256];
    g.bench_function("replay_sha1_sha256", |b| {
        b.iter(|| {
            replay::replay(&raw, HashAlgo::SHA1, &banks, &[None, None], Endian::Little).unwrap()
        })
    });
    g.bench_function("decode_and_replay_sha1_sha256", |b| {
        b.iter(|| {
            let raw: Vec<RawEntry<'_>> = binary::raw_entries(&bin, f).map(|e| e.unwrap()).collect();
            replay::replay(&raw, HashAlgo::SHA1, &banks, &[None, None], Endian::Little).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
