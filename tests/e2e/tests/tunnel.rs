//! The tunnel end to end: underpassd in the client namespace, a wireguard-go server, real
//! routes, and captures on the client's physical link.

use std::time::Duration;

use underpass_e2e::*;

/// A sandbox, a helper in its client namespace and the first server's profile imported.
fn connected_setup(prefix: &str, servers: u32, helper_args: &[&str]) -> (Sandbox, Helper) {
    let sandbox = Sandbox::up(prefix, servers);
    let helper = Helper::start(&sandbox, helper_args);
    for i in 1..=servers {
        helper.cli_ok(&["import", sandbox.var(&format!("PROFILE_{i}"))]);
    }
    (sandbox, helper)
}

fn udp_endpoint(sandbox: &Sandbox, i: u32) -> (String, String) {
    let ep = sandbox.var(&format!("SERVER_ENDPOINT_{i}"));
    let (ip, port) = ep.rsplit_once(':').expect("endpoint host:port");
    (ip.to_string(), port.to_string())
}

#[test]
fn handshake_then_ping_v4_and_v6_through_the_tunnel() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = connected_setup("et1", 1, &[]);
    let out = helper.cli_ok(&["connect", "se-sto-wg-001"]);
    assert!(out.contains("Connected"), "connect said: {out}");

    let status = helper.status();
    assert_eq!(status["state"], "connected");
    assert_eq!(status["profile"], "se-sto-wg-001");
    assert_eq!(status["endpoint"], sandbox.var("SERVER_ENDPOINT_1"));
    let iface = status["interface"].as_str().expect("interface").to_string();
    assert!(status["last_handshake_secs"].as_u64().is_some());

    assert!(
        sandbox.ping(sandbox.var("SERVER_TUN_ADDR4_1")),
        "ping the server's tunnel address"
    );
    assert!(
        sandbox.ping(sandbox.var("INET_ADDR4_1")),
        "IPv4 ping through the tunnel"
    );
    assert!(
        sandbox.ping(sandbox.var("INET_ADDR6_1")),
        "IPv6 ping through the tunnel"
    );

    // The server saw us: wireguard-go reports a handshake with our key.
    let handshakes = run_ok(sandbox.in_ns(sandbox.var("NS_SERVER_1"), "wg").args([
        "show",
        sandbox.var("SERVER_WG_IF_1"),
        "latest-handshakes",
    ]));
    let stamp: u64 = handshakes
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(stamp > 0, "server reports no handshake: {handshakes}");

    // The route the kernel picks for the internet host is our interface.
    let route = run_ok(sandbox.in_ns(sandbox.client_ns(), "ip").args([
        "route",
        "get",
        sandbox.var("INET_ADDR4_1"),
    ]));
    assert!(route.contains(&iface), "route get: {route}");

    let status = helper.status();
    assert!(status["rx_bytes"].as_u64().unwrap() > 0 && status["tx_bytes"].as_u64().unwrap() > 0);

    // TCP MSS is clamped on the tunnel (the kernel accepted the rule), and only while it is up.
    let mss = run_ok(sandbox.in_ns(sandbox.client_ns(), "nft").args([
        "list",
        "table",
        "inet",
        "underpass_mss",
    ]));
    assert!(
        mss.contains(&format!("oifname \"{iface}\"")) && mss.contains("maxseg size set rt mtu"),
        "{mss}"
    );
    helper.cli_ok(&["disconnect"]);
    let gone = run(sandbox.in_ns(sandbox.client_ns(), "nft").args([
        "list",
        "table",
        "inet",
        "underpass_mss",
    ]));
    assert!(!gone.status.success(), "the MSS clamp outlived the tunnel");
}

