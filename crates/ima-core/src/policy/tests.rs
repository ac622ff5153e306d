use super::defaults::{self, BootPolicy, Builtin};
use super::*;

fn rule(s: &str) -> Rule {
    match Rule::parse(s) {
        Ok(r) => r,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn err(s: &str) -> PolicyError {
    match Rule::parse(s) {
        Ok(r) => panic!("{s:?} parsed as {r}"),
        Err(e) => e,
    }
}

#[test]
fn builtin_tcb_reads_back_like_the_kernel() {
    let got = BootPolicy::single(Builtin::Tcb).default_policy().readback();
    let want = "\
dont_measure fsmagic=0x9fa0 
dont_measure fsmagic=0x62656572 
dont_measure fsmagic=0x64626720 
dont_measure func=FILE_CHECK fsmagic=0x1021994 
dont_measure fsmagic=0x1cd1 
dont_measure fsmagic=0x42494e4d 
dont_measure fsmagic=0x73636673 
dont_measure fsmagic=0xf97cff8c 
dont_measure fsmagic=0x43415d53 
dont_measure fsmagic=0x27e0eb 
dont_measure fsmagic=0x63677270 
dont_measure fsmagic=0x6e736673 
dont_measure fsmagic=0xde5e81e4 
measure func=MMAP_CHECK mask=MAY_EXEC 
measure func=BPRM_CHECK mask=MAY_EXEC 
measure func=FILE_CHECK mask=^MAY_READ euid=0 
measure func=FILE_CHECK mask=^MAY_READ uid=0 
measure func=MODULE_CHECK 
measure func=FIRMWARE_CHECK 
measure func=POLICY_CHECK 
";
    assert_eq!(got, want);
}

#[test]
fn builtin_original_tcb_and_old_tmpfs_rule() {
    let mut b = BootPolicy::single(Builtin::OriginalTcb);
    b.tmpfs_all_hooks = true;
    let got = b.default_policy().readback();
    assert!(got.contains("dont_measure fsmagic=0x1021994 \n"), "{got}");
    assert!(got.ends_with(
        "measure func=MMAP_CHECK mask=MAY_EXEC \n\
         measure func=BPRM_CHECK mask=MAY_EXEC \n\
         measure func=FILE_CHECK mask=MAY_READ uid=0 \n\
         measure func=MODULE_CHECK \n\
         measure func=FIRMWARE_CHECK \n"
    ));
}

#[test]
fn builtin_appraise_tcb_secure_boot_critical_data() {
    let got = BootPolicy::single(Builtin::AppraiseTcb)
        .default_policy()
        .readback();
    let want = "\
dont_appraise fsmagic=0x9fa0 
dont_appraise fsmagic=0x62656572 
dont_appraise fsmagic=0x64626720 
dont_appraise fsmagic=0x1021994 
dont_appraise fsmagic=0x858458f6 
dont_appraise fsmagic=0x1cd1 
dont_appraise fsmagic=0x42494e4d 
dont_appraise fsmagic=0x73636673 
dont_appraise fsmagic=0xf97cff8c 
dont_appraise fsmagic=0x43415d53 
dont_appraise fsmagic=0x6e736673 
dont_appraise fsmagic=0xde5e81e4 
dont_appraise fsmagic=0x27e0eb 
dont_appraise fsmagic=0x63677270 
appraise fowner=0 
";
    assert_eq!(got, want);
    let mut w = BootPolicy::single(Builtin::AppraiseTcb);
    w.write_policy = true;
    w.appraise_signed_init = true;
    assert!(w.default_policy().readback().ends_with(
        "appraise func=POLICY_CHECK appraise_type=imasig \nappraise fowner=0 appraise_type=imasig \n"
    ));
    assert_eq!(
        BootPolicy::single(Builtin::SecureBoot)
            .default_policy()
            .readback(),
        "appraise func=MODULE_CHECK appraise_type=imasig \n\
         appraise func=FIRMWARE_CHECK appraise_type=imasig \n\
         appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig \n\
         appraise func=POLICY_CHECK appraise_type=imasig \n"
    );
    assert_eq!(
        BootPolicy::single(Builtin::CriticalData)
            .default_policy()
            .readback(),
        "measure func=CRITICAL_DATA \n"
    );
    assert!(
        BootPolicy::single(Builtin::FailSecurely)
            .default_policy()
            .is_empty()
    );
    assert!(
        BootPolicy::single(Builtin::FailSecurely)
            .default_policy()
            .fail_securely
    );
}

#[test]
fn boot_combination_order() {
    let (b, bad) = match BootPolicy::from_param("critical_data|appraise_tcb secure_boot|tcb|bogus")
    {
        Err(x) => x,
        Ok(_) => panic!("bogus accepted"),
    };
    assert_eq!(bad.0, vec!["bogus".to_owned()]);
    let mut b = b;
    b.build_sig_funcs = vec![Func::ModuleCheck];
    b.arch_rules = vec![rule("measure func=KEXEC_KERNEL_CHECK")];
    let p = b.default_policy();
    let lines: Vec<&str> = p.rules.iter().map(|r| r.text.as_str()).collect();
    // dont_measure block (13) + tcb (7) + arch (1) + secure_boot (4; build rules skipped)
    // + appraise_tcb (15) + critical_data (1).
    assert_eq!(lines.len(), 13 + 7 + 1 + 4 + 15 + 1);
    assert_eq!(lines[20], "measure func=KEXEC_KERNEL_CHECK");
    assert_eq!(lines[21], "appraise func=MODULE_CHECK appraise_type=imasig");
    assert_eq!(lines[25], "dont_appraise fsmagic=0x9fa0");
    assert_eq!(lines[40], "measure func=CRITICAL_DATA");
    assert_eq!(b.custom_seed().len(), 2);
    // ima_tcb after tcb: the first one wins.
    let mut t = BootPolicy::single(Builtin::Tcb);
    t.enable(Builtin::OriginalTcb);
    assert_eq!(t.tcb, Some(defaults::Tcb::Default));
}

#[test]
fn parse_reads_every_option() {
    let r = rule(
        "appraise func=BPRM_CHECK mask=^MAY_EXEC fsmagic=0xef53 fsname=ext4 \
         fsuuid=8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f euid>99 egid<5 fowner=0 fgroup>3 \
         obj_type=bin_t subj_user=system_u appraise_type=imasig appraise_algos=sha512,sha256 \
         permit_directio",
    );
    assert_eq!(
        r.to_string(),
        "appraise func=BPRM_CHECK mask=^MAY_EXEC fsmagic=0xef53 fsname=ext4 \
         fsuuid=8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f euid>99 egid<5 fowner=0 fgroup>3 \
         appraise_algos=sha256,sha512 obj_type=bin_t subj_user=system_u appraise_type=imasig \
         permit_directio "
    );
    assert_eq!(Rule::parse(&r.to_string()), Ok(r));
    let m = rule("measure func=KEY_CHECK keyrings=.ima|.evm pcr=11 uid=0 template=ima-buf");
    assert_eq!(
        m.to_string(),
        "measure func=KEY_CHECK keyrings=.ima|.evm pcr=11 uid=0 template=ima-buf "
    );
    let v = rule("appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3");
    // The kernel reads this back in an order its own parser rejects; Display does not.
    assert_eq!(
        v.readback().to_string(),
        "appraise func=BPRM_CHECK appraise_type=sigv3 digest_type=verity "
    );
    assert_eq!(
        v.to_string(),
        "appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3 "
    );
    assert_eq!(Rule::parse(&v.to_string()), Ok(v));
    assert_eq!(
        rule("measure uid>4294967294").readback().to_string(),
        "measure uid>-2 "
    );
    assert_eq!(
        rule("measure uid>4294967294").to_string(),
        "measure uid>4294967294 "
    );
    let t = rule("measure template=d-ng|n-ng");
    assert_eq!(t.to_string(), "measure template=ima-ng ");
    assert_eq!(rule("measure func=PATH_CHECK").func, Some(Func::FileCheck));
    assert_eq!(rule("measure func=FILE_MMAP").func, Some(Func::MmapCheck));
    assert_eq!(
        rule("  measure\tfunc=BPRM_CHECK # trailing comment").func,
        Some(Func::BprmCheck)
    );
    assert_eq!(rule("hash func=FILE_CHECK").action, Action::Hash);
    assert_eq!(rule("measure pcr=-0").pcr, Some(0));
}

#[test]
fn parse_errors_point_at_the_token() {
    let cases: &[(&str, usize, &str)] = &[
        ("measure func=BOGUS", 9, "unknown func"),
        ("measure dont_measure", 9, "second action"),
        ("func=BPRM_CHECK", 1, "no action"),
        (
            "measure func=FILE_CHECK func=BPRM_CHECK",
            25,
            "duplicate func=",
        ),
        ("measure mask=MAY_READ mask=MAY_EXEC", 23, "duplicate mask="),
        ("measure mask=MAY_READ|MAY_EXEC", 9, "unknown mask"),
        ("measure fsmagic=0x1 fsmagic=0x2", 21, "duplicate fsmagic="),
        ("measure fsmagic=xyz", 9, "not a hexadecimal number"),
        ("measure fsmagic=0x10000000000000000", 9, "out of range"),
        ("measure uid=0 euid=0", 15, "duplicate uid="),
        ("measure uid=4294967295", 9, "out of range"),
        ("measure uid=4294967296", 9, "out of range"),
        ("measure uid=-1", 9, "not a decimal id"),
        ("measure pcr=64", 9, "out of range"),
        ("measure pcr=99999999999", 9, "out of range"),
        ("dont_measure pcr=11", 14, "only valid on measure"),
        ("template=ima-ng measure", 1, "must follow the measure"),
        ("measure template=ima-bogus", 9, "no defined template"),
        (
            "measure template=ima-ng template=ima-ng",
            25,
            "duplicate template=",
        ),
        ("measure appraise_type=imasig", 9, "only valid on appraise"),
        (
            "appraise appraise_type=sigv3",
            10,
            "only valid after digest_type=verity",
        ),
        (
            "appraise appraise_type=imasig digest_type=verity",
            31,
            "must come before",
        ),
        (
            "appraise func=FILE_CHECK appraise_type=imasig|modsig",
            26,
            "only valid with MODULE_CHECK",
        ),
        (
            "appraise func=FILE_CHECK digest_type=verity",
            26,
            "requires appraise_type=sigv3",
        ),
        (
            "appraise func=MODULE_CHECK digest_type=verity appraise_type=sigv3",
            28,
            "not valid with this func",
        ),
        ("appraise func=KEXEC_CMDLINE", 1, "only valid with measure"),
        (
            "measure func=KEXEC_CMDLINE mask=MAY_READ",
            28,
            "mask= is not valid",
        ),
        (
            "measure func=KEY_CHECK fsmagic=0x1",
            24,
            "fsmagic= is not valid",
        ),
        ("measure func=KEY_CHECK euid=0", 24, "euid= is not valid"),
        ("measure func=KEY_CHECK obj_type=x", 24, "LSM conditions"),
        (
            "measure func=FILE_CHECK keyrings=.ima",
            25,
            "keyrings= is only valid",
        ),
        (
            "measure func=KEY_CHECK keyrings=.ima||.evm",
            24,
            "empty item",
        ),
        (
            "measure func=CRITICAL_DATA label=a label=b",
            36,
            "duplicate label=",
        ),
        (
            "appraise func=SETXATTR_CHECK",
            10,
            "requires appraise_algos",
        ),
        (
            "appraise func=SETXATTR_CHECK appraise_algos=sha256 fowner=0",
            52,
            "accepts only appraise_algos",
        ),
        ("measure func=SETXATTR_CHECK", 1, "only valid with appraise"),
        (
            "appraise appraise_algos=sha256,bogus",
            10,
            "unknown or unavailable",
        ),
        (
            "appraise appraise_algos=sha256 appraise_algos=sha1",
            32,
            "duplicate appraise_algos=",
        ),
        ("measure obj_type=a obj_type=b", 20, "duplicate obj_type="),
        ("measure fsuuid=1234", 9, "not a UUID"),
        ("measure func=", 9, "non-empty value"),
        ("measure func", 9, "missing =value"),
        ("dont_audit", 1, "no negative form"),
        ("measure digest_type=sha256", 9, "expected verity"),
        ("measure func=POST_SETATTR", 9, "unknown func"),
        ("measure func=BPRM_CHECK\r", 9, "carriage return"),
        ("measure fsname<ext4", 9, "unknown token"),
    ];
    for (text, col, msg) in cases {
        let e = err(text);
        assert_eq!(e.column, *col, "{text:?}: {e}");
        assert!(e.to_string().contains(msg), "{text:?}: {e}");
        assert_eq!(e.line, 1);
    }
}

#[test]
fn kernel_accepted_oddities() {
    // Duplicates the kernel silently accepts.
    assert_eq!(
        rule("measure fsname=a fsname=b").fsname.as_deref(),
        Some("b")
    );
    assert_eq!(rule("measure pcr=3 pcr=4").pcr, Some(4));
    assert_eq!(
        rule("measure fsmagic=0 fsmagic=0x9fa0").fsmagic,
        Some(0x9fa0)
    );
    assert!(Rule::parse("appraise appraise_type=imasig appraise_type=imasig").is_ok());
    assert!(Rule::parse("appraise appraise_flag=check_blacklist").is_ok());
    assert!(Rule::parse("measure permit_directio").is_ok());
}

#[test]
fn strict_kernel_rejects_extensions() {
    let text = "policy_version=3\nappraise path_prefix=/opt/app\nmeasure exe=/usr/bin/python3 cgroup=/system.slice\nmeasure glob=/etc/**/*.conf\n";
    let p = Policy::parse(text).unwrap();
    assert_eq!(p.version, Some(3));
    assert!(p.uses_extensions());
    let e = Policy::parse_with(text, &ParseOptions::strict()).unwrap_err();
    assert_eq!(e.0.len(), 4);
    assert!(
        e.0.iter().all(|e| e.to_string().contains("extension")),
        "{e}"
    );
    assert_eq!((e.0[1].line, e.0[1].column), (2, 10));
    assert!(Rule::parse("measure func=KEY_CHECK path=/x").is_err());
    assert!(Rule::parse("measure path=relative").is_err());
}

#[test]
fn file_is_all_or_nothing_with_every_error() {
    let text = "# comment\n\nmeasure func=BPRM_CHECK\nmeasure func=NOPE\n  \t# indented comment\nappraise pcr=1\n";
    let e = Policy::parse(text).unwrap_err();
    let lines: Vec<usize> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![4, 6]);
    let p = Policy::parse("# only\nmeasure func=BPRM_CHECK\n").unwrap();
    assert_eq!(p.rules[0].line, 2);
    assert_eq!(p.rules[0].text, "measure func=BPRM_CHECK");
}

#[test]
fn malformed_files_get_one_clear_error_each() {
    let o = ParseOptions::default();
    let nul = Policy::parse_bytes(b"measure func=BPRM_CHECK\nmeas\0ure\n", &o).unwrap_err();
    assert_eq!(nul.0.len(), 1);
    assert_eq!((nul.0[0].line, nul.0[0].column), (2, 5));
    assert!(nul.to_string().contains("NUL byte"));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
        .collect();
    let g = Policy::parse_bytes(&garbage, &o).unwrap_err();
    assert!(
        g.0.len() == 1 && g.to_string().contains("invalid UTF-8"),
        "{g}"
    );
    let long = format!("measure fsname={}\n", "a".repeat(1 << 20));
    let l = Policy::parse_bytes(long.as_bytes(), &o).unwrap_err();
    assert_eq!(l.0.len(), 1);
    assert!(l.to_string().contains("limit is 4095"), "{l}");
    let range = Policy::parse_bytes(b"measure pcr=4294967296\n", &o).unwrap_err();
    assert!(range.0.len() == 1 && range.to_string().contains("out of range"));
    let dup = Policy::parse_bytes(b"measure func=FILE_CHECK func=FILE_CHECK\n", &o).unwrap_err();
    assert!(dup.0.len() == 1 && dup.to_string().contains("duplicate func="));
}

#[test]
fn evaluation_first_match_per_class() {
    let p = Policy::parse(
        "dont_measure fsmagic=0x9fa0\n\
         audit func=BPRM_CHECK\n\
         hash func=BPRM_CHECK\n\
         measure func=BPRM_CHECK pcr=11 template=ima-sig\n\
         measure func=BPRM_CHECK pcr=12\n\
         appraise func=BPRM_CHECK appraise_type=imasig appraise_algos=sha256\n\
         appraise fowner=0\n",
    )
    .unwrap();
    let mut ev = Event::new(Func::BprmCheck, Mask::MAY_EXEC);
    let e = p.evaluate(&ev);
    assert!(e.measure() && e.appraise() && e.audit());
    assert!(!e.hash(), "appraise clears hash");
    assert_eq!(e.hash.map(|d| d.line), Some(3));
    assert_eq!(e.pcr(), 11);
    assert_eq!(e.template_name("ima-ng"), "ima-sig");
    assert_eq!(e.measure.map(|d| d.line), Some(4));
    assert_eq!(e.appraise.map(|d| d.line), Some(6));
    assert!(e.digsig_required());
    assert_eq!(e.subaction(), matcher::subaction::BPRM_APPRAISE);
    assert_eq!(
        e.allowed_algos.map(|a| a.to_string()),
        Some("sha256".to_owned())
    );
    ev.fsmagic = 0x9fa0;
    let e = p.evaluate(&ev);
    assert!(!e.measure());
    assert_eq!(e.measure.map(|d| d.line), Some(1));
    assert_eq!(e.pcr(), DEFAULT_PCR);
    // Only the requested classes are considered.
    let e = p.evaluate_classes(
        &Event::new(Func::FileCheck, Mask::MAY_READ),
        ActionClass::Appraise.bit(),
    );
    assert_eq!(e.appraise.map(|d| d.line), Some(7));
    assert_eq!(e.subaction(), matcher::subaction::FILE_APPRAISE);
}

#[test]
fn matching_details() {
    let p = |s: &str| Policy::parse(s).unwrap();
    // mask= is exact, mask=^ is any bit.
    let exact = p("measure func=FILE_CHECK mask=MAY_READ\n");
    let rw = Event::new(Func::FileCheck, Mask::MAY_READ | Mask::MAY_WRITE);
    assert!(!exact.evaluate(&rw).measure());
    assert!(
        p("measure func=FILE_CHECK mask=^MAY_READ\n")
            .evaluate(&rw)
            .measure()
    );
    // POST_SETATTR ignores func= and mask=.
    assert!(
        exact
            .evaluate(&Event::new(Func::PostSetattr, Mask::MAY_ACCESS))
            .measure()
    );
    // euid= with CAP_SETUID also matches uid and suid.
    let eu = p("measure euid=0\n");
    let mut ev = Event::new(Func::FileCheck, Mask::MAY_READ);
    ev.euid = 1000;
    assert!(!eu.evaluate(&ev).measure());
    ev.cap_setuid = true;
    assert!(eu.evaluate(&ev).measure());
    // KEY_CHECK: only func, uid and keyrings count; rules without func never match.
    let k = p("measure fsmagic=0x0\nmeasure func=KEY_CHECK keyrings=.ima\n");
    let mut key = Event::new(Func::KeyCheck, Mask::NONE);
    assert!(!k.evaluate(&key).measure());
    key.func_data = Some(".ima");
    assert_eq!(k.evaluate(&key).measure.map(|d| d.line), Some(2));
    // LSM conditions never match without labels.
    let l = p("measure obj_type=bin_t\n");
    let mut ev = Event::new(Func::FileCheck, Mask::MAY_READ);
    assert!(!l.evaluate(&ev).measure());
    ev.lsm[LsmField::ObjType.index()] = Some("bin_t");
    assert!(l.evaluate(&ev).measure());
    // Extensions.
    let x = p(
        "appraise path_prefix=/opt/app\nmeasure glob=/etc/**/*.conf\nmeasure exe=/bin/sh cgroup=/c1\n",
    );
    let mut ev = Event::new(Func::FileCheck, Mask::MAY_READ);
    ev.path = Some(b"/opt/app/bin/x");
    assert!(x.evaluate(&ev).appraise());
    ev.path = Some(b"/opt/apple");
    assert!(!x.evaluate(&ev).appraise());
    ev.path = Some(b"/etc/a/b/x.conf");
    assert!(x.evaluate(&ev).measure());
    ev.path = Some(b"/etc/x.conf2");
    assert!(!x.evaluate(&ev).measure());
    ev.exe = Some(b"/bin/sh");
    ev.cgroup = Some(b"/c1/sub");
    assert_eq!(x.evaluate(&ev).measure.map(|d| d.line), Some(3));
}

#[test]
fn glob_semantics() {
    let g = |p: &str, s: &str| Glob(p.to_owned()).matches(s.as_bytes());
    assert!(g("/etc/*.conf", "/etc/a.conf"));
    assert!(!g("/etc/*.conf", "/etc/x/a.conf"));
    assert!(g("/etc/**.conf", "/etc/x/a.conf"));
    assert!(g("/bin/[a-c]?", "/bin/b1"));
    assert!(!g("/bin/[!a-c]?", "/bin/b1"));
    assert!(g("/x/**", "/x/"));
}

#[test]
fn signed_policy_requirement_and_loading() {
    let mut st = PolicyState::new(&BootPolicy::single(Builtin::Tcb));
    assert!(!st.requires_signed_policy());
    let p1 =
        Policy::parse("measure func=BPRM_CHECK\nappraise func=POLICY_CHECK appraise_type=imasig\n")
            .unwrap();
    assert!(p1.requires_signed_policy());
    assert_eq!(
        st.load(Policy::default(), PolicySource::Literal, LoadMode::Append),
        Err(LoadError::Empty)
    );
    assert!(!st.custom_loaded());
    st.load(p1, PolicySource::Literal, LoadMode::Append)
        .unwrap();
    assert!(st.custom_loaded() && st.requires_signed_policy());
    assert_eq!(st.active().len(), 2);
    let p2 = Policy::parse("measure func=MODULE_CHECK\n").unwrap();
    assert_eq!(
        st.load(p2.clone(), PolicySource::Literal, LoadMode::Append),
        Err(LoadError::SignatureRequired)
    );
    assert_eq!(
        st.load(
            p2.clone(),
            PolicySource::File {
                signature_valid: true
            },
            LoadMode::Append
        ),
        Err(LoadError::AlreadyLoaded)
    );
    // secure_boot requires signed policies from boot on.
    let sb = PolicyState::new(&BootPolicy::single(Builtin::SecureBoot));
    assert!(sb.requires_signed_policy());
    // WRITE_POLICY appends; replace keeps the seed; versions only go up.
    let b = BootPolicy {
        write_policy: true,
        build_sig_funcs: vec![Func::ModuleCheck],
        ..BootPolicy::default()
    };
    let mut st = PolicyState::new(&b);
    let v = |n: u64, r: &str| Policy {
        version: Some(n),
        ..Policy::parse(r).unwrap()
    };
    st.load(
        v(2, "measure func=BPRM_CHECK\n"),
        PolicySource::Literal,
        LoadMode::Append,
    )
    .unwrap();
    st.load(
        v(2, "measure func=FILE_CHECK\n"),
        PolicySource::Literal,
        LoadMode::Append,
    )
    .unwrap();
    assert_eq!(st.active().len(), 3);
    assert_eq!(
        st.load(v(1, "measure\n"), PolicySource::Literal, LoadMode::Replace),
        Err(LoadError::Rollback {
            active: 2,
            new: Some(1)
        })
    );
    st.load(v(3, "audit\n"), PolicySource::Literal, LoadMode::Replace)
        .unwrap();
    let texts: Vec<&str> = st.active().rules.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        vec!["appraise func=MODULE_CHECK appraise_type=imasig", "audit"]
    );
    assert_eq!(st.version(), Some(3));
}

