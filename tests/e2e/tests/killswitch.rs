//! The kill switch and DNS, end to end: real nftables, real resolvers (dnsmasq), captures on
//! the client's physical link while traffic generators run through every transition.

use std::time::Duration;

use underpass_e2e::*;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn kill_switch_blocks_while_the_server_is_unreachable() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("ek1", 1);
    let helper = Helper::start(&sandbox, &["--handshake-timeout", "3"]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    // The server's link goes down: no handshake will ever come back.
    run_ok(sandbox.in_ns(sandbox.var("NS_SERVER_1"), "ip").args([
        "link",
        "set",
        sandbox.var("NS_SERVER_1"),
        "down",
    ]));
    // Connecting starts in the background; from the moment the helper says "connecting" the
    // host must be sealed.
    let mut connect = helper
        .cli()
        .arg("connect")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    helper.wait_for_state("connecting", 10 * SECOND);
    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "unreach",
    );
    let traffic = Traffic::start(
        &sandbox,
        &[
            sandbox.var("INET_ADDR4_1"),
            sandbox.var("ROUTER_ADDR4"),
            sandbox.var("INET_ADDR6_1"),
        ],
    );
    assert!(
        !connect.wait().unwrap().success(),
        "connect to an unreachable server succeeded"
    );
    let status = helper.wait_for_state("reconnecting", 10 * SECOND);
    assert_ne!(status["firewall"], "open", "{status}");
    std::thread::sleep(2 * SECOND);
    drop(traffic);
    report(
        "connect to an unreachable server",
        &leaks(&sandbox, capture, &[sandbox.var("SERVER_ENDPOINT_1")]),
    );
    // The user gives up: auto opens the host again.
    helper.cli_ok(&["disconnect"]);
    assert_eq!(helper.status()["firewall"], "open");
    assert!(sandbox.ping(sandbox.var("ROUTER_ADDR4")));
}

#[test]
fn kill_switch_blocks_after_helper_sigkill_and_the_restarted_helper_reconnects() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("ek2", 1);
    let mut helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.cli_ok(&["connect"]);
    assert_eq!(helper.status()["firewall"], "tunnel_only");

    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "sigkill",
    );
    let traffic = Traffic::start(
        &sandbox,
        &[sandbox.var("INET_ADDR4_1"), sandbox.var("ROUTER_ADDR4")],
    );
    std::thread::sleep(SECOND);
    helper.stop_with(libc::SIGKILL);
    // The tunnel is gone with the process; the table is not.
    std::thread::sleep(3 * SECOND);
    assert!(
        !sandbox.ping(sandbox.var("ROUTER_ADDR4")),
        "the host is open after the helper died"
    );
    drop(traffic);
    report(
        "helper SIGKILL",
        &leaks(&sandbox, capture, &[sandbox.var("SERVER_ENDPOINT_1")]),
    );

    // A new helper reads the intent, keeps blocking and reconnects by itself.
    let helper = Helper::start(&sandbox, &[]);
    let status = helper.wait_for_state("connected", 20 * SECOND);
    assert_eq!(status["profile"], "se-sto-wg-001");
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));
    helper.cli_ok(&["disconnect"]);
    assert_eq!(helper.status()["firewall"], "open");
}

#[test]
fn lockdown_blocks_even_when_disconnected_until_turned_off() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("ek3", 1);
    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    let router = sandbox.var("ROUTER_ADDR4").to_string();
    assert!(sandbox.ping(&router));
    helper.set_kill_switch("lockdown");
    assert_eq!(helper.status()["firewall"], "blocking");

    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "lockdown",
    );
    let traffic = Traffic::start(&sandbox, &[&router, sandbox.var("INET_ADDR4_1")]);
    std::thread::sleep(SECOND);
    // Connect, switch off, disconnect, reconnect: nothing leaves but the tunnel.
    helper.cli_ok(&["connect"]);
    assert!(
        sandbox.ping(sandbox.var("INET_ADDR4_1")),
        "the tunnel works in lockdown"
    );
    helper.cli_ok(&["disconnect"]);
    std::thread::sleep(SECOND);
    helper.cli_ok(&["connect"]);
    helper.cli_ok(&["disconnect"]);
    std::thread::sleep(SECOND);
    drop(traffic);
    report(
        "lockdown: connect, disconnect, reconnect",
        &leaks(&sandbox, capture, &[sandbox.var("SERVER_ENDPOINT_1")]),
    );
    assert_eq!(helper.status()["firewall"], "blocking");

    helper.set_kill_switch("off");
    assert_eq!(helper.status()["firewall"], "open");
    assert!(sandbox.ping(&router));
}

