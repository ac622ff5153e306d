use super::*;
use crate::codec::Endian;
use crate::digsig::{PrivateKey, Signature};
use crate::template::Event;

const BANKS: [HashAlgo; 2] = [HashAlgo::SHA1, HashAlgo::SHA256];

fn boot_pcrs(seed: &str) -> Vec<PcrBank> {
    BANKS
        .iter()
        .map(|&a| {
            let mut b = PcrBank::new(a);
            for i in 0..10 {
                b.set(i, a.digest(format!("{seed}{i}").as_bytes()).unwrap());
            }
            b
        })
        .collect()
}

fn entry(template: &str, ev: &Event<'_>) -> Entry {
    let desc = TemplateDesc::builtin(template).unwrap();
    let data = desc.build(ev, Endian::Little).unwrap();
    Entry::new(10, &desc, data, HashAlgo::SHA1, Endian::Little).unwrap()
}

fn file(path: &str, content: &str) -> Entry {
    entry(
        "ima-ng",
        &Event {
            digest: Some(HashAlgo::SHA256.digest(content.as_bytes()).unwrap()),
            name: path.as_bytes(),
            ..Event::default()
        },
    )
}

fn boot(pcrs: &[PcrBank]) -> Entry {
    let agg = replay::boot_aggregate(&pcrs[1]).unwrap();
    entry(
        "ima-ng",
        &Event {
            digest: Some(agg),
            name: b"boot_aggregate",
            ..Event::default()
        },
    )
}

/// A quote of `entries` replayed over `boot`'s PCRs 0-9, all checks passed.
fn quote(boot: &[PcrBank], entries: &[Entry]) -> Quoted {
    let r = replay::replay(
        entries,
        HashAlgo::SHA1,
        &BANKS,
        &[None, None],
        Endian::Little,
    )
    .unwrap();
    let pcrs = boot
        .iter()
        .zip(&r.banks)
        .map(|(b, rb)| {
            let mut b = b.clone();
            for p in &rb.pcrs {
                b.set(p.index, p.value);
            }
            if b.get(10).is_none() {
                b.set(10, Digest::zero(b.algo()).unwrap());
            }
            b
        })
        .collect();
    Quoted {
        signature_ok: true,
        nonce_ok: true,
        pcr_digest_ok: true,
        reset_count: 1,
        restart_count: 0,
        clock: 1000,
        pcrs,
    }
}

fn bytes(entries: &[Entry]) -> Vec<u8> {
    binary::encode(entries, ListFormat::new(HashAlgo::SHA1))
}

fn refs_for(entries: &[Entry]) -> Refs {
    let mut r = Refs::new();
    for e in entries.iter().skip(1) {
        let desc = TemplateDesc::builtin(&e.template_name).unwrap();
        let f = fields(e, &desc);
        let (algo, b) = f.digest.unwrap();
        r.add_file(
            &event_name(e),
            RefDigest {
                algo,
                bytes: b.to_vec(),
            },
        );
    }
    r
}

fn run(q: &Quoted, list: &[u8], refs: &Refs, keys: &Keyring, cp: Option<&Checkpoint>) -> Verdict {
    let l = List::new(list, ListFormat::new(HashAlgo::SHA1), &[]);
    verify(q, &l, &Policy { refs, keys }, cp).unwrap()
}

fn list_of(n: usize) -> (Vec<PcrBank>, Vec<Entry>) {
    let b = boot_pcrs("fw");
    let mut v = vec![boot(&b)];
    for i in 0..n {
        v.push(file(&format!("/usr/bin/f{i}"), &format!("content {i}")));
    }
    (b, v)
}

