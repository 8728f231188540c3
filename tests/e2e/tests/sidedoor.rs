//! The kill switch has no side door (issue 9): forwarded traffic of a guest behind the client
//! is held to the tunnel, a member cannot aim a probe from the real address, the helper's own
//! marked DNS is the only DNS outside the tunnel, and a split tunnel resolves outside names.
//! Each check has a twin that breaks the rule on purpose and sees the packets.

use std::time::Duration;

use underpass_e2e::*;

const SECOND: Duration = Duration::from_secs(1);
/// `firewall::HELPER_MARK` in the helper.
const HELPER_MARK: u32 = 0x7570_0d05;

/// Pings from the guest namespace, bounded, for as long as it lives.
fn guest_traffic(sandbox: &Sandbox, targets: &[&str]) -> Vec<std::process::Child> {
    targets
        .iter()
        .map(|t| {
            let ping = if t.contains(':') { "ping6" } else { "ping" };
            sandbox
                .in_ns(sandbox.var("NS_GUEST"), ping)
                .args(["-n", "-q", "-i", "0.2", "-c", "25", "-W", "1", t])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("ping from the guest")
        })
        .collect()
}

fn stop(children: Vec<std::process::Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn guest_ping(sandbox: &Sandbox, target: &str) -> bool {
    let ping = if target.contains(':') {
        "ping6"
    } else {
        "ping"
    };
    run(sandbox
        .in_ns(sandbox.var("NS_GUEST"), ping)
        .args(["-c1", "-W2", target]))
    .status
    .success()
}

/// What crossed the client's uplink while the guest pinged the internet host and the router
/// for about 3 s.
fn guest_leaks(sandbox: &Sandbox, name: &str) -> Vec<String> {
    let capture = Capture::start(sandbox, sandbox.client_ns(), sandbox.var("CLIENT_IF"), name);
    let traffic = guest_traffic(
        sandbox,
        &[
            sandbox.var("INET_ADDR4_1"),
            sandbox.var("ROUTER_ADDR4"),
            sandbox.var("INET_ADDR6_1"),
        ],
    );
    std::thread::sleep(3 * SECOND);
    stop(traffic);
    leaks(sandbox, capture, &[sandbox.var("SERVER_ENDPOINT_1")])
}

#[test]
fn a_guest_behind_the_client_gets_nothing_out_while_blocked_and_only_the_tunnel_while_connected() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up_with("fwg", 1, &["--guest"]);
    assert!(
        guest_ping(&sandbox, sandbox.var("ROUTER_ADDR4")),
        "the guest is routed and masqueraded before any kill switch"
    );
    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.set_kill_switch("lockdown");

    let blocked = guest_leaks(&sandbox, "guest-blocked");
    println!("guest while blocked: {} packets out", blocked.len());
    assert!(
        blocked.is_empty(),
        "forwarded while blocked:\n{}",
        blocked.join("\n")
    );

    // The twin: without the forward hook the same capture sees the guest's packets.
    run_ok(sandbox.in_ns(sandbox.client_ns(), "nft").args([
        "flush",
        "chain",
        "inet",
        "underpass",
        "forward",
    ]));
    let open = guest_leaks(&sandbox, "guest-no-forward-hook");
    println!(
        "guest with the forward hook flushed: {} packets out",
        open.len()
    );
    assert!(
        !open.is_empty(),
        "the capture cannot see the guest's packets"
    );

    // Connected (the table is rebuilt): the guest reaches the internet through the tunnel,
    // masqueraded to the tunnel address, and nothing of it leaves in the clear.
    helper.cli_ok(&["connect"]);
    assert!(
        guest_ping(&sandbox, sandbox.var("INET_ADDR4_1")),
        "guest through the tunnel"
    );
    assert!(
        guest_ping(&sandbox, sandbox.var("INET_ADDR6_1")),
        "guest through the tunnel, v6"
    );
    let connected = guest_leaks(&sandbox, "guest-connected");
    println!(
        "guest while connected: {} packets in the clear",
        connected.len()
    );
    assert!(
        connected.is_empty(),
        "forwarded in the clear:\n{}",
        connected.join("\n")
    );
    helper.cli_ok(&["disconnect"]);
}

fn probe(helper: &Helper, sandbox: &Sandbox, target: &str) -> serde_json::Value {
    let key = std::fs::read_to_string(sandbox.var("CLIENT_KEY_FILE")).unwrap();
    helper.request(serde_json::json!({
        "kind": "probe_servers",
        "candidates": [{
            "id": "chosen",
            "endpoint": target,
            "public_key": sandbox.var("SERVER_PUB_1"),
            "private_key": key.trim(),
        }]
    }))
}

