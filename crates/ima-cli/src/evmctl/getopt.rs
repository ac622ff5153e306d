//! GNU `getopt_long` semantics, which evmctl's command line is made of: options and operands
//! in any order (permutation, unless `POSIXLY_CORRECT` is set), `--` ends the options, short
//! options cluster (`-vn`), a required argument is attached or the next word (`-a sha1`,
//! `-asha1`, `--hashalgo sha1`, `--hashalgo=sha1`), an optional one only attached (`-pPASS`,
//! `--pass=PASS`), and a long option may be shortened to any unambiguous prefix (an exact
//! name always wins). Errors are glibc's messages; evmctl then exits with 1.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;

/// Whether an option takes an argument (`no_argument`, `required_argument`,
/// `optional_argument`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    No,
    Required,
    Optional,
}

/// One option: its long name (if any), short letter (if any), and argument rule. `id` is
/// what the parser reports (evmctl's `val`).
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub id: &'static str,
    pub long: Option<&'static str>,
    pub short: Option<u8>,
    pub arg: HasArg,
}

/// A parsed option occurrence, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: &'static str,
    pub value: Option<OsString>,
}

/// The result: options in order, then the operands in order.
#[derive(Debug, Default)]
pub struct Parsed {
    pub opts: Vec<Found>,
    pub operands: Vec<OsString>,
}

/// Parses `args` (without the program name). `Err` is the message glibc prints.
pub fn parse(prog: &str, table: &[Opt], args: &[OsString]) -> Result<Parsed, String> {
    let posix = std::env::var_os("POSIXLY_CORRECT").is_some();
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_bytes();
        i += 1;
        if a == b"--" {
            out.operands.extend(args[i..].iter().cloned());
            break;
        }
        if a.len() < 2 || a[0] != b'-' {
            out.operands.push(args[i - 1].clone());
            if posix {
                out.operands.extend(args[i..].iter().cloned());
                break;
            }
            continue;
        }
        if let Some(body) = a.strip_prefix(b"--") {
            let (name, inline) = match body.iter().position(|&b| b == b'=') {
                Some(p) => (&body[..p], Some(&body[p + 1..])),
                None => (body, None),
            };
            let opt = find_long(prog, table, name, a)?;
            let lname = opt.long.unwrap_or_default();
            let value = match (opt.arg, inline) {
                (HasArg::No, Some(_)) => {
                    return Err(format!(
                        "{prog}: option '--{lname}' doesn't allow an argument"
                    ));
                }
                (HasArg::No, None) | (HasArg::Optional, None) => None,
                (_, Some(v)) => Some(OsStr::from_bytes(v).to_owned()),
                (HasArg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => {
                        return Err(format!("{prog}: option '--{lname}' requires an argument"));
                    }
                },
            };
            out.opts.push(Found { id: opt.id, value });
            continue;
        }
        // A cluster of short options.
        let mut j = 1;
        while j < a.len() {
            let c = a[j];
            j += 1;
            let Some(opt) = table.iter().find(|o| o.short == Some(c)) else {
                return Err(format!(
                    "{prog}: invalid option -- '{}'",
                    String::from_utf8_lossy(&[c])
                ));
            };
            let rest = &a[j..];
            let value = match opt.arg {
                HasArg::No => None,
                HasArg::Optional if rest.is_empty() => None,
                HasArg::Required if rest.is_empty() => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => {
                        return Err(format!(
                            "{prog}: option requires an argument -- '{}'",
                            String::from_utf8_lossy(&[c])
                        ));
                    }
                },
                HasArg::Optional | HasArg::Required => {
                    j = a.len();
                    Some(OsStr::from_bytes(rest).to_owned())
                }
            };
            out.opts.push(Found { id: opt.id, value });
        }
    }
    Ok(out)
}

