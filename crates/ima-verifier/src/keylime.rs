//! Keylime's runtime policy (the `runtime_policy` a Keylime 7.x verifier takes as reference
//! values for IMA), read and written losslessly, and turned into [`Refs`].
//!
//! ```text
//! { "meta": {"version": 1, "generator"?: int, "timestamp"?: str},
//!   "release"?: int,
//!   "digests": {path: [hex, ...]},          accepted file digests (any algorithm)
//!   "excludes": [regex, ...],               paths not checked (Python `re.match`)
//!   "keyrings": {keyring: [hex, ...]},      digests of keys ima-buf entries may load
//!   "ima": {"ignored_keyrings": [name|"*"], "log_hash_alg": "sha1"|"sha256"|"sha384"|"sha512",
//!           "dm_policy": null | {...}},
//!   "ima-buf": {name: [hex, ...]},          digests of other ima-buf entries
//!   "verification-keys": str,               keys for ima-sig, serialised by Keylime
//!   "rules"?: str }
//! ```
//!
//! (the `RuntimePolicyType` of `keylime/ima/types.py`). Every member, including ones this
//! version does not know, is kept and written back. [`RuntimePolicy::to_refs`] refuses what it
//! cannot honour rather than ignoring it: a device-mapper policy, Keylime-serialised
//! verification keys (give the certificates to `--keys` instead) and `rules`.

use std::collections::BTreeMap;

use ima_core::attest::{Exclude, RefDigest, Refs};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The policy version this code reads (`RUNTIME_POLICY_CURRENT_VERSION`).
pub const VERSION: u64 = 1;

/// A Keylime runtime policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimePolicy {
    pub meta: Meta,
    pub digests: BTreeMap<String, Vec<String>>,
    pub excludes: Vec<String>,
    pub keyrings: BTreeMap<String, Vec<String>>,
    pub ima: Ima,
    #[serde(rename = "ima-buf")]
    pub ima_buf: BTreeMap<String, Vec<String>>,
    #[serde(rename = "verification-keys")]
    pub verification_keys: String,
    /// The other members (`release`, `rules`, and any this version does not know), kept as
    /// they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub version: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ima`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ima {
    pub ignored_keyrings: Vec<String>,
    pub log_hash_alg: String,
    pub dm_policy: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a policy cannot be read or used. `line`/`column` come from the JSON parser; `at`
/// names the member (`digests["/usr/bin/x"][1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("line {line}, column {column}: {msg}")]
    Json {
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("{at}: {msg}")]
    Member { at: String, msg: String },
}

impl RuntimePolicy {
    /// Parses the JSON text, checking the schema's required members and version.
    pub fn parse(json: &[u8]) -> Result<Self, PolicyError> {
        let p: Self = serde_json::from_slice(json).map_err(|e| PolicyError::Json {
            line: e.line(),
            column: e.column(),
            msg: e.to_string(),
        })?;
        if p.meta.version != VERSION {
            return Err(member(
                "meta.version",
                format!("version {} (this reads version {VERSION})", p.meta.version),
            ));
        }
        if !matches!(
            p.ima.log_hash_alg.as_str(),
            "sha1" | "sha256" | "sha384" | "sha512"
        ) {
            return Err(member(
                "ima.log_hash_alg",
                format!(
                    "{:?} is not sha1, sha256, sha384 or sha512",
                    p.ima.log_hash_alg
                ),
            ));
        }
        Ok(p)
    }

    /// The JSON text (members in schema order, unknown members kept).
    pub fn to_json(&self) -> Result<String, PolicyError> {
        serde_json::to_string_pretty(self).map_err(|e| member("policy", e.to_string()))
    }

