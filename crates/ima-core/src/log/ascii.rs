//! The ascii measurement list (`ascii_runtime_measurements[_<algo>]`), render and parse.
//!
//! Mirrors `ima_ascii_measurements_show` in `security/integrity/ima/ima_fs.c`: per entry
//! `printf("%2d ", pcr)`, the template digest in hex, a space, the template name, then for
//! every field a space and the field's rendering (nothing for an empty field, so an empty
//! last field leaves a trailing space), then `\n`.
//!
//! Parsing needs each template's field list (built-in names and format strings resolve by
//! themselves; other names need a [`TemplateDesc`] from the caller). It is the exact inverse
//! of rendering for every list the kernel writes.
//!
//! File names with a newline: the kernel writes names raw, so such an entry spans several
//! lines. It stores every space of a name as `_` (`ima_write_template_field_data`), so the
//! continuation of a name never parses as an entry of its own; [`decode`] joins the lines
//! that do not parse to the entry before them, and keeps the join only if its template
//! digest matches its data (a violation, whose digest is zero, cannot be checked). If the
//! join does not match, the name may run on over lines that do parse (a list from a writer
//! that keeps spaces): each later split is tried, and the first whose template digest
//! matches decides where the name ends.

use crate::codec::Endian;
use crate::hash::{Digest, HashAlgo};
use crate::log::Entry;
use crate::template::{
    LEGACY_DIGEST_LEN, MAX_LEGACY_NAME_LEN, TemplateData, TemplateDesc, TemplateError, parse_hex,
    push_hex,
};

/// Why an entry could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("template {template} has {expected} fields, the entry has {found}")]
    FieldCount {
        template: String,
        expected: usize,
        found: usize,
    },
}

/// Appends the ascii line of `e` (its template digest as it is: use [`Entry::in_bank`]
/// for another bank's list). `extra` resolves template names that are neither built in nor
/// format strings.
pub fn render_entry(
    e: &Entry,
    extra: &[TemplateDesc],
    endian: Endian,
    out: &mut Vec<u8>,
) -> Result<(), RenderError> {
    let desc = TemplateDesc::resolve(&e.template_name, extra)?;
    let fields = e.data.fields();
    if fields.len() != desc.fields().len() {
        return Err(RenderError::FieldCount {
            template: e.template_name.clone(),
            expected: desc.fields().len(),
            found: fields.len(),
        });
    }
    out.extend_from_slice(format!("{:2} ", e.pcr).as_bytes());
    push_hex(&e.template_digest, out);
    out.push(b' ');
    out.extend_from_slice(e.template_name.as_bytes());
    for (field, data) in desc.fields().iter().zip(fields) {
        out.push(b' ');
        field.render_ascii(data, endian, out);
    }
    out.push(b'\n');
    Ok(())
}

/// Renders a whole list; the error carries the index of the entry.
pub fn encode(
    entries: &[Entry],
    extra: &[TemplateDesc],
    endian: Endian,
) -> Result<Vec<u8>, (usize, RenderError)> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        render_entry(e, extra, endian, &mut out).map_err(|err| (i, err))?;
    }
    Ok(out)
}

/// Why an ascii list did not parse, and on which line (1-based) and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {msg}")]
#[non_exhaustive]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub msg: String,
}

/// The start of an entry's line: PCR, template digest and template name, up to the
/// first field.
struct Header<'a> {
    pcr: u32,
    template_digest: Digest,
    name: &'a str,
    desc: TemplateDesc,
    /// Where the fields start.
    fields_at: usize,
}