#[test]
fn removing_the_table_is_caught_by_the_leak_capture() {
    if !can_run() {
        return;
    }
    // The capture-based checks above must be able to fail: break the kill switch on purpose
    // during a blocked state and the same check must see the packets.
    let sandbox = Sandbox::up("ek4", 1);
    let helper = Helper::start(&sandbox, &[]);
    helper.set_kill_switch("lockdown");
    run_ok(sandbox.in_ns(sandbox.client_ns(), "nft").args([
        "delete",
        "table",
        "inet",
        "underpass",
    ]));
    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "broken",
    );
    assert!(sandbox.ping(sandbox.var("ROUTER_ADDR4")));
    let leaked = leaks(&sandbox, capture, &[sandbox.var("SERVER_ENDPOINT_1")]);
    assert!(
        !leaked.is_empty(),
        "the leak check saw nothing with the kill switch removed"
    );
}

#[test]
fn dns_goes_only_to_the_tunnel_resolver_and_resolv_conf_comes_back_byte_identical() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("ek5", 1);
    let isp = Resolver::isp(&sandbox);
    let tunnel = Resolver::tunnel(&sandbox);
    let resolv = client_resolv_conf(&sandbox);
    let original = std::fs::read(&resolv).unwrap();
    let lookup = |name: &str| {
        run(sandbox
            .in_ns(sandbox.client_ns(), "getent")
            .args(["ahostsv4", name]))
    };
    // The control: before connecting, the ISP resolver does see our queries.
    assert!(lookup("before.example.test").status.success());
    assert!(
        isp.queries().iter().any(|q| q == "before.example.test"),
        "{:?}",
        isp.queries()
    );

    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.cli_ok(&["connect"]);
    let status = helper.status();
    assert_eq!(status["dns"]["method"], "resolv.conf");
    let out = lookup("during.example.test");
    assert!(out.status.success(), "no answer through the tunnel");
    assert!(String::from_utf8_lossy(&out.stdout).contains("192.0.2.99"));
    assert!(tunnel.queries().iter().any(|q| q == "during.example.test"));
    assert!(
        !isp.queries().iter().any(|q| q.starts_with("during")),
        "the ISP saw a query while connected"
    );

    // Someone rewrites resolv.conf behind our back: the helper puts the tunnel's back.
    std::fs::write(&resolv, &original).unwrap();
    assert!(
        wait_until(3 * SECOND, || std::fs::read(&resolv).unwrap() != original),
        "the rewrite was not noticed"
    );
    // Even a direct query to the ISP resolver is refused while connected.
    let direct = run(sandbox
        .in_ns(sandbox.client_ns(), "getent")
        .args(["ahostsv4", "direct.example.test"]));
    let _ = direct;
    assert!(!isp.queries().iter().any(|q| q.starts_with("direct")));

    helper.cli_ok(&["disconnect"]);
    assert_eq!(
        std::fs::read(&resolv).unwrap(),
        original,
        "resolv.conf not restored byte for byte"
    );
}

#[test]
fn resolv_conf_is_restored_after_a_crash_while_dns_was_overridden() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("ek6", 1);
    let resolv = client_resolv_conf(&sandbox);
    let original = std::fs::read(&resolv).unwrap();
    let mut helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.cli_ok(&["connect"]);
    assert_ne!(std::fs::read(&resolv).unwrap(), original);
    helper.stop_with(libc::SIGKILL);
    // Still overridden (and blocked) while no helper runs.
    assert_ne!(std::fs::read(&resolv).unwrap(), original);

    // The next helper reconnects (the user still wants the tunnel) and then, on disconnect,
    // restores the file that was there before the first one ever touched it.
    let helper = Helper::start(&sandbox, &[]);
    helper.wait_for_state("connected", 20 * SECOND);
    helper.cli_ok(&["disconnect"]);
    assert_eq!(std::fs::read(&resolv).unwrap(), original);
}