mod props {
    use proptest::prelude::*;

    use super::super::matcher::{ALL_CLASSES, IndexedMatcher, evaluate_linear};
    use super::super::*;

    const FUNCS: [&str; 15] = [
        "FILE_CHECK",
        "MMAP_CHECK",
        "MMAP_CHECK_REQPROT",
        "BPRM_CHECK",
        "CREDS_CHECK",
        "MODULE_CHECK",
        "FIRMWARE_CHECK",
        "KEXEC_KERNEL_CHECK",
        "KEXEC_INITRAMFS_CHECK",
        "POLICY_CHECK",
        "KEXEC_CMDLINE",
        "KEY_CHECK",
        "CRITICAL_DATA",
        "SETXATTR_CHECK",
        "PATH_CHECK",
    ];
    const MAGICS: [u64; 4] = [0x9fa0, 0xef53, 0x1021994, 0];

    fn token() -> impl Strategy<Value = String> {
        let op = prop::sample::select(vec!["=", "<", ">"]);
        prop_oneof![
            prop::sample::select(FUNCS.to_vec()).prop_map(|f| format!("func={f}")),
            (
                any::<bool>(),
                prop::sample::select(vec!["MAY_EXEC", "MAY_WRITE", "MAY_READ", "MAY_APPEND"])
            )
                .prop_map(|(c, m)| format!("mask={}{m}", if c { "^" } else { "" })),
            prop::sample::select(MAGICS.to_vec()).prop_map(|m| format!("fsmagic={m:#x}")),
            prop::sample::select(vec!["ext4", "tmpfs"]).prop_map(|n| format!("fsname={n}")),
            Just("fsuuid=8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f".to_owned()),
            (
                prop::sample::select(vec!["uid", "euid", "gid", "egid", "fowner", "fgroup"]),
                op,
                0u32..3
            )
                .prop_map(|(k, o, v)| format!("{k}{o}{}", v * 500)),
            prop::sample::select(vec!["obj_type=bin_t", "subj_user=u", "obj_role=r"])
                .prop_map(str::to_owned),
            prop::sample::select(vec![
                "keyrings=.ima",
                "keyrings=.ima|.evm",
                "label=kernel_info"
            ])
            .prop_map(str::to_owned),
            (0u32..13).prop_map(|p| format!("pcr={p}")),
            prop::sample::select(vec![
                "template=ima-sig",
                "template=ima-buf",
                "template=d-ng|n-ng"
            ])
            .prop_map(str::to_owned),
            prop::sample::select(vec![
                "appraise_type=imasig",
                "appraise_type=imasig|modsig",
                "digest_type=verity",
                "appraise_type=sigv3",
                "digest_type=verity appraise_type=sigv3",
                "permit_directio",
                "appraise_algos=sha256,sha1",
                "appraise_algos=sha512"
            ])
            .prop_map(str::to_owned),
            prop::sample::select(vec![
                "path=/a/x",
                "path_prefix=/a",
                "glob=/a/*",
                "exe=/bin/sh",
                "cgroup=/c"
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn rule_text() -> impl Strategy<Value = String> {
        (
            prop::sample::select(Action::ALL.to_vec()),
            prop::collection::vec(token(), 0..5),
        )
            .prop_map(|(a, toks)| format!("{a} {}", toks.join(" ")))
    }

    fn valid_rule() -> impl Strategy<Value = Rule> {
        rule_text().prop_filter_map("kernel rejects it", |t| Rule::parse(&t).ok())
    }

    fn event() -> impl Strategy<Value = (usize, u32, [u32; 6], u32, u32, usize, bool, usize, usize)>
    {
        (
            0usize..Func::ALL.len(),
            0u32..16,
            prop::array::uniform6(prop::sample::select(vec![0u32, 500, 1000, 1500])),
            prop::sample::select(vec![0u32, 500, 1000]),
            prop::sample::select(vec![0u32, 500, 1000]),
            0usize..MAGICS.len(),
            any::<bool>(),
            0usize..3,
            0usize..4,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn display_parse_round_trip(r in valid_rule()) {
            let text = r.to_string();
            prop_assert_eq!(Rule::parse(&text), Ok(r), "{}", text);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,80}") {
            let _ = Policy::parse(&s);
            let _ = Policy::parse_bytes(s.as_bytes(), &ParseOptions::strict());
        }

        #[test]
        fn indexed_matches_linear(
            rules in prop::collection::vec(valid_rule(), 0..40),
            events in prop::collection::vec(event(), 1..20),
            classes in 0u32..16,
        ) {
            let policy = Policy::from_rules(rules);
            let m = IndexedMatcher::new(policy.clone());
            let class_bits = [0x1u32, 0x4, 0x40, 0x100]
                .iter()
                .enumerate()
                .filter(|(i, _)| classes & (1 << i) != 0)
                .fold(0, |a, (_, b)| a | b);
            let uuid = "8f3c5b0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f".parse::<Uuid>().unwrap();
            let paths: [&[u8]; 3] = [b"/a/x", b"/a/y/z", b"/b"];
            let datas = [Some(".ima"), Some(".evm"), Some("kernel_info"), None];
            for (f, mask, ids, fo, fg, mg, flag, p, d) in events {
                let mut ev = Event::new(Func::ALL[f], Mask(mask));
                (ev.uid, ev.euid, ev.suid, ev.gid, ev.egid, ev.sgid) =
                    (ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]);
                ev.cap_setuid = flag;
                ev.cap_setgid = !flag;
                ev.fowner = fo;
                ev.fgroup = fg;
                ev.fsmagic = MAGICS[mg];
                ev.fsname = if flag { "ext4" } else { "tmpfs" };
                ev.fsuuid = if flag { uuid } else { Uuid::NIL };
                ev.lsm[LsmField::ObjType.index()] = flag.then_some("bin_t");
                ev.path = Some(paths[p]);
                ev.exe = flag.then_some(b"/bin/sh".as_slice());
                ev.cgroup = Some(b"/c/d");
                ev.func_data = datas[d];
                for cl in [ALL_CLASSES, class_bits] {
                    let a = evaluate_linear(&policy, &ev, cl);
                    let b = m.evaluate_classes(&ev, cl);
                    prop_assert_eq!(a, b, "{:?}", ev);
                }
            }
        }
    }
}

#[test]
fn policy_file_signatures() {
    use crate::codec::Codec as _;
    use crate::digsig::{Keyring, PrivateKey, Signature};
    use crate::hash::HashAlgo;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sigs");
    let key =
        PrivateKey::from_pem(&std::fs::read(dir.join("rsa_priv.pem")).unwrap(), None).unwrap();
    let mut ring = Keyring::new();
    ring.add_bytes(&std::fs::read(dir.join("rsa_x509.pem")).unwrap())
        .unwrap();
    let text = b"measure func=BPRM_CHECK\n";
    let digest = HashAlgo::SHA256.digest(text).unwrap();
    let sig = Signature::sign_v2(&key, key.keyid(), &digest)
        .unwrap()
        .to_vec();
    assert_eq!(verify_policy_signature(text, Some(&sig), &ring), Ok(()));
    assert!(matches!(
        verify_policy_signature(b"measure func=FILE_CHECK\n", Some(&sig), &ring),
        Err(PolicySignatureError::Verify(_))
    ));
    assert_eq!(
        verify_policy_signature(text, None, &ring),
        Err(PolicySignatureError::Missing)
    );
    let mut hash_only = vec![0x04, 0x04];
    hash_only.extend_from_slice(digest.as_bytes());
    assert_eq!(
        verify_policy_signature(text, Some(&hash_only), &ring),
        Err(PolicySignatureError::NotASignature(0x04))
    );
    assert!(matches!(
        verify_policy_signature(text, Some(&sig), &Keyring::new()),
        Err(PolicySignatureError::Verify(_))
    ));
}