#[test]
fn a_good_list_is_trusted_and_checkpointed() {
    let (b, v) = list_of(5);
    let q = quote(&b, &v);
    let refs = refs_for(&v);
    let verdict = run(&q, &bytes(&v), &refs, &Keyring::new(), None);
    assert!(verdict.trusted(), "{:?}", verdict.failures);
    assert_eq!(verdict.baseline, Baseline::Fresh);
    assert_eq!(verdict.stats.by_digest, 5);
    assert!(matches!(
        verdict.boot_aggregate,
        Some(BootAggregateCheck::Match { no_tpm: false, .. })
    ));
    let cp = verdict.checkpoint.unwrap();
    assert_eq!(cp.entries, 6);
    assert_eq!(cp.offset, bytes(&v).len() as u64);
    assert_eq!(Checkpoint::parse(&cp.to_string()).unwrap(), cp);
}

#[test]
fn the_next_round_reads_only_new_entries() {
    let (b, mut v) = list_of(3);
    let refs_all = {
        let mut w = v.clone();
        w.push(file("/usr/bin/new", "new"));
        refs_for(&w)
    };
    let first = run(&quote(&b, &v), &bytes(&v), &refs_all, &Keyring::new(), None);
    let cp = first.checkpoint.unwrap();
    v.push(file("/usr/bin/new", "new"));
    let q = quote(&b, &v);
    let second = run(&q, &bytes(&v), &refs_all, &Keyring::new(), Some(&cp));
    assert!(second.trusted(), "{:?}", second.failures);
    assert_eq!(second.baseline, Baseline::Continued { from: 4 });
    assert_eq!(second.stats.entries, 1, "only the new entry is read");
    assert_eq!(second.total_entries, 5);
    // Nothing new: the checkpoint's values must still be the quoted ones.
    let third = run(
        &q,
        &bytes(&v),
        &refs_all,
        &Keyring::new(),
        second.checkpoint.as_ref(),
    );
    assert!(third.trusted(), "{:?}", third.failures);
    assert_eq!(third.stats.entries, 0);
    // Old entries rewritten behind the checkpoint cannot be hidden: their PCR values are
    // the checkpoint's, and the quote moved on from them.
    let mut forged = v.clone();
    forged[2] = file("/usr/bin/f1", "evil");
    forged.push(file("/usr/bin/new", "new"));
    let q = quote(&b, &forged);
    let v4 = run(&q, &bytes(&forged), &refs_all, &Keyring::new(), Some(&cp));
    assert!(
        v4.failures
            .iter()
            .any(|f| matches!(f, Failure::Replay { pcr: 10, .. })),
        "{:?}",
        v4.failures
    );
}

#[test]
fn truncation_behind_the_checkpoint_is_tampering_but_a_reset_is_a_new_baseline() {
    let (b, v) = list_of(4);
    let refs = refs_for(&v);
    let cp = run(&quote(&b, &v), &bytes(&v), &refs, &Keyring::new(), None)
        .checkpoint
        .unwrap();
    let short = &v[..3];
    let q = quote(&b, short);
    let t = run(&q, &bytes(short), &refs, &Keyring::new(), Some(&cp));
    assert!(
        matches!(t.failures[..], [Failure::Truncated { checkpoint: 5, .. }]),
        "{:?}",
        t.failures
    );
    assert!(
        t.to_string_list()
            .contains("truncated behind the checkpoint")
    );
    // The same short list after a TPM reset (a reboot): a new, good baseline.
    let mut q = q;
    q.reset_count += 1;
    let n = run(&q, &bytes(short), &refs, &Keyring::new(), Some(&cp));
    assert!(n.trusted(), "{:?}", n.failures);
    assert!(matches!(n.baseline, Baseline::NewBoot { .. }));
    // Counters going back: another TPM, or an old quote.
    let mut q = quote(&b, &v);
    q.reset_count = 0;
    let back = run(&q, &bytes(&v), &refs, &Keyring::new(), Some(&cp));
    assert!(matches!(back.failures[0], Failure::CountersWentBack { .. }));
}

