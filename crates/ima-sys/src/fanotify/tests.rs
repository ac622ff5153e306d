//! Unit tests of the event parser, and root tests against the real kernel on a tmpfs mounted
//! for the test (never `/`). The listener runs on the test thread with a deadline; the openers
//! are child processes, killed at the deadline, and dropping the group releases any opener.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ima_test::TestMount;

use super::*;

fn metadata(event_len: u32, metadata_len: u16, mask: u64, fd: i32, pid: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&event_len.to_ne_bytes());
    b.push(libc::FANOTIFY_METADATA_VERSION);
    b.push(0);
    b.extend_from_slice(&metadata_len.to_ne_bytes());
    b.extend_from_slice(&mask.to_ne_bytes());
    b.extend_from_slice(&fd.to_ne_bytes());
    b.extend_from_slice(&pid.to_ne_bytes());
    b
}

fn pidfd_record(pidfd: i32) -> Vec<u8> {
    let mut b = vec![libc::FAN_EVENT_INFO_TYPE_PIDFD, 0];
    b.extend_from_slice(&8u16.to_ne_bytes());
    b.extend_from_slice(&pidfd.to_ne_bytes());
    b
}

#[test]
fn parse_events_with_and_without_pidfd() {
    let mut buf = metadata(32, 24, libc::FAN_OPEN_PERM, 7, 100);
    buf.extend(pidfd_record(8));
    buf.extend(metadata(
        24,
        24,
        libc::FAN_OPEN_EXEC_PERM | libc::FAN_OPEN_PERM,
        9,
        101,
    ));
    buf.extend(metadata(32, 24, libc::FAN_OPEN_PERM, 10, 102));
    buf.extend(pidfd_record(libc::FAN_EPIDFD));
    let (events, err) = parse(&buf);
    assert!(err.is_none());
    assert_eq!(
        events,
        [
            RawEvent {
                offset: 0,
                mask: libc::FAN_OPEN_PERM,
                fd: 7,
                pid: 100,
                pidfd: 8
            },
            RawEvent {
                offset: 32,
                mask: libc::FAN_OPEN_EXEC_PERM | libc::FAN_OPEN_PERM,
                fd: 9,
                pid: 101,
                pidfd: libc::FAN_NOPIDFD
            },
            RawEvent {
                offset: 56,
                mask: libc::FAN_OPEN_PERM,
                fd: 10,
                pid: 102,
                pidfd: -2
            },
        ]
    );
    // A trailing partial record is not an event.
    let (events, err) = parse(&buf[..buf.len() - 30]);
    assert_eq!((events.len(), err.is_none()), (2, true));
    assert!(parse(&[]).0.is_empty());
}

#[test]
fn parse_stops_at_a_malformed_record_keeping_the_events_before() {
    let good = metadata(24, 24, libc::FAN_OPEN_PERM, 7, 100);
    let mut bad_version = good.clone();
    let mut b = metadata(24, 24, libc::FAN_OPEN_PERM, 8, 100);
    b[4] = 2;
    bad_version.extend(b);
    let (events, err) = parse(&bad_version);
    assert_eq!(events.len(), 1);
    assert!(
        matches!(err, Some(FanotifyError::Malformed { offset: 24, .. })),
        "{err:?}"
    );

    for (event_len, metadata_len) in [(8, 24), (24, 8), (4096, 24), (24, 32)] {
        let mut buf = good.clone();
        buf.extend(metadata(
            event_len,
            metadata_len,
            libc::FAN_OPEN_PERM,
            8,
            100,
        ));
        let (events, err) = parse(&buf);
        assert_eq!(events.len(), 1, "{event_len} {metadata_len}");
        assert!(
            matches!(err, Some(FanotifyError::Malformed { offset: 24, .. })),
            "{err:?}"
        );
    }

    // A bad info record: the event's own fd is still yielded (it must be answered).
    let mut buf = metadata(32, 24, libc::FAN_OPEN_PERM, 7, 100);
    buf.extend([libc::FAN_EVENT_INFO_TYPE_PIDFD, 0, 2, 0, 0, 0, 0, 0]);
    let (events, err) = parse(&buf);
    assert_eq!(events.iter().map(|e| e.fd).collect::<Vec<_>>(), [7]);
    assert!(err.is_some());
}