/// Probes `target` (a UDP port on the internet host) and returns what the router saw arrive
/// from the client's real address for that port, plus the helper's answer.
fn probe_seen_from_real_address(
    helper: &Helper,
    sandbox: &Sandbox,
    target: &str,
    name: &str,
) -> (Vec<String>, serde_json::Value) {
    let capture = Capture::start(
        sandbox,
        sandbox.var("NS_ROUTER"),
        sandbox.var("ROUTER_IF"),
        name,
    );
    let answer = probe(helper, sandbox, target);
    let port = target.rsplit_once(':').unwrap().1;
    let seen = capture.stop(&format!(
        "udp and src host {} and dst port {port}",
        sandbox.var("CLIENT_ADDR4")
    ));
    (seen, answer)
}

#[test]
fn a_member_cannot_aim_a_probe_from_the_real_address_while_connected() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("fwp", 1);
    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    let target = format!("{}:5555", sandbox.var("INET_ADDR4_1"));

    // The twin: disconnected with the kill switch off, a probe goes out from the real address,
    // and the router's capture sees it.
    let (seen, _) = probe_seen_from_real_address(&helper, &sandbox, &target, "probe-open");
    println!(
        "probe while disconnected: {} packets from the real address",
        seen.len()
    );
    assert!(!seen.is_empty(), "the router's capture cannot see a probe");

    // Blocked with no tunnel (lockdown): a measurement opens the kill switch for exactly its
    // candidates, for its length; the real server answers the handshake.
    helper.set_kill_switch("lockdown");
    let answer = probe(&helper, &sandbox, sandbox.var("SERVER_ENDPOINT_1"));
    assert!(
        answer["Ok"]["results"][0]["rtt_ms"].is_number(),
        "lockdown probe: {answer}"
    );
    assert!(
        !sandbox.ping(sandbox.var("INET_ADDR4_1")),
        "nothing else got through"
    );
    let sets = run_ok(sandbox.in_ns(sandbox.client_ns(), "nft").args([
        "list",
        "set",
        "inet",
        "underpass",
        "probes4",
    ]));
    assert!(
        sets.contains(sandbox.var("SERVER_ADDR4_1")) && sets.contains("expires"),
        "{sets}"
    );

    helper.cli_ok(&["connect"]);
    let (seen, answer) = probe_seen_from_real_address(&helper, &sandbox, &target, "probe-full");
    println!(
        "probe while connected: {} packets from the real address",
        seen.len()
    );
    assert!(
        seen.is_empty(),
        "a probe showed the real address:\n{}\n{answer}",
        seen.join("\n")
    );
    assert!(answer.get("Ok").is_some(), "{answer}");

    // Marked UDP is no side door either: the session's mark admits only its endpoint.
    let fwmark = helper.status()["routing"]["fwmark"].as_u64().unwrap();
    let capture = Capture::start(
        &sandbox,
        sandbox.var("NS_ROUTER"),
        sandbox.var("ROUTER_IF"),
        "marked",
    );
    let sent = run(sandbox.in_ns(sandbox.client_ns(), "python3").args([
        "-c",
        &format!(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.setsockopt(socket.SOL_SOCKET, 36, {fwmark}); s.sendto(b'x' * 148, ('{}', 5556))",
            sandbox.var("INET_ADDR4_1")
        ),
    ]));
    let seen = capture.stop("udp and dst port 5556");
    println!(
        "marked UDP to a host that is no endpoint: {} packets ({})",
        seen.len(),
        String::from_utf8_lossy(&sent.stderr)
            .lines()
            .last()
            .unwrap_or("sent")
    );
    assert!(seen.is_empty(), "marked UDP got out:\n{}", seen.join("\n"));

    // A split tunnel that does not carry the chosen host: refused, nothing sent.
    helper.cli_ok(&["disconnect"]);
    helper.cli_ok(&["connect", "--include", sandbox.var("INET_NET4_1")]);
    let answer = probe(&helper, &sandbox, sandbox.var("SERVER_ENDPOINT_1"));
    assert!(
        answer["Ok"]["results"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not carried"),
        "{answer}"
    );
    let (seen, answer) =
        probe_seen_from_real_address(&helper, &sandbox, "198.51.100.1:5557", "probe-split");
    assert!(seen.is_empty(), "{}", seen.join("\n"));
    let error = answer["Ok"]["results"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("not carried by the tunnel"), "{answer}");
    helper.cli_ok(&["disconnect"]);
    helper.set_kill_switch("off");
}

