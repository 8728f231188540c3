//! `underpass doctor` end to end: each test breaks exactly one layer of a real tunnel on
//! purpose and checks that `doctor --json` names that layer as the first failure, with the
//! matching evidence and fix; a healthy tunnel passes all seven. The MTU test also shows the
//! stall the probe explains, and the transfer completing once its MTU is applied.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use underpass_e2e::*;

/// Runs `underpass doctor --json ARGS`: (exit status ok, the report).
fn doctor(helper: &Helper, args: &[&str]) -> (bool, Value) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let out = helper.cli_run(&all);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}):\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            helper.log_text()
        )
    });
    (out.status.success(), report)
}

fn ids_and_verdicts(report: &Value) -> Vec<(String, String)> {
    report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The first failing layer; panics (with the report) when none fails.
fn first_fail(report: &Value) -> &Value {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["verdict"] == "fail")
        .unwrap_or_else(|| panic!("no layer fails: {report:#}"))
}

fn evidence(layer: &Value) -> String {
    layer["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The one broken layer: the doctor exits non-zero and names it first, with its fix.
fn assert_first_fail<'a>(ok: bool, report: &'a Value, id: &str, fix_has: &str) -> &'a Value {
    assert!(!ok, "doctor exited 0 although {id} is broken: {report:#}");
    let layer = first_fail(report);
    assert_eq!(layer["id"], id, "first failure: {report:#}");
    let fix = layer["fix"].as_str().unwrap_or("");
    assert!(fix.contains(fix_has), "fix of {id}: {fix}");
    eprintln!("{id} broken, doctor says:\n{layer:#}");
    layer
}

/// A sandbox, a helper, the first server's profile (optionally edited) imported.
fn setup(
    prefix: &str,
    edit: impl Fn(&Sandbox, String) -> String,
    helper_args: &[&str],
) -> (Sandbox, Helper) {
    let sandbox = Sandbox::up(prefix, 1);
    let text = std::fs::read_to_string(sandbox.var("PROFILE_1")).expect("profile");
    let path = sandbox.dir.join("se-sto-wg-001.conf");
    std::fs::write(&path, edit(&sandbox, text)).expect("edited profile");
    let helper = Helper::start(&sandbox, helper_args);
    helper.cli_ok(&["import", path.to_str().unwrap(), "--replace"]);
    (sandbox, helper)
}

fn tunnel_resolver(sandbox: &Sandbox) -> Resolver {
    Resolver::start(
        sandbox,
        sandbox.var("NS_SERVER_1"),
        sandbox.var("SERVER_TUN_ADDR4_1"),
        "tunnel",
    )
}

fn nft(sandbox: &Sandbox, ns: &str, script: &str) {
    let path = sandbox.dir.join("break.nft");
    std::fs::write(&path, script).unwrap();
    run_ok(sandbox.in_ns(ns, "nft").arg("-f").arg(&path));
}

fn interface(helper: &Helper) -> String {
    helper.status()["interface"]
        .as_str()
        .expect("interface")
        .to_string()
}

#[test]
fn a_healthy_tunnel_passes_all_seven_layers() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = setup("dh0", |_, t| t, &[]);
    let _dns = tunnel_resolver(&sandbox);
    helper.cli_ok(&["connect"]);
    let (ok, report) = doctor(&helper, &[]);
    let v = ids_and_verdicts(&report);
    let ids: Vec<&str> = v.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "control-plane",
            "outer-path",
            "interface",
            "routes",
            "firewall",
            "dns",
            "mtu"
        ]
    );
    assert!(
        ok && v.iter().all(|(_, verdict)| verdict == "ok"),
        "{report:#}"
    );
    // The interface layer explains the point-to-point link with the real addresses.
    let iface = &report["layers"][2]["explanation"];
    assert!(
        iface.as_str().unwrap().contains(&format!(
            "inet {} --> {}",
            sandbox.var("CLIENT_TUN_ADDR4_1"),
            sandbox.var("SERVER_TUN_ADDR4_1")
        )),
        "{iface}"
    );
    // The human form, as the README shows it.
    let text = helper.cli_run(&["doctor"]);
    assert!(text.status.success());
    eprintln!("{}", String::from_utf8_lossy(&text.stdout));
}