/// What the listener saw of one event.
#[derive(Debug)]
struct Seen {
    path: PathBuf,
    pid: i32,
    pidfd_pid: Option<Option<i32>>,
    mask: Mask,
}

const DEADLINE: Duration = Duration::from_secs(20);

/// Answers events with `decide` until `child` exits (killing it at the deadline), putting an
/// ignore mark on allowed files when `cache`. Returns the child's output and the events.
fn serve(
    group: &Group,
    mut child: Child,
    cache: bool,
    decide: impl Fn(&Seen) -> Option<Response>,
) -> (Output, Vec<Seen>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut overflows = 0;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("opener did not finish in {DEADLINE:?}; events: {seen:?}");
        }
        if !group.wait(Duration::from_millis(20)).unwrap() {
            continue;
        }
        for ev in group.read(&mut overflows).unwrap() {
            let s = Seen {
                path: std::fs::read_link(format!("/proc/self/fd/{}", ev.fd().as_raw_fd())).unwrap(),
                pid: ev.pid(),
                pidfd_pid: ev.pidfd().map(|p| pidfd_pid(p).unwrap()),
                mask: ev.mask(),
            };
            match decide(&s) {
                Some(r) => {
                    if cache && r == Response::Allow {
                        group
                            .ignore(ev.fd(), Mask::OPEN_PERM | Mask::OPEN_EXEC_PERM)
                            .unwrap();
                    }
                    assert!(ev.answer(r).unwrap());
                    // The first answer stands: a contradicting second one is not sent (the
                    // denials in the tests below would otherwise be allows).
                    assert!(!ev.answer(Response::Allow).unwrap());
                    assert!(ev.is_answered());
                }
                None => drop(ev),
            }
            seen.push(s);
        }
    }
    assert_eq!(overflows, 0);
    (child.wait_with_output().unwrap(), seen)
}

