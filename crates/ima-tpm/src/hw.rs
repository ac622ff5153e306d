//! A real TPM 2.0 (device or swtpm) driven with commands marshalled by `tpm2-protocol`.
//!
//! Only the handful of commands IMA needs: GetCapability(PCRS), PCR_Read, PCR_Extend,
//! CreatePrimary (the AK), Quote, ReadClock and FlushContext. Authorisation is the empty password
//! session (`TPM_RS_PW`), as the kernel uses for PCR_Extend.

use ima_core::codec::{DecodeError, Reader};
use ima_core::hash::{Digest, HashAlgo};
use ima_core::log::replay::PcrBank;
use tpm2_protocol::TpmWriter;
use tpm2_protocol::basic::{TpmBuffer, TpmUint32};
use tpm2_protocol::data::{
    Tpm2bAuth, Tpm2bData, Tpm2bDigest, Tpm2bNonce, Tpm2bPublic, Tpm2bSensitiveCreate, TpmAlgId,
    TpmCap, TpmEccCurve, TpmRc, TpmRh, TpmSt, TpmSu, TpmaObject, TpmaSession, TpmlDigestValues,
    TpmlPcrSelection, TpmsAuthCommand, TpmsEccParms, TpmsEccPoint, TpmsPcrSelect, TpmsPcrSelection,
    TpmsSchemeHash, TpmsSensitiveCreate, TpmtEccScheme, TpmtHa, TpmtKdfScheme, TpmtPublic,
    TpmtSigScheme, TpmtSymDefObject, TpmuAsymScheme, TpmuCapabilities, TpmuHa, TpmuPublicId,
    TpmuPublicParms,
};
use tpm2_protocol::frame::{
    TpmCreatePrimaryCommand, TpmCreatePrimaryResponse, TpmFlushContextCommand, TpmFrame,
    TpmGetCapabilityCommand, TpmGetCapabilityResponse, TpmPcrExtendCommand, TpmPcrReadCommand,
    TpmPcrReadResponse, TpmQuoteCommand, TpmReadClockCommand, TpmReadClockResponse, TpmResponse,
    TpmStartupCommand, TpmUnmarshalBody, tpm_marshal_command,
};

use crate::quote::{AkPublic, Quote};
use crate::transport::Transport;
use crate::{BadReply, ClockInfo, NUM_PCRS, Tpm, TpmError, TpmKind, digests_per_bank};

/// Why `tpm2-protocol` could not marshal a command or unmarshal a response (the byte offset
/// and counts it reports). Its own type, so that no `tpm2-protocol` type leaks out of this
/// module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(tpm2_protocol::TpmError);

/// `TPM_RC_INITIALIZE`: Startup was already done (swtpm `--flags startup-clear`).
const RC_INITIALIZE: u32 = 0x100;

/// A TPM reached through `T`.
#[derive(Debug)]
pub struct HwTpm<T: Transport> {
    transport: T,
    banks: Vec<HashAlgo>,
}

impl<T: Transport> HwTpm<T> {
    /// Sends TPM2_Startup(CLEAR) (ignoring "already initialised") and reads the allocated
    /// PCR banks.
    pub fn new(transport: T) -> Result<Self, TpmError> {
        let mut tpm = Self {
            transport,
            banks: Vec::new(),
        };
        let startup = TpmStartupCommand {
            handles: [],
            startup_type: TpmSu::Clear,
        };
        match tpm.call_raw(&startup, "TPM2_Startup", false) {
            Ok(_) => {}
            Err(TpmError::Rc { rc, .. }) if rc == RC_INITIALIZE => {}
            Err(e) => return Err(e),
        }
        tpm.banks = tpm.allocated_banks()?;
        Ok(tpm)
    }

