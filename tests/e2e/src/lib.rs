//! End-to-end harness: real namespaces (`scripts/sandbox.sh`), a real wireguard-go server, the
//! real `underpassd` and `underpass` binaries, real captures with tcpdump.
//!
//! Every test builds its own sandbox under its own prefix, so tests can run side by side, and
//! every resource is released in `Drop`, so a failing assertion still cleans up. Traffic only
//! ever goes to hosts inside the sandbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The directory holding `underpassd` and `underpass` (set `UNDERPASS_BIN_DIR`, or the
/// default debug target dir is used).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("UNDERPASS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    target.join("debug")
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// True when the end-to-end tests can run. Without root they are skipped loudly, except under
/// CI=true, where not being able to run them is a failure.
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let msg = "END-TO-END TEST SKIPPED: it needs root (network namespaces, TUN, netlink)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}, and CI=true requires it to run");
    }
    eprintln!("\n*** {msg} ***\n");
    false
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    out
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Now, in seconds since the epoch (the clock of a capture's timestamps).
pub fn epoch_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Polls `f` every 50 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    f()
}

/// One sandbox from `scripts/sandbox.sh`, torn down on drop.
pub struct Sandbox {
    pub prefix: String,
    pub dir: PathBuf,
    env: HashMap<String, String>,
}

impl Sandbox {
    pub fn up(prefix: &str, servers: u32) -> Sandbox {
        Sandbox::up_with(prefix, servers, &[])
    }

    /// A sandbox with extra `sandbox.sh up` options (`--guest`).
    pub fn up_with(prefix: &str, servers: u32, extra: &[&str]) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("underpass-e2e-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        run_ok(
            Command::new("bash")
                .arg(repo_root().join("scripts/sandbox.sh"))
                .args(["up", prefix, "--servers", &servers.to_string()])
                .args(extra)
                .arg("--dir")
                .arg(&dir),
        );
        let env = parse_env(&std::fs::read_to_string(dir.join("env.sh")).expect("env.sh"));
        Sandbox {
            prefix: prefix.to_string(),
            dir,
            env,
        }
    }

    /// A variable from the sandbox's env.sh.
    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("sandbox env has no {key}"))
    }

    pub fn client_ns(&self) -> &str {
        self.var("NS_CLIENT")
    }

    /// A command run inside namespace `ns`.
    pub fn in_ns(&self, ns: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]);
        cmd
    }

    /// The MAC address of the client's physical link: what the client itself sends, whatever
    /// its IP source address.
    pub fn client_mac(&self) -> String {
        self.client_mac_of(self.var("CLIENT_IF"))
    }

    /// The MAC address of the client's link `interface`.
    pub fn client_mac_of(&self, interface: &str) -> String {
        let out = run_ok(
            self.in_ns(self.client_ns(), "cat")
                .arg(format!("/sys/class/net/{interface}/address")),
        );
        out.trim().to_string()
    }

    /// The client's physical links: the first, and the second uplink when the sandbox has one.
    pub fn client_uplinks(&self) -> Vec<String> {
        let mut links = vec![self.var("CLIENT_IF").to_string()];
        links.extend(self.env.get("CLIENT_IF_2").cloned());
        links
    }

    /// `ping` from the client namespace; true when a reply came back.
    pub fn ping(&self, target: &str) -> bool {
        run(self
            .in_ns(self.client_ns(), "ping")
            .args(["-c1", "-W2", target]))
        .status
        .success()
    }

    /// Everything `ip` says about rules, routes (all tables) and links, v4 and v6, in the
    /// client namespace: the state a disconnect must restore exactly.
    pub fn routing_snapshot(&self) -> String {
        let mut s = String::new();
        for args in [
            &["-4", "rule"][..],
            &["-6", "rule"],
            &["-4", "route", "show", "table", "all"],
            &["-6", "route", "show", "table", "all"],
            &["-o", "link"],
        ] {
            let out = run_ok(self.in_ns(self.client_ns(), "ip").args(args));
            s.push_str(&format!("## ip {}\n{out}", args.join(" ")));
        }
        s
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/sandbox.sh"))
            .args(["down", &self.prefix, "--dir"])
            .arg(&self.dir)
            .output();
    }
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.split("   #").next()?.trim();
            let (k, v) = line.split_once('=')?;
            if k.starts_with('#') || k.contains(' ') {
                return None;
            }
            Some((k.to_string(), v.trim_matches('\'').to_string()))
        })
        .collect()
}

