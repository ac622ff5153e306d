//! Reference values: what a verifier accepts in a measurement list. Digests per path (an
//! allowlist), excluded paths (globs, or Keylime's regular expressions), digests of keys an
//! `ima-buf` entry may load onto a keyring, digests of other `ima-buf` entries, and keyrings
//! whose keys are not checked.
//!
//! The text format (`imactl attest verify --refs FILE`), one item per line; blank lines and
//! lines starting with `#` are skipped; a path or pattern is the rest of the line, exactly as
//! the list's event name (spaces included):
//!
//! ```text
//! file <algo>:<hex> <path>        a digest accepted for <path> (repeat the line for more)
//! file <hex> <path>               the same, any algorithm with a digest of that length
//! exclude <glob>                  paths not checked: `*` and `?` within one path component,
//!                                 `**` across components; the whole path must match
//! exclude-regex <regex>           the same, a regular expression matched at the start of
//!                                 the path (Python's `re.match`, as Keylime's `excludes`)
//! keyring <name> <algo>:<hex>     a key (X.509, the digest of its DER) accepted on <name>
//! buf <name> <algo>:<hex>         an `ima-buf` entry named <name> with this digest
//! ignore-keyring <name>           keys loaded onto <name> are not checked (`*`: any keyring)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::hash::{Digest, HashAlgo};
use crate::template::parse_hex;

/// An accepted digest. `algo` is `None` when the source did not say (Keylime's policies
/// list bare hex): it then matches a digest of any algorithm with the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefDigest {
    pub algo: Option<HashAlgo>,
    pub bytes: Vec<u8>,
}

impl RefDigest {
    /// Whether a measured digest (`algo` as the list names it, if it does) is this one.
    pub fn accepts(&self, algo: Option<HashAlgo>, bytes: &[u8]) -> bool {
        self.bytes == bytes
            && match (self.algo, algo) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Parses `algo:hex` or bare `hex`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (algo, hex) = match s.split_once(':') {
            Some((a, h)) => {
                let algo: HashAlgo = a.parse().map_err(|e| format!("{e}"))?;
                (Some(algo), h)
            }
            None => (None, s),
        };
        let bytes = parse_hex(hex.as_bytes()).map_err(|e| format!("digest {s:?}: {e}"))?;
        if bytes.is_empty() {
            return Err(format!("digest {s:?}: empty"));
        }
        if let Some(a) = algo
            && a.digest_len() != Some(bytes.len())
        {
            return Err(format!(
                "digest {s:?}: {} bytes, {a} digests have {}",
                bytes.len(),
                a.digest_len().unwrap_or(0)
            ));
        }
        Ok(Self { algo, bytes })
    }
}

impl From<&Digest> for RefDigest {
    fn from(d: &Digest) -> Self {
        Self {
            algo: Some(d.algo()),
            bytes: d.as_bytes().to_vec(),
        }
    }
}

impl fmt::Display for RefDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.algo {
            Some(a) => write!(f, "{a}:{}", hex::encode(&self.bytes)),
            None => f.write_str(&hex::encode(&self.bytes)),
        }
    }
}

/// A path exclusion, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclude {
    Glob(String),
    Regex(String),
}

impl Exclude {
    /// The regular expression it matches with: a glob becomes an anchored expression
    /// (`^...$`), a regex is anchored at the start (`^(?:...)`), as Python's `re.match`.
    pub fn regex(&self) -> String {
        match self {
            Self::Glob(g) => glob_regex(g),
            Self::Regex(r) => format!("^(?:{r})"),
        }
    }
}

impl fmt::Display for Exclude {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glob(g) => write!(f, "exclude {g}"),
            Self::Regex(r) => write!(f, "exclude-regex {r}"),
        }
    }
}

/// A reference file line (or a Keylime policy item) that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
#[non_exhaustive]
pub struct RefsError {
    /// 1-based line (0 when the item came from elsewhere, e.g. a Keylime policy).
    pub line: usize,
    pub msg: String,
}

/// A set of reference values. Several sources merge into one ([`Refs::merge`]).
#[derive(Debug, Clone, Default)]
pub struct Refs {
    files: HashMap<String, Vec<RefDigest>>,
    excludes: Vec<(Exclude, regex::Regex)>,
    keyrings: BTreeMap<String, Vec<RefDigest>>,
    bufs: BTreeMap<String, Vec<RefDigest>>,
    ignored_keyrings: BTreeSet<String>,
}

