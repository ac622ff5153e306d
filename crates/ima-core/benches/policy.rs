//! Policy matching, ns per event: the linear reference interpreter (`Policy::evaluate`,
//! `ima_match_policy` as written) against the `IndexedMatcher`, for a 10-rule and a
//! 1,000-rule policy and a few common events. Run:
//! `cargo bench -p ima-core --bench policy`.

#![allow(clippy::unwrap_used)] // benchmark setup

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ima_core::policy::{Event, Func, IndexedMatcher, Mask, Policy, Uuid};

/// A tcb-like policy of 10 rules.
fn small() -> Policy {
    Policy::parse(
        "dont_measure fsmagic=0x9fa0\n\
         dont_measure fsmagic=0x62656572\n\
         dont_measure fsmagic=0x64626720\n\
         dont_measure func=FILE_CHECK fsmagic=0x1021994\n\
         dont_measure fsmagic=0x1cd1\n\
         dont_measure fsmagic=0x73636673\n\
         measure func=MMAP_CHECK mask=MAY_EXEC\n\
         measure func=BPRM_CHECK mask=MAY_EXEC\n\
         measure func=FILE_CHECK mask=^MAY_READ euid=0\n\
         measure func=FILE_CHECK mask=^MAY_READ uid=0\n",
    )
    .unwrap()
}

/// 1,000 rules: the same 6 dont_measure rules, 990 generated rules spread over hooks,
/// filesystems, owners and UUIDs (none matching the benchmark events), then the 4 tcb
/// measure rules, so the common events are decided at the very end.
fn large() -> Policy {
    const FUNCS: [&str; 6] = [
        "FILE_CHECK",
        "MMAP_CHECK",
        "BPRM_CHECK",
        "MODULE_CHECK",
        "FIRMWARE_CHECK",
        "CREDS_CHECK",
    ];
    const MAGICS: [&str; 5] = [
        "0x9fa0",
        "0x62656572",
        "0x1021994",
        "0x858458f6",
        "0x794c7630",
    ];
    let mut text = String::new();
    let s = small().readback();
    let lines: Vec<&str> = s.lines().collect();
    for l in &lines[..6] {
        text.push_str(l);
        text.push('\n');
    }
    for i in 0..990u32 {
        let f = FUNCS[i as usize % FUNCS.len()];
        let rule = match i % 5 {
            0 => format!(
                "dont_measure func={f} fsmagic={}",
                MAGICS[(i / 5) as usize % 5]
            ),
            1 => format!("measure func={f} fowner={}", 10_000 + i),
            2 => format!("appraise func={f} fsuuid=00000000-0000-0000-0000-{i:012}"),
            3 => format!("dont_appraise fsmagic={}", MAGICS[(i / 5) as usize % 5]),
            _ => format!("audit func={f} uid={}", 20_000 + i),
        };
        text.push_str(&rule);
        text.push('\n');
    }
    for l in &lines[6..] {
        text.push_str(l);
        text.push('\n');
    }
    let p = Policy::parse(&text).unwrap();
    assert_eq!(p.len(), 1000);
    p
}

fn events() -> Vec<(&'static str, Event<'static>)> {
    let ext4 = |func, mask| {
        let mut e = Event::new(func, mask);
        e.fsmagic = 0xef53;
        e.fsname = "ext4";
        e.fsuuid = "8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f"
            .parse::<Uuid>()
            .unwrap();
        e
    };
    let mut proc_read = Event::new(Func::FileCheck, Mask::MAY_READ);
    proc_read.fsmagic = 0x9fa0;
    let mut user_read = ext4(Func::FileCheck, Mask::MAY_READ);
    (user_read.uid, user_read.euid, user_read.suid) = (1000, 1000, 1000);
    vec![
        ("file_read_root", ext4(Func::FileCheck, Mask::MAY_READ)),
        ("file_read_user", user_read),
        ("exec", ext4(Func::BprmCheck, Mask::MAY_EXEC)),
        ("mmap", ext4(Func::MmapCheck, Mask::MAY_EXEC)),
        ("proc_read", proc_read),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, policy) in [("10", small()), ("1000", large())] {
        let indexed = IndexedMatcher::new(policy.clone());
        let mut g = c.benchmark_group(format!("policy_match/{name}_rules"));
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        g.sample_size(30);
        for (ev_name, ev) in events() {
            // Same answer from both, or the comparison is meaningless.
            assert_eq!(policy.evaluate(&ev), indexed.evaluate(&ev));
            g.bench_function(format!("linear/{ev_name}"), |b| {
                b.iter(|| black_box(policy.evaluate(black_box(&ev))).action)
            });
            g.bench_function(format!("indexed/{ev_name}"), |b| {
                b.iter(|| black_box(indexed.evaluate(black_box(&ev))).action)
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