/// A running `underpassd` in the sandbox's client namespace, stopped with SIGTERM on drop.
pub struct Helper {
    child: Option<Child>,
    pub socket: PathBuf,
    pub config_dir: PathBuf,
    pub log: PathBuf,
    pub ns: String,
}

impl Helper {
    pub fn start(sandbox: &Sandbox, extra: &[&str]) -> Helper {
        Helper::start_in(Some(sandbox.client_ns()), &sandbox.dir, extra)
    }

    /// Starts the helper in `ns` (or the current namespace), with its files under `dir`.
    pub fn start_in(ns: Option<&str>, dir: &Path, extra: &[&str]) -> Helper {
        std::fs::create_dir_all(dir).expect("helper dir");
        let socket = dir.join("underpassd.sock");
        let log = dir.join("underpassd.log");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("underpassd"));
                c
            }
            None => Command::new(bin("underpassd")),
        };
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .env("RUST_LOG", "info");
        // Never the host's /etc/underpass: a system dir of the test's own (absent unless the
        // test provisions it).
        if !extra.contains(&"--system-dir") {
            cmd.arg("--system-dir").arg(dir.join("system"));
        }
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = cmd.spawn().expect("starting underpassd");
        let helper = Helper {
            child: Some(child),
            socket,
            config_dir: dir.join("config"),
            log,
            ns: ns.unwrap_or("").to_string(),
        };
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::os::unix::net::UnixStream::connect(&helper.socket).is_ok()
            }),
            "underpassd did not start listening; its log:\n{}",
            helper.log_text()
        );
        helper
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The `underpass` CLI, pointed at this helper and its own config dir. The sandbox is
    /// headless (no Secret Service), so keys are kept in files, the documented opt-in.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(bin("underpass"));
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--config-dir")
            .arg(&self.config_dir)
            .env("UNDERPASS_KEYSTORE", "file");
        cmd
    }

    /// Runs the CLI and returns its output, whatever the exit status.
    pub fn cli_run(&self, args: &[&str]) -> Output {
        run(self.cli().args(args))
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        run_ok(self.cli().args(args))
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["status", "--json"])).expect("status JSON")
    }

    /// Sends `signal` and waits for the helper to exit.
    pub fn stop_with(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // `ip netns exec` execs the helper, so the child's pid is the helper's.
        // SAFETY: kill(2) on a pid we own.
        unsafe { libc::kill(child.id() as i32, signal) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!(
                    "underpassd did not exit after signal {signal}:\n{}",
                    self.log_text()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop_with(libc::SIGTERM);
        }
    }
}

/// tcpdump on one interface of one namespace, writing a pcap; read it back with [`Capture::stop`].
pub struct Capture {
    child: Option<Child>,
    pcap: PathBuf,
    /// Reads tcpdump's stderr; ends with the "N packets dropped by kernel" it prints at exit.
    stderr: Option<std::thread::JoinHandle<Option<u64>>>,
}

