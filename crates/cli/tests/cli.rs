//! The `underpass` binary as a user runs it: arguments, stdout, stderr, exit codes. The
//! helper is either absent or a small fake listening on a Unix socket in a temp dir.

use std::path::Path;
use std::process::Output;

const PRIV: &str = "jlRpASJbfI3UlYNX8lqggOEPwAllNTzKr8Hgnr96qX8=";
const PUB: &str = "nA+giqGJWzTQGpuu82A79gUB1ZIIlnp91b4+XgKN4/w=";

const SE_STO: &str = "[Interface]
PrivateKey = jlRpASJbfI3UlYNX8lqggOEPwAllNTzKr8Hgnr96qX8=
Address = 10.64.1.2/32, fd00:64:1::2/128
DNS = 10.64.0.1

[Peer]
PublicKey = nA+giqGJWzTQGpuu82A79gUB1ZIIlnp91b4+XgKN4/w=
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = 192.0.2.10:51820
";

mod common;
use common::{stderr, stdout, Env};

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed: {}\n{}", stderr(&o), stdout(&o));
    o
}

fn fails(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "should fail: {}", stdout(&o));
    let err = stderr(&o);
    assert!(err.starts_with("underpass: "), "{err}");
    err
}

fn import(env: &Env, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["import", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    env.run(&args)
}

#[test]
fn import_prints_a_summary_and_names_the_profile_after_the_file() {
    let env = Env::new();
    let f = env.write("se-sto.conf", SE_STO);
    let o = ok(import(&env, &f, &[]));
    assert_eq!(
        stdout(&o),
        "Imported \"se-sto\" (1 peer, endpoint 192.0.2.10:51820, full tunnel)\n"
    );
    assert_eq!(stderr(&o), "");
    assert!(env.path("config/profiles/se-sto.json").exists());
    assert!(env.path("config/keys/se-sto.key").exists());
}

#[test]
fn import_warns_that_hooks_are_never_run() {
    let env = Env::new();
    let text = SE_STO.replace(
        "DNS = 10.64.0.1\n",
        "DNS = 10.64.0.1\nPostUp = iptables -I OUTPUT -j ACCEPT\nPreDown = echo bye\n",
    );
    let f = env.write("hooks.conf", &text);
    let o = ok(import(&env, &f, &["--name", "with-hooks"]));
    assert!(stdout(&o).starts_with("Imported \"with-hooks\""));
    let err = stderr(&o);
    assert!(
        err.contains("did NOT import and will never execute"),
        "{err}"
    );
    assert!(
        err.contains("  line 5: PostUp = iptables -I OUTPUT -j ACCEPT\n"),
        "{err}"
    );
    assert!(err.contains("  line 6: PreDown = echo bye\n"), "{err}");
}

#[test]
fn import_refuses_to_overwrite_unless_replace() {
    let env = Env::new();
    let f = env.write("se-sto.conf", SE_STO);
    ok(import(&env, &f, &[]));
    let err = fails(import(&env, &f, &[]));
    assert!(
        err.contains("a profile named \"se-sto\" already exists; pass --replace"),
        "{err}"
    );
    ok(import(&env, &f, &["--replace"]));
}

#[test]
fn malformed_file_error_names_file_line_and_key() {
    let env = Env::new();
    let f = env.write("se-sto.conf", &SE_STO.replace(PUB, "AAAA"));
    let err = fails(import(&env, &f, &[]));
    assert_eq!(
        err,
        "underpass: se-sto.conf:7: key \"PublicKey\": not a valid WireGuard key (decodes to 3 bytes; a WireGuard key is 32 bytes)\n"
    );
    assert!(!env.path("config/profiles/se-sto.json").exists());
}

#[test]
fn an_openvpn_file_gets_a_plain_answer_not_a_parse_error() {
    let env = Env::new();
    let f = env.write(
        "corp.ovpn",
        "client\ndev tun\nproto udp\nremote vpn.corp.example 1194\nauth-user-pass\n<ca>\n</ca>\n",
    );
    let err = fails(import(&env, &f, &[]));
    assert!(
        err.starts_with("underpass: corp.ovpn: this is an OpenVPN configuration"),
        "{err}"
    );
    assert!(err.contains("Underpass speaks WireGuard only"), "{err}");
    assert!(err.contains("Ask your VPN's administrator"), "{err}");
    assert!(!err.contains("Key = Value"), "{err}");
    assert!(!env.path("config/profiles/corp.json").exists());
}

#[test]
fn missing_file_is_a_clear_error() {
    let env = Env::new();
    let err = fails(env.run(&["import", "/nonexistent/x.conf"]));
    assert!(
        err.starts_with("underpass: reading /nonexistent/x.conf: "),
        "{err}"
    );
}

#[test]
fn profiles_lists_a_table_or_json() {
    let env = Env::new();
    assert!(stdout(&ok(env.run(&["profiles"]))).starts_with("No profiles yet."));
    assert_eq!(stdout(&ok(env.run(&["profiles", "--json"]))).trim(), "[]");
    ok(import(&env, &env.write("se-sto.conf", SE_STO), &[]));
    ok(import(&env, &env.write("de.conf", SE_STO), &[]));
    assert_eq!(
        stdout(&ok(env.run(&["profiles"]))),
        "NAME    ENDPOINT          ADDRESSES\n\
         de      192.0.2.10:51820  10.64.1.2/32, fd00:64:1::2/128\n\
         se-sto  192.0.2.10:51820  10.64.1.2/32, fd00:64:1::2/128\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&ok(env.run(&["--json", "profiles"])))).unwrap();
    assert_eq!(json[0]["name"], "de");
    assert_eq!(json[1]["endpoint"], "192.0.2.10:51820");
    assert_eq!(json[1]["full_tunnel"], true);
    assert!(!json.to_string().contains(PRIV), "no secret in the listing");
}

#[test]
fn connect_needs_a_name_when_there_are_several_profiles() {
    let env = Env::new();
    ok(import(&env, &env.write("se-sto.conf", SE_STO), &[]));
    ok(import(&env, &env.write("de.conf", SE_STO), &[]));
    assert_eq!(
        fails(env.run(&["connect"])),
        "underpass: there are 2 profiles; say which one: de, se-sto\n"
    );
}

#[test]
fn connect_to_an_unknown_profile_points_at_the_list() {
    let env = Env::new();
    assert_eq!(
        fails(env.run(&["connect", "nope"])),
        "underpass: profile \"nope\" not found; `underpass profiles` lists them\n"
    );
}

#[test]
fn commands_that_need_the_helper_say_how_to_start_it() {
    let env = Env::new();
    ok(import(&env, &env.write("se-sto.conf", SE_STO), &[]));
    for args in [&["status"][..], &["connect"], &["disconnect"]] {
        let err = fails(env.run(args));
        assert!(
            err.starts_with("underpass: the Underpass helper is not running (no socket at "),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_arguments_are_refused_by_the_parser() {
    let env = Env::new();
    let o = env.run(&["connect", "--include", "10.0.0.0/33"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not an IP prefix"));
}

#[cfg(unix)]
mod with_fake_helper {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;
    use underpass_proto::codec::JsonFrames;
    use underpass_proto::{
        ClientMessage, Event, Request, Response, ServerMessage, Status, TunnelConfig, TunnelState,
        PROTOCOL_VERSION,
    };

    fn connected(config: &TunnelConfig) -> Status {
        Status {
            state: TunnelState::Connected,
            profile: Some(config.profile.clone()),
            interface: Some("underpass0".into()),
            addresses: config.addresses.clone(),
            endpoint: Some(config.peers[0].endpoint.parse().unwrap()),
            rx_bytes: 4096,
            tx_bytes: 1000,
            last_handshake_secs: Some(3),
            ..Status::disconnected()
        }
    }

    /// Serves one client like underpassd would for a successful connect, and returns the
    /// config it was asked to bring up.
    async fn serve_one(listener: tokio::net::UnixListener) -> Option<TunnelConfig> {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(
            stream,
            JsonFrames::<ClientMessage, ServerMessage>::default(),
        );
        let mut asked = None;
        let mut current = Status::disconnected();
        while let Some(Ok(msg)) = framed.next().await {
            let (id, request) = match msg {
                ClientMessage::Hello { .. } => {
                    let hello = ServerMessage::Hello {
                        protocol: PROTOCOL_VERSION,
                        helper_version: "fake".into(),
                    };
                    framed.send(hello).await.unwrap();
                    continue;
                }
                ClientMessage::Request { id, request } => (id, request),
            };
            let (result, events) = match request {
                Request::Subscribe => (Response::Subscribed, vec![]),
                Request::Status => (
                    Response::Status {
                        status: Box::new(current.clone()),
                    },
                    vec![],
                ),
                Request::Connect { config, .. } => {
                    let connecting = Status {
                        state: TunnelState::Connecting,
                        profile: Some(config.profile.clone()),
                        ..Status::disconnected()
                    };
                    current = connected(&config);
                    asked = Some(*config);
                    (Response::Accepted, vec![connecting, current.clone()])
                }
                Request::Disconnect => {
                    current = Status::disconnected();
                    (Response::Accepted, vec![current.clone()])
                }
                // Requests the contract may grow (kill switch, LAN access): accepted as is.
                #[allow(unreachable_patterns)]
                _ => (Response::Accepted, vec![]),
            };
            framed
                .send(ServerMessage::Response {
                    id,
                    result: Ok(result),
                })
                .await
                .unwrap();
            for status in events {
                let event = Event::State {
                    status: Box::new(status),
                };
                framed.send(ServerMessage::Event { event }).await.unwrap();
            }
        }
        asked
    }

    fn with_helper<T>(env: &Env, client: impl FnOnce() -> T) -> (T, Option<TunnelConfig>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(async { tokio::net::UnixListener::bind(env.path("helper.sock")) })
            .unwrap();
        let server = rt.spawn(serve_one(listener));
        let handle = std::thread::spawn(move || rt.block_on(server).unwrap());
        let out = client();
        (out, handle.join().unwrap())
    }

    #[test]
    fn connect_sends_the_profile_with_routing_flags_and_reports_the_tunnel() {
        let env = Env::new();
        ok(import(&env, &env.write("se-sto.conf", SE_STO), &[]));
        let (o, asked) = with_helper(&env, || {
            env.run(&[
                "connect",
                "--include",
                "198.51.100.0/24",
                "--exclude",
                "198.51.100.7",
            ])
        });
        let o = ok(o);
        assert_eq!(
            stdout(&o),
            "Connected to se-sto: interface underpass0, addresses 10.64.1.2/32, fd00:64:1::2/128, endpoint 192.0.2.10:51820\n"
        );
        let config = asked.expect("the helper got a connect request");
        assert_eq!(config.profile, "se-sto");
        assert_eq!(config.private_key.to_base64(), PRIV);
        assert_eq!(config.routing.include[0].to_string(), "198.51.100.0/24");
        assert_eq!(config.routing.exclude[0].to_string(), "198.51.100.7/32");
    }

    #[test]
    fn status_json_is_exactly_the_contracts_status() {
        let env = Env::new();
        let (o, _) = with_helper(&env, || env.run(&["status", "--json"]));
        let o = ok(o);
        assert_eq!(
            stdout(&o),
            format!(
                "{}\n",
                serde_json::to_string_pretty(&Status::disconnected()).unwrap()
            )
        );
    }

    #[test]
    fn disconnect_when_nothing_is_up_says_disconnected() {
        let env = Env::new();
        let (o, _) = with_helper(&env, || env.run(&["disconnect"]));
        assert_eq!(stdout(&ok(o)), "Disconnected\n");
    }

    #[test]
    fn connect_json_prints_the_final_status() {
        let env = Env::new();
        ok(import(&env, &env.write("se-sto.conf", SE_STO), &[]));
        let (o, asked) = with_helper(&env, || env.run(&["--json", "connect", "se-sto"]));
        let status: Status = serde_json::from_str(&stdout(&ok(o))).unwrap();
        assert_eq!(status, connected(&asked.unwrap()));
    }
}

#[test]
fn export_gives_back_a_wg_quick_file_that_imports_to_the_same_profile() {
    let env = Env::new();
    let f = env.write("se-sto.conf", SE_STO);
    ok(import(&env, &f, &[]));
    let exported = stdout(&ok(env.run(&["profile", "export", "se-sto"])));
    assert!(exported.contains("[Interface]") && exported.contains("PrivateKey = "));
    let again = env.write("again.conf", &exported);
    ok(import(&env, &again, &[]));
    let before = underpass_profile::wgquick::parse("a", SE_STO)
        .unwrap()
        .config;
    let after = underpass_profile::wgquick::parse("b", &exported)
        .unwrap()
        .config;
    assert_eq!(
        before, after,
        "the round trip changed the profile's meaning"
    );
}