    /// The reference values this policy states. Fails on what they cannot express.
    pub fn to_refs(&self) -> Result<Refs, PolicyError> {
        if self.ima.dm_policy.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(member(
                "ima.dm_policy",
                "device-mapper policies are not supported".into(),
            ));
        }
        if !self.verification_keys.trim().is_empty() {
            return Err(member(
                "verification-keys",
                "Keylime-serialised keys are not supported: give the certificates with --keys"
                    .into(),
            ));
        }
        if self.extra.get("rules").is_some_and(|v| !v.is_null()) {
            return Err(member("rules", "not supported".into()));
        }
        let mut refs = Refs::new();
        let digests = |map: &BTreeMap<String, Vec<String>>,
                       what: &str,
                       add: &mut dyn FnMut(&str, RefDigest)|
         -> Result<(), PolicyError> {
            for (k, list) in map {
                for (i, h) in list.iter().enumerate() {
                    let d = hex::decode(h)
                        .ok()
                        .filter(|b| !b.is_empty())
                        .ok_or_else(|| {
                            member(&format!("{what}[{k:?}][{i}]"), format!("{h:?} is not hex"))
                        })?;
                    add(
                        k,
                        RefDigest {
                            algo: None,
                            bytes: d,
                        },
                    );
                }
            }
            Ok(())
        };
        let mut files = Vec::new();
        digests(&self.digests, "digests", &mut |k, d| {
            files.push((k.to_owned(), d))
        })?;
        for (k, d) in files {
            refs.add_file(&k, d);
        }
        let mut rings = Vec::new();
        digests(&self.keyrings, "keyrings", &mut |k, d| {
            rings.push((k.to_owned(), d))
        })?;
        for (k, d) in rings {
            refs.add_keyring(&k, d);
        }
        let mut bufs = Vec::new();
        digests(&self.ima_buf, "ima-buf", &mut |k, d| {
            bufs.push((k.to_owned(), d))
        })?;
        for (k, d) in bufs {
            refs.add_buf(&k, d);
        }
        for (i, x) in self.excludes.iter().enumerate() {
            refs.add_exclude(Exclude::Regex(x.clone()))
                .map_err(|e| member(&format!("excludes[{i}]"), e.msg))?;
        }
        for k in &self.ima.ignored_keyrings {
            refs.ignore_keyring(k);
        }
        Ok(refs)
    }
}

impl RuntimePolicy {
    /// A policy stating `refs`: digests as bare hex (Keylime does not record the algorithm),
    /// exclusions as Keylime regular expressions (globs translated), keyrings, ima-buf and
    /// ignored keyrings. `log_hash_alg` is the bank of the lists it will check.
    pub fn from_refs(refs: &Refs, log_hash_alg: &str) -> Self {
        let hexes = |ds: &[RefDigest]| ds.iter().map(|d| hex::encode(&d.bytes)).collect();
        let mut meta = Map::new();
        // RUNTIME_POLICY_GENERATOR.Unknown: not one of Keylime's own generators.
        meta.insert("generator".into(), Value::from(0));
        let mut extra = Map::new();
        extra.insert("release".into(), Value::from(0));
        Self {
            meta: Meta {
                version: VERSION,
                extra: meta,
            },
            digests: refs
                .files()
                .map(|(p, ds)| (p.to_owned(), hexes(ds)))
                .collect(),
            excludes: refs
                .excludes()
                .map(|x| match x {
                    Exclude::Regex(r) => r.clone(),
                    Exclude::Glob(_) => x.regex(),
                })
                .collect(),
            keyrings: refs
                .keyrings()
                .map(|(n, ds)| (n.to_owned(), hexes(ds)))
                .collect(),
            ima: Ima {
                ignored_keyrings: refs.ignored_keyrings().map(str::to_owned).collect(),
                log_hash_alg: log_hash_alg.to_owned(),
                dm_policy: None,
                extra: Map::new(),
            },
            ima_buf: refs
                .bufs()
                .map(|(n, ds)| (n.to_owned(), hexes(ds)))
                .collect(),
            verification_keys: String::new(),
            extra,
        }
    }
}

