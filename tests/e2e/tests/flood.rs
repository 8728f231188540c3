//! A member floods the helper over raw frames (issue 9): probes, self-tests, subscriptions and
//! slow frames. Every request is answered or refused with a reason, another client is served
//! all the while, and the helper's memory stays bounded (RSS measured before and after).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use underpass_e2e::*;

fn frame(s: &mut UnixStream, v: &Value) -> std::io::Result<()> {
    let body = serde_json::to_vec(v).unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes())?;
    s.write_all(&body)
}

fn read_frame(s: &mut UnixStream) -> Option<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// Says hello and sends `request`; returns the first response or fatal message, and the
/// stream (still open unless the helper closed it).
fn ask(helper: &Helper, request: Value) -> (Option<Value>, UnixStream) {
    let mut s = UnixStream::connect(&helper.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = frame(
        &mut s,
        &json!({"type": "hello", "protocol": 1, "client": "flood"}),
    );
    let _ = frame(
        &mut s,
        &json!({"type": "request", "id": 1, "request": request}),
    );
    loop {
        match read_frame(&mut s) {
            Some(m) if m["type"] == "response" || m["type"] == "fatal" => return (Some(m), s),
            Some(_) => continue,
            None => return (None, s),
        }
    }
}

/// "ok", or the error code of a refusal; panics when the helper hung up without a word.
fn verdict(reply: &Option<Value>) -> String {
    let m = reply
        .as_ref()
        .expect("the helper closed the connection without a message");
    if m["type"] == "fatal" {
        return m["error"]["code"].as_str().unwrap().to_string();
    }
    match m["result"].get("Err") {
        Some(e) => e["code"].as_str().unwrap().to_string(),
        None => "ok".into(),
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn tally(verdicts: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for v in verdicts {
        *counts.entry(v.as_str()).or_insert(0) += 1;
    }
    format!("{counts:?}")
}

#[test]
fn floods_are_answered_or_refused_while_another_client_is_served_and_memory_stays_bounded() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("fwf", 1);
    let helper = Helper::start(&sandbox, &[]);
    // Settle, then measure.
    assert_eq!(verdict(&ask(&helper, json!({"kind": "status"})).0), "ok");
    let before = rss_kib(helper.pid());

    let key = std::fs::read_to_string(sandbox.var("CLIENT_KEY_FILE")).unwrap();
    let inet = sandbox.var("INET_ADDR4_1").to_string();
    let server_pub = sandbox.var("SERVER_PUB_1").to_string();
    let started = Instant::now();
    let (h, key, inet, server_pub) = (&helper, key.trim(), inet.as_str(), server_pub.as_str());
    thread::scope(|scope| {
        // The bystander: a status request every 100 ms must keep being answered promptly.
        let bystander = scope.spawn(move || {
            let mut worst = Duration::ZERO;
            while started.elapsed() < Duration::from_secs(8) {
                let t = Instant::now();
                assert_eq!(verdict(&ask(h, json!({"kind": "status"})).0), "ok");
                worst = worst.max(t.elapsed());
                thread::sleep(Duration::from_millis(100));
            }
            worst
        });
        // Probes: 30 requests of 64 servers each (sandbox host, distinct ports).
        let probes: Vec<_> = (0..30u32)
            .map(|i| {
                scope.spawn(move || {
                    let candidates: Vec<Value> = (0..64u32)
                        .map(|p| {
                            json!({
                                "id": format!("p{i}-{p}"),
                                "endpoint": format!("{inet}:{}", 20000 + i * 64 + p),
                                "public_key": server_pub,
                                "private_key": key,
                            })
                        })
                        .collect();
                    verdict(
                        &ask(
                            h,
                            json!({"kind": "probe_servers", "candidates": candidates}),
                        )
                        .0,
                    )
                })
            })
            .collect();
        // Self-tests: 8 at once.
        let tests: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(move || {
                    let request = json!({"kind": "self_test", "test": "kill_switch",
                        "options": {"probe_targets": [inet]}});
                    verdict(&ask(h, request).0)
                })
            })
            .collect();
        // Subscriptions: 12 held open at once.
        let subs: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(move || {
                    let (reply, stream) = ask(h, json!({"kind": "subscribe"}));
                    (verdict(&reply), stream)
                })
            })
            .collect();
        // Slow frames: a length, then a byte every 300 ms, never a whole frame.
        let slow: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(move || {
                    let mut s = UnixStream::connect(&h.socket).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                    let _ = s.write_all(&1000u32.to_be_bytes());
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_secs(7) {
                        if s.write_all(b"{").is_err() {
                            break;
                        }
                        thread::sleep(Duration::from_millis(300));
                    }
                    // The helper ends it (no hello in time) with a message, or has closed it.
                    read_frame(&mut s)
                        .map(|m| m["error"]["code"].as_str().unwrap_or("?").to_string())
                })
            })
            .collect();

        let probes: Vec<String> = probes.into_iter().map(|t| t.join().unwrap()).collect();
        let tests: Vec<String> = tests.into_iter().map(|t| t.join().unwrap()).collect();
        let subs: Vec<(String, UnixStream)> = subs.into_iter().map(|t| t.join().unwrap()).collect();
        let slow: Vec<Option<String>> = slow.into_iter().map(|t| t.join().unwrap()).collect();
        let worst = bystander.join().unwrap();
        let sub_verdicts: Vec<String> = subs.iter().map(|(v, _)| v.clone()).collect();
        println!("probes: {}", tally(&probes));
        println!("self-tests: {}", tally(&tests));
        println!("subscriptions: {}", tally(&sub_verdicts));
        println!("slow frames ended with: {slow:?}");
        println!(
            "bystander's slowest status answer: {} ms",
            worst.as_millis()
        );
        assert!(
            probes.iter().all(|v| v == "ok" || v == "busy"),
            "{probes:?}"
        );
        assert!(
            probes.iter().any(|v| v == "busy"),
            "the probe budget never ran out"
        );
        assert!(tests.iter().all(|v| v == "ok" || v == "busy"), "{tests:?}");
        assert_eq!(
            sub_verdicts.iter().filter(|v| *v == "ok").count(),
            8,
            "{sub_verdicts:?}"
        );
        assert_eq!(
            sub_verdicts.iter().filter(|v| *v == "busy").count(),
            4,
            "{sub_verdicts:?}"
        );
        assert!(
            worst < Duration::from_secs(2),
            "the bystander waited {worst:?}"
        );
    });
    let after = rss_kib(helper.pid());
    println!("helper RSS: {before} KiB before, {after} KiB after the floods");
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // Still serving, and the subscriptions' slots came back when their clients left.
    thread::sleep(Duration::from_millis(500));
    let (reply, _s) = ask(&helper, json!({"kind": "subscribe"}));
    assert_eq!(verdict(&reply), "ok");
}