impl Refs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text format (module docs). All or nothing; the error names the line.
    pub fn parse(text: &str) -> Result<Self, RefsError> {
        let mut r = Self::new();
        for (i, raw) in text.lines().enumerate() {
            let err = |msg: String| RefsError { line: i + 1, msg };
            let line = raw.trim_start();
            if line.trim_end().is_empty() || line.starts_with('#') {
                continue;
            }
            if line.contains('\r') {
                return Err(err("carriage return inside a line".into()));
            }
            let (kind, rest) = line
                .split_once(' ')
                .ok_or_else(|| err(format!("expected \"KIND VALUE\", got {line:?}")))?;
            let two = |rest: &str| -> Result<(String, RefDigest), RefsError> {
                let (name, d) = rest
                    .split_once(' ')
                    .ok_or_else(|| err(format!("{kind}: expected NAME ALGO:HEX")))?;
                Ok((
                    name.to_owned(),
                    RefDigest::parse(d.trim_end()).map_err(err)?,
                ))
            };
            match kind {
                "file" => {
                    let (d, path) = rest
                        .split_once(' ')
                        .ok_or_else(|| err("file: expected ALGO:HEX PATH".into()))?;
                    if path.is_empty() {
                        return Err(err("file: empty path".into()));
                    }
                    r.add_file(path, RefDigest::parse(d).map_err(err)?);
                }
                "exclude" => r
                    .add_exclude(Exclude::Glob(rest.to_owned()))
                    .map_err(|e| err(e.msg))?,
                "exclude-regex" => r
                    .add_exclude(Exclude::Regex(rest.to_owned()))
                    .map_err(|e| err(e.msg))?,
                "keyring" => {
                    let (name, d) = two(rest)?;
                    r.add_keyring(&name, d);
                }
                "buf" => {
                    let (name, d) = two(rest)?;
                    r.add_buf(&name, d);
                }
                "ignore-keyring" if !rest.trim_end().is_empty() => {
                    r.ignore_keyring(rest.trim_end())
                }
                other => {
                    return Err(err(format!(
                        "unknown item {other:?} (expected file, exclude, exclude-regex, \
                         keyring, buf or ignore-keyring)"
                    )));
                }
            }
        }
        Ok(r)
    }

    /// Whether nothing at all is referenced (no digests, exclusions or keyrings).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.excludes.is_empty()
            && self.keyrings.is_empty()
            && self.bufs.is_empty()
            && self.ignored_keyrings.is_empty()
    }

    /// Number of file digests.
    pub fn file_digests(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }

    pub fn add_file(&mut self, path: &str, d: RefDigest) {
        let v = self.files.entry(path.to_owned()).or_default();
        if !v.contains(&d) {
            v.push(d);
        }
    }

    /// Adds an exclusion; fails if its pattern does not compile.
    pub fn add_exclude(&mut self, x: Exclude) -> Result<(), RefsError> {
        let re = regex::Regex::new(&x.regex()).map_err(|e| RefsError {
            line: 0,
            msg: format!("{x}: {e}"),
        })?;
        self.excludes.push((x, re));
        Ok(())
    }

    pub fn add_keyring(&mut self, name: &str, d: RefDigest) {
        let v = self.keyrings.entry(name.to_owned()).or_default();
        if !v.contains(&d) {
            v.push(d);
        }
    }

    pub fn add_buf(&mut self, name: &str, d: RefDigest) {
        let v = self.bufs.entry(name.to_owned()).or_default();
        if !v.contains(&d) {
            v.push(d);
        }
    }

    pub fn ignore_keyring(&mut self, name: &str) {
        self.ignored_keyrings.insert(name.to_owned());
    }

    /// Adds everything `other` references.
    pub fn merge(&mut self, other: Refs) {
        for (p, ds) in other.files {
            for d in ds {
                self.add_file(&p, d);
            }
        }
        self.excludes.extend(other.excludes);
        for (n, ds) in other.keyrings {
            for d in ds {
                self.add_keyring(&n, d);
            }
        }
        for (n, ds) in other.bufs {
            for d in ds {
                self.add_buf(&n, d);
            }
        }
        self.ignored_keyrings.extend(other.ignored_keyrings);
    }

    /// The digests accepted for `path`, if it has any.
    pub fn file(&self, path: &str) -> Option<&[RefDigest]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Every path with its accepted digests (unordered).
    pub fn files(&self) -> impl Iterator<Item = (&str, &[RefDigest])> {
        self.files.iter().map(|(p, d)| (p.as_str(), d.as_slice()))
    }

    /// The first exclusion matching `path`.
    pub fn excluded(&self, path: &str) -> Option<&Exclude> {
        self.excludes
            .iter()
            .find(|(_, re)| re.is_match(path))
            .map(|(x, _)| x)
    }

    pub fn excludes(&self) -> impl Iterator<Item = &Exclude> {
        self.excludes.iter().map(|(x, _)| x)
    }

    pub fn keyring(&self, name: &str) -> Option<&[RefDigest]> {
        self.keyrings.get(name).map(Vec::as_slice)
    }

    pub fn keyrings(&self) -> impl Iterator<Item = (&str, &[RefDigest])> {
        self.keyrings
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
    }

    pub fn buf(&self, name: &str) -> Option<&[RefDigest]> {
        self.bufs.get(name).map(Vec::as_slice)
    }

    pub fn bufs(&self) -> impl Iterator<Item = (&str, &[RefDigest])> {
        self.bufs.iter().map(|(p, d)| (p.as_str(), d.as_slice()))
    }

    /// Whether keys loaded onto `name` are not checked (`name` or `*` ignored).
    pub fn keyring_ignored(&self, name: &str) -> bool {
        self.ignored_keyrings.contains(name) || self.ignored_keyrings.contains("*")
    }

    pub fn ignored_keyrings(&self) -> impl Iterator<Item = &str> {
        self.ignored_keyrings.iter().map(String::as_str)
    }

    /// The text format, sorted (paths, then the other items), so that
    /// `parse(to_text(r))` references exactly what `r` does.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mut files: Vec<_> = self.files.iter().collect();
        files.sort();
        for (p, ds) in files {
            for d in ds {
                s.push_str(&format!("file {d} {p}\n"));
            }
        }
        for (x, _) in &self.excludes {
            s.push_str(&format!("{x}\n"));
        }
        for (n, ds) in &self.keyrings {
            for d in ds {
                s.push_str(&format!("keyring {n} {d}\n"));
            }
        }
        for (n, ds) in &self.bufs {
            for d in ds {
                s.push_str(&format!("buf {n} {d}\n"));
            }
        }
        for n in &self.ignored_keyrings {
            s.push_str(&format!("ignore-keyring {n}\n"));
        }
        s
    }
}