#[test]
fn full_tunnel_traffic_leaves_the_client_only_as_udp_to_the_endpoint() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = connected_setup("et2", 1, &[]);
    let (ep_ip, ep_port) = udp_endpoint(&sandbox, 1);
    let inet = sandbox.var("INET_ADDR4_1").to_string();
    let ns_inet = sandbox.var("NS_INET_1").to_string();
    helper.cli_ok(&["connect"]);

    run_ok(
        sandbox
            .in_ns(&ns_inet, "iperf3")
            .args(["-s", "-D", "-1", "-B", &inet]),
    );
    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "full",
    );
    // A bulk TCP transfer, pings in both families, and a UDP burst.
    let mut ok = false;
    for _ in 0..20 {
        let out = run(sandbox
            .in_ns(sandbox.client_ns(), "iperf3")
            .args(["-c", &inet, "-t", "2", "-J"]));
        if out.status.success() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok, "iperf3 through the tunnel failed");
    assert!(sandbox.ping(&inet));
    assert!(sandbox.ping(sandbox.var("INET_ADDR6_1")));
    let leaks = capture.stop(&not_tunnel_traffic(&ep_ip, &ep_port));
    println!(
        "packets on the physical link other than encrypted UDP to the endpoint: {}",
        leaks.len()
    );
    assert!(
        leaks.is_empty(),
        "traffic escaped the tunnel:\n{}",
        leaks.join("\n")
    );

    // The capture does see plain traffic when there is some: the same check after a
    // disconnect must catch the ping.
    helper.cli_ok(&["disconnect"]);
    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "plain",
    );
    assert!(sandbox.ping(&inet));
    let plain = capture.stop(&not_tunnel_traffic(&ep_ip, &ep_port));
    assert!(
        !plain.is_empty(),
        "the capture cannot see plain traffic, so it proves nothing"
    );
}

#[test]
fn split_tunnel_carries_only_included_prefixes_and_never_excluded_ones() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = connected_setup("et3", 1, &[]);
    let inet4 = sandbox.var("INET_ADDR4_1").to_string(); // excluded
    let server_side = "198.18.1.1"; // included: the server's side of the internet link
    let router = sandbox.var("ROUTER_ADDR4").to_string(); // not included
    helper.cli_ok(&[
        "connect",
        "--include",
        sandbox.var("INET_NET4_1"),
        "--exclude",
        &format!("{inet4}/32"),
    ]);
    let status = helper.status();
    assert_eq!(status["routing"]["full_tunnel"], false);

    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "split",
    );
    assert!(
        sandbox.ping(server_side),
        "included prefix through the tunnel"
    );
    assert!(sandbox.ping(&inet4), "excluded host directly");
    assert!(
        sandbox.ping(&router),
        "a host outside the include list directly"
    );
    let included = capture.stop(&format!("icmp and host {server_side}"));
    assert!(
        included.is_empty(),
        "included traffic went around the tunnel:\n{}",
        included.join("\n")
    );
    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "split2",
    );
    assert!(sandbox.ping(&inet4));
    assert!(sandbox.ping(&router));
    let excluded = capture.stop(&format!("icmp and (host {inet4} or host {router})"));
    // Echo request and reply for each of the two.
    assert!(
        excluded.len() >= 4,
        "excluded traffic did not cross the physical link: {excluded:?}"
    );
}

#[test]
fn disconnect_restores_rules_routes_and_links_exactly() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = connected_setup("et4", 1, &[]);
    let before = sandbox.routing_snapshot();
    helper.cli_ok(&["connect"]);
    let during = sandbox.routing_snapshot();
    assert_ne!(
        before, during,
        "connecting changed nothing, so this test could not fail"
    );
    let out = helper.cli_ok(&["disconnect"]);
    assert!(out.contains("Disconnected"), "{out}");
    assert_eq!(helper.status()["state"], "disconnected");
    assert_eq!(before, sandbox.routing_snapshot());
}

#[test]
fn sigterm_while_connected_restores_rules_routes_and_links() {
    if !can_run() {
        return;
    }
    let (sandbox, mut helper) = connected_setup("et5", 1, &[]);
    let before = sandbox.routing_snapshot();
    helper.cli_ok(&["connect"]);
    let status = helper.stop_with(libc::SIGTERM);
    assert!(
        status.success(),
        "underpassd exited with {status}:\n{}",
        helper.log_text()
    );
    assert_eq!(before, sandbox.routing_snapshot());
    assert!(!helper.socket.exists(), "the socket file was left behind");
}

