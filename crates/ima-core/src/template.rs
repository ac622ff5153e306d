//! Template descriptors (which fields a measurement-list entry carries), the byte encoding of
//! every template field, building an entry's template data from an event, and the template
//! digest ("template hash") that is extended into each PCR bank.
//!
//! Mirrors `security/integrity/ima/ima_template.c` and `ima_template_lib.c`.
//!
//! Template data is kept as the list of raw field values exactly as the kernel stores them
//! (`struct ima_field_data`): string fields include their terminating NUL, `d-ng` is
//! `"<algo>:" NUL digest`, integers are in the list's byte order. Everything else (the
//! binary and ascii lists, the template digest) is a function of those bytes:
//!
//! ```text
//! struct ima_field_data { u8 *data; u32 len; };
//! struct ima_template_entry {
//!     int pcr;
//!     struct tpm_digest *digests;       /* one template digest per PCR bank */
//!     struct ima_template_desc *template_desc;
//!     u32 template_data_len;            /* sum of (4 + len) over the fields */
//!     struct ima_field_data template_data[];
//! };
//! ```
//!
//! ```
//! use ima_core::codec::Endian;
//! use ima_core::hash::{Digest, HashAlgo};
//! use ima_core::template::{Event, TemplateDesc};
//!
//! let ima_ng = TemplateDesc::builtin("ima-ng").unwrap();
//! let file_digest = HashAlgo::SHA256.digest(b"hello\n").unwrap();
//! let ev = Event { digest: Some(file_digest), name: b"/etc/hello", ..Event::default() };
//! let data = ima_ng.build(&ev, Endian::Little).unwrap();
//! assert_eq!(data.fields()[1], b"/etc/hello\0");
//! let sha1 = data.digest(ima_ng.is_legacy(), HashAlgo::SHA1, Endian::Little).unwrap();
//! assert_eq!(sha1.len(), 20);
//! ```

use std::fmt;
use std::str::FromStr;

use crate::codec::Endian;
use crate::hash::{Digest, HashAlgo, Hasher, UnsupportedAlgo};

/// `IMA_TEMPLATE_NUM_FIELDS_MAX` (ima.h): at most 15 fields per template.
pub const MAX_FIELDS: usize = 15;
/// `IMA_TEMPLATE_FIELD_ID_MAX_LEN` (ima.h): a field id has at most 16 characters.
pub const MAX_FIELD_ID_LEN: usize = 16;
/// `IMA_EVENT_NAME_LEN_MAX` (ima.h): the legacy `n` field holds at most 255 name bytes.
pub const MAX_LEGACY_NAME_LEN: usize = 255;
/// The legacy `ima` template hashes its name zero-padded to `IMA_EVENT_NAME_LEN_MAX + 1`.
pub const LEGACY_NAME_PAD: usize = MAX_LEGACY_NAME_LEN + 1;
/// `IMA_DIGEST_SIZE` (= `SHA1_DIGEST_SIZE`): the legacy `d` field in the binary list.
pub const LEGACY_DIGEST_LEN: usize = 20;
/// Longest template name in a list entry: a custom format of 15 fields of 16 characters
/// with 14 separators is 254 bytes (`ima_restore_measurement_list` bounds names likewise).
pub const MAX_TEMPLATE_NAME_LEN: usize = 255;

/// One template field id (`struct ima_template_field`, `supported_fields[]` in
/// ima_template.c). `FromStr`/`Display` use the kernel's id (`d-ng`, `n-ng`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `d`: bare md5/sha1 digest (legacy).
    D,
    /// `n`: event name, at most 255 bytes (legacy).
    N,
    /// `d-ng`: `"<algo>:" NUL digest`.
    DNg,
    /// `n-ng`: event name of any length.
    NNg,
    /// `sig`: the `security.ima` signature (types 0x03, 0x06), else the `evmsig` value.
    Sig,
    /// `buf`: the measured buffer (ima-buf events).
    Buf,
    /// `d-modsig`: digest of the file without its appended signature.
    DModsig,
    /// `modsig`: the appended PKCS#7 signature.
    Modsig,
    /// `evmsig`: `security.evm` when it is a portable signature (type 0x05).
    EvmSig,
    /// `iuid`: inode uid (u32).
    Iuid,
    /// `igid`: inode gid (u32).
    Igid,
    /// `imode`: inode mode (u16).
    Imode,
    /// `xattrnames`: the present EVM-protected xattr names joined by `|`, NUL-terminated.
    XattrNames,
    /// `xattrlengths`: one u32 length per present xattr.
    XattrLengths,
    /// `xattrvalues`: the concatenated xattr values.
    XattrValues,
    /// `d-ngv2`: `"<ima|verity>:<algo>:" NUL digest`.
    DNgv2,
}