#[test]
fn only_the_helpers_marked_dns_reaches_the_system_resolver_while_blocked() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("fwd", 1);
    let isp = Resolver::isp(&sandbox);
    let other = Resolver::other(&sandbox);
    let helper = Helper::start(&sandbox, &[]);
    let ask = |server: &str, name: &str, mark| {
        dns_query(&sandbox, sandbox.client_ns(), server, name, mark)
    };
    let router = sandbox.var("ROUTER_ADDR4");
    assert!(
        ask(router, "open.example.test", None).is_some(),
        "the resolver answers"
    );

    helper.set_kill_switch("lockdown");
    assert_eq!(
        ask(router, "helper.example.test", Some(HELPER_MARK)).as_deref(),
        Some("192.0.2.99"),
        "the helper's marked lookup gets through while blocked"
    );
    assert!(
        ask(router, "app.example.test", None).is_none(),
        "anyone else's is refused"
    );
    assert!(
        ask(router, "wrong.example.test", Some(HELPER_MARK + 1)).is_none(),
        "another mark is no key"
    );
    assert!(
        ask(
            sandbox.var("INET_ADDR4_1"),
            "elsewhere.example.test",
            Some(HELPER_MARK)
        )
        .is_none(),
        "marked DNS reaches only the system's own resolvers"
    );
    let seen = isp.queries();
    assert!(seen.iter().any(|q| q == "helper.example.test"), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|q| q == "app.example.test" || q == "wrong.example.test"),
        "{seen:?}"
    );
    assert!(other.queries().is_empty(), "{:?}", other.queries());

    // The twin: in a kill switch without that rule, the marked lookup fails too.
    run_ok(sandbox.in_ns(sandbox.client_ns(), "nft").args([
        "flush",
        "chain",
        "inet",
        "underpass",
        "output",
    ]));
    run_ok(sandbox.in_ns(sandbox.client_ns(), "nft").args([
        "add",
        "rule",
        "inet",
        "underpass",
        "output",
        "oifname",
        "!=",
        "lo",
        "reject",
    ]));
    assert!(ask(router, "twin.example.test", Some(HELPER_MARK)).is_none());
    helper.set_kill_switch("off");
}

fn split_tunnel_resolves_outside_names(prefix: &str, mode: &str) {
    let sandbox = Sandbox::up(prefix, 1);
    let isp = Resolver::isp(&sandbox);
    let tunnel = Resolver::tunnel(&sandbox);
    let other = Resolver::other(&sandbox);
    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.set_kill_switch(mode);
    // The tunnel carries the internet host's net and its own resolver's; the router (the
    // "ISP" resolver) stays outside.
    helper.cli_ok(&[
        "connect",
        "--include",
        sandbox.var("INET_NET4_1"),
        "--include",
        "10.64.1.0/24",
    ]);
    assert_eq!(helper.status()["firewall"], "tunnel_only");
    let ask =
        |server: &str, name: &str| dns_query(&sandbox, sandbox.client_ns(), server, name, None);
    // Outside names: through the usual resolver, outside the tunnel (what systemd-resolved
    // does for names outside the tunnel's domains).
    assert!(
        ask(sandbox.var("ROUTER_ADDR4"), "outside.example.test").is_some(),
        "{mode}: outside name"
    );
    assert!(isp.queries().iter().any(|q| q == "outside.example.test"));
    // Tunnel names: through the tunnel's resolver.
    assert!(
        ask(sandbox.var("SERVER_TUN_ADDR4_1"), "inside.example.test").is_some(),
        "{mode}: tunnel name"
    );
    assert!(tunnel.queries().iter().any(|q| q == "inside.example.test"));
    // Exactly that path: a resolver that is neither is refused, inside the tunnel or out.
    assert!(
        ask(sandbox.var("INET_ADDR4_1"), "other.example.test").is_none(),
        "{mode}: other resolver"
    );
    assert!(other.queries().is_empty(), "{:?}", other.queries());
    // And the system resolver (the tunnel's, here: resolv.conf mode) does not leak.
    let report = helper.self_test(
        "dns",
        serde_json::json!({"domain": "example.test", "names": 3}),
    );
    assert_eq!(report["verdict"], "pass", "{mode}: {report:#}");
    helper.cli_ok(&["disconnect"]);
}

#[test]
fn a_split_tunnel_resolves_outside_names_with_the_kill_switch_in_auto() {
    if can_run() {
        split_tunnel_resolves_outside_names("fws1", "auto");
    }
}

#[test]
fn a_split_tunnel_resolves_outside_names_with_the_kill_switch_in_lockdown() {
    if can_run() {
        split_tunnel_resolves_outside_names("fws2", "lockdown");
    }
}
