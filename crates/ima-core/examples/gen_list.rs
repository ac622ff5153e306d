//! Writes a synthetic measurement list with this crate's encoder, for benchmarks and for
//! feeding other tools: `binary_runtime_measurements` (sha1 list, little endian) with a
//! boot_aggregate entry and N-1 ima-ng sha256 file entries on PCR 10, and the PCR values a
//! TPM would hold afterwards, `pcrs_sha1.txt` and `pcrs_sha256.txt`, in evmctl's
//! `PCR-NN: hex` form (PCR 0-9 = `H_bank("pcr<i>")`, as in kernel-ima.md §13.8).
//!
//! `cargo run --release -p ima-core --example gen_list -- 1000000 /tmp/list`

use std::path::PathBuf;
use std::process::ExitCode;

use ima_core::codec::Endian;
use ima_core::hash::HashAlgo;
use ima_core::log::replay::{self, PcrBank};
use ima_core::log::{Entry, ListFormat, binary};
use ima_core::template::{Event, TemplateDesc};
use rayon::prelude::*;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(n), Some(dir)) = (
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
        args.get(2),
    ) else {
        eprintln!("usage: gen_list ENTRIES DIR");
        return ExitCode::from(2);
    };
    match run(n.max(1), &PathBuf::from(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_list: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(n: usize, dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let banks = [HashAlgo::SHA1, HashAlgo::SHA256];
    let mut fw = Vec::new();
    for a in banks {
        let mut b = PcrBank::new(a);
        for i in 0..10 {
            b.set(i, a.digest(format!("pcr{i}").as_bytes())?);
        }
        fw.push(b);
    }
    let ng = TemplateDesc::builtin("ima-ng").ok_or("no ima-ng")?;
    let agg = replay::boot_aggregate(&fw[1])?;
    let e = Endian::Little;
    let first = Event {
        digest: Some(agg),
        name: b"boot_aggregate",
        ..Event::default()
    };
    let mut entries = vec![Entry::new(
        10,
        &ng,
        ng.build(&first, e)?,
        HashAlgo::SHA1,
        e,
    )?];
    let rest: Result<Vec<Entry>, String> = (1..n)
        .into_par_iter()
        .map(|i| {
            let name = format!("/usr/lib/x86_64-linux-gnu/pkg-{}/lib{i}.so.1", i % 997);
            let ev = Event {
                digest: Some(
                    HashAlgo::SHA256
                        .digest(&i.to_le_bytes())
                        .map_err(|e| e.to_string())?,
                ),
                name: name.as_bytes(),
                ..Event::default()
            };
            let data = ng.build(&ev, e).map_err(|e| e.to_string())?;
            Entry::new(10, &ng, data, HashAlgo::SHA1, e).map_err(|e| e.to_string())
        })
        .collect();
    entries.extend(rest?);
    std::fs::write(
        dir.join("binary_runtime_measurements"),
        binary::encode(&entries, ListFormat::default()),
    )?;
    let r = replay::replay(&entries, HashAlgo::SHA1, &banks, &[None, None], e)?;
    for (mut all, bank) in fw.into_iter().zip(&r.banks) {
        for (i, v) in bank.values().iter() {
            all.set(i, *v);
        }
        std::fs::write(dir.join(format!("pcrs_{}.txt", bank.algo)), all.to_evmctl())?;
    }
    Ok(())
}
