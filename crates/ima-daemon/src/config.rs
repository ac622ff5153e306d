//! `imad`'s configuration file (`/etc/ima/imad.toml` under the packaged service): TOML keys
//! named after the kernel's boot parameters (`ima_policy`, `ima_template`, `ima_template_fmt`,
//! `ima_hash`, `ima_appraise`, `ima_appraise_tcb`, `integrity_audit`, `evm`) and imad's own
//! settings (`policy`, `tpm`, `state`, `mark`, `default`, `deadline`, `workers`, `audit`,
//! `audit_rate`, `decision_entries`, `lock_timeout`, `keys`, `metrics`). Every value is also a flag, and
//! a flag overrides the file (the merge is `imad`'s `main`).
//!
//! The file is checked whole before anything runs: an unknown key, a value of the wrong type
//! or outside its range, a relative path, or two keys that contradict each other (`ima_policy`
//! or `ima_appraise_tcb` with `policy`; `ima_template` with `ima_template_fmt`) is a
//! [`ConfigError`] naming the file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use ima_core::appraise::Mode;
use ima_core::hash::HashAlgo;
use ima_core::policy::BootPolicy;
use ima_core::template::TemplateDesc;
use ima_sys::fanotify::Response;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The settings a configuration file gives (`None`: not in the file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// `ima_policy`: built-in policy names joined by `|` (checked).
    pub ima_policy: Option<String>,
    /// `ima_appraise_tcb = true`: appraise_tcb added to the built-in policies.
    pub ima_appraise_tcb: Option<bool>,
    /// `ima_template` (a name) or `ima_template_fmt` (a field list), checked.
    pub template: Option<String>,
    /// `ima_hash`, a supported algorithm.
    pub ima_hash: Option<HashAlgo>,
    /// `ima_appraise`: enforce, fix, log or off.
    pub ima_appraise: Option<Mode>,
    /// `integrity_audit`: also the informational audit records.
    pub integrity_audit: Option<bool>,
    /// `policy`: a policy file (absolute).
    pub policy: Option<PathBuf>,
    /// `tpm`: the TCTI.
    pub tpm: Option<String>,
    /// `state`: the runtime directory (absolute).
    pub state: Option<PathBuf>,
    /// `mark`: the filesystems to mark (absolute, at least one).
    pub mark: Option<Vec<PathBuf>>,
    /// `default`: allow (fail-open) or deny (fail-closed).
    pub default: Option<Response>,
    /// `deadline`: milliseconds (at least 1).
    pub deadline: Option<u64>,
    /// `workers`: decision threads (at least 1).
    pub workers: Option<usize>,
    /// `audit`: sinks (kernel, stderr, json=PATH, none; checked).
    pub audit: Option<Vec<String>>,
    /// `audit_rate`: records a second (0: unlimited).
    pub audit_rate: Option<u32>,
    /// `decision_entries`: the policy, the mode and denials as list entries.
    pub decision_entries: Option<bool>,
    /// `lock_timeout`: seconds.
    pub lock_timeout: Option<u64>,
    /// `metrics`: the local address Prometheus metrics are served on.
    pub metrics: Option<std::net::SocketAddr>,
    /// `keys`: certificate files or directories (absolute).
    pub keys: Option<Vec<PathBuf>>,
}

/// A configuration file that cannot be used: `FILE:LINE: KEY: what is wrong`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file as given.
    pub file: String,
    /// 1-based line of the offending key or text (0 when the file could not be read).
    pub line: usize,
    /// The key, when the error is about one.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every key, in the order of the example file.
pub const KEYS: &[&str] = &[
    "ima_policy",
    "ima_appraise_tcb",
    "ima_template",
    "ima_template_fmt",
    "ima_hash",
    "ima_appraise",
    "integrity_audit",
    "evm",
    "policy",
    "tpm",
    "state",
    "mark",
    "default",
    "deadline",
    "workers",
    "audit",
    "audit_rate",
    "decision_entries",
    "lock_timeout",
    "keys",
    "metrics",
];

