//! Argument values as the standard tools spell them: xattr values as `setfattr -v` takes
//! them, and owners as `chown` takes them (numbers, or names from /etc/passwd and
//! /etc/group).

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;

/// An xattr value in `setfattr -v`'s encodings: `0x`/`0X` then hex, `0s`/`0S` then base64,
/// or `"text"`. A bare value is hex (imactl's NAME=HEX, kept for existing scripts).
pub fn xattr_value(s: &str) -> anyhow::Result<Vec<u8>> {
    let (kind, body) = match s.get(..2) {
        Some("0x" | "0X") => ("hex", &s[2..]),
        Some("0s" | "0S") => ("base64", &s[2..]),
        _ if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') => {
            return Ok(s.as_bytes()[1..s.len() - 1].to_vec());
        }
        _ => ("hex", s),
    };
    Ok(match kind {
        "hex" => hex::decode(body).with_context(|| format!("{body:?} is not hex"))?,
        _ => base64::engine::general_purpose::STANDARD
            .decode(body)
            .with_context(|| format!("{body:?} is not base64"))?,
    })
}

/// The user and group database files.
const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// Largest /etc/passwd or /etc/group read (a bigger one is not a plain file database).
const MAX_DB: u64 = 16 << 20;

/// `USER`, `USER:GROUP`, `:GROUP` or `USER:` (the user and their login group) as `chown`
/// takes them: numbers as they are, names looked up in /etc/passwd and /etc/group.
pub fn owner(s: &str) -> anyhow::Result<(Option<u32>, Option<u32>)> {
    owner_in(s, Path::new(PASSWD), Path::new(GROUP))
}

fn owner_in(s: &str, passwd: &Path, group: &Path) -> anyhow::Result<(Option<u32>, Option<u32>)> {
    let (u, g) = s.split_once(':').unwrap_or((s, ""));
    let uid = id(u, passwd, "user")?;
    let gid = match (uid, g.is_empty() && s.ends_with(':')) {
        // `USER:`: the login group, the fourth field of the user's passwd line.
        (Some(_), true) => Some(login_group(u, passwd)?),
        _ => id(g, group, "group")?,
    };
    if uid.is_none() && gid.is_none() {
        bail!("{s:?}: expected USER, USER:GROUP or :GROUP (names or numbers)");
    }
    Ok((uid, gid))
}

fn id(name: &str, db: &Path, what: &str) -> anyhow::Result<Option<u32>> {
    if name.is_empty() {
        return Ok(None);
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Some(
            name.parse()
                .with_context(|| format!("{what} id {name} is too large"))?,
        ));
    }
    field(name, db, what, 2).map(Some)
}

/// The login group of user `name` (a number, or a name looked up in /etc/passwd).
fn login_group(name: &str, passwd: &Path) -> anyhow::Result<u32> {
    let uid: Option<u32> = name.parse().ok();
    let text = read_db(passwd)?;
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(':').collect();
        let this = match uid {
            Some(u) => f.get(2).and_then(|s| s.parse().ok()) == Some(u),
            None => f.first() == Some(&name),
        };
        if this {
            let n = f.get(3).copied().unwrap_or("");
            return n
                .parse()
                .with_context(|| format!("{}:{}: bad login group {n:?}", passwd.display(), i + 1));
        }
    }
    bail!("no user {name:?} in {}", passwd.display())
}

/// Field `k` (0-based, numeric) of the line of `db` whose first field is `name`
/// (`name:password:ID:...`, passwd(5) and group(5)).
fn field(name: &str, db: &Path, what: &str, k: usize) -> anyhow::Result<u32> {
    let text = read_db(db)?;
    for (i, line) in text.lines().enumerate() {
        let mut f = line.split(':');
        if f.next() != Some(name) {
            continue;
        }
        let n = f.nth(k - 1).unwrap_or("");
        return n
            .parse()
            .with_context(|| format!("{}:{}: bad {what} id {n:?}", db.display(), i + 1));
    }
    bail!("no {what} {name:?} in {}", db.display())
}

fn read_db(db: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    std::fs::File::open(db)
        .and_then(|f| f.take(MAX_DB + 1).read_to_string(&mut text))
        .with_context(|| format!("{}: read", db.display()))?;
    if text.len() as u64 > MAX_DB {
        bail!("{}: larger than {MAX_DB} bytes", db.display());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setfattr_encodings() {
        assert_eq!(xattr_value("0x0401ff").unwrap(), [4, 1, 0xff]);
        assert_eq!(xattr_value("0X0401FF").unwrap(), [4, 1, 0xff]);
        assert_eq!(xattr_value("0401ff").unwrap(), [4, 1, 0xff]);
        assert_eq!(xattr_value("0sBAH/").unwrap(), [4, 1, 0xff]);
        assert_eq!(xattr_value("\"ab\"").unwrap(), b"ab");
        assert!(xattr_value("0xzz").is_err());
        assert!(xattr_value("0s!!").is_err());
    }

    #[test]
    fn owners_by_number_and_name() {
        let d = tempfile::tempdir().unwrap();
        let (p, g) = (d.path().join("passwd"), d.path().join("group"));
        std::fs::write(
            &p,
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(&g, "root:x:0:\nnogroup:x:65534:\nbad:x:y:\n").unwrap();
        assert_eq!(owner_in("nobody", &p, &g).unwrap(), (Some(65534), None));
        assert_eq!(
            owner_in("nobody:nogroup", &p, &g).unwrap(),
            (Some(65534), Some(65534))
        );
        assert_eq!(owner_in(":0", &p, &g).unwrap(), (None, Some(0)));
        assert_eq!(
            owner_in("nobody:", &p, &g).unwrap(),
            (Some(65534), Some(65534))
        );
        assert_eq!(owner_in("0:", &p, &g).unwrap(), (Some(0), Some(0)));
        assert_eq!(owner_in("12:34", &p, &g).unwrap(), (Some(12), Some(34)));
        let e = owner_in("nosuch", &p, &g).unwrap_err().to_string();
        assert!(e.contains("no user \"nosuch\""), "{e}");
        let e = format!("{:#}", owner_in(":bad", &p, &g).unwrap_err());
        assert!(e.contains("group:3: bad group id \"y\""), "{e}");
        assert!(owner_in(":", &p, &g).is_err());
        assert!(owner_in("99999999999", &p, &g).is_err());
    }
}