#[test]
fn each_failure_names_entry_path_digest_and_the_accepting_reference() {
    let (b, mut v) = list_of(2);
    let refs = refs_for(&v);
    v.push(file("/usr/bin/intruder", "x"));
    v.push(file("/usr/bin/f0", "changed"));
    let q = quote(&b, &v);
    let verdict = run(&q, &bytes(&v), &refs, &Keyring::new(), None);
    assert_eq!(verdict.failures.len(), 2, "{:?}", verdict.failures);
    let text = verdict.to_string_list();
    let want = HashAlgo::SHA256.digest(b"x").unwrap();
    assert!(
        text.contains(&format!(
            "entry 3 (ima-ng /usr/bin/intruder {want}): no reference digest for this path; \
         accepted by the reference \"file {want} /usr/bin/intruder\""
        )),
        "{text}"
    );
    assert!(text.contains("entry 4 (ima-ng /usr/bin/f0"), "{text}");
    assert!(
        text.contains("digest not in the references (they accept sha256:"),
        "{text}"
    );
    assert!(verdict.checkpoint.is_none());
    // Excluded paths pass.
    let mut refs = refs;
    refs.add_exclude(Exclude::Glob("/usr/bin/*".into()))
        .unwrap();
    assert!(run(&q, &bytes(&v), &refs, &Keyring::new(), None).trusted());
}

#[test]
fn quote_and_replay_failures() {
    let (b, v) = list_of(3);
    let refs = refs_for(&v);
    let q = quote(&b, &v);
    for (what, mut q, want) in [
        ("signature", q.clone(), Failure::QuoteSignature),
        ("nonce", q.clone(), Failure::Nonce),
        ("digest", q.clone(), Failure::PcrDigest),
    ] {
        match what {
            "signature" => q.signature_ok = false,
            "nonce" => q.nonce_ok = false,
            _ => q.pcr_digest_ok = false,
        }
        let verdict = run(&q, &bytes(&v), &refs, &Keyring::new(), None);
        assert_eq!(verdict.failures, vec![want]);
    }
    // An entry removed from the middle: the replay no longer reaches the quote.
    let mut gone = v.clone();
    gone.remove(2);
    let verdict = run(&q, &bytes(&gone), &refs, &Keyring::new(), None);
    assert!(
        verdict
            .failures
            .iter()
            .any(|f| matches!(f, Failure::Replay { pcr: 10, .. })),
        "{:?}",
        verdict.failures
    );
    // Boot PCRs changed: boot_aggregate.
    let mut q2 = q.clone();
    q2.pcrs = quote(&boot_pcrs("other"), &v).pcrs;
    let verdict = run(&q2, &bytes(&v), &refs, &Keyring::new(), None);
    assert!(
        matches!(
            verdict.failures[..],
            [Failure::BootAggregate(BootAggregateCheck::Mismatch { .. })]
        ),
        "{:?}",
        verdict.failures
    );
    // An edited entry: wrong template digest, and PCR 10 cannot match from it.
    let mut list = bytes(&v);
    let at = list.len() - 3;
    list[at] ^= 1;
    let verdict = run(&q, &list, &refs, &Keyring::new(), None);
    assert!(
        verdict
            .failures
            .iter()
            .any(|f| matches!(f, Failure::TemplateDigest { entry } if entry.index == 3)),
        "{:?}",
        verdict.failures
    );
    // Malformed: an error with the offset, not a verdict.
    let list = bytes(&v);
    let e = verify(
        &q,
        &List::new(
            &list[..list.len() - 1],
            ListFormat::new(HashAlgo::SHA1),
            &[],
        ),
        &Policy {
            refs: &refs,
            keys: &Keyring::new(),
        },
        None,
    )
    .unwrap_err();
    assert!(matches!(e, AttestError::Binary(_)), "{e}");
}

