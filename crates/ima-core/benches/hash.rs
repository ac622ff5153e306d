//! Hashing throughput per algorithm over a 1 MiB buffer (the file-hashing hot loop without
//! I/O), in MiB/s. `cargo bench -p ima-core --bench hash`

#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ima_core::hash::HashAlgo;

fn bench(c: &mut Criterion) {
    let buf = vec![0x5au8; 1 << 20];
    let mut g = c.benchmark_group("hash_1MiB");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(buf.len() as u64));
    for algo in [
        HashAlgo::MD5,
        HashAlgo::SHA1,
        HashAlgo::SHA224,
        HashAlgo::SHA256,
        HashAlgo::SHA384,
        HashAlgo::SHA512,
        HashAlgo::SM3_256,
        HashAlgo::STREEBOG_256,
        HashAlgo::STREEBOG_512,
    ] {
        g.bench_function(algo.to_string(), |b| b.iter(|| algo.digest(&buf).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