#[test]
fn a_connect_without_handshake_says_why_keeps_trying_and_disconnect_restores_routing() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("et6", 1);
    let helper = Helper::start(&sandbox, &["--handshake-timeout", "3"]);
    // A profile whose server key is wrong: the server never answers.
    let good = std::fs::read_to_string(sandbox.var("PROFILE_1")).unwrap();
    let bad = good.replace(
        sandbox.var("SERVER_PUB_1"),
        "mBVSMfQ8gBD6xM4wvX0Vhm7DK8dSJzhqo4DTGGrz4VM=",
    );
    let path = sandbox.dir.join("wrong-key.conf");
    std::fs::write(&path, bad).unwrap();
    helper.cli_ok(&["import", path.to_str().unwrap()]);
    let before = sandbox.routing_snapshot();
    let out = helper.cli_run(&["connect", "wrong-key"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "connect with a wrong key succeeded");
    assert!(
        stderr.contains("no handshake"),
        "error does not say why: {stderr}"
    );
    // Not an error: retrying may fix it (the server may come back), so the helper keeps trying.
    let status = helper.status();
    assert_eq!(status["state"], "reconnecting", "{status}");
    assert!(
        status["reconnect"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains(sandbox.var("SERVER_ENDPOINT_1")),
        "{status}"
    );
    helper.cli_ok(&["disconnect"]);
    assert_eq!(before, sandbox.routing_snapshot());
}

#[test]
fn switching_server_moves_the_tunnel_to_the_new_endpoint() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = connected_setup("et7", 2, &[]);
    let before = sandbox.routing_snapshot();
    helper.cli_ok(&["connect", "se-sto-wg-001"]);
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));
    helper.cli_ok(&["connect", "de-fra-wg-001"]);
    let status = helper.status();
    assert_eq!(status["state"], "connected");
    assert_eq!(status["endpoint"], sandbox.var("SERVER_ENDPOINT_2"));
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_2")));
    helper.cli_ok(&["disconnect"]);
    assert_eq!(before, sandbox.routing_snapshot());
}

#[test]
fn hostname_endpoint_is_resolved_before_routes_go_up() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("et8", 1);
    // `ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts for what runs inside.
    let (ip, port) = udp_endpoint(&sandbox, 1);
    let etc = std::path::Path::new("/etc/netns").join(sandbox.client_ns());
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("hosts"),
        format!("127.0.0.1 localhost\n{ip} se-sto.vpn.example.test\n"),
    )
    .unwrap();
    let helper = Helper::start(&sandbox, &[]);
    let conf = std::fs::read_to_string(sandbox.var("PROFILE_1"))
        .unwrap()
        .replace(
            &format!("{ip}:{port}"),
            &format!("se-sto.vpn.example.test:{port}"),
        );
    let path = sandbox.dir.join("by-name.conf");
    std::fs::write(&path, conf).unwrap();
    helper.cli_ok(&["import", path.to_str().unwrap()]);
    helper.cli_ok(&["connect", "by-name"]);
    assert_eq!(helper.status()["endpoint"], format!("{ip}:{port}"));
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));
}