#[test]
fn signatures_and_keys_loaded_by_the_list() {
    let key_pem = std::fs::read(ima_test::testdata().join("sigs/ec_priv.pem")).unwrap();
    let cert_pem = std::fs::read(ima_test::testdata().join("sigs/ec_x509.pem")).unwrap();
    let key = PrivateKey::from_pem(&key_pem, None).unwrap();
    let cert = Certificate::parse_all(&cert_pem).unwrap().remove(0);
    let d = HashAlgo::SHA256.digest(b"signed content").unwrap();
    let sig = Signature::sign_v2(&key, cert.keyid(), &d).unwrap();
    let mut xattr = Vec::new();
    sig.encode(&mut xattr);
    let signed = entry(
        "ima-sig",
        &Event {
            digest: Some(d),
            name: b"/usr/bin/signed",
            ima_xattr: Some(&xattr),
            ..Event::default()
        },
    );
    let b = boot_pcrs("fw");
    let v = vec![boot(&b), signed.clone()];
    let q = quote(&b, &v);
    let mut ring = Keyring::new();
    // Without the key: not accepted, and the failure says why the signature did not help.
    let no = run(&q, &bytes(&v), &Refs::new(), &ring, None);
    assert!(
        no.failures.is_empty(),
        "no refs and no keys: nothing to check"
    );
    assert!(!no.refs_checked);
    let mut refs = Refs::new();
    refs.add_buf("unused", RefDigest::parse("01").unwrap());
    let no = run(&q, &bytes(&v), &refs, &ring, None);
    let text = no.to_string_list();
    assert!(text.contains("signature: sig (sig v2"), "{text}");
    assert!(text.contains("no key with keyid"), "{text}");
    ring.add(cert.clone());
    let yes = run(&q, &bytes(&v), &refs, &ring, None);
    assert!(yes.trusted(), "{:?}", yes.failures);
    assert_eq!(yes.stats.by_signature, 1);
    // The key loaded by the list itself (an ima-buf entry on .ima), accepted by the refs.
    let cert_der = cert.der().to_vec();
    let key_entry = entry(
        "ima-buf",
        &Event {
            digest: Some(HashAlgo::SHA256.digest(&cert_der).unwrap()),
            name: b".ima",
            buf: Some(&cert_der),
            ..Event::default()
        },
    );
    let v = vec![boot(&b), key_entry, signed];
    let q = quote(&b, &v);
    let no = run(&q, &bytes(&v), &refs, &Keyring::new(), None);
    let text = no.to_string_list();
    assert!(
        text.contains("key loaded onto keyring .ima is not referenced"),
        "{text}"
    );
    let mut refs = refs;
    refs.add_keyring(
        ".ima",
        (&HashAlgo::SHA256.digest(&cert_der).unwrap()).into(),
    );
    let yes = run(&q, &bytes(&v), &refs, &Keyring::new(), None);
    assert!(yes.trusted(), "{:?}", yes.failures);
    assert_eq!((yes.stats.keys_loaded, yes.stats.by_signature), (1, 1));
}

#[test]
fn ascii_lists_verify_and_checkpoint_too() {
    let (b, mut v) = list_of(3);
    let refs = {
        let mut w = v.clone();
        w.push(file("/usr/bin/later", "later"));
        refs_for(&w)
    };
    let text = ascii::encode(&v, &[], Endian::Little).unwrap();
    let l = List::new(&text, ListFormat::new(HashAlgo::SHA1), &[]);
    assert!(!l.binary);
    let keys = Keyring::new();
    let policy = Policy {
        refs: &refs,
        keys: &keys,
    };
    let first = verify(&quote(&b, &v), &l, &policy, None).unwrap();
    assert!(first.trusted(), "{:?}", first.failures);
    let cp = first.checkpoint.unwrap();
    assert!(!cp.binary);
    v.push(file("/usr/bin/later", "later"));
    let text = ascii::encode(&v, &[], Endian::Little).unwrap();
    let l = List::new(&text, ListFormat::new(HashAlgo::SHA1), &[]);
    let second = verify(&quote(&b, &v), &l, &policy, Some(&cp)).unwrap();
    assert!(second.trusted(), "{:?}", second.failures);
    assert_eq!(second.stats.entries, 1);
    // The binary form of the same list after an ascii checkpoint: a new baseline, not an
    // error.
    let bin = bytes(&v);
    let l = List::new(&bin, ListFormat::new(HashAlgo::SHA1), &[]);
    let third = verify(&quote(&b, &v), &l, &policy, Some(&cp)).unwrap();
    assert!(third.trusted(), "{:?}", third.failures);
    assert!(matches!(third.baseline, Baseline::NewBoot { .. }));
    // A malformed ascii line after the checkpoint is an error naming its line in the file.
    let mut bad = text.clone();
    bad.extend_from_slice(b"10 zz\n");
    let l = List::new(&bad, ListFormat::new(HashAlgo::SHA1), &[]);
    let e = verify(&quote(&b, &v), &l, &policy, None).unwrap_err();
    assert!(matches!(e, AttestError::Ascii { line: 6, .. }), "{e}");
}

