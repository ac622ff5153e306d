//! The binary measurement list (`binary_runtime_measurements[_<algo>]`), decode and encode.
//!
//! Mirrors `ima_measurements_show` in `security/integrity/ima/ima_fs.c`. Per entry, with
//! integers in the list's byte order ([`ListFormat::endian`]):
//!
//! ```text
//! u32  pcr
//! u8   template_digest[digest_size(bank)]
//! u32  template_name_len
//! char template_name[template_name_len]          /* no NUL */
//! u32  template_data_len                          /* absent for the `ima` template */
//! for each field: u32 len; u8 data[len]           /* `ima`: d[20]; u32 strlen; name */
//! ```
//!
//! Entries follow each other with no padding and the file has no header.
//!
//! [`RawEntry`] borrows from the input and needs no allocation (what replay uses);
//! [`Entry`] owns its fields. `encode(decode(b)) == b` for every list the kernel writes.

use crate::codec::{DecodeError, DecodeErrorKind, Endian, Reader};
use crate::hash::{Digest, HashAlgo, Hasher};
use crate::log::{Entry, ListFormat};
use crate::template::{
    LEGACY_DIGEST_LEN, MAX_FIELDS, MAX_LEGACY_NAME_LEN, MAX_TEMPLATE_NAME_LEN, TemplateData,
    TemplateDesc, is_legacy_name, legacy_hash_input,
};

/// One entry borrowed from a binary list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    /// Byte offset of the entry in the list.
    pub offset: usize,
    pub pcr: u32,
    /// The template digest of the list's bank.
    pub digest: &'a [u8],
    pub template_name: &'a str,
    pub body: RawBody<'a>,
}

/// The template data of a [`RawEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawBody<'a> {
    /// Non-legacy templates: the `u32 len || data` fields, exactly the template-digest
    /// input. `base` is its offset in the list.
    Fields { bytes: &'a [u8], base: usize },
    /// The legacy `ima` template: the bare `d` digest and the name without NUL.
    Legacy { digest: &'a [u8], name: &'a [u8] },
}

impl<'a> RawEntry<'a> {
    /// Decodes one entry of a list in format `f`.
    pub fn decode(r: &mut Reader<'a>, f: ListFormat) -> Result<Self, DecodeError> {
        let offset = r.offset();
        let dlen = f
            .bank
            .digest_len()
            .ok_or_else(|| r.invalid("list bank", format!("unknown bank {}", f.bank)))?;
        let pcr = match f.endian {
            Endian::Little => r.u32_le("pcr index")?,
            Endian::Big => r.u32_be("pcr index")?,
        };
        let digest = r.take(dlen, "template digest")?;
        let name_at = r.offset();
        let nlen = r.len_u32(f.endian, MAX_TEMPLATE_NAME_LEN, "template name length")?;
        let name_bytes = r.take(nlen, "template name")?;
        let template_name = std::str::from_utf8(name_bytes).map_err(|_| DecodeError {
            what: "template name",
            offset: name_at + 4,
            kind: DecodeErrorKind::Invalid("not UTF-8".into()),
        })?;
        if template_name.is_empty() {
            return Err(DecodeError {
                what: "template name length",
                offset: name_at,
                kind: DecodeErrorKind::Invalid("empty template name".into()),
            });
        }
        let body = if is_legacy_name(template_name) {
            let digest = r.take(LEGACY_DIGEST_LEN, "ima template d field")?;
            let len = r.len_u32(f.endian, MAX_LEGACY_NAME_LEN, "ima template n field length")?;
            let name = r.take(len, "ima template n field")?;
            RawBody::Legacy { digest, name }
        } else {
            let len = r.len_u32(f.endian, usize::MAX, "template data length")?;
            let base = r.offset();
            let bytes = r.take(len, "template data")?;
            RawBody::Fields { bytes, base }
        };
        Ok(Self {
            offset,
            pcr,
            digest,
            template_name,
            body,
        })
    }

    /// Whether the logged template digest is all zero (a violation).
    pub fn is_violation(&self) -> bool {
        self.digest.iter().all(|&b| b == 0)
    }

    /// Feeds the template-digest input to `h` (the field bytes as they are, or the legacy
    /// `d || padded name`).
    pub fn hash_into(&self, h: &mut Hasher) {
        match self.body {
            RawBody::Fields { bytes, .. } => h.update(bytes),
            RawBody::Legacy { digest, name } => legacy_hash_input(digest, name, h),
        }
    }