#[test]
fn profile_that_does_not_exist_is_a_clear_error() {
    if !can_run() {
        return;
    }
    let dir = std::env::temp_dir().join("underpass-e2e-noprofile");
    let _ = std::fs::remove_dir_all(&dir);
    let helper = Helper::start_in(None, &dir, &[]);
    let out = run(helper.cli().args(["connect", "atlantis"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("atlantis") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn two_peers_each_carry_the_traffic_for_their_own_allowed_ips() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("et9", 2);
    let helper = Helper::start(&sandbox, &[]);
    let key = std::fs::read_to_string(sandbox.var("CLIENT_KEY_FILE")).unwrap();
    let conf = format!(
        "[Interface]\nPrivateKey = {}\nAddress = 10.64.1.2/32, 10.64.2.2/32\n\n\
         [Peer]\nPublicKey = {}\nEndpoint = {}\nAllowedIPs = 10.64.1.0/24, {}\n\n\
         [Peer]\nPublicKey = {}\nEndpoint = {}\nAllowedIPs = 10.64.2.0/24, {}\n",
        key.trim(),
        sandbox.var("SERVER_PUB_1"),
        sandbox.var("SERVER_ENDPOINT_1"),
        sandbox.var("INET_NET4_1"),
        sandbox.var("SERVER_PUB_2"),
        sandbox.var("SERVER_ENDPOINT_2"),
        sandbox.var("INET_NET4_2"),
    );
    let path = sandbox.dir.join("two-peers.conf");
    std::fs::write(&path, conf).unwrap();
    helper.cli_ok(&["import", path.to_str().unwrap()]);
    helper.cli_ok(&["connect", "two-peers"]);

    // Each server only accepts its own inner address as our source, so each ping proves that
    // cryptokey routing chose the right peer.
    for (src, dst) in [("10.64.1.2", "INET_ADDR4_1"), ("10.64.2.2", "INET_ADDR4_2")] {
        let out = run(sandbox.in_ns(sandbox.client_ns(), "ping").args([
            "-c1",
            "-W2",
            "-I",
            src,
            sandbox.var(dst),
        ]));
        assert!(out.status.success(), "ping from {src} to {dst} failed");
    }
    let status = helper.status();
    let peers = status["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    for p in peers {
        assert!(
            p["last_handshake_secs"].as_u64().is_some(),
            "peer without handshake: {p}"
        );
        assert!(p["rx_bytes"].as_u64().unwrap() > 0);
    }
}

#[test]
fn connect_by_country_picks_the_server_with_the_fastest_handshake() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("et10", 2);
    let helper = Helper::start(&sandbox, &[]);
    // Server 1 is reached through a relay that adds 80 ms each way; server 2 directly; a third
    // candidate never answers.
    let relay_listen = format!("{}:40001", sandbox.var("ROUTER_ADDR4"));
    let mut relay = sandbox
        .in_ns(sandbox.var("NS_ROUTER"), "python3")
        .arg(repo_root().join("tests/e2e/tools/udp_relay.py"))
        .args([&relay_listen, sandbox.var("SERVER_ENDPOINT_1"), "80", "60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("relay");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(relay.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "relay ready");
    }
    let write = |name: &str, from: &str, endpoint: &str, key: Option<&str>| {
        let mut conf = std::fs::read_to_string(sandbox.var(from)).unwrap().replace(
            &sandbox
                .var(&from.replace("PROFILE", "SERVER_ENDPOINT"))
                .to_string(),
            endpoint,
        );
        if let Some(k) = key {
            conf = conf.replace(sandbox.var(&from.replace("PROFILE", "SERVER_PUB")), k);
        }
        let path = sandbox.dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf).unwrap();
        helper.cli_ok(&["import", path.to_str().unwrap(), "--country", "SE"]);
    };
    write("se-slow", "PROFILE_1", &relay_listen, None);
    write(
        "se-fast",
        "PROFILE_2",
        sandbox.var("SERVER_ENDPOINT_2"),
        None,
    );
    write(
        "se-silent",
        "PROFILE_1",
        "203.0.113.50:51820",
        Some("mBVSMfQ8gBD6xM4wvX0Vhm7DK8dSJzhqo4DTGGrz4VM="),
    );
    let started = std::time::Instant::now();
    let out = helper.cli_run(&["connect", "--country", "SE"]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Best server in SE: se-fast"), "{stderr}");
    assert!(
        stderr.contains("se-silent: no handshake response"),
        "{stderr}"
    );
    let slow_ms: f64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("se-slow: "))
        .and_then(|v| v.trim_end_matches(" ms").parse().ok())
        .expect("se-slow was measured");
    assert!(
        slow_ms >= 150.0,
        "the relay's delay did not show: {slow_ms} ms"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "the silent server stalled the choice: {elapsed:?}"
    );
    assert_eq!(helper.status()["profile"], "se-fast");
    let _ = relay.kill();
    let _ = relay.wait();
}

#[test]
fn a_connect_whose_intent_cannot_be_saved_is_refused_and_changes_nothing() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = connected_setup("ein", 1, &[]);
    let before = sandbox.routing_snapshot();
    // The intent file's place is taken by a non-empty directory: the atomic rename over it fails,
    // as on a full or read-only disk.
    let intent = sandbox.dir.join("state/intent.json");
    let _ = std::fs::remove_file(&intent);
    std::fs::create_dir_all(intent.join("in-the-way")).expect("blocking directory");

    let out = helper.cli_run(&["connect", "se-sto-wg-001"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the connect went ahead: {stderr}");
    assert!(
        stderr.contains("could not record it") && stderr.contains("intent"),
        "the refusal does not give the reason: {stderr}"
    );
    assert!(
        helper.log_text().contains("could not record it"),
        "the refusal is not logged"
    );
    assert_eq!(helper.status()["state"], "disconnected");
    assert_eq!(
        sandbox.routing_snapshot(),
        before,
        "a refused connect changed the routing"
    );
    assert!(
        !sandbox.ping(sandbox.var("SERVER_TUN_ADDR4_1")),
        "a tunnel came up anyway"
    );

    // Once the intent can be recorded again, the same connect goes ahead.
    std::fs::remove_dir_all(&intent).expect("removing the blocking directory");
    let out = helper.cli_ok(&["connect", "se-sto-wg-001"]);
    assert!(out.contains("Connected"), "connect said: {out}");
    assert!(std::fs::read_to_string(&intent)
        .expect("the intent is on disk")
        .contains("se-sto-wg-001"));
}