#[test]
fn a_wrong_server_key_fails_the_control_plane() {
    if !can_run() {
        return;
    }
    // A valid key, but not the server's: the sandbox client's own public key.
    let (sandbox, helper) = setup(
        "dc1",
        |s, t| t.replace(s.var("SERVER_PUB_1"), s.var("CLIENT_PUB")),
        &["--handshake-timeout", "120"],
    );
    let wrong = sandbox.var("CLIENT_PUB").to_string();
    // The CLI gives up waiting; the helper keeps trying for its own 120 s.
    let _ = helper.cli_run(&["connect", "--timeout", "2"]);
    let (ok, report) = doctor(&helper, &[]);
    let layer = assert_first_fail(ok, &report, "control-plane", "public key");
    assert!(
        evidence(layer).contains(&format!("server public key (from the profile): {wrong}")),
        "{layer:#}"
    );
    let outer = &report["layers"][1];
    assert_eq!(outer["verdict"], "ok", "{outer:#}");
    assert!(evidence(outer).contains("port unreachable"), "{outer:#}");
}

#[test]
fn udp_dropped_on_the_way_fails_the_outer_path() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = setup("do2", |_, t| t, &["--handshake-timeout", "120"]);
    let endpoint = sandbox.var("SERVER_ADDR4_1").to_string();
    nft(
        &sandbox,
        sandbox.var("NS_ROUTER"),
        &format!(
            "table inet dbreak {{\n chain udp_block {{\n  type filter hook forward priority 0;\n  ip daddr {endpoint} meta l4proto udp drop\n }}\n}}\n"
        ),
    );
    let _ = helper.cli_run(&["connect", "--timeout", "2"]);
    let (ok, report) = doctor(&helper, &[]);
    let layer = assert_first_fail(ok, &report, "outer-path", "UDP port 51820");
    assert!(
        evidence(layer).contains(&format!("UDP probe to {endpoint} port 33434: no reply")),
        "{layer:#}"
    );
    let control = &report["layers"][0];
    assert_eq!(control["verdict"], "skipped");
    assert_eq!(control["depends_on"], "outer-path");
}

#[test]
fn a_removed_tunnel_address_fails_the_interface_layer() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = setup("di3", |_, t| t, &[]);
    helper.cli_ok(&["connect"]);
    let iface = interface(&helper);
    let addr = format!("{}/32", sandbox.var("CLIENT_TUN_ADDR4_1"));
    run_ok(
        sandbox
            .in_ns(sandbox.client_ns(), "ip")
            .args(["addr", "del", &addr, "dev", &iface]),
    );
    let (ok, report) = doctor(&helper, &[]);
    let layer = assert_first_fail(ok, &report, "interface", "connect again");
    assert!(
        evidence(layer).contains(&format!("expected address {addr} is missing")),
        "{layer:#}"
    );
}

#[test]
fn a_deleted_tunnel_route_fails_the_routes_layer() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = setup("dr4", |_, t| t, &[]);
    helper.cli_ok(&["connect"]);
    let iface = interface(&helper);
    let table = helper.status()["routing"]["table"]
        .as_u64()
        .unwrap()
        .to_string();
    run_ok(sandbox.in_ns(sandbox.client_ns(), "ip").args([
        "-4",
        "route",
        "del",
        "0.0.0.0/0",
        "dev",
        &iface,
        "table",
        &table,
    ]));
    let (ok, report) = doctor(&helper, &[]);
    let layer = assert_first_fail(ok, &report, "routes", "reinstall the routes");
    let e = evidence(layer);
    assert!(
        e.contains(&format!("dev {}", sandbox.var("CLIENT_IF"))),
        "{layer:#}"
    );
    assert!(layer["explanation"]
        .as_str()
        .unwrap()
        .contains(&format!("missing from table {table}")));
}

#[test]
fn a_rule_dropping_tunnel_traffic_fails_the_firewall_layer() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = setup("df5", |_, t| t, &[]);
    helper.cli_ok(&["connect"]);
    let iface = interface(&helper);
    nft(
        &sandbox,
        sandbox.client_ns(),
        &format!(
            "table inet dbreak {{\n chain out {{\n  type filter hook output priority -10;\n  oifname \"{iface}\" counter drop\n }}\n}}\n"
        ),
    );
    let (ok, report) = doctor(&helper, &[]);
    let layer = assert_first_fail(ok, &report, "firewall", "Remove the rule");
    let e = evidence(layer);
    assert!(e.contains("table inet dbreak chain out"), "{layer:#}");
    assert!(e.contains("refused locally"), "{layer:#}");
    for id in [5, 6] {
        assert_eq!(report["layers"][id]["verdict"], "skipped");
    }
}

