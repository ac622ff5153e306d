//! The userspace engine's *boot entry*: the second entry of every list it writes, binding
//! the list to a boot and a TPM inside the evidence itself. The kernel writes no such entry;
//! lists without it are checked as before.

use crate::log::Entry;

/// The event name of a list's boot entry (see [`BootEntry`]).
pub const BOOT_ENTRY: &str = "ima-engine-boot";
/// The boot entry's template: a buffer measurement, as the kernel's critical data.
pub const BOOT_ENTRY_TEMPLATE: &str = "ima-buf";

/// Where a list is anchored: which boot, which TPM, and that TPM's reset and restart counts
/// and clock when the list started. It is recorded *in the evidence*: the second entry of
/// every list (right after boot_aggregate) is an `ima-buf` entry named [`BOOT_ENTRY`] on
/// the list's PCR, whose buffer is this text (ASCII, one `key value` per line, in this
/// order; the template digest covers it, so it cannot change without breaking the replay):
///
/// ```text
/// ima-engine-boot v1
/// boot_id <the kernel's boot id>
/// tpm_id <ak-sha256:HEX (SHA-256 of the AK's SubjectPublicKeyInfo) | software:HEX (bank instance) | software>
/// reset_count <TPMS_CLOCK_INFO.resetCount, decimal>
/// restart_count <TPMS_CLOCK_INFO.restartCount, decimal>
/// clock <TPMS_CLOCK_INFO.clock in ms, decimal>
/// ```
///
/// A remote verifier checks it against a quote: the quote's signer is the AK named by
/// `tpm_id`, and the quote's `clockInfo` has the same reset and restart counts (else the
/// PCRs were reset since the list started, and the list cannot be what they hold) and a
/// clock not before `clock`. The engine makes the same comparison with the TPM on every open ([`BootEntry::held_by`]),
/// and `attest::check_boot_entry` with the quote (one parser for both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootEntry {
    pub boot_id: String,
    pub tpm_id: String,
    pub reset_count: u32,
    pub restart_count: u32,
    pub clock: u64,
}