/// A glob as an anchored regular expression: `**` any characters, `*` and `?` any within
/// one path component, everything else literal.
fn glob_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_match_and_round_trip() {
        let text = "# refs\n\
            file sha256:0000000000000000000000000000000000000000000000000000000000000001 /usr/bin/a b\n\
            file 02 /x\n\
            exclude /tmp/**\n\
            exclude /var/*.log\n\
            exclude-regex /proc/.*\n\
            keyring .ima sha1:0000000000000000000000000000000000000003\n\
            buf policy sha256:0000000000000000000000000000000000000000000000000000000000000004\n\
            ignore-keyring .builtin_trusted_keys\n";
        let r = Refs::parse(text).unwrap();
        let one = r.file("/usr/bin/a b").unwrap();
        let mut d = vec![0u8; 32];
        d[31] = 1;
        assert!(one[0].accepts(Some(HashAlgo::SHA256), &d));
        assert!(!one[0].accepts(Some(HashAlgo::SHA3_256), &d));
        assert!(r.file("/x").unwrap()[0].accepts(Some(HashAlgo::SHA1), &[2]));
        assert!(r.excluded("/tmp/a/b/c").is_some());
        assert!(r.excluded("/var/x.log").is_some());
        assert!(
            r.excluded("/var/a/x.log").is_none(),
            "* stays in one component"
        );
        assert!(r.excluded("/proc/1/exe").is_some());
        assert!(
            r.excluded("/usr/proc/1").is_none(),
            "regexes match at the start"
        );
        assert!(r.keyring_ignored(".builtin_trusted_keys"));
        assert!(!r.keyring_ignored(".ima"));
        let again = Refs::parse(&r.to_text()).unwrap();
        assert_eq!(again.to_text(), r.to_text());
        assert_eq!(again.file_digests(), 2);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("file sha256:00 /a\n", 1),
            ("\n# c\nfile zz /a\n", 3),
            ("exclude-regex (\n", 1),
            ("keyring .ima\n", 1),
            ("frobnicate x\n", 1),
            ("file sha1:0000000000000000000000000000000000000000\n", 1),
        ] {
            let e = Refs::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}
