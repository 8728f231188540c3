//! A hostname endpoint that moves (issue 8, scenario 7), end to end: a real DNS server
//! (dnsmasq) on the router serves the server's name (no /etc/hosts entry), the kill switch is
//! `lockdown` throughout, the helper resolves the name itself with its marked sockets, and
//! when the answer changes and the old server dies, it resolves again and follows the name.
//! Captures on the client's uplink and the resolver's log show that nothing but encrypted UDP
//! to the endpoints and the helper's own lookups got out; a twin without the kill switch's
//! table shows that the checks can fail.

use std::time::{Duration, Instant};

use underpass_e2e::*;

const SECOND: Duration = Duration::from_secs(1);
const NAME: &str = "vpn.moving.test";
/// What another process in the client namespace tries to resolve (the resolver knows it): it
/// must never arrive.
const INTRUDER: &str = "intruder.moving.test";
/// The client's resolver before the tunnel: on the router, one hop away.
const RESOLVER: &str = "203.0.113.53";
/// The helper's mark (`firewall::HELPER_MARK`).
const HELPER_MARK: &str = "0x75700d05";

/// Tries `INTRUDER` through the system's resolver from an ordinary process, now; true when it
/// got an answer.
fn intruder_resolves(sandbox: &Sandbox) -> bool {
    dns_query(sandbox, sandbox.client_ns(), RESOLVER, INTRUDER, None).is_some()
}