/// How a field is printed in the ascii list (`enum data_formats` in ima_template_lib.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldFormat {
    /// `DATA_FMT_DIGEST`, `DATA_FMT_HEX`: lowercase hex.
    Hex,
    /// `DATA_FMT_STRING`: the bytes up to the first NUL.
    String,
    /// `DATA_FMT_DIGEST_WITH_ALGO`: `algo:` then hex of the digest.
    DigestWithAlgo,
    /// `DATA_FMT_DIGEST_WITH_TYPE_AND_ALGO`: `type:algo:` then hex of the digest.
    DigestWithTypeAndAlgo,
    /// `DATA_FMT_UINT`: unsigned decimal of an integer of `N` bytes in the list's order.
    Uint(usize),
}

impl Field {
    /// Every field, in `supported_fields[]` order.
    pub const ALL: [Field; 16] = [
        Self::D,
        Self::N,
        Self::DNg,
        Self::NNg,
        Self::Sig,
        Self::Buf,
        Self::DModsig,
        Self::Modsig,
        Self::EvmSig,
        Self::Iuid,
        Self::Igid,
        Self::Imode,
        Self::XattrNames,
        Self::XattrLengths,
        Self::XattrValues,
        Self::DNgv2,
    ];

    /// The kernel's field id.
    pub fn id(self) -> &'static str {
        match self {
            Self::D => "d",
            Self::N => "n",
            Self::DNg => "d-ng",
            Self::NNg => "n-ng",
            Self::Sig => "sig",
            Self::Buf => "buf",
            Self::DModsig => "d-modsig",
            Self::Modsig => "modsig",
            Self::EvmSig => "evmsig",
            Self::Iuid => "iuid",
            Self::Igid => "igid",
            Self::Imode => "imode",
            Self::XattrNames => "xattrnames",
            Self::XattrLengths => "xattrlengths",
            Self::XattrValues => "xattrvalues",
            Self::DNgv2 => "d-ngv2",
        }
    }

    /// How the field prints in the ascii list.
    pub fn format(self) -> FieldFormat {
        match self {
            Self::D | Self::Sig | Self::Buf | Self::Modsig | Self::EvmSig => FieldFormat::Hex,
            Self::XattrLengths | Self::XattrValues => FieldFormat::Hex,
            Self::N | Self::NNg | Self::XattrNames => FieldFormat::String,
            Self::DNg | Self::DModsig => FieldFormat::DigestWithAlgo,
            Self::DNgv2 => FieldFormat::DigestWithTypeAndAlgo,
            Self::Iuid | Self::Igid => FieldFormat::Uint(4),
            Self::Imode => FieldFormat::Uint(2),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Field {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.id() == s)
            .ok_or_else(|| TemplateError::UnknownField(s.to_owned()))
    }
}

/// A template descriptor: its name as it appears in the list and its fields
/// (`struct ima_template_desc`).
///
/// ```text
/// struct ima_template_desc {
///     struct list_head list;
///     char *name;
///     char *fmt;
///     int num_fields;
///     const struct ima_template_field **fields;
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateDesc {
    name: String,
    fields: Vec<Field>,
}

/// The kernel's built-in template descriptors (`builtin_templates[]`, ima_template.c):
/// (name, format).
pub const BUILTIN_TEMPLATES: [(&str, &str); 8] = [
    ("ima", "d|n"),
    ("ima-ng", "d-ng|n-ng"),
    ("ima-ngv2", "d-ngv2|n-ng"),
    ("ima-sig", "d-ng|n-ng|sig"),
    ("ima-sigv2", "d-ngv2|n-ng|sig"),
    ("ima-buf", "d-ng|n-ng|buf"),
    ("ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig"),
    (
        "evm-sig",
        "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode",
    ),
];

