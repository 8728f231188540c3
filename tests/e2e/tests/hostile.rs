//! A hostile member of the helper's group on a managed machine, speaking raw IPC frames (not
//! the CLI, which would refuse first): every way around the organization's policy is refused
//! by the helper itself, with a reason, and logged.
//!
//! IT's side is done as documented: `underpass profile keygen|sign` make the key and the
//! bundles, the public key goes to `<system dir>/trusted-keys/`, and `policy.json` beside it
//! requires signed bundles, the kill switch at least `auto`, no LAN access and locked DNS.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use underpass_e2e::*;

struct Org {
    secret: String,
    public: String,
}

fn keygen(helper: &Helper, dir: &Path, name: &str) -> Org {
    let (sk, pk) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    helper.cli_ok(&[
        "profile",
        "keygen",
        "--no-password",
        "--secret-key",
        sk.to_str().unwrap(),
        "--public-key",
        pk.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&pk).unwrap();
    Org {
        secret: sk.to_str().unwrap().to_string(),
        public: text.lines().nth(1).unwrap().trim().to_string(),
    }
}

/// Signs a bundle of the sandbox's server with `underpass profile sign`; returns its text.
fn sign(helper: &Helper, sandbox: &Sandbox, org: &Org, serial: u64, expires: &str) -> String {
    let payload = json!({
        "format": "underpass-profile/1",
        "signer_public_key": org.public,
        "organization": "Hostile Test IT",
        "name": "corp",
        "serial": serial,
        "expires": expires,
        "interface": {"addresses": [format!("{}/32", sandbox.var("CLIENT_TUN_ADDR4_1"))]},
        "servers": [{
            "id": "se-1", "country": "SE", "city": "Stockholm",
            "endpoint": sandbox.var("SERVER_ENDPOINT_1"),
            "public_key": sandbox.var("SERVER_PUB_1")
        }],
        "policy": {
            "min_kill_switch": "auto",
            "split_tunnel_allowed": false,
            "lan_access_allowed": false,
            "dns_locked": true
        },
        "private_key": "generate_locally"
    });
    let dir = &sandbox.dir;
    let (json_path, out) = (
        dir.join(format!("p{serial}.json")),
        dir.join(format!("b{serial}.underpass")),
    );
    std::fs::write(&json_path, serde_json::to_vec_pretty(&payload).unwrap()).unwrap();
    helper.cli_ok(&[
        "profile",
        "sign",
        json_path.to_str().unwrap(),
        "--secret-key",
        &org.secret,
        "-o",
        out.to_str().unwrap(),
    ]);
    std::fs::read_to_string(out).unwrap()
}

/// The tunnel the bundle describes, as a raw connect request, carrying `bundle` when given.
fn tunnel(sandbox: &Sandbox, bundle: Option<&str>) -> Value {
    let key = std::fs::read_to_string(sandbox.var("CLIENT_KEY_FILE")).unwrap();
    let mut config = json!({
        "profile": "corp",
        "private_key": key.trim(),
        "addresses": [format!("{}/32", sandbox.var("CLIENT_TUN_ADDR4_1"))],
        "peers": [{
            "public_key": sandbox.var("SERVER_PUB_1"),
            "endpoint": sandbox.var("SERVER_ENDPOINT_1"),
            "allowed_ips": ["0.0.0.0/0", "::/0"]
        }]
    });
    if let Some(b) = bundle {
        config["signed"] = json!({"bundle": b, "server": "se-1"});
    }
    config
}

fn connect(helper: &Helper, config: Value) -> Value {
    helper.request(json!({"kind": "connect", "config": config}))
}

/// The request was refused with a message containing `needle`, and the helper logged it.
fn refused(helper: &Helper, what: &str, result: &Value, needle: &str) {
    let message = result["Err"]["message"].as_str().unwrap_or_else(|| {
        panic!("{what}: accepted, but must be refused: {result}");
    });
    assert!(
        message.contains(needle),
        "{what}: refused, but not for the expected reason ({needle:?}): {message}"
    );
    println!("refused, {what}: {message}");
    assert!(
        wait_until(Duration::from_secs(2), || helper.log_text().lines().any(
            |l| l.contains("request refused by policy") && l.contains(needle)
        )),
        "{what}: the refusal is not in the helper's log:\n{}",
        helper.log_text()
    );
}

#[test]
fn a_hostile_member_cannot_get_around_the_managed_policy() {
    if !can_run() {
        return;
    }
    let sandbox = Sandbox::up("sec1", 1);
    let system = sandbox.dir.join("system");
    std::fs::create_dir_all(system.join("trusted-keys")).unwrap();
    // A first helper only to run IT's tools against; the managed one starts below.
    let it = Helper::start_in(None, &sandbox.dir.join("it"), &[]);
    let acme = keygen(&it, &sandbox.dir, "acme");
    let intruder = keygen(&it, &sandbox.dir, "intruder");
    std::fs::copy(
        sandbox.dir.join("acme.pub"),
        system.join("trusted-keys/acme.pub"),
    )
    .unwrap();
    std::fs::write(
        system.join("policy.json"),
        r#"{"organization": "Hostile Test IT", "require_signed_bundle": true,
            "min_kill_switch": "auto", "lan_access_allowed": false, "dns_locked": true}"#,
    )
    .unwrap();
    let future = "2099-01-01T00:00:00Z";
    let current = sign(&it, &sandbox, &acme, 2, future);
    let older = sign(&it, &sandbox, &acme, 1, future);
    let expired = sign(&it, &sandbox, &acme, 3, "2020-01-01T00:00:00Z");
    let foreign = sign(&it, &sandbox, &intruder, 9, future);
    drop(it);

    let helper = Helper::start(&sandbox, &["--system-dir", system.to_str().unwrap()]);
    // Disconnected, the machine's policy already holds the settings (once the helper has
    // reconciled and published its first state).
    let mut status = Value::Null;
    wait_until(Duration::from_secs(5), || {
        status = helper.status();
        !status["managed"].is_null()
    });
    assert_eq!(
        status["managed"]["organization"], "Hostile Test IT",
        "{status}"
    );
    assert_eq!(status["kill_switch"], "auto", "{status}");
    let off = helper.request(json!({"kind": "set_kill_switch", "mode": "off"}));
    refused(
        &helper,
        "kill switch off while disconnected",
        &off,
        "at least \"auto\"",
    );

    let none = connect(&helper, tunnel(&sandbox, None));
    refused(
        &helper,
        "a tunnel without a signed bundle",
        &none,
        "carries none",
    );

    let mut stripped = tunnel(&sandbox, Some(&current));
    stripped["policy"] = json!({"organization": "me", "serial": 99, "policy": {
        "min_kill_switch": "off", "split_tunnel_allowed": true,
        "lan_access_allowed": true, "dns_locked": false}});
    stripped["routing"] = json!({"exclude": ["198.18.0.0/15"]});
    let r = connect(&helper, stripped);
    refused(
        &helper,
        "a policy replaced by the client's own",
        &r,
        "split tunneling",
    );

    let mut dns = tunnel(&sandbox, Some(&current));
    dns["dns"] = json!([sandbox.var("INET_ADDR4_1")]);
    let r = connect(&helper, dns);
    refused(&helper, "custom DNS", &r, "custom DNS is not allowed");

    let r = connect(&helper, tunnel(&sandbox, Some(&expired)));
    refused(&helper, "an expired bundle", &r, "expired on 2020-01-01");

    let r = connect(&helper, tunnel(&sandbox, Some(&foreign)));
    refused(
        &helper,
        "a bundle signed by an unpinned key",
        &r,
        "not pinned in",
    );

    // The current bundle, with the client's policy claim stripped: accepted, under the policy
    // the helper derived itself.
    let mut plain = tunnel(&sandbox, Some(&current));
    plain["policy"] = Value::Null;
    let ok = connect(&helper, plain);
    assert!(
        ok.get("Ok").is_some(),
        "the signed bundle was refused: {ok}"
    );
    let status = helper.wait_for_state("connected", Duration::from_secs(20));
    assert_eq!(
        status["policy"]["organization"], "Hostile Test IT",
        "{status}"
    );
    assert_eq!(status["policy"]["serial"], 2, "{status}");
    assert!(sandbox.ping(sandbox.var("INET_ADDR4_1")));

    let off = helper.request(json!({"kind": "set_kill_switch", "mode": "off"}));
    refused(
        &helper,
        "lowering the kill switch",
        &off,
        "at least \"auto\"",
    );
    let lan = helper.request(json!({"kind": "set_lan_access", "allow": true}));
    refused(
        &helper,
        "opening the LAN",
        &lan,
        "local network access is not allowed",
    );

    let r = connect(&helper, tunnel(&sandbox, Some(&older)));
    refused(&helper, "a rolled-back serial", &r, "a rollback");
    // None of it touched the session.
    let status = helper.status();
    assert_eq!(status["state"], "connected", "{status}");
    assert_eq!(status["kill_switch"], "auto", "{status}");
    assert_eq!(status["lan_access"], false, "{status}");

    // The private key of the session (and of every refused request) is in no log or report.
    let key = std::fs::read_to_string(sandbox.var("CLIENT_KEY_FILE")).unwrap();
    let recent = helper.request(json!({"kind": "recent_logs"}));
    assert!(
        recent["Ok"]["lines"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "{recent}"
    );
    for (what, text) in [
        ("the helper's log", helper.log_text()),
        ("its recent logs", recent.to_string()),
        ("its status", status.to_string()),
    ] {
        assert!(!text.contains(key.trim()), "the private key is in {what}");
    }

    // The control: the same kinds of frames, sent to a helper of an unmanaged machine, are
    // accepted. So the refusals above come from the managed policy, not from frames the helper
    // would refuse anyway, and this test fails if the helper stops enforcing it.
    helper.request(json!({"kind": "disconnect"}));
    drop(helper);
    std::fs::remove_file(system.join("policy.json")).unwrap();
    let unmanaged = Helper::start(&sandbox, &["--system-dir", system.to_str().unwrap()]);
    let mut own = tunnel(&sandbox, None);
    own["dns"] = json!([sandbox.var("INET_ADDR4_1")]);
    own["routing"] = json!({"exclude": ["203.0.113.0/24"]});
    for (what, request) in [
        (
            "a tunnel without a bundle, custom DNS and a split",
            json!({"kind": "connect", "config": own}),
        ),
        (
            "the kill switch off",
            json!({"kind": "set_kill_switch", "mode": "off"}),
        ),
        (
            "the LAN opened",
            json!({"kind": "set_lan_access", "allow": true}),
        ),
    ] {
        let r = unmanaged.request(request);
        assert!(r.get("Ok").is_some(), "unmanaged, {what}: refused: {r}");
    }
    unmanaged.wait_for_state("connected", Duration::from_secs(20));
}