#[test]
fn self_tests_pass_when_sealed_and_catch_the_leak_when_broken_on_purpose() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("ek7", 1);
    let isp = Resolver::isp(&sandbox);
    let _tunnel = Resolver::tunnel(&sandbox);
    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.cli_ok(&["connect"]);
    let dns_opts = serde_json::json!({"domain": "example.test", "names": 3});
    // Probes aim at the sandbox's own hosts: the router and an internet host.
    let probe_opts = serde_json::json!({
        "probe_targets": [sandbox.var("ROUTER_ADDR4"), sandbox.var("INET_ADDR4_1")],
        "drop_secs": 2
    });

    // Sealed: both pass, with evidence of what was tried.
    let dns = helper.self_test("dns", dns_opts.clone());
    assert_eq!(dns["verdict"], "pass", "{dns:#}");
    assert_eq!(
        dns["captured_on"],
        serde_json::json!([sandbox.var("CLIENT_IF")])
    );
    assert_eq!(dns["sent"].as_array().unwrap().len(), 3);
    let resolvers = dns["resolvers"].as_array().unwrap();
    assert!(
        resolvers.iter().any(
            |r| r["server"] == sandbox.var("SERVER_TUN_ADDR4_1") && r["through_tunnel"] == true
        ),
        "{dns:#}"
    );
    let ks = helper.self_test("kill_switch", probe_opts.clone());
    assert_eq!(ks["verdict"], "pass", "{ks:#}");
    assert!(ks["sent"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().contains("simulated tunnel drop")));
    assert!(
        sandbox.ping(sandbox.var("INET_ADDR4_1")),
        "the data plane came back after the drop"
    );
    // The same through the CLI, as a user runs it.
    let out = helper.cli_ok(&[
        "selftest",
        "all",
        "--domain",
        "example.test",
        "--names",
        "2",
        "--probe",
        sandbox.var("ROUTER_ADDR4"),
        "--drop-secs",
        "1",
    ]);
    assert!(
        out.contains("DNS-leak test: PASS") && out.contains("Kill-switch test: PASS"),
        "{out}"
    );
    assert!(out.contains("Seen outside the tunnel: nothing"), "{out}");

    // Broken on purpose: no kill switch, and resolv.conf pointed back at the ISP.
    helper.set_kill_switch("off");
    let ks = helper.self_test("kill_switch", probe_opts);
    assert_eq!(ks["verdict"], "fail", "{ks:#}");
    let leaks = ks["leaks"].as_array().unwrap();
    assert!(
        leaks
            .iter()
            .any(|l| l["interface"] == sandbox.var("CLIENT_IF")
                && l["destination"]
                    .as_str()
                    .unwrap()
                    .starts_with(sandbox.var("ROUTER_ADDR4"))),
        "{ks:#}"
    );
    println!(
        "kill-switch self-test with the kill switch off: {} escaped packets reported",
        leaks.len()
    );

    std::fs::write(
        client_resolv_conf(&sandbox),
        format!("nameserver {}\n", sandbox.var("ROUTER_ADDR4")),
    )
    .unwrap();
    // (The helper re-asserts within a second; run the test straight away, while it is broken.)
    let dns = helper.self_test(
        "dns",
        serde_json::json!({"domain": "example.test", "names": 2}),
    );
    if dns["verdict"] == "pass" {
        // The helper won the race and put the tunnel resolver back before the first query.
        assert!(isp.queries().is_empty());
    } else {
        assert_eq!(dns["verdict"], "fail", "{dns:#}");
        let leak = &dns["leaks"][0];
        assert_eq!(
            leak["destination"],
            format!("{}:53", sandbox.var("ROUTER_ADDR4"))
        );
        assert!(
            leak["detail"].as_str().unwrap().ends_with("example.test."),
            "{dns:#}"
        );
    }
    helper.cli_ok(&["disconnect"]);
}

#[test]
fn dns_self_test_reports_the_leak_when_the_resolver_is_the_isps() {
    if !can_run() {
        return;
    }
    // Deterministic version of the DNS break: a profile without DNS leaves resolv.conf on the
    // ISP's resolver, and with the kill switch off the queries go out in the clear.
    let sandbox = Sandbox::up("ek8", 1);
    let isp = Resolver::isp(&sandbox);
    let helper = Helper::start(&sandbox, &[]);
    let conf = std::fs::read_to_string(sandbox.var("PROFILE_1")).unwrap();
    let no_dns: String = conf
        .lines()
        .filter(|l| !l.starts_with("DNS"))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = sandbox.dir.join("no-dns.conf");
    std::fs::write(&path, no_dns).unwrap();
    helper.cli_ok(&["import", path.to_str().unwrap()]);
    helper.set_kill_switch("off");
    helper.cli_ok(&["connect"]);
    let dns = helper.self_test(
        "dns",
        serde_json::json!({"domain": "example.test", "names": 2}),
    );
    assert_eq!(dns["verdict"], "fail", "{dns:#}");
    let leak = &dns["leaks"][0];
    assert_eq!(leak["interface"], sandbox.var("CLIENT_IF"));
    assert_eq!(
        leak["destination"],
        format!("{}:53", sandbox.var("ROUTER_ADDR4"))
    );
    assert!(
        leak["detail"].as_str().unwrap().ends_with(".example.test."),
        "{dns:#}"
    );
    let resolvers = dns["resolvers"].as_array().unwrap();
    assert!(
        resolvers
            .iter()
            .any(|r| r["server"] == sandbox.var("ROUTER_ADDR4") && r["through_tunnel"] == false),
        "{dns:#}"
    );
    assert!(
        !isp.queries().is_empty(),
        "the ISP resolver saw nothing, so no leak happened"
    );
    // With the kill switch back on, the same resolver is refused: no leak, pass.
    helper.set_kill_switch("auto");
    let dns = helper.self_test(
        "dns",
        serde_json::json!({"domain": "example.test", "names": 2}),
    );
    assert_eq!(dns["verdict"], "pass", "{dns:#}");
}

