//! Network changes, end to end, against a real wireguard-go server: a second uplink takes over
//! from the first (issue 8, scenario 3), the router's NAT rebinds (scenario 4), and the server
//! moves behind the router (roaming). Each runs under captures on every client uplink with the
//! probe loop going; each disconnect must leave the routes and resolv.conf exactly as they were
//! (scenario 9); and each has its twin: without the kill switch's table the same capture sees
//! leaks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use underpass_e2e::*;

const SECOND: Duration = Duration::from_secs(1);
const DOWNLOAD_PORT: &str = "18080";

/// The client namespace's routes and resolv.conf: what a disconnect must restore.
fn system_snapshot(sandbox: &Sandbox) -> (String, Vec<u8>) {
    (
        sandbox.routing_snapshot(),
        std::fs::read(client_resolv_conf(sandbox)).expect("resolv.conf"),
    )
}

/// Disconnects and checks that the routes and resolv.conf are byte-identical to `before`.
fn disconnect_restores(helper: &Helper, sandbox: &Sandbox, before: &(String, Vec<u8>), what: &str) {
    helper.cli_ok(&["disconnect"]);
    let after = system_snapshot(sandbox);
    assert_eq!(
        before.0, after.0,
        "{what}: the routes differ after disconnect"
    );
    assert_eq!(
        before.1, after.1,
        "{what}: resolv.conf differs after disconnect"
    );
    println!("{what}: routes and resolv.conf restored byte for byte");
}

/// `ip ARGS` in the client namespace.
fn client_ip(sandbox: &Sandbox, args: &[&str]) {
    run_ok(sandbox.in_ns(sandbox.client_ns(), "ip").args(args));
}

/// Moves the client's default routes (v4 and v6) to `link`, via the router's addresses on it
/// (`ROUTER_ADDR4{suffix}`, `ROUTER_ADDR6{suffix}`).
fn default_via(sandbox: &Sandbox, link: &str, suffix: &str) {
    for (family, router) in [("-4", "ROUTER_ADDR4"), ("-6", "ROUTER_ADDR6")] {
        let via = sandbox.var(&format!("{router}{suffix}"));
        client_ip(
            sandbox,
            &[
                family, "route", "replace", "default", "via", via, "dev", link,
            ],
        );
    }
}

/// Brings the client's link `interface` up and waits until it is.
fn link_up(sandbox: &Sandbox, interface: &str) {
    client_ip(sandbox, &["link", "set", interface, "up"]);
    assert!(
        wait_until(5 * SECOND, || run_ok(
            sandbox
                .in_ns(sandbox.client_ns(), "ip")
                .args(["link", "show", interface])
        )
        .contains("LOWER_UP")),
        "{interface} did not come up"
    );
}

/// Pings through the tunnel until one is answered: how long that took, or None after `limit`.
fn flows_again(sandbox: &Sandbox, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let ok = run(sandbox.in_ns(sandbox.client_ns(), "ping").args([
            "-c1",
            "-W0.3",
            "-n",
            sandbox.var("INET_ADDR4_1"),
        ]))
        .status
        .success();
        if ok {
            return Some(start.elapsed());
        }
    }
    None
}

/// One paced TCP download from internet host 1 through the tunnel (tests/e2e/tools/download.py),
/// checked by checksum: one connection, served once, so a reconnect cannot pass.
struct Download {
    server: Child,
    client: Child,
    out: PathBuf,
    expected: String,
}