#[test]
fn a_known_good_list_becomes_references_that_accept_it() {
    let (b, v) = list_of(4);
    let (refs, unknown) = refs_from_list(&v, &[]);
    assert_eq!((refs.file_digests(), unknown), (4, 0));
    let verdict = run(&quote(&b, &v), &bytes(&v), &refs, &Keyring::new(), None);
    assert!(verdict.trusted(), "{:?}", verdict.failures);
    assert_eq!(verdict.stats.by_digest, 4);
    let again = Refs::parse(&refs.to_text()).unwrap();
    assert_eq!(again.to_text(), refs.to_text());
}

impl Verdict {
    fn to_string_list(&self) -> String {
        self.failures.iter().map(|f| f.to_string() + "\n").collect()
    }
}

fn buffer(name: &str, buf: &[u8]) -> Entry {
    entry(
        "ima-buf",
        &Event {
            digest: Some(HashAlgo::SHA256.digest(buf).unwrap()),
            name: name.as_bytes(),
            buf: Some(buf),
            ..Event::default()
        },
    )
}

#[test]
fn imad_denials_are_reported_and_never_become_references() {
    use crate::log::decision;
    let (b, mut v) = list_of(2);
    let mode = decision::ModeRecord {
        appraise: "enforce".into(),
        template: "ima-ng".into(),
        hash: "sha256".into(),
        default: "allow".into(),
    };
    v.push(buffer(decision::MODE, &mode.encode()));
    let known_good = v.clone();
    let who = crate::audit::Subject {
        pid: 77,
        comm: b"sh".to_vec(),
        ..Default::default()
    };
    let fail = crate::audit::Record::appraise(
        crate::appraise::Cause::InvalidHash,
        b"/usr/bin/evil",
        None,
        false,
    );
    v.push(buffer(
        decision::DENIAL,
        &decision::denial_buffer(&fail, &who, b"/usr/bin/evil", None),
    ));
    // References from the known-good list accept its files and its mode...
    let (refs, unknown) = refs_from_list(&known_good, &[]);
    assert_eq!(unknown, 0);
    assert_eq!(refs.bufs().count(), 1, "the mode record");
    // ...and a list with a denial is not trusted: the failure says what was denied.
    let q = quote(&b, &v);
    let verdict = run(&q, &bytes(&v), &refs, &Keyring::new(), None);
    assert_eq!(verdict.failures.len(), 1, "{:?}", verdict.failures);
    let text = verdict.to_string_list();
    assert!(
        text.contains("imad denied an access: pid=77 ")
            && text.contains("cause=invalid-hash comm=\"sh\" name=\"/usr/bin/evil\""),
        "{text}"
    );
    // A list with the denial does not make the denial a reference.
    let (refs, _) = refs_from_list(&v, &[]);
    assert!(refs.buf(decision::DENIAL).is_none());
    // Nor is the engine's boot entry (this boot's TPM counts) one.
    let anchor = BootEntry {
        boot_id: "b".into(),
        tpm_id: "software".into(),
        ..BootEntry::default()
    };
    let w = vec![
        boot(&b),
        buffer(crate::log::boot_entry::BOOT_ENTRY, &anchor.encode()),
    ];
    assert_eq!(refs_from_list(&w, &[]).0.bufs().count(), 0);
}