#[test]
fn a_resolver_outside_the_tunnel_fails_the_dns_layer() {
    if !can_run() {
        return;
    }
    // A profile without `DNS =`: the helper leaves the system's resolver alone.
    let (sandbox, helper) = setup(
        "dd6",
        |_, t| {
            t.lines()
                .filter(|l| !l.starts_with("DNS"))
                .collect::<Vec<_>>()
                .join("\n")
        },
        &[],
    );
    helper.cli_ok(&["connect"]);
    let isp = sandbox.var("ROUTER_ADDR4");
    std::fs::write(client_resolv_conf(&sandbox), format!("nameserver {isp}\n")).unwrap();
    let (ok, report) = doctor(&helper, &[]);
    let layer = assert_first_fail(ok, &report, "dns", "DNS =");
    let e = evidence(layer);
    assert!(
        e.contains(&format!(
            "resolver {isp}: routed through {}",
            sandbox.var("CLIENT_IF")
        )),
        "{layer:#}"
    );
    assert_eq!(report["layers"][4]["verdict"], "ok", "{report:#}");
}

/// Sends 5 MB from the client to the internet host through the tunnel; true when it got there
/// within `secs`.
fn transfer_5mb(sandbox: &Sandbox, port: &str, secs: u32) -> bool {
    let inet = sandbox.var("INET_ADDR4_1");
    run_ok(
        sandbox
            .in_ns(sandbox.var("NS_INET_1"), "iperf3")
            .args(["-s", "-D", "-1", "-p", port, "-B", inet]),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = run(sandbox.in_ns(sandbox.client_ns(), "timeout").args([
        &secs.to_string(),
        "iperf3",
        "-c",
        inet,
        "-p",
        port,
        "-n",
        "5M",
        "--connect-timeout",
        "3000",
    ]));
    out.status.success()
}

#[test]
fn a_smaller_path_with_frag_needed_dropped_fails_the_mtu_layer_until_the_probed_mtu_is_applied() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = setup("dm7", |_, t| t, &[]);
    let _dns = tunnel_resolver(&sandbox);
    helper.cli_ok(&["connect"]);
    assert_eq!(helper.status()["mtu"], 1420, "1500 minus 80");
    let router = sandbox.var("NS_ROUTER").to_string();
    let toward_server = format!("{}-r1", sandbox.prefix);
    run_ok(
        sandbox
            .in_ns(&router, "ip")
            .args(["link", "set", &toward_server, "mtu", "1380"]),
    );
    nft(
        &sandbox,
        &router,
        "table inet dbreak {\n chain out {\n  type filter hook output priority 0;\n  icmp type destination-unreachable icmp code frag-needed drop\n }\n}\n",
    );
    assert!(
        !transfer_5mb(&sandbox, "5201", 10),
        "a 5 MB transfer got through although the path is smaller than the tunnel"
    );

    let (ok, report) = doctor(&helper, &[]);
    let layer = assert_first_fail(ok, &report, "mtu", "--apply-mtu");
    // 1380 on the path minus 60 for the outer IPv4, UDP and WireGuard headers is 1320, and
    // wireguard-go pads what it sends to a multiple of 16 (as the protocol asks): 1312.
    assert_eq!(report["mtu"]["largest_packet"], 1312, "{report:#}");
    assert_eq!(report["mtu"]["suggested"], 1312);
    assert!(evidence(layer).contains("largest packet through the tunnel: 1312 bytes"));

    let (ok, report) = doctor(&helper, &["--apply-mtu"]);
    assert!(ok, "after applying: {report:#}");
    assert_eq!(helper.status()["mtu"], 1312);
    assert!(
        transfer_5mb(&sandbox, "5202", 30),
        "the 5 MB transfer still stalls after applying the probed MTU"
    );

    // A 1492 path announced as the route's MTU: the derived default (1492 - 80) survives.
    helper.cli_ok(&["disconnect"]);
    run_ok(
        sandbox
            .in_ns(&router, "ip")
            .args(["link", "set", &toward_server, "mtu", "1492"]),
    );
    run_ok(Command::new("ip").args([
        "-n",
        sandbox.client_ns(),
        "route",
        "change",
        "default",
        "via",
        sandbox.var("ROUTER_ADDR4"),
        "mtu",
        "1492",
    ]));
    helper.cli_ok(&["connect"]);
    assert_eq!(helper.status()["mtu"], 1412, "the route's 1492 minus 80");
    assert!(
        transfer_5mb(&sandbox, "5203", 30),
        "the 5 MB transfer stalls with the derived default on a 1492 path"
    );
    let (ok, report) = doctor(&helper, &[]);
    assert!(ok, "{report:#}");
}