fn sha256(path: &std::path::Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

impl Download {
    fn start(sandbox: &Sandbox, bytes: usize, seconds: u32) -> Download {
        let tool = repo_root().join("tests/e2e/tools/download.py");
        let file = sandbox.dir.join("download.bin");
        let out = sandbox.dir.join("download.out");
        let mut data = vec![0u8; bytes];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut data))
            .expect("random bytes");
        std::fs::write(&file, &data).unwrap();
        let inet = sandbox.var("NS_INET_1");
        let server = sandbox
            .in_ns(inet, "python3")
            .arg(&tool)
            .args(["serve", sandbox.var("INET_ADDR4_1"), DOWNLOAD_PORT])
            .arg(&file)
            .arg(seconds.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("download server");
        assert!(
            wait_until(5 * SECOND, || {
                !run_ok(
                    sandbox
                        .in_ns(inet, "ss")
                        .args(["-ltnH", &format!("sport = :{DOWNLOAD_PORT}")]),
                )
                .trim()
                .is_empty()
            }),
            "the download server did not listen"
        );
        let client = sandbox
            .in_ns(sandbox.client_ns(), "python3")
            .arg(&tool)
            .args(["fetch", sandbox.var("INET_ADDR4_1"), DOWNLOAD_PORT])
            .arg(&out)
            .arg("30")
            .stdout(Stdio::null())
            .spawn()
            .expect("download client");
        Download {
            server,
            client,
            out,
            expected: sha256(&file),
        }
    }

    fn received(&self) -> u64 {
        std::fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0)
    }

    /// Waits for the download to end: whether it ended well, and whether the bytes match.
    fn finish(mut self, limit: Duration) -> (bool, bool) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.client.try_wait().unwrap() {
                break Some(s);
            }
            if start.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let whole = sha256(&self.out) == self.expected;
        (status.is_some_and(|s| s.success()), whole)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        for c in [&mut self.server, &mut self.client] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs an nftables script in the router's namespace.
fn router_nft(sandbox: &Sandbox, script: &str) {
    use std::io::Write;
    let mut nft = sandbox
        .in_ns(sandbox.var("NS_ROUTER"), "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    nft.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft -f:\n{script}");
}

/// The router masquerades the client toward the servers, from source ports `range`, as a home
/// router does; replacing the range is one nftables transaction.
fn masquerade(sandbox: &Sandbox, range: &str) {
    router_nft(
        sandbox,
        &format!(
            "table ip rnnat {{}}\nflush table ip rnnat\ntable ip rnnat {{\n  chain post {{\n    \
             type nat hook postrouting priority srcnat; policy accept;\n    \
             oifname \"{}-r1\" ip saddr {{ 198.51.100.0/24, 203.0.113.0/24 }} meta l4proto udp \
             masquerade to :{range}\n  }}\n}}\n",
            sandbox.prefix
        ),
    );
}

/// The router forgets every connection it tracks, and with them its NAT mappings.
fn flush_conntrack(sandbox: &Sandbox) {
    run_ok(
        sandbox
            .in_ns(sandbox.var("NS_ROUTER"), "conntrack")
            .arg("-F"),
    );
}

