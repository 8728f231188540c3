//! Sleep and resume, end to end, against a real wireguard-go server, with a capture on the
//! client's physical link and traffic running the whole time:
//!
//! - logind on a private bus (python-dbusmock's logind template on a dbus-daemon of the test's
//!   own) announces a sleep and a resume: the helper holds a delay inhibitor, lets go of it
//!   before the sleep and takes it again after; on resume a handshake leaves at once and the
//!   tunnel's DNS is put back over what "another daemon" wrote meanwhile;
//! - the helper frozen for 30 s (SIGSTOP, SIGCONT): nothing leaks, the tunnel comes back;
//! - 200 s of blackhole, past the 90 s and 180 s timers: the helper heals within 5 s of the
//!   restore, and nothing leaks.
//!
//! Each scenario ends with its twin (the kill switch's table deleted, the same traffic leaks),
//! so that its leak check can fail. The scenarios are separate tests, so that the long ones run
//! side by side (cargo's test threads).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use underpass_e2e::*;

const SECOND: Duration = Duration::from_secs(1);
const LOGIND: &str = "org.freedesktop.login1";

/// A process of the test's, killed (by its own handle) when the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private dbus-daemon on a socket file (reachable from every network namespace, unlike an
/// abstract one), with python-dbusmock's logind template on it.
struct Logind {
    address: String,
    _mock: Reaped,
    _bus: Reaped,
}

impl Logind {
    fn start(dir: &Path) -> Logind {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("logind-bus");
        let _ = std::fs::remove_file(&socket);
        let config = dir.join("logind-bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut bus = Reaped(
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--print-address"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.join("dbus-daemon.err")).unwrap())
                .spawn()
                .expect("dbus-daemon (Debian: dbus-daemon)"),
        );
        let mut address = String::new();
        std::io::BufReader::new(bus.0.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        assert!(
            !address.is_empty(),
            "dbus-daemon printed no address: {:?}",
            std::fs::read_to_string(dir.join("dbus-daemon.err"))
        );
        // Debian's python3, where python3-dbusmock is (a pyenv shim may shadow it).
        let mock = Reaped(
            Command::new("/usr/bin/python3")
                .args(["-m", "dbusmock", "--session", "--template", "logind"])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("logind-mock.err")).unwrap())
                .spawn()
                .expect("python3 -m dbusmock (Debian: python3-dbusmock)"),
        );
        let logind = Logind {
            address,
            _mock: mock,
            _bus: bus,
        };
        assert!(
            wait_until(20 * SECOND, || logind
                .gdbus(&["--method", "org.freedesktop.login1.Manager.ListInhibitors"])
                .is_some()),
            "the logind stand-in did not come up: {:?}",
            std::fs::read_to_string(dir.join("logind-mock.err"))
        );
        logind
    }

    /// One call to the stand-in; its answer, or None if the call failed.
    fn gdbus(&self, args: &[&str]) -> Option<String> {
        let out = run(Command::new("gdbus")
            .args(["call", "--address", &self.address, "--dest", LOGIND])
            .args(["--object-path", "/org/freedesktop/login1"])
            .args(args));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether Underpass holds a delay inhibitor for sleep now.
    fn underpass_delays_sleep(&self) -> bool {
        let list = self
            .gdbus(&["--method", "org.freedesktop.login1.Manager.ListInhibitors"])
            .expect("ListInhibitors");
        list.contains("('sleep', 'Underpass',") && list.contains("'delay'")
    }

    fn prepare_for_sleep(&self, start: bool) {
        let arg = format!("[<{start}>]");
        self.gdbus(&[
            "--method",
            "org.freedesktop.DBus.Mock.EmitSignal",
            "org.freedesktop.login1.Manager",
            "PrepareForSleep",
            "b",
            &arg,
        ])
        .expect("EmitSignal PrepareForSleep");
    }
}

/// A sandbox with one server, the helper (with `extra` arguments) connected in `auto`.
fn connected(prefix: &str, extra: &[&str]) -> (Sandbox, Helper) {
    let sandbox = Sandbox::up(prefix, 1);
    let helper = Helper::start(&sandbox, extra);
    helper.cli_ok(&["import", sandbox.var("PROFILE_1")]);
    helper.set_kill_switch("auto");
    helper.cli_ok(&["connect"]);
    helper.wait_for_state("connected", 10 * SECOND);
    (sandbox, helper)
}