impl BootEntry {
    /// The boot entry's buffer.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{BOOT_ENTRY} v1\nboot_id {}\ntpm_id {}\nreset_count {}\nrestart_count {}\nclock {}\n",
            self.boot_id, self.tpm_id, self.reset_count, self.restart_count, self.clock
        )
        .into_bytes()
    }

    /// Parses a boot entry's buffer; the error says which line is wrong.
    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(buf).map_err(|_| "not UTF-8 text".to_owned())?;
        let mut lines = text.lines();
        if lines.next() != Some(&format!("{BOOT_ENTRY} v1")) {
            return Err(format!("line 1: expected \"{BOOT_ENTRY} v1\""));
        }
        let mut field = |n: usize, key: &str| -> Result<&str, String> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(' '))
                .ok_or_else(|| format!("line {n}: expected \"{key} ...\""))
        };
        let num = |n: usize, v: &str| format!("line {n}: {v:?} is not a decimal number");
        let boot_id = field(2, "boot_id")?.to_owned();
        let tpm_id = field(3, "tpm_id")?.to_owned();
        let r = field(4, "reset_count")?;
        let reset_count = r.parse().map_err(|_| num(4, r))?;
        let r = field(5, "restart_count")?;
        let restart_count = r.parse().map_err(|_| num(5, r))?;
        let r = field(6, "clock")?;
        let clock = r.parse().map_err(|_| num(6, r))?;
        if lines.next().is_some() {
            return Err("line 7: trailing lines".into());
        }
        Ok(Self {
            boot_id,
            tpm_id,
            reset_count,
            restart_count,
            clock,
        })
    }

    /// The buffer of `e` if it is a boot entry.
    pub fn buffer_of(e: &Entry) -> Option<&[u8]> {
        let f = e.data.fields();
        (e.template_name == BOOT_ENTRY_TEMPLATE
            && f.len() == 3
            && f[1].strip_suffix(b"\0").unwrap_or(&f[1]) == BOOT_ENTRY.as_bytes())
        .then(|| f[2].as_slice())
    }

    /// Whether the TPM described by `now` can still hold a list anchored in `self`: the
    /// same TPM (or software bank instance), not reset or restarted since. The error says
    /// what changed.
    pub fn held_by(&self, now: &Self) -> Result<(), String> {
        if self.tpm_id != now.tpm_id {
            return Err(format!(
                "the list was started on TPM {} and this is TPM {}: its PCRs were reset, or \
                 it is another TPM",
                self.tpm_id, now.tpm_id
            ));
        }
        if (self.reset_count, self.restart_count) != (now.reset_count, now.restart_count) {
            return Err(format!(
                "the TPM was reset or restarted since the list started (reset count {} -> {}, \
                 restart count {} -> {}): its PCRs were reset, or it is another TPM",
                self.reset_count, now.reset_count, self.restart_count, now.restart_count
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_the_bad_line() {
        let a = BootEntry {
            boot_id: "b".into(),
            tpm_id: "ak-sha256:00".into(),
            reset_count: 3,
            restart_count: 1,
            clock: 42,
        };
        assert_eq!(BootEntry::decode(&a.encode()).unwrap(), a);
        let text = String::from_utf8(a.encode()).unwrap();
        let bad = text.replace("reset_count 3", "reset_count x");
        assert_eq!(
            BootEntry::decode(bad.as_bytes()).unwrap_err(),
            "line 4: \"x\" is not a decimal number"
        );
        assert!(BootEntry::decode(b"").unwrap_err().starts_with("line 1:"));
        let more = format!("{text}extra\n");
        assert_eq!(
            BootEntry::decode(more.as_bytes()).unwrap_err(),
            "line 7: trailing lines"
        );
        let reset = BootEntry {
            reset_count: 4,
            ..a.clone()
        };
        assert!(
            a.held_by(&reset)
                .unwrap_err()
                .contains("reset count 3 -> 4")
        );
        let other = BootEntry {
            tpm_id: "ak-sha256:01".into(),
            ..a.clone()
        };
        assert!(a.held_by(&other).is_err());
        assert!(a.held_by(&a).is_ok());
    }

    /// `attest::check_boot_entry`: the quote's clock info must show the same counts and a
    /// clock not earlier; a list without a boot entry (the kernel's) has nothing to check.
    #[test]
    fn attestation_compares_it_with_the_quote() {
        use crate::attest::{Failure, Quoted, check_boot_entry};
        use crate::codec::Endian;
        use crate::hash::HashAlgo;
        use crate::template::{Event, TemplateDesc};
        let entry = |name: &[u8], buf: &[u8]| {
            let t = TemplateDesc::lookup(BOOT_ENTRY_TEMPLATE).unwrap();
            let ev = Event {
                digest: Some(HashAlgo::SHA256.digest(buf).unwrap()),
                name,
                buf: Some(buf),
                ..Event::default()
            };
            let data = t.build(&ev, Endian::Little).unwrap();
            Entry::new(10, &t, data, HashAlgo::SHA1, Endian::Little).unwrap()
        };
        let b = BootEntry {
            boot_id: "b".into(),
            tpm_id: "ak-sha256:00".into(),
            reset_count: 3,
            restart_count: 0,
            clock: 1000,
        };
        let first = entry(b"boot_aggregate", b"x");
        let list = [first.clone(), entry(BOOT_ENTRY.as_bytes(), &b.encode())];
        let quoted = |reset, restart, clock| Quoted {
            signature_ok: true,
            nonce_ok: true,
            pcr_digest_ok: true,
            reset_count: reset,
            restart_count: restart,
            clock,
            pcrs: Vec::new(),
        };
        assert_eq!(check_boot_entry(&list, &quoted(3, 0, 1000)), None);
        assert!(matches!(
            check_boot_entry(&list, &quoted(4, 0, 5000)),
            Some(Failure::BootEntry { .. })
        ));
        assert!(matches!(
            check_boot_entry(&list, &quoted(3, 1, 5000)),
            Some(Failure::BootEntry { .. })
        ));
        assert!(matches!(
            check_boot_entry(&list, &quoted(3, 0, 999)),
            Some(Failure::BootEntry { .. })
        ));
        let garbled = [first.clone(), entry(BOOT_ENTRY.as_bytes(), b"nonsense")];
        assert!(matches!(
            check_boot_entry(&garbled, &quoted(3, 0, 1000)),
            Some(Failure::BootEntryInvalid { .. })
        ));
        let kernel = [first.clone(), entry(b"kernel_version", b"6.1")];
        assert_eq!(check_boot_entry(&kernel, &quoted(9, 9, 0)), None);
        assert_eq!(check_boot_entry(&[first], &quoted(9, 9, 0)), None);
    }
}