impl TemplateDesc {
    /// The names of the built-in templates.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN_TEMPLATES.iter().map(|b| b.0)
    }

    /// A built-in template by name (`ima`, `ima-ng`, ... `evm-sig`).
    pub fn builtin(name: &str) -> Option<Self> {
        let (n, fmt) = BUILTIN_TEMPLATES.iter().find(|b| b.0 == name)?;
        let fields = parse_fmt(fmt).ok()?;
        Some(Self {
            name: (*n).to_owned(),
            fields,
        })
    }

    /// A custom template from an `ima_template_fmt` field list such as `d-ng|n-ng|iuid`.
    /// Like the kernel, its name in the list is the format string itself.
    pub fn from_fmt(fmt: &str) -> Result<Self, TemplateError> {
        Ok(Self {
            name: fmt.to_owned(),
            fields: parse_fmt(fmt)?,
        })
    }

    /// A template with an explicit name and field list (for names the kernel knows and this
    /// crate does not; `imactl --template NAME=FMT`).
    pub fn with_name(name: &str, fmt: &str) -> Result<Self, TemplateError> {
        if name.is_empty() || name.len() > MAX_TEMPLATE_NAME_LEN {
            return Err(TemplateError::BadName(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            fields: parse_fmt(fmt)?,
        })
    }

    /// What `template=` and `ima_template=` accept: a built-in name or a format string
    /// (`lookup_template_desc` then `template_desc_init_fields`).
    pub fn lookup(name_or_fmt: &str) -> Result<Self, TemplateError> {
        match Self::builtin(name_or_fmt) {
            Some(d) => Ok(d),
            None => Self::from_fmt(name_or_fmt).map_err(|e| match e {
                TemplateError::UnknownField(_) => {
                    TemplateError::UnknownTemplate(name_or_fmt.to_owned())
                }
                e => e,
            }),
        }
    }

    /// Resolves a template name seen in a list: first `extra` (user-supplied descriptors),
    /// then [`TemplateDesc::lookup`].
    pub fn resolve(name: &str, extra: &[TemplateDesc]) -> Result<Self, TemplateError> {
        match extra.iter().find(|d| d.name == name) {
            Some(d) => Ok(d.clone()),
            None => Self::lookup(name),
        }
    }

    /// The name written in the list (the format string for a custom template).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The `|`-separated field list.
    pub fn fmt(&self) -> String {
        let ids: Vec<&str> = self.fields.iter().map(|f| f.id()).collect();
        ids.join("|")
    }

    /// Whether this is the legacy `ima` template (matched by name, as the kernel does: a
    /// custom `d|n` template is not legacy).
    pub fn is_legacy(&self) -> bool {
        is_legacy_name(&self.name)
    }

    /// Whether the template has field `f`.
    pub fn has(&self, f: Field) -> bool {
        self.fields.contains(&f)
    }

    /// Builds the template data of `ev` for this template: one value per field, each
    /// encoded as the kernel's field-init function does. Integers (`iuid`, `igid`,
    /// `imode`, `xattrlengths`) are written in `endian` (the list's byte order).
    pub fn build(&self, ev: &Event<'_>, endian: Endian) -> Result<TemplateData, TemplateError> {
        let mut out = Vec::with_capacity(self.fields.len());
        for &f in &self.fields {
            out.push(build_field(f, ev, endian)?);
        }
        Ok(TemplateData { fields: out })
    }
}

impl fmt::Display for TemplateDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Whether a template name is the legacy `ima` template.
pub fn is_legacy_name(name: &str) -> bool {
    name == "ima"
}

fn parse_fmt(fmt: &str) -> Result<Vec<Field>, TemplateError> {
    if fmt.is_empty() {
        return Err(TemplateError::UnknownField(String::new()));
    }
    let mut fields = Vec::new();
    for id in fmt.split('|') {
        if id.len() > MAX_FIELD_ID_LEN {
            return Err(TemplateError::UnknownField(id.to_owned()));
        }
        if fields.len() == MAX_FIELDS {
            return Err(TemplateError::TooManyFields(fmt.split('|').count()));
        }
        fields.push(id.parse()?);
    }
    Ok(fields)
}

/// Whether an `d-ngv2` digest is a plain file digest or an fs-verity digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestType {
    /// `ima:`
    #[default]
    Ima,
    /// `verity:` (the rule had `digest_type=verity`).
    Verity,
}

impl DigestType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ima => "ima",
            Self::Verity => "verity",
        }
    }
}

/// Inode attributes recorded by `iuid`, `igid` and `imode` (init user namespace values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InodeAttrs {
    pub uid: u32,
    pub gid: u32,
    /// `i_mode` including the file type bits (0o100644 for a regular file).
    pub mode: u16,
}