/// Parses `"%2d <template digest> <template name> "` at the start of `line`.
fn parse_header<'a>(
    line: &'a [u8],
    line_no: usize,
    bank: HashAlgo,
    extra: &[TemplateDesc],
) -> Result<Header<'a>, ParseError> {
    let err = |at: usize, msg: String| ParseError {
        line: line_no,
        column: at + 1,
        msg,
    };
    // "%2d ": one leading space for single-digit PCRs.
    let lead = line.iter().take_while(|&&b| b == b' ').count();
    let pcr_end = lead
        + line[lead..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
    let pcr_text = &line[..pcr_end];
    let pcr: u32 = std::str::from_utf8(pcr_text.trim_ascii_start())
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(0, "expected a decimal PCR index".into()))?;
    if format!("{pcr:2}").as_bytes() != pcr_text || line.get(pcr_end) != Some(&b' ') {
        return Err(err(0, "expected \"%2d \" PCR index".into()));
    }
    let mut at = pcr_end + 1;
    let next_token = |at: usize| -> (&[u8], usize) {
        let rest = &line[at..];
        match rest.iter().position(|&b| b == b' ') {
            Some(p) => (&rest[..p], at + p + 1),
            None => (rest, line.len()),
        }
    };
    let (hex, next) = next_token(at);
    let dlen = bank.digest_len().unwrap_or(0);
    if hex.len() != 2 * dlen {
        return Err(err(
            at,
            format!(
                "expected a {bank} template digest ({} hex digits)",
                2 * dlen
            ),
        ));
    }
    let digest_bytes = parse_hex(hex).map_err(|m| err(at, format!("template digest: {m}")))?;
    let template_digest =
        Digest::new(bank, &digest_bytes).ok_or_else(|| err(at, format!("not a {bank} digest")))?;
    at = next;
    if at >= line.len() {
        return Err(err(at, "expected a template name".into()));
    }
    let (name, next) = next_token(at);
    let name =
        std::str::from_utf8(name).map_err(|_| err(at, "template name is not UTF-8".into()))?;
    let desc = TemplateDesc::resolve(name, extra).map_err(|e| err(at, e.to_string()))?;
    if next == line.len() && line.last() != Some(&b' ') {
        return Err(err(
            line.len(),
            format!("expected {} fields", desc.fields().len()),
        ));
    }
    Ok(Header {
        pcr,
        template_digest,
        name,
        desc,
        fields_at: next,
    })
}

/// Parses one line (without its `\n`) of the list of bank `bank`.
pub fn parse_line(
    line: &[u8],
    line_no: usize,
    bank: HashAlgo,
    extra: &[TemplateDesc],
    endian: Endian,
) -> Result<Entry, ParseError> {
    let err = |at: usize, msg: String| ParseError {
        line: line_no,
        column: at + 1,
        msg,
    };
    // The kernel prints strings up to their NUL, so a NUL never appears in its output.
    if let Some(p) = line.iter().position(|&b| b == 0) {
        return Err(err(p, "NUL byte in an ascii list".into()));
    }
    let Header {
        pcr,
        template_digest,
        name: name_str,
        desc,
        fields_at,
    } = parse_header(line, line_no, bank, extra)?;
    let mut at = fields_at;
    let n = desc.fields().len();
    let mut fields = Vec::with_capacity(n);
    for (i, field) in desc.fields().iter().enumerate() {
        let rest = &line[at..];
        let end = if i + 1 == n {
            rest.len()
        } else {
            rest.iter().position(|&b| b == b' ').ok_or_else(|| {
                err(
                    line.len(),
                    format!("expected {n} fields after {name_str}, found {}", i + 1),
                )
            })?
        };
        let value = field
            .parse_ascii(&rest[..end], endian)
            .map_err(|m| err(at, m))?;
        fields.push(value);
        at += end + 1;
    }
    // The legacy binary record has no lengths for `d` and bounds `n` (see `binary`).
    if desc.is_legacy() {
        if fields[0].len() != LEGACY_DIGEST_LEN {
            return Err(err(
                fields_at,
                "ima template: d must be a 20-byte digest".into(),
            ));
        }
        if fields[1].len() > MAX_LEGACY_NAME_LEN + 1 {
            return Err(err(
                fields_at,
                "ima template: n is longer than 255 bytes".into(),
            ));
        }
    }
    Ok(Entry {
        pcr,
        template_digest,
        template_name: name_str.to_owned(),
        data: TemplateData::new(fields),
    })
}

/// How far past the first split [`decode`] looks for the end of a name that contains a
/// newline: at most this many later splits, spanning at most [`MAX_ENTRY_TEXT`] bytes.
const MAX_LATER_SPLITS: usize = 8;
/// A name is at most `PATH_MAX` (4096) bytes; the other fields of a spanning entry (a
/// signature, EVM xattrs) fit easily in the rest.
const MAX_ENTRY_TEXT: usize = 64 * 1024;

