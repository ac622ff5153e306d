//! TCTI strings as tpm2-tools spell them: `swtpm:host=127.0.0.1,port=2321`,
//! `device:/dev/tpmrm0`, plus our own `soft:/path` for the embedded software bank (`soft:~/x`
//! is `$HOME/x`).

use std::path::PathBuf;
use std::str::FromStr;

use crate::{DeviceTransport, HwTpm, SocketTransport, SoftPcrs, Tpm, TpmError};

/// Where the TPM is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tcti {
    /// A TPM character device, e.g. `/dev/tpmrm0`.
    Device(PathBuf),
    /// The embedded file-backed software PCR bank.
    Soft(PathBuf),
    /// swtpm's TCP command port.
    Swtpm { host: String, port: u16 },
}

impl Tcti {
    /// Connects (or opens the file) and returns the backend.
    pub fn open(&self) -> Result<Box<dyn Tpm>, TpmError> {
        Ok(match self {
            Self::Device(p) => Box::new(HwTpm::new(DeviceTransport::open(p)?)?),
            Self::Soft(p) => Box::new(SoftPcrs::open(p)?),
            Self::Swtpm { host, port } => {
                Box::new(HwTpm::new(SocketTransport::connect(host, *port)?)?)
            }
        })
    }

    /// Like [`Tcti::open`], for reading only: the software bank must exist and is never
    /// written (a TPM is the same either way; reading PCRs changes nothing).
    pub fn open_read_only(&self) -> Result<Box<dyn Tpm>, TpmError> {
        match self {
            Self::Soft(p) => Ok(Box::new(SoftPcrs::open_read_only(p)?)),
            _ => self.open(),
        }
    }
}

impl FromStr for Tcti {
    type Err = TpmError;

    fn from_str(s: &str) -> Result<Self, TpmError> {
        let bad = |why| TpmError::Tcti {
            tcti: s.to_owned(),
            why,
        };
        let (kind, conf) = s.split_once(':').unwrap_or((s, ""));
        Ok(match kind {
            "device" => Self::Device(PathBuf::from(if conf.is_empty() {
                "/dev/tpmrm0"
            } else {
                conf
            })),
            // The shell does not expand `~` after `soft:`, so we do.
            "soft" if conf.starts_with("~/") => match std::env::var_os("HOME") {
                Some(home) => Self::Soft(PathBuf::from(home).join(&conf[2..])),
                None => return Err(bad("soft:~/ needs $HOME")),
            },
            "soft" if !conf.is_empty() => Self::Soft(PathBuf::from(conf)),
            "soft" => return Err(bad("soft: needs a file path")),
            "swtpm" => {
                let mut host = "127.0.0.1".to_owned();
                let mut port = 2321u16;
                for kv in conf.split(',').filter(|kv| !kv.is_empty()) {
                    match kv.split_once('=') {
                        Some(("host", h)) if !h.is_empty() => host = h.to_owned(),
                        Some(("port", p)) => {
                            port = p
                                .parse()
                                .map_err(|_| bad("port is not a number 0..65535"))?
                        }
                        _ => return Err(bad("expected host=H,port=P")),
                    }
                }
                Self::Swtpm { host, port }
            }
            _ => {
                return Err(bad(
                    "expected swtpm:host=H,port=P, device:PATH or soft:PATH",
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tpm2_tools_spellings() {
        assert_eq!(
            "swtpm:host=127.0.0.1,port=2321".parse::<Tcti>().unwrap(),
            Tcti::Swtpm {
                host: "127.0.0.1".into(),
                port: 2321
            }
        );
        assert_eq!(
            "swtpm:port=5000".parse::<Tcti>().unwrap(),
            Tcti::Swtpm {
                host: "127.0.0.1".into(),
                port: 5000
            }
        );
        assert_eq!(
            "device:/dev/tpmrm0".parse::<Tcti>().unwrap(),
            Tcti::Device("/dev/tpmrm0".into())
        );
        assert_eq!(
            "device".parse::<Tcti>().unwrap(),
            Tcti::Device("/dev/tpmrm0".into())
        );
        assert_eq!(
            "soft:/x/y".parse::<Tcti>().unwrap(),
            Tcti::Soft("/x/y".into())
        );
    }

    #[test]
    fn soft_expands_the_home_directory() {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(
            "soft:~/x/y".parse::<Tcti>().unwrap(),
            Tcti::Soft(home.join("x/y"))
        );
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "mssim:",
            "swtpm:port=x",
            "swtpm:foo",
            "soft:",
            "swtpm:port=70000",
        ] {
            assert!(s.parse::<Tcti>().is_err(), "{s}");
        }
    }
}