    /// Marshals `cmd`, sends it, checks the response code and returns the response bytes.
    fn call_raw<C: TpmFrame>(
        &mut self,
        cmd: &C,
        name: &'static str,
        password_session: bool,
    ) -> Result<Vec<u8>, TpmError> {
        let mut buf = vec![0u8; 4096];
        let mut w = TpmWriter::new(&mut buf);
        let pw = [TpmsAuthCommand {
            session_handle: TpmUint32::new(TpmRh::Pw as u32),
            nonce: Tpm2bNonce::default(),
            session_attributes: TpmaSession::empty(),
            hmac: Tpm2bAuth::default(),
        }];
        let (tag, sessions): (TpmSt, &[TpmsAuthCommand]) = if password_session {
            (TpmSt::Sessions, &pw)
        } else {
            (TpmSt::NoSessions, &[])
        };
        tpm_marshal_command(cmd, tag, sessions, &mut w).map_err(|source| TpmError::Marshal {
            what: name,
            source: WireError(source),
        })?;
        let n = w.len();
        let mut tries = 0;
        let (rsp, rc) = loop {
            let rsp = self.transport.transact(&buf[..n])?;
            let unmarshal = |source| TpmError::Unmarshal {
                command: name,
                source: WireError(source),
            };
            let view = TpmResponse::cast(&rsp).map_err(unmarshal)?;
            let rc = view.rc().map_err(unmarshal)?;
            // TPM_RC_YIELDED, TPM_RC_TESTING, TPM_RC_RETRY: the TPM asks us to send it again.
            if matches!(rc.value(), 0x908 | 0x90a | 0x922) && tries < 50 {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(2 * tries));
                continue;
            }
            break (rsp, rc);
        };
        if rc.value() != 0 {
            return Err(TpmError::Rc {
                command: name,
                rc: rc.value(),
                name: rc_name(rc),
            });
        }
        Ok(rsp)
    }

    fn call<C: TpmFrame, R: TpmUnmarshalBody>(
        &mut self,
        cmd: &C,
        name: &'static str,
        password_session: bool,
    ) -> Result<(R, Vec<u8>), TpmError> {
        let rsp = self.call_raw(cmd, name, password_session)?;
        let r = TpmResponse::cast(&rsp)
            .and_then(|v| v.unmarshal::<R>())
            .map_err(|source| TpmError::Unmarshal {
                command: name,
                source: WireError(source),
            })?;
        Ok((r, rsp))
    }

    fn allocated_banks(&mut self) -> Result<Vec<HashAlgo>, TpmError> {
        let cmd = TpmGetCapabilityCommand {
            handles: [],
            cap: TpmCap::Pcrs,
            property: TpmUint32::new(0),
            property_count: TpmUint32::new(1),
        };
        let (r, _): (TpmGetCapabilityResponse, _) =
            self.call(&cmd, "TPM2_GetCapability(PCRS)", false)?;
        let TpmuCapabilities::Pcrs(sel) = r.capability_data.data else {
            return Err(TpmError::Reply {
                command: "TPM2_GetCapability(PCRS)",
                what: BadReply::NotPcrSelection,
            });
        };
        Ok(sel
            .iter()
            .filter(|s| s.pcr_select.iter().any(|b| *b != 0))
            .filter_map(|s| HashAlgo::from_tpm_alg_id(s.hash as u16))
            .collect())
    }

    fn check_bank(&self, bank: HashAlgo) -> Result<TpmAlgId, TpmError> {
        if !self.banks.contains(&bank) {
            return Err(TpmError::NoSuchBank(bank));
        }
        alg_id(bank)
    }

    fn create_primary_ak(&mut self) -> Result<(u32, AkPublic), TpmError> {
        let cmd = TpmCreatePrimaryCommand {
            handles: [TpmUint32::new(TpmRh::Endorsement as u32)],
            in_sensitive: Tpm2bSensitiveCreate {
                inner: TpmsSensitiveCreate::default(),
            },
            in_public: Tpm2bPublic {
                inner: ak_template(),
            },
            outside_info: Tpm2bData::default(),
            creation_pcr: TpmlPcrSelection::new(),
        };
        let (r, _): (TpmCreatePrimaryResponse, _) =
            self.call(&cmd, "TPM2_CreatePrimary(AK)", true)?;
        let handle = r.handles[0].value();
        let TpmuPublicId::Ecc(point) = &r.out_public.inner.unique else {
            self.flush_context(handle);
            return Err(TpmError::Reply {
                command: "TPM2_CreatePrimary(AK)",
                what: BadReply::AkNotEcc,
            });
        };
        let ak = AkPublic::from_p256_point(&point.x, &point.y);
        match ak {
            Ok(ak) => Ok((handle, ak)),
            Err(e) => {
                self.flush_context(handle);
                Err(e)
            }
        }
    }

    /// Best effort: a transient object left behind only costs a TPM slot until reset.
    fn flush_context(&mut self, handle: u32) {
        let cmd = TpmFlushContextCommand {
            handles: [],
            flush_handle: TpmUint32::new(handle),
        };
        if let Err(e) = self.call_raw(&cmd, "TPM2_FlushContext", false) {
            tracing::debug!("flushing handle {handle:#x}: {e}");
        }
    }

    fn quote_with(
        &mut self,
        handle: u32,
        nonce: &[u8],
        selection: &[(HashAlgo, Vec<u32>)],
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let mut sel = TpmlPcrSelection::new();
        for (bank, pcrs) in selection {
            let alg = self.check_bank(*bank)?;
            push(&mut sel, pcr_selection(alg, pcrs)?, "PCR selection")?;
        }
        let cmd = TpmQuoteCommand {
            handles: [TpmUint32::new(handle)],
            qualifying_data: Tpm2bData::try_from(nonce)
                .map_err(|_| TpmError::NonceTooLong { len: nonce.len() })?,
            in_scheme: TpmtSigScheme {
                scheme: TpmAlgId::Null,
                ..TpmtSigScheme::default()
            },
            pcr_select: sel,
        };
        let rsp = self.call_raw(&cmd, "TPM2_Quote", true)?;
        split_quote_response(&rsp).map_err(|source| TpmError::Decode {
            structure: "TPM2_Quote response",
            source,
        })
    }
}

