#![no_main]
//! imad's configuration file: any text either parses into settings that hold their invariants
//! (absolute paths, a non-empty mark list, no policy file beside built-ins) or fails naming
//! the file and a line that exists.

use ima_daemon::config::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, "f.toml") {
        Err(e) => {
            assert_eq!(e.file, "f.toml");
            assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}");
            assert!(!e.message.is_empty());
            assert!(e.to_string().starts_with(&format!("f.toml:{}: ", e.line)));
        }
        Ok(c) => {
            let paths = c.policy.iter().chain(c.state.iter());
            let lists = c.mark.iter().flatten().chain(c.keys.iter().flatten());
            assert!(paths.chain(lists).all(|p| p.is_absolute()));
            assert!(c.mark.as_ref().is_none_or(|m| !m.is_empty()));
            assert!(c.policy.is_none() || c.ima_policy.is_none());
            assert!(c.workers.is_none_or(|w| w >= 1) && c.deadline.is_none_or(|d| d >= 1));
        }
    }
});