/// Parses a whole list. A missing final newline is accepted. An entry starts on every line
/// that starts like one (PCR, template digest, template name); a line that does not is the
/// continuation of a file name with a newline in the entry before it, kept only if the
/// joined text parses and its template digest matches (see the module documentation).
pub fn decode(
    text: &[u8],
    bank: HashAlgo,
    extra: &[TemplateDesc],
    endian: Endian,
) -> Result<Vec<Entry>, ParseError> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    // Byte ranges of the lines (without their `\n`): lines i..=j are the slice
    // text[spans[i].0..spans[j].1].
    let mut spans = Vec::new();
    let mut start = 0;
    for line in text.split(|&b| b == b'\n') {
        spans.push((start, start + line.len()));
        start += line.len() + 1;
    }
    let line = |i: usize| &text[spans[i].0..spans[i].1];
    let n = spans.len();
    // Every line parsed once on its own (what almost every line is); the header alone is
    // parsed again only for the lines that do not parse.
    let mut alone: Vec<Option<Result<Entry, ParseError>>> = (0..n)
        .map(|i| Some(parse_line(line(i), i + 1, bank, extra, endian)))
        .collect();
    let starts: Vec<bool> = (0..n)
        .map(|i| {
            matches!(alone[i], Some(Ok(_))) || parse_header(line(i), i + 1, bank, extra).is_ok()
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let next = (i + 1..n).find(|&k| starts[k]).unwrap_or(n);
        if next == i + 1 || !starts[i] {
            // One line, or a first line that is no entry: taken as it parsed. Each line
            // is taken once (continuation lines are skipped below).
            let Some(single) = alone[i].take() else {
                break;
            };
            out.push(single?);
            i += 1;
            continue;
        }
        // Lines i+1..next continue a name of entry i. If that join does not match its
        // template digest, the name may run on over lines that start like entries: the
        // end before each later entry start is tried, then the end of the list.
        let ends = std::iter::once(next - 1)
            .chain((next + 1..n).filter(|&k| starts[k]).map(|k| k - 1))
            .chain(std::iter::once(n - 1))
            .take(MAX_LATER_SPLITS + 1);
        let mut found = None;
        let mut tried = None;
        for (nth, j) in ends.enumerate() {
            if tried.replace(j) == Some(j) {
                continue;
            }
            let joined = &text[spans[i].0..spans[j].1];
            if joined.len() > MAX_ENTRY_TEXT && nth > 0 {
                break;
            }
            let Ok(e) = parse_line(joined, i + 1, bank, extra, endian) else {
                continue;
            };
            let matches = e
                .template_digest_in(bank, endian)
                .is_ok_and(|d| d == e.template_digest);
            // A violation's zero digest proves nothing: it takes only the lines that
            // cannot start an entry.
            if (matches && !e.is_violation()) || (e.is_violation() && nth == 0) {
                found = Some((e, j));
                break;
            }
        }
        let Some((e, j)) = found else {
            let note = format!(
                "not an entry, nor the rest of a file name of line {}: no join matches its \
                 template digest",
                i + 1
            );
            return Err(match parse_line(line(i + 1), i + 2, bank, extra, endian) {
                Err(mut err) => {
                    err.msg = format!("{note} ({})", err.msg);
                    err
                }
                Ok(_) => ParseError {
                    line: i + 2,
                    column: 1,
                    msg: note,
                },
            });
        };
        out.push(e);
        i = j + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kernel-ima.md §13.8 (sha1 list), lines 1-3 and 5.
    const LINES: &str = "\
10 f970952a9fd68b86a38c1a216babf66de190ac35 ima-ng sha256:3fc5d36b72f2bbafc50a2369037326b0f41718d676c9c78ad16d2e86a1f137bf boot_aggregate
10 08bfd737bf8f533f5d2ee3c78d267434839926e6 ima-ng sha256:a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447 /tmp/imatest/data.txt
10 0000000000000000000000000000000000000000 ima-ng sha256:0000000000000000000000000000000000000000000000000000000000000000 /tmp/imatest/data.txt
10 b953df9b62623630880754e070ea72d8ce667b52 ima-buf sha256:31cc8aa667cd055b80e2289a3682489f61ee1cfe7124ce3d55ffe7ba25e41f54 kernel_version 362e31382e30
";

    #[test]
    fn parses_renders_and_hashes() {
        let e = Endian::Little;
        let entries = decode(LINES.as_bytes(), HashAlgo::SHA1, &[], e).unwrap();
        assert_eq!(entries.len(), 4);
        assert!(entries[2].is_violation());
        for x in [&entries[0], &entries[1], &entries[3]] {
            assert_eq!(
                x.template_digest_in(HashAlgo::SHA1, e).unwrap(),
                x.template_digest
            );
        }
        assert_eq!(
            entries[0]
                .template_digest_in(HashAlgo::SHA256, e)
                .unwrap()
                .to_hex(),
            "65805912c86894a5ab8283ba2e3e29c93ed78fa28d353d6208f805b91ef0c8f1"
        );
        assert_eq!(encode(&entries, &[], e).unwrap(), LINES.as_bytes());
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad = LINES.replace("sha256:a948", "sha256:x948");
        let err = decode(bad.as_bytes(), HashAlgo::SHA1, &[], Endian::Little).unwrap_err();
        assert_eq!((err.line, err.column), (2, 52), "{err}");
        let err = decode(b"10 00 ima-ng x y\n", HashAlgo::SHA1, &[], Endian::Little).unwrap_err();
        assert_eq!((err.line, err.column), (1, 4), "{err}");
        let line = format!("10 {} mystery a b\n", "00".repeat(20));
        let err = decode(line.as_bytes(), HashAlgo::SHA1, &[], Endian::Little).unwrap_err();
        assert!(err.msg.contains("unknown template"), "{err}");
        let err = decode(b" 1\n", HashAlgo::SHA1, &[], Endian::Little).unwrap_err();
        assert_eq!(err.line, 1);
    }

    /// Found by the ascii_log fuzz target: text that cannot come from the kernel and would
    /// not survive a round trip is rejected (a NUL inside a name; a legacy `d` that is not
    /// 20 bytes, which the binary record cannot carry).
    #[test]
    fn rejects_unrepresentable_lines() {
        let e = Endian::Little;
        let nul = LINES
            .replacen("boot_aggregate", "boot\0aggregate", 1)
            .replace("\\0", "\0");
        let err = decode(nul.as_bytes(), HashAlgo::SHA1, &[], e).unwrap_err();
        assert_eq!((err.line, err.column), (1, 128), "{err}");
        let short = format!("10 {} ima a8eb2a71794e /data/bin/hello\n", "00".repeat(20));
        let err = decode(short.as_bytes(), HashAlgo::SHA1, &[], e).unwrap_err();
        assert!(err.msg.contains("20-byte"), "{err}");
    }

    /// A name with a newline whose second line parses as an entry (a writer that keeps
    /// spaces): the template digest, not the line structure, decides where the name ends.
    /// A violation (zero digest) only takes the lines that cannot be entries.
    #[test]
    fn template_digest_decides_where_a_name_ends() {
        let e = Endian::Little;
        let bank = HashAlgo::SHA1;
        let entry = |name: &str, violation: bool| {
            let d = if violation { "00" } else { "11" };
            let line = format!(
                "10 {} ima-ng sha256:{} {name}",
                "00".repeat(20),
                d.repeat(32)
            );
            let mut x = parse_line(line.as_bytes(), 1, bank, &[], e).unwrap();
            if !violation {
                x.template_digest = x.data.digest(false, bank, e).unwrap();
            }
            x
        };
        let fake = entry("/fake", false);
        let fake_line =
            String::from_utf8(encode(std::slice::from_ref(&fake), &[], e).unwrap()).unwrap();
        let forged = entry(&format!("/x\nA\n{}B", fake_line), false);
        let last = entry("/last", false);
        let text = encode(&[forged.clone(), last.clone()], &[], e).unwrap();
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 5);
        assert_eq!(
            decode(&text, bank, &[], e).unwrap(),
            vec![forged, last.clone()]
        );
        // The same text with a wrong digest in the first entry: no split matches.
        let mut bad = text.clone();
        bad[3] = if bad[3] == b'0' { b'1' } else { b'0' };
        let err = decode(&bad, bank, &[], e).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.msg.contains("no join matches"), "{err}");
        assert_eq!(err.column, 1, "{err}");
        // A violation spans the lines that do not parse, and no further.
        let v = entry("/v\nA", true);
        assert!(v.is_violation());
        let text = encode(&[v.clone(), fake.clone(), last.clone()], &[], e).unwrap();
        assert_eq!(decode(&text, bank, &[], e).unwrap(), vec![v, fake, last]);
    }

    #[test]
    fn pcr_column_is_percent_2d() {
        let mut l = LINES
            .lines()
            .next()
            .unwrap()
            .replacen("10", " 9", 1)
            .into_bytes();
        let e = parse_line(&l, 1, HashAlgo::SHA1, &[], Endian::Little).unwrap();
        assert_eq!(e.pcr, 9);
        l.insert(0, b' ');
        assert!(parse_line(&l, 1, HashAlgo::SHA1, &[], Endian::Little).is_err());
    }
}