/// The exact `TPMS_ATTEST` bytes the TPM signed and the `TPMT_SIGNATURE` after them, from a
/// TPM2_Quote response with sessions: header (10) || parameterSize (4) || TPM2B_ATTEST ||
/// TPMT_SIGNATURE || auth area.
fn split_quote_response(rsp: &[u8]) -> Result<(Vec<u8>, Vec<u8>), DecodeError> {
    let mut r = Reader::new(rsp);
    r.take(10, "response header")?;
    let psize = r.u32_be("parameterSize")? as usize;
    let mut params = r.sub(psize, "parameters")?;
    let alen = params.u16_be("TPM2B_ATTEST size")?;
    let attest = params.take(usize::from(alen), "TPM2B_ATTEST")?;
    let sig = params.take_rest();
    Ok((attest.to_vec(), sig.to_vec()))
}

impl<T: Transport> HwTpm<T> {
    /// One quote with the AK at `handle`, then the quoted PCRs read.
    fn quote_and_read(
        &mut self,
        handle: u32,
        ak: &AkPublic,
        nonce: &[u8],
        selection: &[(HashAlgo, Vec<u32>)],
    ) -> Result<Quote, TpmError> {
        let (attest, signature) = self.quote_with(handle, nonce, selection)?;
        let mut pcrs = Vec::new();
        for (bank, idx) in selection {
            let mut sorted = idx.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let vals = self.pcr_read(*bank, &sorted)?;
            let mut values = PcrBank::new(*bank);
            for (i, v) in sorted.into_iter().zip(vals) {
                values.set(i, v);
            }
            pcrs.push(values);
        }
        Ok(Quote {
            attest,
            signature,
            ak: ak.clone(),
            pcrs,
        })
    }
}

impl<T: Transport> Tpm for HwTpm<T> {
    fn kind(&self) -> TpmKind {
        if self.transport.is_device() {
            TpmKind::Device(self.transport.describe())
        } else {
            TpmKind::Swtpm(self.transport.describe())
        }
    }

    fn banks(&self) -> &[HashAlgo] {
        &self.banks
    }

    fn pcr_read(&mut self, bank: HashAlgo, pcrs: &[u32]) -> Result<Vec<Digest>, TpmError> {
        let alg = self.check_bank(bank)?;
        let mut out = Vec::with_capacity(pcrs.len());
        for &p in pcrs {
            if p >= NUM_PCRS {
                return Err(TpmError::BadPcr(p));
            }
        }
        // One PCR per command: a reply carries at most 8 digests and must be matched to its
        // selection; one at a time keeps that trivially right and costs ~0.1 ms each.
        for &p in pcrs {
            let mut sel = TpmlPcrSelection::new();
            push(&mut sel, pcr_selection(alg, &[p])?, "PCR selection")?;
            let cmd = TpmPcrReadCommand {
                handles: [],
                pcr_selection_in: sel,
            };
            let (r, _): (TpmPcrReadResponse, _) = self.call(&cmd, "TPM2_PCR_Read", false)?;
            let reply = |what| TpmError::Reply {
                command: "TPM2_PCR_Read",
                what,
            };
            let v = r
                .pcr_values
                .first()
                .ok_or_else(|| reply(BadReply::NoPcrValue { bank, pcr: p }))?;
            out.push(
                Digest::new(bank, v)
                    .ok_or_else(|| reply(BadReply::PcrValueSize { bank, len: v.len() }))?,
            );
        }
        Ok(out)
    }

