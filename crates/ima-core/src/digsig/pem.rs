//! Splitting a text file into its PEM blocks (a key file may carry a certificate after the
//! key, as evmctl allows; a certificate file may hold a chain).

use super::KeyError;

/// One `-----BEGIN label-----` … `-----END label-----` block, decoded.
#[derive(Debug)]
pub(crate) struct Block {
    pub label: String,
    pub der: Vec<u8>,
    /// 1-based line of the BEGIN line, for error messages.
    pub line: usize,
}

/// Whether `bytes` looks like PEM text rather than DER.
pub(crate) fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// All PEM blocks of `text`, in order. Text outside blocks is ignored (OpenSSL does the
/// same); a malformed block is an error naming its line.
pub(crate) fn blocks(text: &[u8]) -> Result<Vec<Block>, KeyError> {
    let text = std::str::from_utf8(text).map_err(|e| KeyError::Pem {
        line: line_of(text, e.valid_up_to()),
        msg: "not UTF-8 text".into(),
    })?;
    let mut out = Vec::new();
    let mut rest = text;
    let mut consumed = 0usize;
    while let Some(start) = rest.find("-----BEGIN ") {
        let line = line_of(text.as_bytes(), consumed + start);
        let block = &rest[start..];
        let label_end = block[11..].find("-----").ok_or_else(|| KeyError::Pem {
            line,
            msg: "unterminated BEGIN line".into(),
        })?;
        let label = &block[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block.find(&end_marker).ok_or_else(|| KeyError::Pem {
            line,
            msg: format!("no {end_marker} line"),
        })?;
        let pem = &block[..end + end_marker.len()];
        if pem.contains("Proc-Type:") {
            return Err(KeyError::Pem {
                line,
                msg: "legacy encrypted PEM (Proc-Type/DEK-Info) is not supported; convert it \
                      with `openssl pkcs8 -topk8` to an ENCRYPTED PRIVATE KEY"
                    .into(),
            });
        }
        let (got_label, der) = der::pem::decode_vec(pem.as_bytes()).map_err(|e| KeyError::Pem {
            line,
            msg: format!("{label}: {e}"),
        })?;
        out.push(Block {
            label: got_label.to_owned(),
            der,
            line,
        });
        let advance = start + end + end_marker.len();
        consumed += advance;
        rest = &rest[advance..];
    }
    Ok(out)
}

fn line_of(text: &[u8], offset: usize) -> usize {
    1 + text[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}