/// The sandbox with a logind stand-in the helper follows, connected.
fn with_logind(prefix: &str) -> (Logind, Sandbox, Helper) {
    let logind = Logind::start(&std::env::temp_dir().join(format!("underpass-logind-{prefix}")));
    let (sandbox, helper) = connected(prefix, &["--logind-bus", &logind.address]);
    (logind, sandbox, helper)
}

fn capture(sandbox: &Sandbox, name: &str) -> Capture {
    Capture::start(sandbox, sandbox.client_ns(), sandbox.var("CLIENT_IF"), name)
}

/// The BPF filter for WireGuard messages of `kind` (1 initiation, 2 response) between the
/// client and the endpoint.
fn handshake_filter(endpoint: &str, kind: u8) -> String {
    let (ip, port) = endpoint.rsplit_once(':').unwrap();
    let dir = if kind == 1 { "dst" } else { "src" };
    format!("udp and {dir} host {ip} and {dir} port {port} and udp[8] = {kind}")
}

/// Tells the stand-in's sleep and resume, "another daemon" rewriting resolv.conf in between,
/// and returns the milliseconds from the resume to the first handshake initiation and to the
/// server's response on the client's link.
fn sleep_and_resume(logind: &Logind, sandbox: &Sandbox, helper: &Helper) -> (f64, f64) {
    let resolv = client_resolv_conf(sandbox);
    let tunnel_dns = std::fs::read_to_string(&resolv).unwrap();
    assert!(
        logind.underpass_delays_sleep(),
        "no delay lock before sleep"
    );
    logind.prepare_for_sleep(true);
    assert!(
        wait_until(3 * SECOND, || !logind.underpass_delays_sleep()),
        "the delay lock was not released before sleep:\n{}",
        helper.log_text()
    );
    let wire = capture(sandbox, "resume");
    std::fs::write(
        &resolv,
        "nameserver 198.51.100.53 # another daemon, on wake\n",
    )
    .unwrap();
    let resumed = epoch_secs();
    logind.prepare_for_sleep(false);
    assert!(
        wait_until(2 * SECOND, || std::fs::read_to_string(&resolv).unwrap()
            == tunnel_dns),
        "the tunnel's DNS was not put back after the resume: {:?}",
        std::fs::read_to_string(&resolv)
    );
    assert!(
        wait_until(3 * SECOND, || logind.underpass_delays_sleep()),
        "no new delay lock after the resume"
    );
    std::thread::sleep(SECOND);
    let endpoint = sandbox.var("SERVER_ENDPOINT_1");
    let packets = wire.stop_timed(&format!(
        "({}) or ({})",
        handshake_filter(endpoint, 1),
        handshake_filter(endpoint, 2)
    ));
    let first = |kind: &str| {
        packets
            .iter()
            .find(|(t, line)| *t >= resumed && line.contains(kind))
            .map(|(t, _)| (t - resumed) * 1000.0)
    };
    // WireGuard's handshake messages by their sizes: initiation 148 bytes, response 92.
    let (Some(initiation), Some(response)) = (first("length 148"), first("length 92")) else {
        panic!(
            "no handshake after the resume:\n{}\n{}",
            packets
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            helper.log_text()
        );
    };
    (initiation, response)
}

#[test]
fn logind_sleep_releases_the_delay_lock_and_resume_handshakes_at_once_and_puts_dns_back() {
    if !can_run() {
        return;
    }
    let (logind, sandbox, helper) = with_logind("esl1");
    assert!(
        wait_until(5 * SECOND, || logind.underpass_delays_sleep()),
        "the helper took no delay inhibitor:\n{}",
        helper.log_text()
    );
    let leak_capture = capture(&sandbox, "logind");
    let load = traffic(&sandbox);
    let (initiation, response) = sleep_and_resume(&logind, &sandbox, &helper);
    println!(
        "after PrepareForSleep(false): handshake initiation at {initiation:.0} ms, response at {response:.0} ms"
    );
    assert!(initiation < 1000.0, "initiation after {initiation:.0} ms");
    assert!(helper
        .log_text()
        .contains("resumed from sleep (the system says so)"));
    helper.wait_for_state("connected", 5 * SECOND);
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));
    no_leaks_then_twin(
        &sandbox,
        leak_capture,
        load,
        "sleep and resume announced by logind",
    );
}