/// Everything a template field can record about one measurement
/// (`struct ima_event_data`). Fields a template does not use are ignored; `None` or empty
/// means "absent" and yields an empty field where the kernel writes one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Event<'a> {
    /// The measured digest (file or buffer). For a violation: a zero digest of `ima_hash`.
    /// Needed by `d-ng`, `d-ngv2` and `d`.
    pub digest: Option<Digest>,
    /// `d-ngv2` type prefix.
    pub digest_type: DigestType,
    /// For the legacy `d` field when `digest` is neither md5 nor sha1: the sha1 (or md5, if
    /// `ima_hash=md5`) digest of the same data, which the kernel computes for `d`.
    pub legacy_digest: Option<Digest>,
    /// Pathname or buffer event name (spaces become `_` when stored).
    pub name: &'a [u8],
    /// For the legacy `n` field when `name` is longer than 255 bytes: the file's basename
    /// (the dentry name). `None` for buffers: the name is then truncated to 255 bytes.
    pub basename: Option<&'a [u8]>,
    /// The file's `security.ima` value (for `sig`).
    pub ima_xattr: Option<&'a [u8]>,
    /// The file's `security.evm` value (for `evmsig`, and `sig` as a fallback).
    pub evm_xattr: Option<&'a [u8]>,
    /// The measured buffer (for `buf`).
    pub buf: Option<&'a [u8]>,
    /// The appended signature, raw PKCS#7 (for `modsig`).
    pub modsig: Option<&'a [u8]>,
    /// The digest of the file without its appended signature (for `d-modsig`).
    pub modsig_digest: Option<Digest>,
    /// The present EVM-protected xattrs in the kernel's list order, name and value
    /// (for `xattrnames`, `xattrlengths`, `xattrvalues`).
    pub xattrs: &'a [(&'a str, &'a [u8])],
    /// Inode attributes (for `iuid`, `igid`, `imode`); `None` for buffer events.
    pub inode: Option<InodeAttrs>,
}

/// `EVM_IMA_XATTR_DIGSIG`, `IMA_VERITY_DIGSIG`, `EVM_XATTR_PORTABLE_DIGSIG` (integrity.h).
const XATTR_DIGSIG: u8 = 0x03;
const XATTR_VERITY_DIGSIG: u8 = 0x06;
const XATTR_PORTABLE_DIGSIG: u8 = 0x05;

fn build_field(f: Field, ev: &Event<'_>, endian: Endian) -> Result<Vec<u8>, TemplateError> {
    Ok(match f {
        Field::D => {
            let d = match ev.digest {
                Some(d) if d.algo() == HashAlgo::SHA1 || d.algo() == HashAlgo::MD5 => d,
                _ => ev.legacy_digest.ok_or(TemplateError::Missing(f))?,
            };
            d.as_bytes().to_vec()
        }
        Field::N => legacy_name(ev.name, ev.basename),
        Field::DNg => digest_ng(&ev.digest.ok_or(TemplateError::Missing(f))?),
        Field::DNgv2 => digest_ngv2(ev.digest_type, &ev.digest.ok_or(TemplateError::Missing(f))?),
        Field::NNg => event_name(ev.name),
        Field::Sig => match ev.ima_xattr {
            Some(x) if matches!(x.first(), Some(&XATTR_DIGSIG | &XATTR_VERITY_DIGSIG)) => {
                x.to_vec()
            }
            _ => evm_sig(ev.evm_xattr),
        },
        Field::EvmSig => evm_sig(ev.evm_xattr),
        Field::Buf => ev.buf.unwrap_or_default().to_vec(),
        Field::DModsig => ev.modsig_digest.as_ref().map(digest_ng).unwrap_or_default(),
        Field::Modsig => ev.modsig.unwrap_or_default().to_vec(),
        Field::Iuid => ev
            .inode
            .map(|i| endian.u32_bytes(i.uid).to_vec())
            .unwrap_or_default(),
        Field::Igid => ev
            .inode
            .map(|i| endian.u32_bytes(i.gid).to_vec())
            .unwrap_or_default(),
        Field::Imode => ev
            .inode
            .map(|i| u16_bytes(endian, i.mode).to_vec())
            .unwrap_or_default(),
        Field::XattrNames => {
            if ev.xattrs.is_empty() {
                Vec::new()
            } else {
                let names: Vec<&str> = ev.xattrs.iter().map(|x| x.0).collect();
                let mut v = names.join("|").into_bytes();
                v.push(0);
                v
            }
        }
        Field::XattrLengths => {
            let mut v = Vec::with_capacity(4 * ev.xattrs.len());
            for (_, value) in ev.xattrs {
                let len = u32::try_from(value.len()).map_err(|_| TemplateError::Missing(f))?;
                v.extend_from_slice(&endian.u32_bytes(len));
            }
            v
        }
        Field::XattrValues => ev.xattrs.iter().flat_map(|x| x.1.iter().copied()).collect(),
    })
}