/// Largest configuration file read (a few keys; anything larger is not one).
pub const MAX_SIZE: u64 = 64 * 1024;

/// Reads and checks `path`. Besides [`parse`]'s checks, the file must be a regular file, not
/// larger than [`MAX_SIZE`], owned by root or by this process's user, and not writable by
/// group or others: it decides what is enforced.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let name = path.display().to_string();
    let err = |message: String| ConfigError {
        file: name.clone(),
        line: 0,
        key: None,
        message,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let md = f.metadata().map_err(|e| err(e.to_string()))?;
    if !md.is_file() {
        return Err(err("not a regular file".into()));
    }
    let me = ima_sys::statedir::euid();
    if md.uid() != 0 && md.uid() != me {
        return Err(err(format!(
            "owned by uid {}: the configuration decides what is enforced, so only root (or \
             imad's own user) may own it",
            md.uid()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Err(err(format!(
            "writable by group or others (mode {:04o}): the configuration decides what is \
             enforced (chmod go-w)",
            md.mode() & 0o7777
        )));
    }
    let mut text = String::new();
    f.take(MAX_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > MAX_SIZE {
        return Err(err(format!("larger than {MAX_SIZE} bytes")));
    }
    parse(&text, &name)
}

/// Parses and checks the text of a configuration file; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<FileConfig, ConfigError> {
    let line_of = |at: usize| text.get(..at).map_or(1, |t| t.matches('\n').count() + 1);
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(s.start));
        ConfigError {
            file: file.to_owned(),
            line,
            key: text.split('\n').nth(line - 1).and_then(key_of),
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let mut c = FileConfig::default();
    let mut lines: Vec<(&'static str, usize)> = Vec::new();
    for (k, v) in table.get_ref() {
        let key: &str = k.get_ref();
        let line = line_of(k.span().start);
        let fail = |message: String| ConfigError {
            file: file.to_owned(),
            line,
            key: Some(key.to_owned()),
            message,
        };
        let Some(&known) = KEYS.iter().find(|n| **n == key) else {
            return Err(fail(format!("unknown key (known: {})", KEYS.join(", "))));
        };
        lines.push((known, line));
        let v = v.get_ref();
        match known {
            "ima_policy" => {
                let s = string(v).map_err(fail)?;
                BootPolicy::from_param(&s).map_err(|(_, e)| fail(e.to_string()))?;
                if s.split([' ', '|', '\n']).all(str::is_empty) {
                    return Err(fail("no built-in policy named".into()));
                }
                c.ima_policy = Some(s);
            }
            "ima_appraise_tcb" => c.ima_appraise_tcb = Some(boolean(v).map_err(fail)?),
            "ima_template" => {
                let s = string(v).map_err(fail)?;
                TemplateDesc::lookup(&s).map_err(|e| fail(e.to_string()))?;
                c.template = Some(s);
            }
            "ima_template_fmt" => {
                let s = string(v).map_err(fail)?;
                TemplateDesc::from_fmt(&s).map_err(|e| fail(e.to_string()))?;
                c.template = Some(s);
            }
            "ima_hash" => {
                let s = string(v).map_err(fail)?;
                let h: HashAlgo = s.parse().map_err(|e| fail(format!("{e}")))?;
                if !h.is_supported() {
                    return Err(fail(format!("{h}: not supported")));
                }
                c.ima_hash = Some(h);
            }
            "ima_appraise" => {
                c.ima_appraise = Some(match string(v).map_err(fail)?.as_str() {
                    "enforce" => Mode::Enforce,
                    "fix" => Mode::Fix,
                    "log" => Mode::Log,
                    "off" => Mode::Off,
                    s => return Err(fail(format!("\"{s}\": expected enforce, fix, log or off"))),
                })
            }
            "integrity_audit" => c.integrity_audit = Some(boolean(v).map_err(fail)?),
            "evm" => {
                let s = string(v).map_err(fail)?;
                return Err(fail(format!(
                    "\"{s}\": not supported: imad loads no EVM key, so EVM is uninitialised \
                     (as on a kernel with none) and has no mode to set; remove the key"
                )));
            }
            "policy" => c.policy = Some(abs_path(v).map_err(fail)?),
            "tpm" => c.tpm = Some(string(v).map_err(fail)?),
            "state" => c.state = Some(abs_path(v).map_err(fail)?),
            "mark" => {
                let m = array(v, abs_path).map_err(fail)?;
                if m.is_empty() {
                    return Err(fail("no filesystem to mark".into()));
                }
                c.mark = Some(m);
            }
            "default" => {
                c.default = Some(match string(v).map_err(fail)?.as_str() {
                    "allow" => Response::Allow,
                    "deny" => Response::Deny,
                    s => return Err(fail(format!("\"{s}\": expected allow or deny"))),
                })
            }
            "deadline" => c.deadline = Some(integer(v, 1, u64::MAX).map_err(fail)?),
            "workers" => {
                let n = integer(v, 1, 4096).map_err(fail)?;
                c.workers = Some(usize::try_from(n).map_err(|e| fail(e.to_string()))?);
            }
            "audit" => {
                let sinks = array(v, string).map_err(fail)?;
                for s in &sinks {
                    audit_sink(s).map_err(fail)?;
                }
                c.audit = Some(sinks);
            }
            "audit_rate" => {
                let n = integer(v, 0, u64::from(u32::MAX)).map_err(fail)?;
                c.audit_rate = Some(u32::try_from(n).map_err(|e| fail(e.to_string()))?);
            }
            "decision_entries" => c.decision_entries = Some(boolean(v).map_err(fail)?),
            "lock_timeout" => c.lock_timeout = Some(integer(v, 0, 86_400).map_err(fail)?),
            "metrics" => {
                let t = string(v).map_err(fail)?;
                c.metrics = Some(t.parse().map_err(|_| {
                    fail(format!(
                        "{t:?} is not an address:port (e.g. \"127.0.0.1:9464\")"
                    ))
                })?);
            }
            "keys" => c.keys = Some(array(v, abs_path).map_err(fail)?),
            _ => return Err(fail("unknown key".into())),
        }
    }
    let at = |k: &str| lines.iter().find(|(n, _)| *n == k).map(|(_, l)| *l);
    let conflict = |a: &str, b: &str, why: &str| -> Result<(), ConfigError> {
        match (at(a), at(b)) {
            (Some(la), Some(lb)) => Err(ConfigError {
                file: file.to_owned(),
                line: la.max(lb),
                key: Some(if la > lb { a } else { b }.to_owned()),
                message: format!(
                    "conflicts with {} (line {}): {why}",
                    if la > lb { b } else { a },
                    la.min(lb)
                ),
            }),
            _ => Ok(()),
        }
    };
    let builtin = "the policy is either a file or built-in policies";
    conflict("ima_policy", "policy", builtin)?;
    if c.ima_appraise_tcb == Some(true) {
        conflict("ima_appraise_tcb", "policy", builtin)?;
    }
    conflict(
        "ima_template",
        "ima_template_fmt",
        "the template is either a name or a field list",
    )?;
    Ok(c)
}

/// The key a line sets (`key = ...`), for a syntax error on that line.
fn key_of(line: &str) -> Option<String> {
    let k = line.split_once('=')?.0.trim();
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    (!k.is_empty() && k.chars().all(plain)).then(|| k.to_owned())
}

/// Checks one `--audit`/`audit` sink: kernel, stderr, none or json=ABSOLUTE_PATH.
pub fn audit_sink(s: &str) -> Result<(), String> {
    match s {
        "kernel" | "stderr" | "none" => Ok(()),
        _ => match s.strip_prefix("json=") {
            Some(p) if Path::new(p).is_absolute() => Ok(()),
            Some(p) if !p.is_empty() => Err(format!("{s}: {p} is not an absolute path")),
            _ => Err(format!("{s}: expected kernel, stderr, json=PATH or none")),
        },
    }
}

fn string(v: &DeValue<'_>) -> Result<String, String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("expected a string, found {}", v.type_str()))
}

fn boolean(v: &DeValue<'_>) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected true or false, found {}", v.type_str()))
}

fn integer(v: &DeValue<'_>, min: u64, max: u64) -> Result<u64, String> {
    let i = v
        .as_integer()
        .ok_or_else(|| format!("expected an integer, found {}", v.type_str()))?;
    match u64::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{}: expected {min} to {max}", i.as_str())),
    }
}

fn abs_path(v: &DeValue<'_>) -> Result<PathBuf, String> {
    let s = string(v)?;
    let p = PathBuf::from(&s);
    if !p.is_absolute() {
        return Err(format!(
            "\"{s}\": not an absolute path (relative to what? give the whole path)"
        ));
    }
    Ok(p)
}

fn array<T>(
    v: &DeValue<'_>,
    each: fn(&DeValue<'_>) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let a = v
        .as_array()
        .ok_or_else(|| format!("expected an array, found {}", v.type_str()))?;
    a.iter()
        .enumerate()
        .map(|(i, e): (usize, &Spanned<DeValue<'_>>)| {
            each(e.get_ref()).map_err(|m| format!("item {}: {m}", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "imad.toml").unwrap_err().to_string()
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"
ima_policy = "tcb|critical_data"
ima_appraise_tcb = true
ima_template_fmt = "d-ng|n-ng|iuid"
ima_hash = "sha512"
ima_appraise = "fix"
integrity_audit = true
tpm = "swtpm:host=localhost,port=2321"
state = "/run/ima"
mark = ["/srv", "/opt"]
default = "deny"
deadline = 250
workers = 3
audit = ["kernel", "json=/var/log/imad.json"]
audit_rate = 0
decision_entries = false
lock_timeout = 0x10
keys = ["/etc/keys/ima"]
"#,
            "f",
        )
        .unwrap();
        assert_eq!(c.ima_policy.as_deref(), Some("tcb|critical_data"));
        assert_eq!(c.ima_appraise_tcb, Some(true));
        assert_eq!(c.template.as_deref(), Some("d-ng|n-ng|iuid"));
        assert_eq!(c.ima_hash, Some(HashAlgo::SHA512));
        assert_eq!(c.ima_appraise, Some(Mode::Fix));
        assert_eq!(c.integrity_audit, Some(true));
        assert_eq!(c.mark.unwrap().len(), 2);
        assert_eq!(c.default, Some(Response::Deny));
        assert_eq!(c.deadline, Some(250));
        assert_eq!(c.workers, Some(3));
        assert_eq!(c.audit.unwrap()[1], "json=/var/log/imad.json");
        assert_eq!(c.audit_rate, Some(0));
        assert_eq!(c.decision_entries, Some(false));
        assert_eq!(c.lock_timeout, Some(16));
        assert_eq!(c.keys.unwrap(), [PathBuf::from("/etc/keys/ima")]);
        assert_eq!(parse("# nothing\n", "f").unwrap(), FileConfig::default());
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        assert!(
            err("ima_hash = \"sha256\"\n\nima_polcy = \"tcb\"\n")
                .starts_with("imad.toml:3: ima_polcy: unknown key (known: ima_policy,"),
        );
        assert_eq!(
            err("\nworkers = \"2\"\n"),
            "imad.toml:2: workers: expected an integer, found string"
        );
        assert_eq!(
            err("workers = 0\n"),
            "imad.toml:1: workers: 0: expected 1 to 4096"
        );
        assert_eq!(
            err("ima_appraise = \"enforcing\"\n"),
            "imad.toml:1: ima_appraise: \"enforcing\": expected enforce, fix, log or off"
        );
        assert_eq!(
            err("mark = [\"/srv\", 3]\n"),
            "imad.toml:1: mark: item 2: expected a string, found integer"
        );
        assert_eq!(
            err("mark = [\"srv\"]\n"),
            "imad.toml:1: mark: item 1: \"srv\": not an absolute path (relative to what? give \
             the whole path)"
        );
        assert!(err("ima_policy = \"tcb|nope\"\n").starts_with("imad.toml:1: ima_policy: "));
        assert!(err("ima_template = \"ima-nope\"\n").starts_with("imad.toml:1: ima_template: "));
        assert!(err("ima_hash = \"sha3\"\n").starts_with("imad.toml:1: ima_hash: "));
        assert!(err("evm = \"fix\"\n").starts_with("imad.toml:1: evm: \"fix\": not supported"));
        assert_eq!(
            err("audit = [\"json=x\"]\n"),
            "imad.toml:1: audit: json=x: x is not an absolute path"
        );
        assert_eq!(
            err("[section]\nx = 1\n"),
            format!(
                "imad.toml:1: section: unknown key (known: {})",
                KEYS.join(", ")
            )
        );
    }

    #[test]
    fn syntax_errors_and_conflicts() {
        let e = parse("ima_hash = \"sha256\"\nworkers = = 2\n", "f").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (2, Some("workers")), "{e}");
        let e = parse("a = 1\na = 2\n", "f").unwrap_err();
        assert_eq!(e.to_string(), "f:2: a: duplicate key");
        assert!(
            err("ima_template_fmt = \"ima-ng\"\n").starts_with("imad.toml:1: ima_template_fmt: ")
        );
        assert_eq!(
            err("policy = \"/etc/ima/policy\"\nima_policy = \"tcb\"\n"),
            "imad.toml:2: ima_policy: conflicts with policy (line 1): the policy is either a \
             file or built-in policies"
        );
        assert!(
            err("ima_appraise_tcb = true\npolicy = \"/p\"\n")
                .starts_with("imad.toml:2: policy: conflicts with ima_appraise_tcb (line 1)")
        );
        parse("ima_appraise_tcb = false\npolicy = \"/p\"\n", "f").unwrap();
        assert!(
            err("ima_template = \"ima-ng\"\nima_template_fmt = \"d-ng|n-ng\"\n")
                .starts_with("imad.toml:2: ima_template_fmt: conflicts with ima_template")
        );
    }

    #[test]
    fn the_example_file_names_every_key_and_each_value_parses() {
        let example = include_str!("../../../packaging/imad.toml");
        assert_eq!(parse(example, "imad.toml").unwrap(), FileConfig::default());
        let mut seen = Vec::new();
        let mut uncommented = String::new();
        for l in example.lines() {
            // A commented setting is `#key = value`; prose is `# text`.
            if let Some(kv) = l.strip_prefix('#')
                && !kv.starts_with(' ')
                && let Some((k, _)) = kv.split_once(" = ")
            {
                seen.push(k.to_owned());
                // Alternatives to keys also shown: each is checked on its own below.
                if !["evm", "ima_template_fmt", "policy"].contains(&k) {
                    uncommented.push_str(kv);
                    uncommented.push('\n');
                }
                assert_eq!(parse(kv, "imad.toml").is_ok(), k != "evm", "{kv}");
            }
        }
        assert_eq!(seen, KEYS);
        let c = parse(&uncommented, "imad.toml").unwrap();
        assert_eq!(c.mark.unwrap().len(), 2);
    }

    #[test]
    fn load_refuses_files_others_may_write() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("imad.toml");
        std::fs::write(&p, "workers = 2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(&p).unwrap().workers, Some(2));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = load(&p).unwrap_err();
        assert!(
            e.to_string()
                .contains("writable by group or others (mode 0666)"),
            "{e}"
        );
        let e = load(d.path()).unwrap_err();
        assert!(e.to_string().ends_with("not a regular file"), "{e}");
        let e = load(&d.path().join("none")).unwrap_err();
        assert_eq!(e.line, 0);
        std::fs::write(&p, vec![b'#'; 70_000]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("larger than"));
    }
}