#[test]
fn a_hostname_endpoint_resolves_in_lockdown_and_is_followed_when_it_moves() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("hn1", 2);
    let router = sandbox.var("NS_ROUTER").to_string();
    let client = sandbox.client_ns().to_string();
    let (old_ip, new_ip) = (sandbox.var("SERVER_ADDR4_1"), sandbox.var("SERVER_ADDR4_2"));

    // Server 2 becomes the same server at another address: server 1's key and tunnel address
    // (its internet host 2 routes the tunnel's addresses back through it).
    let s2 = sandbox.var("NS_SERVER_2").to_string();
    let wg2 = sandbox.var("SERVER_WG_IF_2").to_string();
    run_ok(sandbox.in_ns(&s2, "wg").args([
        "set",
        &wg2,
        "private-key",
        sandbox.var("SERVER_KEY_FILE_1"),
    ]));
    run_ok(sandbox.in_ns(&s2, "wg").args([
        "set",
        &wg2,
        "peer",
        sandbox.var("CLIENT_PUB"),
        "allowed-ips",
        "10.64.1.2/32,fd00:64:1::2/128",
    ]));
    run_ok(
        sandbox
            .in_ns(&s2, "ip")
            .args(["addr", "add", "10.64.1.1/24", "dev", &wg2]),
    );

    // The "ISP" resolver lives on the router, off the client's link (as ISPs' resolvers are,
    // so the client reaches it by its default route), and answers the server's name from a
    // hosts file.
    run_ok(sandbox.in_ns(&router, "ip").args([
        "addr",
        "add",
        &format!("{RESOLVER}/32"),
        "dev",
        "lo",
    ]));
    std::fs::write(
        client_resolv_conf(&sandbox),
        format!("# the sandbox's ISP resolver\nnameserver {RESOLVER}\n"),
    )
    .unwrap();
    let hosts = sandbox.dir.join("moving.hosts");
    let answers = |ip: &str| format!("{ip} {NAME}\n203.0.113.9 {INTRUDER}\n");
    std::fs::write(&hosts, answers(old_ip)).unwrap();
    let resolver = Resolver::start_with(
        &sandbox,
        &router,
        RESOLVER,
        "moving",
        &[&format!("--addn-hosts={}", hosts.display())],
    );
    let by_name = sandbox.dir.join("by-name.conf");
    let profile = std::fs::read_to_string(sandbox.var("PROFILE_1"))
        .unwrap()
        .replace(sandbox.var("SERVER_ENDPOINT_1"), &format!("{NAME}:51820"));
    std::fs::write(&by_name, profile).unwrap();
    assert!(
        !std::fs::read_to_string("/etc/hosts")
            .unwrap_or_default()
            .contains(NAME),
        "the name must come from DNS"
    );

    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", by_name.to_str().unwrap()]);
    helper.set_kill_switch("lockdown");
    let resolv = client_resolv_conf(&sandbox);
    let resolv_before = std::fs::read(&resolv).unwrap();
    let routing_before = sandbox.routing_snapshot();

    let uplink = sandbox.var("CLIENT_IF").to_string();
    let capture = Capture::start(&sandbox, &client, &uplink, "uplink");
    let at_resolver = Capture::start(&sandbox, &router, sandbox.var("ROUTER_IF"), "resolver");
    let load = Traffic::start(
        &sandbox,
        &[sandbox.var("INET_ADDR4_1"), sandbox.var("ROUTER_ADDR4")],
    );

    // Blocked, before any tunnel: another process cannot resolve.
    assert!(
        !intruder_resolves(&sandbox),
        "an unmarked lookup got through lockdown"
    );

    // A server measurement by name, in lockdown with no tunnel up: the helper's own marked
    // lookup resolves the candidate, and the measurement set admits its handshake.
    let key = std::fs::read_to_string(sandbox.var("CLIENT_KEY_FILE")).unwrap();
    let measured = helper.request(serde_json::json!({
        "kind": "probe_servers",
        "candidates": [{
            "id": "by-name",
            "endpoint": format!("{NAME}:51820"),
            "public_key": sandbox.var("SERVER_PUB_1"),
            "private_key": key.trim(),
        }]
    }));
    assert!(
        measured["Ok"]["results"][0]["rtt_ms"].is_number(),
        "a candidate named by DNS was not measured in lockdown: {measured}"
    );

    // Connect by name, in lockdown with no tunnel up.
    let started = Instant::now();
    helper.cli_ok(&["connect"]);
    let status = helper.wait_for_state("connected", 15 * SECOND);
    println!(
        "connected by name in lockdown in {} ms",
        started.elapsed().as_millis()
    );
    let old_endpoint = format!("{old_ip}:51820");
    assert_eq!(status["endpoint"], old_endpoint.as_str(), "{status}");
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));

    // While a session exists, the helper's marked packets to the resolver still take the
    // physical path, while everyone else's enter the tunnel.
    let route = |mark: Option<&str>| {
        let mut cmd = sandbox.in_ns(&client, "ip");
        cmd.args(["route", "get", RESOLVER]);
        if let Some(m) = mark {
            cmd.args(["mark", m]);
        }
        run_ok(&mut cmd)
    };
    let (marked, unmarked) = (route(Some(HELPER_MARK)), route(None));
    assert!(
        marked.contains(&format!("dev {uplink}")),
        "the helper's lookups would go: {marked}"
    );
    assert!(
        !unmarked.contains(&format!("dev {uplink}")),
        "an ordinary packet to the resolver would not enter the tunnel: {unmarked}"
    );
    assert!(
        !intruder_resolves(&sandbox),
        "an unmarked lookup got out while connected"
    );

    // The name moves: the resolver answers with server 2's address, and server 1 dies.
    std::fs::write(&hosts, answers(new_ip)).unwrap();
    resolver.reload();
    assert!(
        wait_until(5 * SECOND, || {
            dns_query(&sandbox, &router, RESOLVER, NAME, None).as_deref() == Some(new_ip)
        }),
        "the resolver does not answer with the new address"
    );
    let wg1_pid: i32 = std::fs::read_to_string(sandbox.dir.join("wg-s1.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the sandbox's own wireguard-go.
    unsafe { libc::kill(wg1_pid, libc::SIGKILL) };
    let moved = Instant::now();
    let new_endpoint = format!("{new_ip}:51820");
    let mut last = serde_json::Value::Null;
    let followed = wait_until(60 * SECOND, || {
        last = helper.status();
        last["state"] == "connected" && last["endpoint"] == new_endpoint.as_str()
    });
    assert!(
        followed,
        "never reconnected to {new_endpoint}; last status: {last}\n{}",
        helper.log_text()
    );
    println!(
        "followed the moved name {} ms after the old server died",
        moved.elapsed().as_millis()
    );
    assert!(
        wait_until(5 * SECOND, || sandbox.ping(sandbox.var("INET_ADDR4_2"))),
        "no traffic through the new server"
    );
    assert!(
        !intruder_resolves(&sandbox),
        "an unmarked lookup got out after the move"
    );
    drop(load);

    // Nothing but encrypted UDP to the two endpoints, and the helper's DNS, left the client.
    let resolver_udp = format!("{RESOLVER}:53");
    report(
        "a hostname endpoint in lockdown, moved",
        &leaks(
            &sandbox,
            capture,
            &[&old_endpoint, &new_endpoint, &resolver_udp],
        ),
    );
    // The resolver heard the helper's lookups of the server's name, and nothing else.
    let asked = resolver.queries();
    println!("the resolver was asked: {asked:?}");
    assert!(
        asked.iter().filter(|q| *q == NAME).count() >= 2,
        "the helper did not resolve at connect and again after the move: {asked:?}"
    );
    assert!(
        asked.iter().all(|q| q == NAME),
        "something else reached the resolver: {asked:?}"
    );
    let dns_from_client = at_resolver.stop(&format!(
        "port 53 and src host {}",
        sandbox.var("CLIENT_ADDR4")
    ));
    assert!(
        !dns_from_client.is_empty(),
        "the resolver capture saw nothing"
    );
    assert!(
        dns_from_client.iter().all(|p| p.contains(NAME)),
        "DNS from the client other than the helper's lookups:\n{}",
        dns_from_client.join("\n")
    );

    // Disconnect puts resolv.conf and the routing back exactly.
    helper.cli_ok(&["disconnect"]);
    assert_eq!(
        String::from_utf8_lossy(&resolv_before),
        String::from_utf8_lossy(&std::fs::read(&resolv).unwrap())
    );
    assert_eq!(routing_before, sandbox.routing_snapshot());
    assert_eq!(helper.status()["firewall"], "blocking");

    // The twin: without the kill switch's table the same checks see leaks, and the intruder's
    // lookup reaches the resolver.
    run_ok(
        sandbox
            .in_ns(&client, "nft")
            .args(["delete", "table", "inet", "underpass"]),
    );
    let twin = Capture::start(&sandbox, &client, &uplink, "twin");
    let load = Traffic::start(&sandbox, &[sandbox.var("INET_ADDR4_1")]);
    let intruded = intruder_resolves(&sandbox);
    std::thread::sleep(SECOND);
    drop(load);
    let leaked = leaks(&sandbox, twin, &[&old_endpoint, &new_endpoint]);
    println!(
        "twin without the kill switch's table: {} packets got out, intruder answered: {intruded}",
        leaked.len()
    );
    assert!(!leaked.is_empty(), "the capture cannot see leaks");
    assert!(
        intruded,
        "the intruder's lookup cannot get through even unblocked"
    );
    assert!(
        resolver.queries().iter().any(|q| q == INTRUDER),
        "the resolver log cannot show another process's lookup"
    );
}