/// The source ports the router now maps the tunnel's UDP to (the reply tuples' destination
/// ports of its connections to the server's WireGuard port).
fn mapped_ports(sandbox: &Sandbox) -> Vec<u16> {
    let out = run(sandbox.in_ns(sandbox.var("NS_ROUTER"), "conntrack").args([
        "-L",
        "-p",
        "udp",
        "--orig-port-dst",
        "51820",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split("dport=")
                .last()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn a_second_uplink_and_a_rebound_nat_keep_one_download_whole_and_leak_nothing() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up_with("rn1", 1, &["--uplink2"]);
    let (c0, c1) = (
        sandbox.var("CLIENT_IF").to_string(),
        sandbox.var("CLIENT_IF_2").to_string(),
    );
    let endpoint = sandbox.var("SERVER_ENDPOINT_1").to_string();
    // A link that goes down keeps its IPv6 addresses, so that bringing it back restores it.
    run_ok(
        sandbox
            .in_ns(sandbox.client_ns(), "sysctl")
            .args(["-qw", &format!("net.ipv6.conf.{c0}.keep_addr_on_down=1")]),
    );
    // The kernel re-adds a flapped link's routes after those of the other link with the same
    // prefix (fe80::/64, ff00::/8): flap it once first, so that the order before is the order
    // the scenario leaves, and the snapshots compare byte for byte.
    client_ip(&sandbox, &["link", "set", &c0, "down"]);
    link_up(&sandbox, &c0);
    default_via(&sandbox, &c0, "");
    masquerade(&sandbox, "20000-20999");
    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.set_kill_switch("auto");
    let before = system_snapshot(&sandbox);
    helper.cli_ok(&["connect"]);
    helper.wait_for_state("connected", 10 * SECOND);
    let capture = Captures::start(&sandbox, "netchange");
    let load = traffic(&sandbox);
    let download = Download::start(&sandbox, 3 << 20, 12);
    assert!(
        wait_until(5 * SECOND, || download.received() > 0),
        "the download did not start"
    );

    // Scenario 3: the default routes move to the second uplink, then the first link goes down.
    default_via(&sandbox, &c1, "_2");
    let moved = flows_again(&sandbox, 5 * SECOND).expect("no traffic after the route moved");
    println!(
        "network change: traffic through the tunnel {} ms after the default route moved",
        moved.as_millis()
    );
    client_ip(&sandbox, &["link", "set", &c0, "down"]);
    let down = flows_again(&sandbox, 5 * SECOND).expect("no traffic after the first link went");
    println!(
        "network change: traffic through the tunnel {} ms after the first link went down",
        down.as_millis()
    );
    assert!(
        moved <= 3 * SECOND && down <= 3 * SECOND,
        "{moved:?} {down:?}"
    );
    assert!(
        wait_until(3 * SECOND, || helper
            .log_text()
            .contains("the path to the server changed")),
        "the helper did not notice the new path:\n{}",
        helper.log_text()
    );
    assert_eq!(helper.status()["state"], "connected");

    // Scenario 4: the router rebinds: another port range, its mappings flushed.
    let got = download.received();
    assert!(mapped_ports(&sandbox)
        .iter()
        .all(|p| (20000..21000).contains(p)));
    masquerade(&sandbox, "30000-30999");
    flush_conntrack(&sandbox);
    let start = Instant::now();
    let mut states = std::collections::BTreeSet::new();
    while start.elapsed() < 4 * SECOND {
        states.insert(helper.status()["state"].as_str().unwrap_or("?").to_string());
        std::thread::sleep(Duration::from_millis(100));
    }
    let ports = mapped_ports(&sandbox);
    println!("NAT rebinding: the helper's states meanwhile {states:?}, new mappings {ports:?}");
    assert!(
        !ports.is_empty() && ports.iter().all(|p| (30000..31000).contains(p)),
        "the router did not rebind: {ports:?}"
    );
    assert_eq!(
        states.into_iter().collect::<Vec<_>>(),
        ["connected"],
        "a NAT rebinding is no state change"
    );
    assert!(download.received() > got, "the download stalled");
    let (ended, whole) = download.finish(30 * SECOND);
    assert!(
        ended && whole,
        "the download did not survive as one flow (ended well: {ended}, checksum matches: {whole})"
    );
    println!("network change and NAT rebinding: one TCP download survived whole (sha256 matches)");
    drop(load);
    report(
        "a network change and a NAT rebinding",
        &capture.leaks(&[&endpoint]),
    );

    // Scenario 9: the network as it was, and a disconnect puts the rest back.
    link_up(&sandbox, &c0);
    default_via(&sandbox, &c0, "");
    assert!(flows_again(&sandbox, 5 * SECOND).is_some());
    disconnect_restores(&helper, &sandbox, &before, "network change");
    helper.cli_ok(&["connect"]);
    helper.wait_for_state("connected", 10 * SECOND);
    twin_sees_leaks(&sandbox, "a network change");
}

/// The server "moves" behind the router: its old address goes dark for new flows, and what it
/// sends reaches the client from `MOVED` instead (source NAT), where the router also takes the
/// client's answers back to it.
const MOVED: &str = "192.0.2.11:41000";

fn move_server(sandbox: &Sandbox) {
    let server = sandbox.var("SERVER_ADDR4_1");
    router_nft(
        sandbox,
        &format!(
            "table ip rnroam {{\n  chain filt {{\n    \
             type filter hook forward priority 0; policy accept;\n    \
             ip daddr {server} udp dport 51820 ct direction original drop\n  }}\n  \
             chain out {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
             ip saddr {server} udp sport 51820 snat to {MOVED}\n  }}\n}}\n"
        ),
    );
    flush_conntrack(sandbox);
}