fn evm_sig(evm: Option<&[u8]>) -> Vec<u8> {
    match evm {
        Some(x) if x.first() == Some(&XATTR_PORTABLE_DIGSIG) => x.to_vec(),
        _ => Vec::new(),
    }
}

fn u16_bytes(endian: Endian, v: u16) -> [u8; 2] {
    match endian {
        Endian::Little => v.to_le_bytes(),
        Endian::Big => v.to_be_bytes(),
    }
}

/// The `d-ng` (and `d-modsig`) encoding: `"<algo>:" NUL digest`.
pub fn digest_ng(d: &Digest) -> Vec<u8> {
    let mut v = format!("{}:", d.algo()).into_bytes();
    v.push(0);
    v.extend_from_slice(d.as_bytes());
    v
}

/// The `d-ngv2` encoding: `"<type>:<algo>:" NUL digest`.
pub fn digest_ngv2(t: DigestType, d: &Digest) -> Vec<u8> {
    let mut v = format!("{}:{}:", t.name(), d.algo()).into_bytes();
    v.push(0);
    v.extend_from_slice(d.as_bytes());
    v
}

/// The `n-ng` encoding: the name with every space replaced by `_`, plus a NUL.
pub fn event_name(name: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = name
        .iter()
        .map(|&b| if b == b' ' { b'_' } else { b })
        .collect();
    v.push(0);
    v
}

/// The legacy `n` encoding: like [`event_name`], but a name longer than 255 bytes is
/// replaced by `basename` (a file's dentry name) or, for a buffer, cut to 255 bytes.
pub fn legacy_name(name: &[u8], basename: Option<&[u8]>) -> Vec<u8> {
    if name.len() <= MAX_LEGACY_NAME_LEN {
        return event_name(name);
    }
    match basename {
        Some(b) => event_name(&b[..b.len().min(MAX_LEGACY_NAME_LEN)]),
        None => event_name(&name[..MAX_LEGACY_NAME_LEN]),
    }
}

/// An entry's template data: the raw value of each field, in template order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct TemplateData {
    fields: Vec<Vec<u8>>,
}

impl TemplateData {
    /// Template data from raw field values (as stored by the kernel).
    pub fn new(fields: Vec<Vec<u8>>) -> Self {
        Self { fields }
    }

    pub fn fields(&self) -> &[Vec<u8>] {
        &self.fields
    }

    pub fn into_fields(self) -> Vec<Vec<u8>> {
        self.fields
    }

    /// `template_data_len`: Σ (4 + len) over the fields.
    pub fn encoded_len(&self) -> usize {
        self.fields.iter().map(|f| 4 + f.len()).sum()
    }

    /// Appends `u32 len || data` per field (the binary list's template data, and the input
    /// of every non-legacy template digest).
    pub fn encode_fields(&self, endian: Endian, out: &mut Vec<u8>) {
        for f in &self.fields {
            // A field longer than 4 GiB cannot be built or decoded; saturate rather than wrap.
            let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&endian.u32_bytes(len));
            out.extend_from_slice(f);
        }
    }

    /// Feeds the template-digest input to `h`: for the legacy `ima` template
    /// `d || n zero-padded to 256 bytes` (`ima_calc_field_array_hash`), otherwise
    /// `u32 len || data` per field in `endian`.
    pub fn hash_into(&self, legacy: bool, endian: Endian, h: &mut Hasher) {
        if legacy {
            let d = self.fields.first().map(Vec::as_slice).unwrap_or_default();
            let n = self.fields.get(1).map(Vec::as_slice).unwrap_or_default();
            legacy_hash_input(d, n, h);
        } else {
            for f in &self.fields {
                let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
                h.update(&endian.u32_bytes(len));
                h.update(f);
            }
        }
    }

    /// The template digest in bank `algo`. Violations are not hashed (their digest is
    /// zero in the list): callers decide that, see `log::Entry`.
    pub fn digest(
        &self,
        legacy: bool,
        algo: HashAlgo,
        endian: Endian,
    ) -> Result<Digest, UnsupportedAlgo> {
        let mut h = algo.hasher()?;
        self.hash_into(legacy, endian, &mut h);
        Ok(h.finalize())
    }
}

