//! The helper's socket against real users and hostile clients.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use underpass_e2e::*;

const GROUP: &str = "uptestgrp";
const MEMBER: &str = "uptest-in";
const OUTSIDER: &str = "uptest-out";

/// Creates the test group and users once (idempotent; they are system accounts without a home).
fn ensure_users() {
    let exists = |db: &str, name: &str| {
        run(Command::new("getent").args([db, name]))
            .status
            .success()
    };
    if !exists("group", GROUP) {
        run_ok(Command::new("groupadd").args(["--system", GROUP]));
    }
    for (user, groups) in [(MEMBER, Some(GROUP)), (OUTSIDER, None)] {
        if !exists("passwd", user) {
            let mut cmd = Command::new("useradd");
            cmd.args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ]);
            if let Some(g) = groups {
                cmd.args(["--groups", g]);
            }
            run_ok(cmd.arg(user));
        }
    }
}

/// The CLI run as `user`, with that user's groups from the database.
fn cli_as(helper: &Helper, user: &str, args: &[&str]) -> std::process::Output {
    run(Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--",
        ])
        .arg(bin("underpass"))
        .arg("--socket")
        .arg(&helper.socket)
        .arg("--config-dir")
        .arg(std::env::temp_dir().join(format!("underpass-e2e-cfg-{user}")))
        .args(args))
}

fn start_helper(name: &str) -> Helper {
    let dir = std::env::temp_dir().join(format!("underpass-e2e-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Group-only, as a managed policy may want: the socket's mode is the first wall.
    Helper::start_in(None, &dir, &["--group", GROUP, "--no-active-session"])
}

/// Binaries must be reachable by the unprivileged test users.
fn binaries_reachable_by_others() -> bool {
    let mut p = bin("underpass");
    loop {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if mode & 0o001 == 0 {
            eprintln!("{} is not searchable by other users", p.display());
            return false;
        }
        if !p.pop() || p == Path::new("/") {
            return true;
        }
    }
}

#[test]
fn user_outside_the_group_is_refused_and_a_member_is_accepted() {
    if !can_run() {
        return;
    }
    assert!(
        binaries_reachable_by_others(),
        "the test users cannot run the CLI"
    );
    ensure_users();
    let helper = start_helper("ipc1");
    let member = cli_as(&helper, MEMBER, &["status", "--json"]);
    assert!(
        member.status.success(),
        "a group member was refused: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&member.stdout).unwrap();
    assert_eq!(status["state"], "disconnected");

    let outsider = cli_as(&helper, OUTSIDER, &["status"]);
    assert!(!outsider.status.success(), "an outsider was let in");
    let err = String::from_utf8_lossy(&outsider.stderr);
    assert!(
        err.contains("permission denied") && err.contains(GROUP) || err.contains("underpass"),
        "{err}"
    );

    // Defence in depth: even with the file mode opened up, SO_PEERCRED refuses the outsider,
    // and the refusal is logged.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let outsider = cli_as(&helper, OUTSIDER, &["status"]);
    assert!(!outsider.status.success(), "SO_PEERCRED let an outsider in");
    let err = String::from_utf8_lossy(&outsider.stderr);
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        wait_until(Duration::from_secs(2), || helper
            .log_text()
            .contains("refused IPC connection")),
        "refusal not logged:\n{}",
        helper.log_text()
    );
    // The same line reaches a member who asks for the helper's recent log (the app's
    // diagnostics export), and the outsider cannot ask.
    let logs = cli_as(&helper, MEMBER, &["logs"]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("underpassd ready"), "{logs}");
    assert!(logs.contains("refused IPC connection"), "{logs}");
    assert!(!cli_as(&helper, OUTSIDER, &["logs"]).status.success());
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Reads one frame, or None when the helper closed the connection.
fn read_frame(s: &mut UnixStream) -> Option<serde_json::Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(serde_json::from_slice(&body).expect("helper sent JSON"))
}

fn hello(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame(br#"{"type":"hello","protocol":1,"client":"e2e"}"#))
        .unwrap();
    assert_eq!(read_frame(&mut s).unwrap()["type"], "hello");
    s
}

fn assert_closed_with(s: &mut UnixStream, code: &str) {
    let msg = read_frame(s).expect("a fatal message before close");
    assert_eq!(msg["type"], "fatal", "{msg}");
    assert_eq!(msg["error"]["code"], code, "{msg}");
    assert!(read_frame(s).is_none(), "connection still open after fatal");
}

#[test]
fn garbage_and_oversized_frames_are_refused_and_the_helper_keeps_serving() {
    if !can_run() {
        return;
    }
    let helper = start_helper("ipc2");
    let socket = helper.socket.clone();

    // Silent and half-open clients sit there while everything else goes on.
    let silent = UnixStream::connect(&socket).unwrap();
    let mut half = UnixStream::connect(&socket).unwrap();
    half.write_all(&[0, 0]).unwrap();

    let mut s = hello(&socket);
    s.write_all(&frame(b"\xff\xfe not json at all")).unwrap();
    assert_closed_with(&mut s, "malformed");

    let mut s = hello(&socket);
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_closed_with(&mut s, "frame_too_large");

    let mut s = hello(&socket);
    s.write_all(&frame(
        br#"{"type":"request","id":1,"request":{"kind":"run","cmd":"sh"}}"#,
    ))
    .unwrap();
    assert_closed_with(&mut s, "malformed");

    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame(
        br#"{"type":"request","id":1,"request":{"kind":"status"}}"#,
    ))
    .unwrap();
    assert_closed_with(&mut s, "handshake");

    // A connect request that fails validation is answered, and the connection lives on.
    let mut s = hello(&socket);
    let bad = br#"{"type":"request","id":9,"request":{"kind":"connect","config":{"profile":"x","private_key":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","addresses":[],"peers":[]}}}"#;
    s.write_all(&frame(bad)).unwrap();
    let reply = read_frame(&mut s).unwrap();
    assert_eq!(reply["result"]["Err"]["code"], "invalid_config", "{reply}");
    s.write_all(&frame(
        br#"{"type":"request","id":10,"request":{"kind":"status"}}"#,
    ))
    .unwrap();
    assert_eq!(
        read_frame(&mut s).unwrap()["result"]["Ok"]["kind"],
        "status"
    );

    // Many clients at once.
    let crowd: Vec<_> = (0..50).map(|_| hello(&socket)).collect();
    let start = Instant::now();
    let status = helper.status();
    assert_eq!(status["state"], "disconnected");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "status took {:?}",
        start.elapsed()
    );
    drop(crowd);

    // The silent client is told off after the hello timeout.
    let mut silent = silent;
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_closed_with(&mut silent, "handshake");
    drop(half);

    assert!(
        helper.log_text().contains("frame of more than"),
        "refusals are logged"
    );
    assert_eq!(
        helper.status()["state"],
        "disconnected",
        "the helper still serves"
    );
}