fn unmove_server(sandbox: &Sandbox) {
    nft(
        sandbox,
        sandbox.var("NS_ROUTER"),
        &["delete", "table", "ip", "rnroam"],
    );
    flush_conntrack(sandbox);
}

/// The server sends first after its move: pings from it into the tunnel (bounded).
fn server_speaks(sandbox: &Sandbox) -> Child {
    sandbox
        .in_ns(sandbox.var("NS_SERVER_1"), "ping")
        .args([
            "-n",
            "-q",
            "-i",
            "0.2",
            "-c",
            "50",
            sandbox.var("CLIENT_TUN_ADDR4_1"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping")
}

#[test]
fn the_endpoint_follows_a_server_that_moves_but_never_past_the_kill_switch() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("rn2", 1);
    let endpoint = sandbox.var("SERVER_ENDPOINT_1").to_string();
    let helper = Helper::start(&sandbox, &[]);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    let before = system_snapshot(&sandbox);

    // Without a kill switch: WireGuard's roaming.
    helper.set_kill_switch("off");
    helper.cli_ok(&["connect"]);
    helper.wait_for_state("connected", 10 * SECOND);
    assert_eq!(helper.status()["endpoint"], endpoint.as_str());
    move_server(&sandbox);
    let mut pings = server_speaks(&sandbox);
    let start = Instant::now();
    let followed = wait_until(5 * SECOND, || helper.status()["endpoint"] == MOVED);
    println!(
        "roaming: the endpoint followed the server to {MOVED} after {} ms",
        start.elapsed().as_millis()
    );
    assert!(
        followed,
        "not followed: {}\n{}",
        helper.status(),
        helper.log_text()
    );
    // Its old address is dark for the client: only the new one carries the tunnel now.
    assert!(
        flows_again(&sandbox, 5 * SECOND).is_some(),
        "no traffic through the tunnel at the new endpoint"
    );
    let _ = pings.kill();
    let _ = pings.wait();
    disconnect_restores(&helper, &sandbox, &before, "roaming without a kill switch");
    unmove_server(&sandbox);

    // With the kill switch: the same move is not followed, and nothing is sent there.
    helper.set_kill_switch("auto");
    helper.cli_ok(&["connect"]);
    helper.wait_for_state("connected", 10 * SECOND);
    let capture = Captures::start(&sandbox, "roam");
    let inbound = Capture::start(
        &sandbox,
        sandbox.client_ns(),
        sandbox.var("CLIENT_IF"),
        "roam-in",
    );
    let load = traffic(&sandbox);
    move_server(&sandbox);
    let mut pings = server_speaks(&sandbox);
    std::thread::sleep(4 * SECOND);
    let (ip, port) = MOVED.rsplit_once(':').unwrap();
    let arrived = inbound.stop(&format!("udp and src host {ip} and src port {port}"));
    println!(
        "roaming under the kill switch: {} packets from the moved server reached the client; \
         endpoint {}",
        arrived.len(),
        helper.status()["endpoint"]
    );
    assert!(
        !arrived.is_empty(),
        "the server never sent from its new address"
    );
    assert_eq!(helper.status()["endpoint"], endpoint.as_str());
    let _ = pings.kill();
    let _ = pings.wait();
    drop(load);
    report(
        "a server that moved, under the kill switch",
        &capture.leaks(&[&endpoint]),
    );
    unmove_server(&sandbox);
    disconnect_restores(&helper, &sandbox, &before, "roaming under the kill switch");
    helper.cli_ok(&["connect"]);
    helper.wait_for_state("connected", 10 * SECOND);
    twin_sees_leaks(&sandbox, "a server that moved");
}