/// Feeds the legacy `ima` template-digest input: the digest bytes, then the name (up to
/// its NUL) copied into a zeroed 256-byte buffer.
pub fn legacy_hash_input(digest: &[u8], name: &[u8], h: &mut Hasher) {
    h.update(digest);
    let name = match name.iter().position(|&b| b == 0) {
        Some(p) => &name[..p],
        None => name,
    };
    let mut padded = [0u8; LEGACY_NAME_PAD];
    let n = name.len().min(MAX_LEGACY_NAME_LEN);
    padded[..n].copy_from_slice(&name[..n]);
    h.update(&padded);
}

/// A field value decoded for display (ascii rendering, JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// Zero-length field.
    Empty,
    /// Raw bytes printed as hex (`d`, `sig`, `buf`, `modsig`, `evmsig`, `xattrvalues`).
    Bytes(&'a [u8]),
    /// A string field up to its NUL (`n`, `n-ng`, `xattrnames`).
    Str(&'a [u8]),
    /// `d-ng`, `d-modsig`, `d-ngv2`: the prefix (`sha256:` or `ima:sha256:`, without the
    /// NUL), the algorithm name, an optional type (`ima`/`verity`) and the digest bytes.
    Digest {
        prefix: &'a [u8],
        digest_type: Option<&'a [u8]>,
        algo: &'a [u8],
        digest: &'a [u8],
    },
    /// `iuid`, `igid`, `imode`.
    Uint(u64),
    /// `xattrlengths`.
    Lengths(Vec<u32>),
}

impl Field {
    /// Decodes a stored value for display. Values that do not have the expected shape
    /// (a `d-ng` without `:` NUL, an odd-sized integer) decode as [`FieldValue::Bytes`].
    pub fn decode(self, data: &[u8], endian: Endian) -> FieldValue<'_> {
        if data.is_empty() {
            return FieldValue::Empty;
        }
        match self.format() {
            FieldFormat::Hex if self == Field::XattrLengths && data.len().is_multiple_of(4) => {
                FieldValue::Lengths(
                    data.chunks_exact(4)
                        .map(|c| {
                            let a = [c[0], c[1], c[2], c[3]];
                            match endian {
                                Endian::Little => u32::from_le_bytes(a),
                                Endian::Big => u32::from_be_bytes(a),
                            }
                        })
                        .collect(),
                )
            }
            FieldFormat::Hex => FieldValue::Bytes(data),
            FieldFormat::String => FieldValue::Str(until_nul(data)),
            FieldFormat::DigestWithAlgo | FieldFormat::DigestWithTypeAndAlgo => {
                match split_digest(data) {
                    Some((prefix, digest)) => {
                        let inner = &prefix[..prefix.len() - 1]; // drop the final ':'
                        let (digest_type, algo) =
                            if self.format() == FieldFormat::DigestWithTypeAndAlgo {
                                match inner.iter().position(|&b| b == b':') {
                                    Some(p) => (Some(&inner[..p]), &inner[p + 1..]),
                                    None => (None, inner),
                                }
                            } else {
                                (None, inner)
                            };
                        FieldValue::Digest {
                            prefix,
                            digest_type,
                            algo,
                            digest,
                        }
                    }
                    None => FieldValue::Bytes(data),
                }
            }
            FieldFormat::Uint(_) => match uint(data, endian) {
                Some(v) => FieldValue::Uint(v),
                None => FieldValue::Bytes(data),
            },
        }
    }
}

impl Field {
    /// Appends the ascii-list rendering of a stored value (`ima_show_template_*`): hex,
    /// the string up to its NUL, `algo:` + hex, or decimal. An empty value renders as
    /// nothing, and so does an integer field whose length is not 1, 2, 4 or 8 bytes (the
    /// `default: break` of `DATA_FMT_UINT` in `ima_show_template_data_ascii`).
    pub fn render_ascii(self, data: &[u8], endian: Endian, out: &mut Vec<u8>) {
        match self.decode(data, endian) {
            FieldValue::Empty => {}
            FieldValue::Bytes(_) if matches!(self.format(), FieldFormat::Uint(_)) => {}
            FieldValue::Bytes(b) => push_hex(b, out),
            FieldValue::Str(s) => out.extend_from_slice(s),
            FieldValue::Digest { prefix, digest, .. } => {
                out.extend_from_slice(prefix);
                push_hex(digest, out);
            }
            FieldValue::Uint(v) => out.extend_from_slice(v.to_string().as_bytes()),
            FieldValue::Lengths(_) => push_hex(data, out),
        }
    }

