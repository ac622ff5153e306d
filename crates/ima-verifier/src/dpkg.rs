//! Reference values from installed Debian packages: dpkg's own records of what each package
//! installed (`/var/lib/dpkg/info/PKG.list`: one path a line) and the md5 of each file as
//! shipped (`PKG.md5sums`: `HEX  relative/path`). The md5s are not reference values (IMA
//! measures with sha256 and the like, and md5 is broken); they only tell a file still as
//! shipped from one changed since, so that references built on a host never accept a file
//! modified there.

use std::collections::HashMap;

/// A line that is not what dpkg writes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {why}")]
pub struct DpkgError {
    pub line: usize,
    pub why: String,
}

/// The paths of a `.list` file, absolute, without dpkg's `/.` root line and blank lines.
pub fn parse_list(text: &[u8]) -> Result<Vec<String>, DpkgError> {
    let mut out = Vec::new();
    for (i, l) in text.split(|&c| c == b'\n').enumerate() {
        if l.is_empty() || l == b"/." {
            continue;
        }
        let s = std::str::from_utf8(l).map_err(|_| DpkgError {
            line: i + 1,
            why: "not UTF-8".into(),
        })?;
        if !s.starts_with('/') {
            return Err(DpkgError {
                line: i + 1,
                why: format!("{s:?} is not an absolute path"),
            });
        }
        out.push(s.to_owned());
    }
    Ok(out)
}

/// The md5 of each file of a `.md5sums` file, by absolute path.
pub fn parse_md5sums(text: &[u8]) -> Result<HashMap<String, [u8; 16]>, DpkgError> {
    let mut out = HashMap::new();
    for (i, l) in text.split(|&c| c == b'\n').enumerate() {
        if l.is_empty() {
            continue;
        }
        let bad = |why: String| DpkgError { line: i + 1, why };
        let s = std::str::from_utf8(l).map_err(|_| bad("not UTF-8".into()))?;
        let (hex_md5, path) = s
            .split_once("  ")
            .ok_or_else(|| bad("expected \"MD5  PATH\"".into()))?;
        let mut md5 = [0u8; 16];
        hex::decode_to_slice(hex_md5, &mut md5)
            .map_err(|_| bad(format!("{hex_md5:?} is not an md5 in hex")))?;
        if path.is_empty() || path.starts_with('/') {
            return Err(bad(format!("{path:?} is not a path relative to /")));
        }
        out.insert(format!("/{path}"), md5);
    }
    Ok(out)
}

/// The package name of an info file name (`attr.list`, `libc6:amd64.list` → `attr`,
/// `libc6`), if it is a `.list` file.
pub fn package_of(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".list")?;
    Some(stem.split_once(':').map_or(stem, |(p, _)| p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_md5sums_as_dpkg_writes_them() {
        assert_eq!(
            parse_list(b"/.\n/usr\n/usr/bin/attr\n").unwrap(),
            ["/usr", "/usr/bin/attr"]
        );
        assert_eq!(parse_list(b"/.\nusr\n").unwrap_err().line, 2);
        let m = parse_md5sums(b"bfd89bd35aa00c5ffc2307501c893345  usr/bin/attr\n").unwrap();
        assert_eq!(m["/usr/bin/attr"][0], 0xbf);
        for bad in [
            &b"bfd89bd35aa00c5ffc2307501c893345 usr/bin/attr"[..],
            b"bfd89bd35aa00c5ffc2307501c89334  usr/bin/attr",
            b"bfd89bd35aa00c5ffc2307501c893345  /usr/bin/attr",
            b"\xff  x",
        ] {
            assert_eq!(parse_md5sums(bad).unwrap_err().line, 1, "{bad:?}");
        }
        assert_eq!(package_of("libc6:amd64.list"), Some("libc6"));
        assert_eq!(package_of("attr.list"), Some("attr"));
        assert_eq!(package_of("attr.md5sums"), None);
    }
}