#[test]
fn a_signed_profiles_policy_is_held_by_the_helper_for_the_whole_session() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("ek9", 1);
    let helper = Helper::start(&sandbox, &[]);
    let dir = &sandbox.dir;
    let (sk, pk) = (dir.join("it.key"), dir.join("it.pub"));
    helper.cli_ok(&[
        "profile",
        "keygen",
        "--no-password",
        "--secret-key",
        sk.to_str().unwrap(),
        "--public-key",
        pk.to_str().unwrap(),
    ]);
    let signer = std::fs::read_to_string(&pk).unwrap();
    let signer = signer.lines().nth(1).unwrap().trim().to_string();
    let key = std::fs::read_to_string(sandbox.var("CLIENT_KEY_FILE")).unwrap();
    let payload = serde_json::json!({
        "format": "underpass-profile/1",
        "signer_public_key": signer,
        "organization": "Sandbox Corp IT",
        "name": "corp",
        "serial": 1,
        "interface": {"addresses": [format!("{}/32", sandbox.var("CLIENT_TUN_ADDR4_1"))]},
        "servers": [{
            "id": "se-sto-1", "country": "SE", "city": "Stockholm",
            "endpoint": sandbox.var("SERVER_ENDPOINT_1"),
            "public_key": sandbox.var("SERVER_PUB_1")
        }],
        "policy": {
            "min_kill_switch": "lockdown",
            "split_tunnel_allowed": false,
            "lan_access_allowed": false,
            "dns_locked": false
        },
        "private_key": {"embedded": key.trim()}
    });
    let payload_path = dir.join("corp.json");
    std::fs::write(&payload_path, serde_json::to_vec_pretty(&payload).unwrap()).unwrap();
    let bundle = dir.join("corp.underpass");
    helper.cli_ok(&[
        "profile",
        "sign",
        payload_path.to_str().unwrap(),
        "--secret-key",
        sk.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    helper.cli_ok(&["import", bundle.to_str().unwrap(), "--trust"]);

    // Refused before anything happens: a weaker kill switch, or a split tunnel.
    let weak = helper.cli_run(&["connect", "corp", "--kill-switch", "off"]);
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("Sandbox Corp IT"));
    let split = helper.cli_run(&["connect", "corp", "--exclude", "198.18.1.2/32"]);
    assert!(!split.status.success());
    assert_eq!(helper.status()["state"], "disconnected");

    // Connected, the helper runs the session at the policy's minimum and refuses to lower it.
    helper.cli_ok(&["connect", "corp"]);
    let status = helper.status();
    assert_eq!(status["kill_switch"], "lockdown", "{status}");
    assert_eq!(status["policy"]["organization"], "Sandbox Corp IT");
    let off = helper.request(serde_json::json!({"kind": "set_kill_switch", "mode": "off"}));
    assert_eq!(off["Err"]["code"], "invalid_config", "{off}");
    assert!(
        off["Err"]["message"]
            .as_str()
            .unwrap()
            .contains("at least \"lockdown\""),
        "{off}"
    );
    let lan = helper.cli_run(&["lan-access", "on"]);
    assert!(
        !lan.status.success(),
        "LAN access was allowed against the policy"
    );
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));

    // Once the user is done with the profile, the settings are theirs again.
    helper.cli_ok(&["disconnect"]);
    helper.cli_ok(&["killswitch", "off"]);
    assert_eq!(helper.status()["firewall"], "open");
}

