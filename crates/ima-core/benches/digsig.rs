//! Signature checking and label decoding, per operation: the §13 evmctl vectors (RSA-2048
//! and ECDSA P-256 over sha256) verified through a `Keyring`, `XattrValue` decoding, and the
//! fs-verity digest of 1 MiB. `cargo bench -p ima-core --bench digsig`

#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ima_core::codec::Codec;
use ima_core::digsig::Keyring;
use ima_core::hash::HashAlgo;
use ima_core::verity;
use ima_core::xattr::XattrValue;

const RSA_CERT: &str = include_str!("../../../testdata/sigs/rsa_x509.pem");
const EC_CERT: &str = include_str!("../../../testdata/sigs/ec_x509.pem");
const SIG_RSA: &str = include_str!("../../../testdata/sigs/ima-sig-rsa-sha256.hex");
const SIG_EC: &str = include_str!("../../../testdata/sigs/ima-sig-ec-sha256.hex");

fn bench(c: &mut Criterion) {
    let mut ring = Keyring::new();
    ring.add_bytes(RSA_CERT.as_bytes()).unwrap();
    ring.add_bytes(EC_CERT.as_bytes()).unwrap();
    let d = HashAlgo::SHA256.digest(b"hello world\n").unwrap();
    let mut g = c.benchmark_group("digsig");
    for (name, hexsig) in [
        ("verify_rsa2048_sha256", SIG_RSA),
        ("verify_p256_sha256", SIG_EC),
    ] {
        let raw = hex::decode(hexsig.trim()).unwrap();
        let x = XattrValue::from_bytes(&raw).unwrap();
        let sig = x.signature().unwrap().clone();
        g.bench_function(name, |b| b.iter(|| sig.verify(&ring, &d).unwrap()));
    }
    let raw = hex::decode(SIG_RSA.trim()).unwrap();
    g.bench_function("decode_sig_xattr", |b| {
        b.iter(|| XattrValue::from_bytes(&raw).unwrap())
    });
    g.bench_function("parse_certificate_pem", |b| {
        b.iter(|| Keyring::new().add_bytes(RSA_CERT.as_bytes()).unwrap())
    });
    g.finish();
    let buf = vec![0x5au8; 1 << 20];
    let mut g = c.benchmark_group("verity_1MiB");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("sha256", |b| {
        b.iter(|| verity::digest(HashAlgo::SHA256, &buf).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