fn spawn(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn cat(path: &Path) -> Child {
    spawn("cat", &[path.as_os_str()])
}

/// A tmpfs with the files `setup` makes, then marked. Nothing on the test thread may open a
/// file there after the mark: the test thread is the listener.
fn marked(default: Response, setup: impl FnOnce(&TestMount)) -> (TestMount, Group) {
    let m = TestMount::tmpfs();
    setup(&m);
    let g = Group::new(default).unwrap();
    g.mark_filesystem(m.path(), Mask::OPEN_PERM | Mask::OPEN_EXEC_PERM)
        .unwrap();
    (m, g)
}

fn deny_named_denied(s: &Seen) -> Option<Response> {
    let name = s.path.file_name().unwrap().to_string_lossy();
    Some(if name.contains("denied") {
        Response::Deny
    } else {
        Response::Allow
    })
}

#[test]
fn open_is_allowed_or_denied_with_eperm() {
    let (m, g) = marked(Response::Allow, |m| {
        std::fs::write(m.join("ok.txt"), "hello").unwrap();
        std::fs::write(m.join("denied.txt"), "secret").unwrap();
    });

    let (out, seen) = serve(&g, cat(&m.join("ok.txt")), false, deny_named_denied);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hello");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, m.join("ok.txt"));
    assert_eq!(seen[0].mask, Mask::OPEN_PERM);

    let (out, seen) = serve(&g, cat(&m.join("denied.txt")), false, deny_named_denied);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(seen.len(), 1, "{seen:?}");
}

/// Runs `path` through `sh -c 'exec PATH'`: spawning it directly would block the test thread
/// (the listener) in `Command::spawn`, which waits for the exec.
fn exec(path: &Path) -> Child {
    let script = format!("exec '{}'", path.display());
    spawn("sh", &["-c".as_ref(), script.as_ref()])
}

#[test]
fn exec_is_an_open_exec_perm_event_and_can_be_denied() {
    let (m, g) = marked(Response::Allow, |m| {
        for name in ["true_ok", "true_denied"] {
            std::fs::copy("/bin/true", m.join(name)).unwrap();
            std::fs::set_permissions(m.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    });
    let (out, seen) = serve(&g, exec(&m.join("true_ok")), false, deny_named_denied);
    assert!(out.status.success(), "{out:?}");
    // execve's open is reported twice (Linux 6.18): first OPEN_EXEC_PERM, then OPEN_PERM.
    let masks: Vec<Mask> = seen.iter().map(|s| s.mask).collect();
    assert_eq!(masks, [Mask::OPEN_EXEC_PERM, Mask::OPEN_PERM], "{seen:?}");

    let (out, seen) = serve(&g, exec(&m.join("true_denied")), false, deny_named_denied);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not permitted"), "{err}");
    // Denied at the first event: there is no second.
    let masks: Vec<Mask> = seen.iter().map(|s| s.mask).collect();
    assert_eq!(masks, [Mask::OPEN_EXEC_PERM], "{seen:?}");
}

#[test]
fn the_event_names_the_opener_and_its_pidfd() {
    let (m, g) = marked(Response::Allow, |m| {
        std::fs::write(m.join("f"), "x").unwrap()
    });
    let child = cat(&m.join("f"));
    let pid = i32::try_from(child.id()).unwrap();
    let (out, seen) = serve(&g, child, false, deny_named_denied);
    assert!(out.status.success());
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].pid, pid);
    assert!(g.reports_pidfd(), "this kernel (6.18) has FAN_REPORT_PIDFD");
    assert_eq!(seen[0].pidfd_pid, Some(Some(pid)));
}

#[test]
fn an_unanswered_event_gets_the_group_default() {
    for (default, ok) in [(Response::Deny, false), (Response::Allow, true)] {
        let (m, g) = marked(default, |m| std::fs::write(m.join("f"), "x").unwrap());
        let (out, seen) = serve(&g, cat(&m.join("f")), false, |_| None);
        assert_eq!(out.status.success(), ok, "{default:?} {out:?}");
        assert_eq!(seen.len(), 1);
    }
}

#[test]
fn the_ignore_mark_caches_until_the_file_is_modified() {
    let (m, g) = marked(Response::Allow, |m| {
        std::fs::write(m.join("f"), "one").unwrap();
        std::fs::write(m.join("g"), "g").unwrap();
    });
    let f = m.join("f");
    let (out, seen) = serve(&g, cat(&f), true, deny_named_denied);
    assert!(out.status.success());
    assert_eq!(seen.len(), 1);
    // Cached: neither a read nor the open for append is reported.
    let (out, seen) = serve(&g, cat(&f), true, deny_named_denied);
    assert_eq!((out.status.success(), seen.len()), (true, 0), "{seen:?}");
    let append = format!("echo two >> '{}'", f.display());
    let (out, seen) = serve(
        &g,
        spawn("sh", &["-c".as_ref(), append.as_ref()]),
        true,
        |_| None,
    );
    assert_eq!((out.status.success(), seen.len()), (true, 0), "{seen:?}");
    // The write cleared the mark: the next open is reported again.
    let (out, seen) = serve(&g, cat(&f), true, deny_named_denied);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"onetwo\n");
    assert_eq!(seen.len(), 1, "{seen:?}");
    // Another file on the same filesystem was never cached.
    let (_, seen) = serve(&g, cat(&m.join("g")), false, deny_named_denied);
    assert_eq!(seen.len(), 1);
}

#[test]
fn unmarking_stops_the_events() {
    let (m, g) = marked(Response::Deny, |m| {
        std::fs::write(m.join("f"), "x").unwrap()
    });
    g.unmark_filesystem(m.path(), Mask::OPEN_PERM | Mask::OPEN_EXEC_PERM)
        .unwrap();
    let (out, seen) = serve(&g, cat(&m.join("f")), false, |_| Some(Response::Deny));
    assert!(out.status.success());
    assert!(seen.is_empty());
}

#[test]
fn marking_a_missing_path_names_it() {
    let g = Group::new(Response::Allow).unwrap();
    let err = g
        .mark_filesystem(Path::new("/nonexistent/imad"), Mask::OPEN_PERM)
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/imad"), "{err}");
}