    /// Checks that the template name can be read: it resolves (built in, a field list, or
    /// one of `extra`) and the data splits into that template's number of fields. The
    /// name is not covered by the template digest, so a replay that passes says nothing
    /// about it; a verifier must not pass an entry it cannot read.
    pub fn check_template(&self, f: ListFormat, extra: &[TemplateDesc]) -> Result<(), String> {
        let desc = TemplateDesc::resolve(self.template_name, extra).map_err(|e| e.to_string())?;
        let found = match self.body {
            RawBody::Legacy { .. } => 2,
            RawBody::Fields { bytes, base } => {
                let mut r = Reader::with_base(bytes, base);
                let mut n = 0;
                while !r.is_empty() {
                    let len = r
                        .len_u32(f.endian, usize::MAX, "template field length")
                        .map_err(|e| e.to_string())?;
                    r.take(len, "template field").map_err(|e| e.to_string())?;
                    n += 1;
                }
                n
            }
        };
        let expected = desc.fields().len();
        if found != expected {
            return Err(format!(
                "template {:?} has {expected} fields, the entry has {found}",
                self.template_name
            ));
        }
        Ok(())
    }

    /// Splits the fields into an owned [`Entry`]. `f` must be the format it was decoded
    /// with. Fails with the offset of a field whose length overruns the template data.
    pub fn to_entry(&self, f: ListFormat) -> Result<Entry, DecodeError> {
        let fields = match self.body {
            RawBody::Legacy { digest, name } => {
                let mut n = name.to_vec();
                n.push(0);
                vec![digest.to_vec(), n]
            }
            RawBody::Fields { bytes, base } => {
                let mut r = Reader::with_base(bytes, base);
                let mut fields = Vec::new();
                while !r.is_empty() {
                    if fields.len() == MAX_FIELDS {
                        return Err(r.error(
                            "template field",
                            DecodeErrorKind::TooLong {
                                len: MAX_FIELDS + 1,
                                max: MAX_FIELDS,
                            },
                        ));
                    }
                    let len = r.len_u32(f.endian, usize::MAX, "template field length")?;
                    fields.push(r.take(len, "template field")?.to_vec());
                }
                fields
            }
        };
        let template_digest = Digest::new(f.bank, self.digest).ok_or_else(|| DecodeError {
            what: "template digest",
            offset: self.offset + 4,
            kind: DecodeErrorKind::Invalid(format!("not a {} digest", f.bank)),
        })?;
        Ok(Entry {
            pcr: self.pcr,
            template_digest,
            template_name: self.template_name.to_owned(),
            data: TemplateData::new(fields),
        })
    }
}

/// An iterator over the entries of a binary list; stops after the first error.
#[derive(Debug, Clone)]
pub struct RawEntries<'a> {
    r: Reader<'a>,
    f: ListFormat,
    failed: bool,
}

impl<'a> Iterator for RawEntries<'a> {
    type Item = Result<RawEntry<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let e = RawEntry::decode(&mut self.r, self.f);
        self.failed = e.is_err();
        Some(e)
    }
}

/// The entries of the binary list `bytes`, borrowed.
pub fn raw_entries(bytes: &[u8], f: ListFormat) -> RawEntries<'_> {
    RawEntries {
        r: Reader::new(bytes),
        f,
        failed: false,
    }
}

/// Decodes a whole binary list.
pub fn decode(bytes: &[u8], f: ListFormat) -> Result<Vec<Entry>, DecodeError> {
    raw_entries(bytes, f)
        .map(|e| e.and_then(|e| e.to_entry(f)))
        .collect()
}

/// Appends one entry in format `f`. The template digest is written as it is: use
/// [`Entry::in_bank`] first to write an entry into another bank's list.
pub fn encode_entry(e: &Entry, f: ListFormat, out: &mut Vec<u8>) {
    let u32b = |v: usize| f.endian.u32_bytes(u32::try_from(v).unwrap_or(u32::MAX));
    out.extend_from_slice(&f.endian.u32_bytes(e.pcr));
    out.extend_from_slice(&e.template_digest);
    out.extend_from_slice(&u32b(e.template_name.len()));
    out.extend_from_slice(e.template_name.as_bytes());
    if e.is_legacy() {
        let fields = e.data.fields();
        let d = fields.first().map(Vec::as_slice).unwrap_or_default();
        let n = fields.get(1).map(Vec::as_slice).unwrap_or_default();
        let n = n.strip_suffix(&[0]).unwrap_or(n);
        out.extend_from_slice(d);
        out.extend_from_slice(&u32b(n.len()));
        out.extend_from_slice(n);
    } else {
        out.extend_from_slice(&u32b(e.data.encoded_len()));
        e.data.encode_fields(f.endian, out);
    }
}