#[test]
fn a_helper_frozen_for_30_s_leaks_nothing_and_its_tunnel_comes_back() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = connected("esl2", &[]);
    let leak_capture = capture(&sandbox, "frozen");
    let load = traffic(&sandbox);
    let pid = helper.pid() as i32;
    // SAFETY: kill(2) on the helper this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(30 * SECOND);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let thawed = Instant::now();
    let inet = sandbox.var("INET_ADDR4_1");
    assert!(
        wait_until(10 * SECOND, || sandbox.ping(inet)),
        "no traffic through the tunnel 10 s after SIGCONT:\n{}",
        helper.log_text()
    );
    println!(
        "traffic through the tunnel {} ms after SIGCONT",
        thawed.elapsed().as_millis()
    );
    helper.wait_for_state("connected", 10 * SECOND);
    no_leaks_then_twin(&sandbox, leak_capture, load, "the helper frozen for 30 s");
}

#[test]
fn after_200_s_of_blackhole_the_tunnel_heals_within_5_s_of_the_restore_and_leaks_nothing() {
    if !can_run() {
        return;
    }
    let (sandbox, helper) = connected("esl3", &[]);
    let router = sandbox.var("NS_ROUTER").to_string();
    let leak_capture = capture(&sandbox, "blackhole");
    // The router forwards nothing at all, either way.
    let hole =
        "table inet eslhole { chain f { type filter hook forward priority -10; policy drop; }; }";
    nft(&sandbox, &router, &["add", hole]);
    let start = Instant::now();
    let mut load = traffic(&sandbox);
    let mut renewed = false;
    let mut states = std::collections::BTreeSet::new();
    // Past the 90 s and 180 s timers; the load is renewed before its own bound (2 minutes).
    while start.elapsed() < 200 * SECOND {
        if start.elapsed() > 100 * SECOND && !renewed {
            drop(load);
            load = traffic(&sandbox);
            renewed = true;
        }
        let status = helper.status();
        let state = status["state"].as_str().unwrap_or("?").to_string();
        assert!(
            ["connected", "reconnecting"].contains(&state.as_str()),
            "at {:?} in the blackhole: {status}",
            start.elapsed()
        );
        states.insert(state);
        std::thread::sleep(2 * SECOND);
    }
    assert!(states.contains("reconnecting"), "{states:?}");
    println!(
        "in the blackhole for {} s: {}",
        start.elapsed().as_secs(),
        helper.cli_ok(&["status"]).trim()
    );
    nft(&sandbox, &router, &["delete", "table", "inet", "eslhole"]);
    let restored = Instant::now();
    helper.wait_for_state("connected", 8 * SECOND);
    let healed = restored.elapsed();
    assert!(
        wait_until(8 * SECOND, || sandbox.ping(sandbox.var("INET_ADDR4_1"))),
        "no traffic after the restore"
    );
    println!(
        "connected {} ms after a 200 s blackhole ended",
        healed.as_millis()
    );
    assert!(healed <= 5 * SECOND, "took {healed:?}");
    no_leaks_then_twin(&sandbox, leak_capture, load, "a 200 s blackhole");
}

/// `npm run bench` (bench/bench.sh): the milliseconds from logind's PrepareForSleep(false) to
/// the server's handshake response on the client's link, 5 times; writes the samples and their
/// median as JSON to $UNDERPASS_BENCH_JSON.
#[test]
#[ignore = "a benchmark: bench/bench.sh runs it"]
fn bench_resume_until_handshake() {
    if !can_run() {
        return;
    }
    let (logind, sandbox, helper) = with_logind("esl9");
    assert!(wait_until(5 * SECOND, || logind.underpass_delays_sleep()));
    let mut samples = Vec::new();
    for n in 0..5 {
        if n > 0 {
            // One resume is acted on once, however many report it (power::SAME_RESUME).
            std::thread::sleep(11 * SECOND);
        }
        let (_, response) = sleep_and_resume(&logind, &sandbox, &helper);
        println!("resume {}: handshake after {response:.0} ms", n + 1);
        samples.push(response);
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!("resume until the handshake: median {median:.0} ms of {samples:?}");
    if let Ok(path) = std::env::var("UNDERPASS_BENCH_JSON") {
        let json = serde_json::json!({"samples_ms": samples, "median_ms": median});
        std::fs::write(PathBuf::from(path), json.to_string()).unwrap();
    }
}
