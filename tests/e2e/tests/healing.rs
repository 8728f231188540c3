//! Healing, end to end: a server that goes silent and comes back, and a network that goes away
//! and comes back, against a real wireguard-go server, with a capture on the client's physical
//! link and traffic running the whole time. Each scenario also shows that its capture would see
//! a leak: with the kill switch's table deleted, the same traffic gets out.

use std::time::{Duration, Instant};

use underpass_e2e::*;

const SECOND: Duration = Duration::from_secs(1);

fn setup(prefix: &str) -> (Sandbox, Helper) {
    let sandbox = Sandbox::up(prefix, 1);
    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.set_kill_switch("auto");
    helper.cli_ok(&["connect"]);
    (sandbox, helper)
}

#[test]
fn a_silent_server_is_noticed_within_21_s_and_the_tunnel_heals_within_5_s_of_its_return() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = setup("eh1");
    let router = sandbox.var("NS_ROUTER").to_string();
    let endpoint = sandbox.var("SERVER_ENDPOINT_1").to_string();
    let port = endpoint.rsplit_once(':').unwrap().1.to_string();
    let capture = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "silent",
    );
    let load = traffic(&sandbox);

    // The router starts dropping the tunnel's UDP: the server looks exactly like an idle one.
    nft(&sandbox, &router, &["add", "table", "inet", "ehblock"]);
    nft(
        &sandbox,
        &router,
        &[
            "add",
            "chain",
            "inet",
            "ehblock",
            "f",
            "{ type filter hook forward priority 0; }",
        ],
    );
    nft(
        &sandbox,
        &router,
        &[
            "add", "rule", "inet", "ehblock", "f", "udp", "dport", &port, "drop",
        ],
    );
    let (status, noticed) = wait_for(&helper, "reconnecting", 25 * SECOND);
    println!("dead server noticed after {} ms", noticed.as_millis());
    assert!(noticed <= 21 * SECOND, "took {noticed:?}");
    assert_eq!(
        status["reconnect"]["reason"], "server_not_responding",
        "{status}"
    );
    assert_eq!(status["firewall"], "tunnel_only", "{status}");

    // Let the ladder climb past its first rung (a forced handshake) to a new socket.
    let climbed = wait_until(20 * SECOND, || {
        helper.status()["reconnect"]["attempt"].as_u64() >= Some(3)
    });
    assert!(climbed, "the ladder did not climb: {}", helper.status());
    let human = helper.cli_ok(&["status"]);
    assert!(
        human.contains("Reason:") && human.contains("the server is not responding"),
        "{human}"
    );

    nft(&sandbox, &router, &["delete", "table", "inet", "ehblock"]);
    let (status, healed) = wait_for(&helper, "connected", 6 * SECOND);
    println!(
        "reconnected {} ms after the server came back",
        healed.as_millis()
    );
    assert!(healed <= 5 * SECOND, "took {healed:?}");
    assert!(status["reconnect"].is_null(), "{status}");
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));
    drop(load);
    report(
        "a silent server, reconnecting, and back",
        &leaks(&sandbox, capture, &[&endpoint]),
    );
    twin_sees_leaks(&sandbox, "a silent server");
}

#[test]
fn without_a_route_the_helper_is_offline_sends_nothing_and_comes_back_by_itself() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = setup("eh2");
    let client = sandbox.client_ns().to_string();
    let endpoint = sandbox.var("SERVER_ENDPOINT_1").to_string();
    let (server_ip, port) = endpoint.rsplit_once(':').unwrap();
    helper.cli_ok(&["disconnect"]);
    let before = sandbox.routing_snapshot();
    helper.cli_ok(&["connect"]);
    let capture = Capture::start(&sandbox, &client, sandbox.var("CLIENT_IF"), "offline");
    let load = traffic(&sandbox);

    let ip = |args: &[&str]| run_ok(sandbox.in_ns(&client, "ip").args(args));
    ip(&["-4", "route", "del", "default"]);
    ip(&["-6", "route", "del", "default"]);
    let (status, noticed) = wait_for(&helper, "offline", 3 * SECOND);
    println!(
        "offline {} ms after the default routes went",
        noticed.as_millis()
    );
    assert!(
        noticed <= 2500 * Duration::from_millis(1),
        "took {noticed:?}"
    );
    assert_eq!(status["reconnect"]["reason"], "no_network", "{status}");

    // While offline not one handshake initiation (WireGuard message type 1) leaves.
    let quiet = Capture::start(&sandbox, &client, sandbox.var("CLIENT_IF"), "quiet");
    std::thread::sleep(6 * SECOND);
    let initiations = quiet.stop(&format!(
        "udp and dst host {server_ip} and dst port {port} and udp[8] = 1"
    ));
    println!(
        "handshake initiations on the wire while offline: {}",
        initiations.len()
    );
    assert!(initiations.is_empty(), "{}", initiations.join("\n"));
    assert_eq!(helper.status()["state"], "offline");

    ip(&[
        "-4",
        "route",
        "add",
        "default",
        "via",
        sandbox.var("ROUTER_ADDR4"),
    ]);
    ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        sandbox.var("ROUTER_ADDR6"),
    ]);
    let (_, back) = wait_for(&helper, "connected", 6 * SECOND);
    println!(
        "connected {} ms after the routes came back",
        back.as_millis()
    );
    assert!(back <= 5 * SECOND, "took {back:?}");
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));
    drop(load);
    report("offline and back", &leaks(&sandbox, capture, &[&endpoint]));

    // Disconnect restores the routing exactly.
    helper.cli_ok(&["disconnect"]);
    assert_eq!(before, sandbox.routing_snapshot());
    helper.cli_ok(&["connect"]);
    twin_sees_leaks(&sandbox, "offline");
}

#[test]
fn disconnect_wins_at_once_over_a_bring_up_stuck_on_a_resolver_that_never_answers() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("eh3", 1);
    let helper = Helper::start(&sandbox, &[]);
    // A resolver on the client's own subnet that nobody answers for: lookups hang until they
    // time out.
    let resolv = client_resolv_conf(&sandbox);
    let original = std::fs::read(&resolv).unwrap();
    std::fs::write(&resolv, "nameserver 198.51.100.77\n").unwrap();
    let profile = std::fs::read_to_string(sandbox.var("PROFILE_1"))
        .unwrap()
        .replace(sandbox.var("SERVER_ENDPOINT_1"), "vpn.example.test:51820");
    let path = sandbox.dir.join("by-name.conf");
    std::fs::write(&path, profile).unwrap();
    helper.cli_ok(&["import", path.to_str().unwrap()]);
    let mut connect = helper
        .cli()
        .arg("connect")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    helper.wait_for_state("connecting", 10 * SECOND);
    std::thread::sleep(SECOND);
    let start = Instant::now();
    helper.cli_ok(&["disconnect"]);
    let took = start.elapsed();
    println!(
        "disconnect during a stuck lookup took {} ms",
        took.as_millis()
    );
    std::fs::write(&resolv, original).unwrap();
    assert!(took <= SECOND, "took {took:?}");
    assert_eq!(helper.status()["state"], "disconnected");
    let _ = connect.wait();
}