/// The long option `name` names: exact match first, else the only one it is a prefix of
/// (several prefixes of the same option entry count once, as in glibc).
fn find_long<'t>(
    prog: &str,
    table: &'t [Opt],
    name: &[u8],
    word: &[u8],
) -> Result<&'t Opt, String> {
    let shown = String::from_utf8_lossy(word);
    let shown = shown.split('=').next().unwrap_or_default();
    if let Some(o) = table
        .iter()
        .find(|o| o.long.map(str::as_bytes) == Some(name))
    {
        return Ok(o);
    }
    let candidates: Vec<&Opt> = table
        .iter()
        .filter(|o| !name.is_empty() && o.long.is_some_and(|l| l.as_bytes().starts_with(name)))
        .collect();
    match candidates.as_slice() {
        [] => Err(format!("{prog}: unrecognized option '{shown}'")),
        [one] => Ok(one),
        many => {
            let first = many[0];
            if many.iter().all(|o| o.id == first.id && o.arg == first.arg) {
                return Ok(first);
            }
            let names: Vec<String> = many
                .iter()
                .filter_map(|o| o.long.map(|l| format!("'--{l}'")))
                .collect();
            Err(format!(
                "{prog}: option '{shown}' is ambiguous; possibilities: {}",
                names.join(" ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &[Opt] = &[
        Opt {
            id: "a",
            long: Some("hashalgo"),
            short: Some(b'a'),
            arg: HasArg::Required,
        },
        Opt {
            id: "h",
            long: Some("help"),
            short: Some(b'h'),
            arg: HasArg::No,
        },
        Opt {
            id: "p",
            long: Some("pass"),
            short: Some(b'p'),
            arg: HasArg::Optional,
        },
        Opt {
            id: "v",
            long: None,
            short: Some(b'v'),
            arg: HasArg::No,
        },
        Opt {
            id: "n",
            long: None,
            short: Some(b'n'),
            arg: HasArg::No,
        },
        Opt {
            id: "imasig",
            long: Some("imasig"),
            short: Some(b's'),
            arg: HasArg::No,
        },
        Opt {
            id: "imahash",
            long: Some("imahash"),
            short: Some(b'd'),
            arg: HasArg::No,
        },
    ];

    type Opts = Vec<(String, Option<String>)>;

    fn p(args: &[&str]) -> Result<(Opts, Vec<String>), String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let r = parse("evmctl", T, &args)?;
        Ok((
            r.opts
                .into_iter()
                .map(|f| {
                    (
                        f.id.to_owned(),
                        f.value.map(|v| v.to_string_lossy().into_owned()),
                    )
                })
                .collect(),
            r.operands
                .into_iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect(),
        ))
    }

    fn o(id: &str, v: Option<&str>) -> (String, Option<String>) {
        (id.to_owned(), v.map(str::to_owned))
    }

    #[test]
    fn permutation_clusters_and_arguments() {
        let (opts, ops) = p(&[
            "ima_hash",
            "-vn",
            "file",
            "-asha1",
            "--hashalgo",
            "md5",
            "-a",
            "x",
        ])
        .unwrap();
        assert_eq!(
            opts,
            [
                o("v", None),
                o("n", None),
                o("a", Some("sha1")),
                o("a", Some("md5")),
                o("a", Some("x"))
            ]
        );
        assert_eq!(ops, ["ima_hash", "file"]);
        let (opts, ops) = p(&["--hashalgo=sha256", "--", "-v", "f"]).unwrap();
        assert_eq!(opts, [o("a", Some("sha256"))]);
        assert_eq!(ops, ["-v", "f"]);
        // "-" alone is an operand.
        assert_eq!(p(&["-"]).unwrap().1, ["-"]);
    }

    #[test]
    fn optional_arguments_only_attached() {
        let (opts, ops) = p(&["-p", "secret", "--pass", "x", "-pPW", "--pass=Q"]).unwrap();
        assert_eq!(
            opts,
            [
                o("p", None),
                o("p", None),
                o("p", Some("PW")),
                o("p", Some("Q"))
            ]
        );
        assert_eq!(ops, ["secret", "x"]);
    }

    #[test]
    fn long_prefixes_exact_and_ambiguous() {
        assert_eq!(p(&["--hash", "sha1"]).unwrap().0, [o("a", Some("sha1"))]);
        assert_eq!(p(&["--he"]).unwrap().0, [o("h", None)]);
        let e = p(&["--ima"]).unwrap_err();
        assert!(
            e.contains("'--ima' is ambiguous") && e.contains("'--imasig'"),
            "{e}"
        );
        assert_eq!(
            p(&["--nope"]).unwrap_err(),
            "evmctl: unrecognized option '--nope'"
        );
        assert_eq!(
            p(&["--help=x"]).unwrap_err(),
            "evmctl: option '--help' doesn't allow an argument"
        );
        assert_eq!(
            p(&["--hashalgo"]).unwrap_err(),
            "evmctl: option '--hashalgo' requires an argument"
        );
        assert_eq!(p(&["-x"]).unwrap_err(), "evmctl: invalid option -- 'x'");
        assert_eq!(
            p(&["-a"]).unwrap_err(),
            "evmctl: option requires an argument -- 'a'"
        );
    }
}