    /// Parses the ascii rendering of a value back into the stored bytes (the inverse of
    /// [`Field::render_ascii`] for every value the kernel produces). The error says what
    /// was expected.
    pub fn parse_ascii(self, text: &[u8], endian: Endian) -> Result<Vec<u8>, String> {
        match self.format() {
            FieldFormat::Hex => parse_hex(text).map_err(|e| format!("{self}: {e}")),
            FieldFormat::String => {
                if text.is_empty() && self == Field::XattrNames {
                    return Ok(Vec::new());
                }
                let mut v = text.to_vec();
                v.push(0);
                Ok(v)
            }
            FieldFormat::DigestWithAlgo | FieldFormat::DigestWithTypeAndAlgo => {
                if text.is_empty() {
                    return Ok(Vec::new());
                }
                let colon = text
                    .iter()
                    .rposition(|&b| b == b':')
                    .ok_or_else(|| format!("{self}: expected algo:hex"))?;
                let mut v = text[..=colon].to_vec();
                v.push(0);
                v.extend(parse_hex(&text[colon + 1..]).map_err(|e| format!("{self}: {e}"))?);
                Ok(v)
            }
            FieldFormat::Uint(size) => {
                if text.is_empty() {
                    return Ok(Vec::new());
                }
                let s = std::str::from_utf8(text)
                    .ok()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| format!("{self}: expected an unsigned decimal"))?;
                let v: u64 = s
                    .parse()
                    .map_err(|_| format!("{self}: expected an unsigned decimal"))?;
                if size < 8 && v >> (8 * size) != 0 {
                    return Err(format!("{self}: {v} does not fit in {size} bytes"));
                }
                let le = v.to_le_bytes();
                let mut b = le[..size].to_vec();
                if endian == Endian::Big {
                    b.reverse();
                }
                Ok(b)
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends lowercase hex of `data`.
pub fn push_hex(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(2 * data.len());
    for &b in data {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// Parses hex (either case) into bytes; the error names the first bad character.
pub fn parse_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", text.len()));
    }
    let mut v = Vec::with_capacity(text.len() / 2);
    for (i, pair) in text.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => v.push(h << 4 | l),
            _ => {
                let bad = if nibble(pair[0]).is_none() { 0 } else { 1 };
                return Err(format!(
                    "bad hex digit {:?} at column {}",
                    char::from(pair[bad]),
                    2 * i + bad + 1
                ));
            }
        }
    }
    Ok(v)
}

/// `prefix` ending in `:` and the digest after the NUL that follows it.
fn split_digest(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = data.iter().position(|&b| b == 0)?;
    let prefix = &data[..nul];
    if prefix.last() != Some(&b':') {
        return None;
    }
    Some((prefix, &data[nul + 1..]))
}

fn until_nul(data: &[u8]) -> &[u8] {
    match data.iter().position(|&b| b == 0) {
        Some(p) => &data[..p],
        None => data,
    }
}

fn uint(data: &[u8], endian: Endian) -> Option<u64> {
    if !matches!(data.len(), 1 | 2 | 4 | 8) {
        return None;
    }
    let mut v = 0u64;
    match endian {
        Endian::Little => {
            for &b in data.iter().rev() {
                v = (v << 8) | u64::from(b);
            }
        }
        Endian::Big => {
            for &b in data {
                v = (v << 8) | u64::from(b);
            }
        }
    }
    Some(v)
}

/// Why a template could not be resolved or its data built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    #[error("unknown template field {0:?}")]
    UnknownField(String),
    #[error("unknown template {0:?} (not built in and not a field list; give its format)")]
    UnknownTemplate(String),
    #[error("template has {0} fields, at most 15 are allowed")]
    TooManyFields(usize),
    #[error("bad template name {0:?}")]
    BadName(String),
    #[error("the event lacks what field {0} needs")]
    Missing(Field),
}

#[cfg(test)]
mod tests;