impl Capture {
    pub fn start(sandbox: &Sandbox, ns: &str, interface: &str, name: &str) -> Capture {
        let pcap = sandbox.dir.join(format!("{name}.pcap"));
        let mut child = sandbox
            .in_ns(ns, "tcpdump")
            // A 32 MiB kernel buffer (-B, in KiB): on this loaded 2-core machine a long scenario
            // (the 200 s blackhole) must not lose packets while tcpdump waits for a core.
            .args([
                "-i",
                interface,
                "-n",
                "-U",
                "--immediate-mode",
                "-B",
                "32768",
                "-w",
            ])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        // tcpdump says "listening on" once the capture is live; only then may traffic start.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut dropped = None;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                if let Some(n) = line.strip_suffix(" packets dropped by kernel") {
                    dropped = n.trim().parse().ok();
                }
            }
            dropped
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "tcpdump did not start capturing on {interface}"
        );
        Capture {
            child: Some(child),
            pcap,
            stderr: Some(reader),
        }
    }

    /// Stops the capture and returns one line per packet matching the BPF `filter`.
    pub fn stop(self, filter: &str) -> Vec<String> {
        self.stop_reading(&["-n"], filter).0
    }

    /// As [`Capture::stop`], each packet with its time (seconds since the epoch, as
    /// [`epoch_secs`] counts).
    pub fn stop_timed(self, filter: &str) -> Vec<(f64, String)> {
        self.stop_reading(&["-n", "-tt"], filter)
            .0
            .into_iter()
            .filter_map(|line| {
                let (t, _) = line.split_once(' ')?;
                Some((t.parse().ok()?, line))
            })
            .collect()
    }

    /// [`Capture::stop`], and how many packets the kernel dropped before tcpdump saw them
    /// (None when tcpdump did not say).
    pub fn stop_counting_drops(self, filter: &str) -> (Vec<String>, Option<u64>) {
        self.stop_reading(&["-n"], filter)
    }

    fn stop_reading(mut self, flags: &[&str], filter: &str) -> (Vec<String>, Option<u64>) {
        sleep(Duration::from_millis(300));
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
        let dropped = self.stderr.take().and_then(|t| t.join().ok()).flatten();
        let out = run_ok(
            Command::new("tcpdump")
                .args(flags)
                .arg("-r")
                .arg(&self.pcap)
                .arg(filter),
        );
        (out.lines().map(str::to_string).collect(), dropped)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every packet the client sent on its physical link other than encrypted UDP to one of
/// `endpoints` (and the ARP/NDP housekeeping IP needs). Masqueraded traffic of a guest behind
/// the client carries the client's MAC too, so it counts.
pub fn leaks(sandbox: &Sandbox, capture: Capture, endpoints: &[&str]) -> Vec<String> {
    leaks_from(&sandbox.client_mac(), capture, endpoints)
}

/// [`leaks`] on any link: what `mac` sent other than encrypted UDP to one of `endpoints`.
pub fn leaks_from(mac: &str, capture: Capture, endpoints: &[&str]) -> Vec<String> {
    let (leaked, dropped) = capture.stop_counting_drops(&leak_filter(mac, endpoints));
    assert_eq!(
        dropped,
        Some(0),
        "the capture lost packets (or tcpdump did not say): it may have missed leaks"
    );
    leaked
}

/// The BPF filter for what `mac` sent other than encrypted UDP to one of `endpoints`.
fn leak_filter(mac: &str, endpoints: &[&str]) -> String {
    let mut filter = format!(
        "ether src {mac} and not arp and not (icmp6 and (ip6[40] >= 133 and ip6[40] <= 137)) \
         and not ip6 multicast"
    );
    for ep in endpoints {
        let (ip, port) = ep.rsplit_once(':').unwrap();
        filter.push_str(&format!(
            " and not (udp and dst host {ip} and dst port {port})"
        ));
    }
    filter
}

/// One DNS query from namespace `ns` (tests/e2e/tools/dns_query.py), from a socket with
/// `mark` if given: the answer, or None when refused or unanswered.
pub fn dns_query(
    sandbox: &Sandbox,
    ns: &str,
    server: &str,
    name: &str,
    mark: Option<u32>,
) -> Option<String> {
    let mut cmd = sandbox.in_ns(ns, "python3");
    cmd.arg(repo_root().join("tests/e2e/tools/dns_query.py"))
        .args([server, name]);
    if let Some(m) = mark {
        cmd.args(["--mark", &m.to_string()]);
    }
    let out = run(&mut cmd);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The BPF filter for what may cross the client's physical link while tunnelled: encrypted
/// UDP to the endpoint, and the link-layer housekeeping that IP needs (ARP, neighbour
/// discovery, router solicitations, link-local multicast such as MLD reports).
pub fn not_tunnel_traffic(endpoint_ip: &str, endpoint_port: &str) -> String {
    format!(
        "not (udp and host {endpoint_ip} and port {endpoint_port}) and not arp \
         and not (icmp6 and (ip6[40] >= 133 and ip6[40] <= 137)) and not ip6 multicast"
    )
}

impl Helper {
    /// Sends one raw request (the JSON of a `Request`) over the IPC socket and returns the
    /// helper's `result` field: `{"Ok": ...}` or `{"Err": ...}`.
    pub fn request(&self, request: serde_json::Value) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut send = |v: serde_json::Value| {
            let body = serde_json::to_vec(&v).unwrap();
            s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
            s.write_all(&body).unwrap();
        };
        send(serde_json::json!({"type": "hello", "protocol": 1, "client": "e2e"}));
        send(serde_json::json!({"type": "request", "id": 1, "request": request}));
        loop {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).expect("reply");
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).expect("reply body");
            let msg: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if msg["type"] == "response" {
                return msg["result"].clone();
            }
        }
    }

    /// Runs a self-test through a raw request and returns its report.
    pub fn self_test(&self, test: &str, options: serde_json::Value) -> serde_json::Value {
        let r = self
            .request(serde_json::json!({"kind": "self_test", "test": test, "options": options}));
        r["Ok"]["report"].clone()
    }

    pub fn set_kill_switch(&self, mode: &str) {
        let r = self.request(serde_json::json!({"kind": "set_kill_switch", "mode": mode}));
        assert!(r.get("Ok").is_some(), "set_kill_switch {mode}: {r}");
    }

    /// Polls the status until `state` is reached.
    pub fn wait_for_state(&self, state: &str, limit: Duration) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let reached = wait_until(limit, || {
            last = self.status();
            last["state"] == state
        });
        assert!(
            reached,
            "never reached {state}; last status: {last}\n{}",
            self.log_text()
        );
        last
    }
}