/// Encodes a whole binary list.
pub fn encode(entries: &[Entry], f: ListFormat) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        encode_entry(e, f, &mut out);
    }
    out
}

/// The digest size of `bank`, for callers sizing buffers.
pub fn digest_size(bank: HashAlgo) -> Option<usize> {
    bank.digest_len()
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;
    use crate::template::TemplateDesc;

    /// kernel-ima.md §13.9 (`ima` template, evmctl-accepted).
    const LEGACY: &[u8] = &hex!(
        "0a0000007990e06b296517e9ce197ce61cb2e06b40f42f6503000000696d61c973c5a805969b961104ce33f787a1ed9ddf504e0e000000626f6f745f61676772"
        "65676174650a000000c09011dabc92b062689be087a23022c788ab34e403000000696d6122596363b3de40b06f981fb85d82312e8c0ed511150000002f746d70"
        "2f696d61746573742f646174612e747874"
    );

    #[test]
    fn legacy_round_trip_and_digest() {
        let f = ListFormat::default();
        let entries = decode(LEGACY, f).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].data.fields()[1], b"/tmp/imatest/data.txt\0");
        for e in &entries {
            assert_eq!(
                e.template_digest_in(HashAlgo::SHA1, f.endian).unwrap(),
                e.template_digest
            );
        }
        assert_eq!(encode(&entries, f), LEGACY);
    }

    #[test]
    fn truncation_reports_offsets() {
        let f = ListFormat::default();
        for cut in 1..LEGACY.len() {
            if cut == 69 {
                continue; // an entry boundary
            }
            let e = decode(&LEGACY[..cut], f).unwrap_err();
            assert!(e.offset <= cut, "{cut}: {e}");
        }
        let mut absurd = LEGACY.to_vec();
        absurd[24..28].copy_from_slice(&0xfff0_0000u32.to_le_bytes());
        let e = decode(&absurd, f).unwrap_err();
        assert_eq!(e.offset, 24, "{e}");
    }

    proptest::proptest! {
        /// decode(encode(x)) == x for any entry the encoder can write, in both byte orders
        /// and for the sha1 and sha256 lists; and replay never disagrees with
        /// `Entry::extend_value`.
        #[test]
        fn encode_decode_round_trip(
            pcr in 0u32..64,
            fields in proptest::collection::vec(
                proptest::collection::vec(proptest::num::u8::ANY, 0..80), 0..15),
            name in proptest::sample::select(vec!["ima-ng", "ima-sig", "d-ng|n-ng|iuid", "x"]),
            big in proptest::bool::ANY,
            sha256 in proptest::bool::ANY,
        ) {
            let endian = if big { Endian::Big } else { Endian::Little };
            let bank = if sha256 { HashAlgo::SHA256 } else { HashAlgo::SHA1 };
            let f = ListFormat { bank, endian };
            let desc = TemplateDesc::with_name(name, "d-ng|n-ng").unwrap();
            let e = Entry::new(pcr, &desc, TemplateData::new(fields), bank, endian).unwrap();
            let bytes = encode(std::slice::from_ref(&e), f);
            proptest::prop_assert_eq!(decode(&bytes, f).unwrap(), vec![e.clone()]);
            let raw: Vec<RawEntry<'_>> = raw_entries(&bytes, f).map(|r| r.unwrap()).collect();
            let r = crate::log::replay::replay(&raw, bank, &[bank], &[None], endian).unwrap();
            let mut h = bank.hasher().unwrap();
            h.update(&Digest::zero(bank).unwrap());
            h.update(&e.extend_value(bank, endian).unwrap());
            proptest::prop_assert_eq!(r.banks[0].pcrs[0].value, h.finalize());
            proptest::prop_assert!(r.bad_digests.is_empty());
        }
    }

    #[test]
    fn built_entry_round_trips_big_endian() {
        let desc = TemplateDesc::builtin("evm-sig").unwrap();
        let ev = crate::template::Event {
            digest: Some(HashAlgo::SHA256.digest(b"x").unwrap()),
            name: b"/a b",
            xattrs: &[("security.ima", b"\x04\x04abc")],
            inode: Some(crate::template::InodeAttrs {
                uid: 1,
                gid: 2,
                mode: 0o100644,
            }),
            ..Default::default()
        };
        for endian in [Endian::Little, Endian::Big] {
            let f = ListFormat {
                bank: HashAlgo::SHA256,
                endian,
            };
            let data = desc.build(&ev, endian).unwrap();
            let e = Entry::new(11, &desc, data, f.bank, endian).unwrap();
            let bytes = encode(std::slice::from_ref(&e), f);
            assert_eq!(decode(&bytes, f).unwrap(), vec![e]);
        }
    }
}