fn member(at: &str, msg: String) -> PolicyError {
    PolicyError::Member {
        at: at.to_owned(),
        msg,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    const POLICY: &str = r#"{
      "meta": {"version": 1, "generator": 2, "timestamp": "2024-01-01 00:00:00"},
      "release": 0,
      "digests": {"/usr/bin/true": ["aa11", "bb22"], "boot_aggregate": ["00"]},
      "excludes": ["/tmp/.*", "boot_aggregate"],
      "keyrings": {".ima": ["cc33"]},
      "ima": {"ignored_keyrings": [".builtin_trusted_keys"], "log_hash_alg": "sha1",
              "dm_policy": null},
      "ima-buf": {"dm_table_load": ["dd44"]},
      "verification-keys": "",
      "future-member": {"kept": true}
    }"#;

    #[test]
    fn import_is_lossless_and_becomes_refs() {
        let p = RuntimePolicy::parse(POLICY.as_bytes()).unwrap();
        let again = RuntimePolicy::parse(p.to_json().unwrap().as_bytes()).unwrap();
        assert_eq!(again, p);
        let want: Value = serde_json::from_str(POLICY).unwrap();
        let got: Value = serde_json::from_str(&p.to_json().unwrap()).unwrap();
        assert_eq!(got, want, "every member written back");
        let r = p.to_refs().unwrap();
        assert_eq!(r.file("/usr/bin/true").unwrap().len(), 2);
        assert!(r.file("/usr/bin/true").unwrap()[1].accepts(None, &[0xbb, 0x22]));
        assert!(r.excluded("/tmp/x/y").is_some());
        assert!(
            r.excluded("/usr/tmp/x").is_none(),
            "re.match is anchored at the start"
        );
        assert!(r.keyring(".ima").is_some());
        assert!(r.buf("dm_table_load").is_some());
        assert!(r.keyring_ignored(".builtin_trusted_keys"));
    }

    #[test]
    fn export_keeps_what_keylime_can_state() {
        let r = Refs::parse(
            "file sha256:00000000000000000000000000000000000000000000000000000000000000aa /a b\n\
             exclude /tmp/*.log\nexclude-regex /proc/.*\nignore-keyring .x\n",
        )
        .unwrap();
        let p = RuntimePolicy::from_refs(&r, "sha1");
        let back = RuntimePolicy::parse(p.to_json().unwrap().as_bytes())
            .unwrap()
            .to_refs()
            .unwrap();
        assert!(
            back.file("/a b").unwrap()[0].accepts(Some(ima_core::hash::HashAlgo::SHA256), &{
                let mut d = [0u8; 32];
                d[31] = 0xaa;
                d
            })
        );
        assert!(back.excluded("/tmp/x.log").is_some());
        assert!(
            back.excluded("/tmp/a/x.log").is_none(),
            "the glob's meaning survives"
        );
        assert!(back.excluded("/proc/1").is_some());
        assert!(back.keyring_ignored(".x"));
    }

    #[test]
    fn bad_policies_name_the_place() {
        let e =
            RuntimePolicy::parse(b"{\n \"meta\": {\"version\": 1},\n \"digests\": 3}").unwrap_err();
        assert!(matches!(e, PolicyError::Json { line: 3, .. }), "{e}");
        let e =
            RuntimePolicy::parse(POLICY.replace("\"excludes\"", "\"x\"").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("excludes"), "{e}");
        let e = RuntimePolicy::parse(
            POLICY
                .replace("\"version\": 1", "\"version\": 2")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("meta.version"), "{e}");
        let p = RuntimePolicy::parse(POLICY.replace("bb22", "xyz").as_bytes()).unwrap();
        let e = p.to_refs().unwrap_err();
        assert_eq!(
            e.to_string(),
            "digests[\"/usr/bin/true\"][1]: \"xyz\" is not hex"
        );
        let p = RuntimePolicy::parse(POLICY.replace("/tmp/.*", "(").as_bytes()).unwrap();
        assert!(
            p.to_refs()
                .unwrap_err()
                .to_string()
                .starts_with("excludes[0]")
        );
        let p = RuntimePolicy::parse(
            POLICY
                .replace(
                    "\"verification-keys\": \"\"",
                    "\"verification-keys\": \"{}\"",
                )
                .as_bytes(),
        )
        .unwrap();
        assert!(p.to_refs().is_err(), "keys we cannot use are not ignored");
    }
}