    fn extend(&mut self, pcr: u32, digests: &[Digest]) -> Result<(), TpmError> {
        if pcr >= NUM_PCRS {
            return Err(TpmError::BadPcr(pcr));
        }
        let ordered = digests_per_bank(&self.banks, digests)?;
        let mut list = TpmlDigestValues::new();
        for d in &ordered {
            let ha = TpmtHa {
                hash_alg: alg_id(d.algo())?,
                digest: TpmuHa::Digest(TpmBuffer::try_from(d.as_bytes()).map_err(|source| {
                    TpmError::Marshal {
                        what: "TPMT_HA",
                        source: WireError(source),
                    }
                })?),
            };
            push(&mut list, ha, "TPML_DIGEST_VALUES")?;
        }
        let cmd = TpmPcrExtendCommand {
            handles: [TpmUint32::new(pcr)],
            digests: list,
        };
        self.call_raw(&cmd, "TPM2_PCR_Extend", true)?;
        Ok(())
    }

    fn clock_info(&mut self) -> Result<ClockInfo, TpmError> {
        let (r, _): (TpmReadClockResponse, _) = self.call(
            &TpmReadClockCommand { handles: [] },
            "TPM2_ReadClock",
            false,
        )?;
        let c = r.current_time.clock_info;
        Ok(ClockInfo {
            clock: c.clock.value(),
            reset_count: c.reset_count.value(),
            restart_count: c.restart_count.value(),
            safe: c.safe.into(),
        })
    }

    fn create_ak(&mut self) -> Result<AkPublic, TpmError> {
        let (handle, ak) = self.create_primary_ak()?;
        self.flush_context(handle);
        Ok(ak)
    }

    fn quote(
        &mut self,
        nonce: &[u8],
        selection: &[(HashAlgo, Vec<u32>)],
    ) -> Result<Quote, TpmError> {
        let (handle, ak) = self.create_primary_ak()?;
        // PCRs may move between the quote and the read (another writer): retry until they
        // agree, five times at most; the caller sees whether the last one does.
        let mut r = self.quote_and_read(handle, &ak, nonce, selection);
        for _ in 1..5 {
            match &r {
                Ok(q) if !q.pcr_digest_matches() => {
                    r = self.quote_and_read(handle, &ak, nonce, selection);
                }
                _ => break,
            }
        }
        self.flush_context(handle);
        r
    }
}

/// The AK: a restricted ECDSA-P256/SHA-256 signing key (like `tpm2_createak -G ecc -g sha256
/// -s ecdsa`), but as a primary object of the endorsement hierarchy.
fn ak_template() -> TpmtPublic {
    TpmtPublic {
        object_type: TpmAlgId::Ecc,
        name_alg: TpmAlgId::Sha256,
        object_attributes: TpmaObject::FIXED_TPM
            | TpmaObject::FIXED_PARENT
            | TpmaObject::SENSITIVE_DATA_ORIGIN
            | TpmaObject::USER_WITH_AUTH
            | TpmaObject::RESTRICTED
            | TpmaObject::SIGN_ENCRYPT,
        auth_policy: Tpm2bDigest::default(),
        parameters: TpmuPublicParms::Ecc(TpmsEccParms {
            symmetric: TpmtSymDefObject::default(),
            scheme: TpmtEccScheme {
                scheme: TpmAlgId::Ecdsa,
                details: TpmuAsymScheme::Hash(TpmsSchemeHash {
                    hash_alg: TpmAlgId::Sha256,
                }),
            },
            curve_id: TpmEccCurve::NistP256,
            kdf: TpmtKdfScheme::default(),
        }),
        unique: TpmuPublicId::Ecc(TpmsEccPoint::default()),
    }
}

fn alg_id(bank: HashAlgo) -> Result<TpmAlgId, TpmError> {
    bank.tpm_alg_id()
        .and_then(|id| TpmAlgId::try_from(id).ok())
        .ok_or(TpmError::NoSuchBank(bank))
}

fn pcr_selection(alg: TpmAlgId, pcrs: &[u32]) -> Result<TpmsPcrSelection, TpmError> {
    let mut bits = [0u8; 3];
    for &p in pcrs {
        if p >= NUM_PCRS {
            return Err(TpmError::BadPcr(p));
        }
        bits[(p / 8) as usize] |= 1 << (p % 8);
    }
    Ok(TpmsPcrSelection {
        hash: alg,
        pcr_select: TpmsPcrSelect::try_from(&bits[..]).map_err(|source| TpmError::Marshal {
            what: "TPMS_PCR_SELECT",
            source: WireError(source),
        })?,
    })
}

fn push<T: Copy, const N: usize>(
    list: &mut tpm2_protocol::basic::TpmList<T, N>,
    item: T,
    what: &'static str,
) -> Result<(), TpmError> {
    list.try_push(item).map_err(|source| TpmError::Marshal {
        what,
        source: WireError(source),
    })
}

fn rc_name(rc: TpmRc) -> String {
    rc.to_string()
}