/// A bounded background load from the client namespace: pings to each target and UDP to the
/// router, for as long as it lives. What it sends is what a leak check must account for.
pub struct Traffic {
    children: Vec<Child>,
}

impl Traffic {
    pub fn start(sandbox: &Sandbox, targets: &[&str]) -> Traffic {
        let mut children = Vec::new();
        for t in targets {
            // At most 600 packets (2 minutes at 5/s): bounded even if never stopped.
            let ping = if t.contains(':') { "ping6" } else { "ping" };
            children.push(
                sandbox
                    .in_ns(sandbox.client_ns(), ping)
                    .args(["-n", "-q", "-i", "0.2", "-c", "600", "-W", "1", t])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("ping"),
            );
        }
        Traffic { children }
    }
}

/// The leak check's probe loop: pings to an internet host (v4 and v6) and to the router,
/// plus, every 200 ms, a UDP datagram and a TCP SYN to the internet host and a DNS query to the
/// router's resolver (tests/e2e/tools/probe_loop.py). Bounded like [`Traffic::start`].
pub fn traffic(sandbox: &Sandbox) -> Traffic {
    let mut load = Traffic::start(
        sandbox,
        &[
            sandbox.var("INET_ADDR4_1"),
            sandbox.var("ROUTER_ADDR4"),
            sandbox.var("INET_ADDR6_1"),
        ],
    );
    load.children.push(
        sandbox
            .in_ns(sandbox.client_ns(), "python3")
            .arg(repo_root().join("tests/e2e/tools/probe_loop.py"))
            .args([
                sandbox.var("INET_ADDR4_1"),
                sandbox.var("ROUTER_ADDR4"),
                "600",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("probe loop"),
    );
    load
}

/// Runs `nft` in namespace `ns` with `args`.
pub fn nft(sandbox: &Sandbox, ns: &str, args: &[&str]) {
    run_ok(sandbox.in_ns(ns, "nft").args(args));
}

/// Captures on every client uplink at once, read back together.
pub struct Captures(Vec<(String, Capture)>);

impl Captures {
    pub fn start(sandbox: &Sandbox, name: &str) -> Captures {
        Captures(
            sandbox
                .client_uplinks()
                .into_iter()
                .map(|link| {
                    let c = Capture::start(
                        sandbox,
                        sandbox.client_ns(),
                        &link,
                        &format!("{name}-{link}"),
                    );
                    (sandbox.client_mac_of(&link), c)
                })
                .collect(),
        )
    }

    /// Everything the client sent on any uplink other than encrypted UDP to `endpoints`.
    pub fn leaks(self, endpoints: &[&str]) -> Vec<String> {
        self.0
            .into_iter()
            .flat_map(|(mac, c)| leaks_from(&mac, c, endpoints))
            .collect()
    }
}

/// The twin of a scenario: with the kill switch's table gone, the same traffic must show up in
/// the same capture (on every client uplink), or the capture proves nothing.
pub fn twin_sees_leaks(sandbox: &Sandbox, what: &str) {
    nft(
        sandbox,
        sandbox.client_ns(),
        &["delete", "table", "inet", "underpass"],
    );
    let capture = Captures::start(sandbox, "twin");
    let load = traffic(sandbox);
    sleep(Duration::from_secs(2));
    drop(load);
    let leaked = capture.leaks(&[sandbox.var("SERVER_ENDPOINT_1")]);
    println!(
        "{what}, twin without the kill switch's table: {} packets got out",
        leaked.len()
    );
    assert!(
        !leaked.is_empty(),
        "the capture saw nothing even without the kill switch: it cannot see leaks"
    );
}

/// Waits for `state` and says how long it took.
pub fn wait_for(helper: &Helper, state: &str, limit: Duration) -> (serde_json::Value, Duration) {
    let start = Instant::now();
    let status = helper.wait_for_state(state, limit);
    (status, start.elapsed())
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A dnsmasq in `ns`, answering `*.example.test` with 192.0.2.99 and logging every query.
pub struct Resolver {
    child: Child,
    pub log: PathBuf,
}

impl Resolver {
    pub fn start(sandbox: &Sandbox, ns: &str, listen: &str, name: &str) -> Resolver {
        Resolver::start_with(
            sandbox,
            ns,
            listen,
            name,
            &["--address=/example.test/192.0.2.99"],
        )
    }

    /// A dnsmasq whose answers come from `answers` (dnsmasq options such as `--address=...` or
    /// `--addn-hosts=FILE`) instead.
    pub fn start_with(
        sandbox: &Sandbox,
        ns: &str,
        listen: &str,
        name: &str,
        answers: &[&str],
    ) -> Resolver {
        let log = sandbox.dir.join(format!("dnsmasq-{name}.log"));
        let _ = std::fs::remove_file(&log);
        let child = sandbox
            .in_ns(ns, "dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--log-queries",
            ])
            .args(answers)
            .arg(format!("--listen-address={listen}"))
            .arg(format!("--log-facility={}", log.display()))
            .arg(format!(
                "--pid-file={}",
                sandbox.dir.join(format!("dnsmasq-{name}.pid")).display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq");
        assert!(
            wait_until(Duration::from_secs(5), || {
                std::fs::read_to_string(&log).is_ok_and(|l| l.contains("started"))
            }),
            "dnsmasq {name} did not start"
        );
        Resolver { child, log }
    }

    /// The "ISP" resolver on the router: the client's resolver before any tunnel.
    pub fn isp(sandbox: &Sandbox) -> Resolver {
        Resolver::start(
            sandbox,
            sandbox.var("NS_ROUTER"),
            sandbox.var("ROUTER_ADDR4"),
            "isp",
        )
    }

    /// The tunnel's resolver, on server 1's tunnel address.
    pub fn tunnel(sandbox: &Sandbox) -> Resolver {
        let (ns, addr) = (
            sandbox.var("NS_SERVER_1"),
            sandbox.var("SERVER_TUN_ADDR4_1"),
        );
        Resolver::start(sandbox, ns, addr, "tunnel")
    }

    /// A resolver nobody configured, on internet host 1.
    pub fn other(sandbox: &Sandbox) -> Resolver {
        let (ns, addr) = (sandbox.var("NS_INET_1"), sandbox.var("INET_ADDR4_1"));
        Resolver::start(sandbox, ns, addr, "other")
    }

    /// Makes dnsmasq read its hosts files again and forget its cache (SIGHUP).
    pub fn reload(&self) {
        // `ip netns exec` execs dnsmasq, so the child's pid is dnsmasq's.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }

    /// The names this resolver was asked for.
    pub fn queries(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split("query[").nth(1))
            .filter_map(|rest| rest.split_whitespace().nth(1).map(str::to_string))
            .collect()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client namespace's resolv.conf, as `ip netns exec` shows it to the helper.
pub fn client_resolv_conf(sandbox: &Sandbox) -> PathBuf {
    Path::new("/etc/netns")
        .join(sandbox.client_ns())
        .join("resolv.conf")
}

/// Asserts that nothing leaked, after saying how much did.
pub fn report(what: &str, leaked: &[String]) {
    println!(
        "{what}: {} packets other than encrypted UDP to the endpoint",
        leaked.len()
    );
    assert!(leaked.is_empty(), "{what} leaked:\n{}", leaked.join("\n"));
}

/// The end of a scenario run under `capture` with `load`: the load stops, the capture must
/// hold nothing but encrypted UDP to server 1, and then the twin must see the leaks.
pub fn no_leaks_then_twin(sandbox: &Sandbox, capture: Capture, load: Traffic, what: &str) {
    drop(load);
    report(
        what,
        &leaks(sandbox, capture, &[sandbox.var("SERVER_ENDPOINT_1")]),
    );
    twin_sees_leaks(sandbox, what);
}
