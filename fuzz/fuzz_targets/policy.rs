#![no_main]
//! Policy files: parsing any bytes either fails with positioned errors or yields rules that
//! round-trip through Display, and the indexed matcher agrees with the linear one.

use ima_core::policy::{Event, Func, IndexedMatcher, Mask, ParseOptions, Policy, Rule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for opts in [ParseOptions::default(), ParseOptions::strict()] {
        match Policy::parse_bytes(data, &opts) {
            Err(e) => assert!(e.0.iter().all(|e| e.line >= 1 && e.column >= 1)),
            Ok(p) => {
                for r in &p.rules {
                    assert_eq!(Rule::parse(&r.rule.to_string()).as_ref(), Ok(&r.rule));
                }
                let m = IndexedMatcher::new(p.clone());
                for f in Func::ALL {
                    let mut ev = Event::new(f, Mask(data.len() as u32 & 0xf));
                    ev.fsmagic = 0x9fa0;
                    ev.uid = data.first().copied().unwrap_or(0).into();
                    ev.func_data = Some(".ima");
                    ev.path = Some(b"/a/b");
                    assert_eq!(p.evaluate(&ev), m.evaluate(&ev));
                }
            }
        }
    }
});