/// Every transition the kill switch must survive, under one capture with traffic running:
/// server switch, reconnect, a tunnel drop (the server's link down and up), and a helper
/// SIGKILL followed by a restart that reconnects by itself.
fn transitions_leak_nothing(prefix: &str, mode: &str) {
    let sandbox = Sandbox::up(prefix, 2);
    let mut helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_2")]);
    helper.set_kill_switch(mode);
    let endpoints = [
        sandbox.var("SERVER_ENDPOINT_1"),
        sandbox.var("SERVER_ENDPOINT_2"),
    ];
    let targets = [
        sandbox.var("INET_ADDR4_1"),
        sandbox.var("INET_ADDR4_2"),
        sandbox.var("ROUTER_ADDR4"),
        sandbox.var("INET_ADDR6_1"),
    ];
    // In auto the host is open until the user asks for the tunnel, so the capture starts once
    // connected; in lockdown it covers the connect too.
    let start = |name: &str| {
        (
            Capture::start(
                &sandbox,
                sandbox.client_ns(),
                sandbox.var("CLIENT_IF"),
                name,
            ),
            Traffic::start(&sandbox, &targets),
        )
    };
    let mut window = None;
    if mode == "lockdown" {
        window = Some(start("transitions"));
    }
    helper.cli_ok(&["connect", "se-sto-wg-001"]);
    if window.is_none() {
        window = Some(start("transitions"));
    }
    std::thread::sleep(SECOND);
    helper.cli_ok(&["connect", "de-fra-wg-001"]); // switch server
    std::thread::sleep(SECOND);
    helper.cli_ok(&["connect", "de-fra-wg-001"]); // reconnect
    std::thread::sleep(SECOND);
    // Tunnel drop: the router silently discards everything to and from server 2 for a while.
    let router = sandbox.var("NS_ROUTER");
    let server = sandbox.var("SERVER_ADDR4_2");
    run_ok(sandbox.in_ns(router, "nft").args([
        "add table inet dropsim; add chain inet dropsim sim { type filter hook forward priority 0; }; \
         add rule inet dropsim sim ip daddr",
        server,
        "drop; add rule inet dropsim sim ip saddr",
        server,
        "drop",
    ]));
    std::thread::sleep(3 * SECOND);
    run_ok(
        sandbox
            .in_ns(router, "nft")
            .args(["delete", "table", "inet", "dropsim"]),
    );
    helper.stop_with(libc::SIGKILL);
    std::thread::sleep(2 * SECOND);
    let helper = Helper::start(&sandbox, &[]);
    helper.wait_for_state("connected", 20 * SECOND);
    assert_eq!(helper.status()["profile"], "de-fra-wg-001");
    std::thread::sleep(SECOND);
    if mode == "lockdown" {
        helper.cli_ok(&["disconnect"]);
        std::thread::sleep(SECOND);
    }
    let (capture, traffic) = window.unwrap();
    drop(traffic);
    let leaked = leaks(&sandbox, capture, &endpoints);
    report(
        &format!("{mode}: connect, switch, reconnect, tunnel drop, SIGKILL and restart"),
        &leaked,
    );
    // The tunnel really carried traffic in between: this was not a silent host.
    assert!(
        sandbox.var("INET_ADDR4_2").is_empty()
            || sandbox.ping(sandbox.var("INET_ADDR4_2"))
            || mode == "lockdown"
    );
}

#[test]
fn transitions_leak_nothing_in_auto() {
    if !can_run() {
        return;
    }
    transitions_leak_nothing("ekt1", "auto");
}

#[test]
fn transitions_leak_nothing_in_lockdown() {
    if !can_run() {
        return;
    }
    transitions_leak_nothing("ekt2", "lockdown");
}

#[test]
fn a_v4_only_full_tunnel_blocks_ipv6_instead_of_leaking_it() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("ek10", 1);
    let helper = Helper::start(&sandbox, &[]);
    let v4_only: String = std::fs::read_to_string(sandbox.var("PROFILE_1"))
        .unwrap()
        .lines()
        .map(|l| match l {
            l if l.starts_with("AllowedIPs") => "AllowedIPs = 0.0.0.0/0\n".to_string(),
            l if l.starts_with("Address") => {
                format!("Address = {}/32\n", sandbox.var("CLIENT_TUN_ADDR4_1"))
            }
            l => format!("{l}\n"),
        })
        .collect();
    let path = sandbox.dir.join("v4-only.conf");
    std::fs::write(&path, v4_only).unwrap();
    helper.cli_ok(&["import", path.to_str().unwrap()]);
    helper.cli_ok(&["connect"]);
    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "v6",
    );
    assert!(
        sandbox.ping(sandbox.var("INET_ADDR4_1")),
        "IPv4 goes through the tunnel"
    );
    assert!(
        !sandbox.ping(sandbox.var("INET_ADDR6_1")),
        "IPv6 got through"
    );
    report(
        "IPv6 with a v4-only tunnel",
        &leaks(&sandbox, capture, &[sandbox.var("SERVER_ENDPOINT_1")]),
    );
}
