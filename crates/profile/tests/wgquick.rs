//! The wg-quick parser against provider-style files, round trips, and malformed input.

use std::net::IpAddr;

use ipnet::IpNet;
use underpass_profile::wgquick::{parse, ParseError, WgQuickConfig};
use underpass_proto::Key;

fn corpus(file: &str) -> String {
    let path = format!("{}/tests/corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(s: &str) -> Key {
    Key::from_base64(s).unwrap()
}

fn parse_corpus(file: &str) -> underpass_profile::Parsed {
    parse(file, &corpus(file)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn mullvad_file_with_v4_v6_and_dns_is_imported() {
    let p = parse_corpus("mullvad-se-sto-wg-001.conf");
    let c = &p.config;
    assert_eq!(
        c.interface.private_key,
        key("zZiojYAvembIIhBW3jIPI91uexSn1oYWC3/vVrAbMj0=")
    );
    assert_eq!(
        c.interface.addresses,
        vec![net("10.68.12.34/32"), net("fc00:bbbb:bbbb:bb01::5:c21/128")]
    );
    assert_eq!(c.interface.dns, vec![ip("10.64.0.1")]);
    assert!(c.interface.dns_search.is_empty());
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peers[0].endpoint, "203.0.113.42:51820");
    assert_eq!(c.peers[0].allowed_ips, vec![net("0.0.0.0/0"), net("::/0")]);
    assert_eq!(c.peers[0].persistent_keepalive, None);
    assert!(c.is_full_tunnel());
    assert!(p.ignored_hooks.is_empty());
    c.to_tunnel_config("mullvad").validate().unwrap();
}

#[test]
fn protonvpn_file_with_comment_settings_is_imported() {
    let c = parse_corpus("protonvpn-SE-42.conf").config;
    assert_eq!(c.interface.addresses, vec![net("10.2.0.2/32")]);
    assert_eq!(c.interface.dns, vec![ip("10.2.0.1")]);
    assert_eq!(
        c.peers[0].public_key,
        key("bIJjUkhArZ+Nx4EbyfI7lIUaWmNTDXsbjVV9b8PCeaI=")
    );
    assert_eq!(c.endpoint(), Some("198.51.100.17:51820"));
    assert!(c.is_full_tunnel());
}

#[test]
fn self_hosted_file_with_two_peers_psk_and_hooks_is_imported_without_hooks() {
    let p = parse_corpus("homelab.conf");
    let c = &p.config;
    let i = &c.interface;
    assert_eq!(i.addresses, vec![net("10.10.0.5/24"), net("fd10:10::5/64")]);
    assert_eq!(i.dns, vec![ip("10.10.0.1"), ip("fd10:10::1")]);
    assert_eq!(i.dns_search, vec!["home.arpa", "lab.example"]);
    assert_eq!(i.mtu, Some(1380));
    assert_eq!(i.listen_port, Some(51821));
    assert_eq!(i.fwmark, Some(0x1234));
    assert_eq!(i.table.as_deref(), Some("auto"));
    assert_eq!(i.save_config, Some(false));

    assert_eq!(c.peers.len(), 2);
    let home = &c.peers[0];
    assert_eq!(
        home.preshared_key,
        Some(key("d4s9I17fl9MLmsLcu7aUntjZVm9i3D3DWBvCteWWTh0="))
    );
    assert_eq!(
        home.allowed_ips,
        vec![
            net("10.10.0.0/24"),
            net("fd10:10::/64"),
            net("192.168.50.0/24")
        ],
        "repeated AllowedIPs keys merge"
    );
    assert_eq!(home.endpoint, "vpn.home.example:51820");
    assert_eq!(home.persistent_keepalive, Some(25));
    let cloud = &c.peers[1];
    assert_eq!(cloud.endpoint, "[2001:db8::20]:51820");
    assert_eq!(cloud.persistent_keepalive, None);
    assert!(!c.is_full_tunnel());

    let hooks: Vec<(&str, usize)> = p
        .ignored_hooks
        .iter()
        .map(|h| (h.key.as_str(), h.line))
        .collect();
    assert_eq!(hooks, vec![("PreUp", 13), ("PostUp", 14), ("PostDown", 15)]);
    assert!(p.ignored_hooks[1]
        .command
        .starts_with("iptables -A FORWARD"));

    let t = c.to_tunnel_config("homelab");
    t.validate().unwrap();
    assert_eq!(t.dns.len(), 2, "search domains are not resolvers");
    assert!(t.peers.iter().all(|p| p.preshared_key.is_some()));
}

#[test]
fn windows_file_with_bom_crlf_odd_case_and_trailing_comments_is_imported() {
    let text = corpus("windows-crlf.conf");
    assert!(
        text.contains("\r\n"),
        "the corpus file must keep its CRLF endings"
    );
    let c = parse("windows-crlf.conf", &text).unwrap().config;
    assert_eq!(
        c.interface.private_key,
        key("MQGzOS4y/TWkUSh02ISv2AjHYL+GQvsBLeqLwhMx9yY=")
    );
    assert_eq!(
        c.interface.addresses,
        vec![net("172.16.0.2/32"), net("2001:db8:ff::2/128")]
    );
    assert_eq!(c.interface.dns, vec![ip("192.0.2.53")]);
    assert_eq!(c.peers[0].endpoint, "wg.example.net:443");
    assert_eq!(c.peers[0].persistent_keepalive, Some(15));
    assert!(c.is_full_tunnel(), "0/1 + 128/1 covers everything");
}

#[test]
fn every_corpus_file_round_trips_through_export() {
    for file in [
        "mullvad-se-sto-wg-001.conf",
        "protonvpn-SE-42.conf",
        "homelab.conf",
        "windows-crlf.conf",
    ] {
        let original = parse_corpus(file).config;
        let exported = original.to_wg_quick();
        let again = parse("exported.conf", &exported)
            .unwrap_or_else(|e| panic!("{file}: export does not parse: {e}\n{exported}"));
        assert_eq!(again.config, original, "{file}:\n{exported}");
        assert!(again.ignored_hooks.is_empty(), "hooks are never exported");
        assert_eq!(again.config.to_wg_quick(), exported, "export is stable");
    }
}

#[test]
fn export_looks_like_a_wg_quick_file() {
    let out = parse_corpus("homelab.conf").config.to_wg_quick();
    assert!(out.starts_with("[Interface]\nPrivateKey = "));
    assert!(out.contains("\nAddress = 10.10.0.5/24, fd10:10::5/64\n"));
    assert!(out.contains("\nDNS = 10.10.0.1, fd10:10::1, home.arpa, lab.example\n"));
    assert!(out.contains("\nFwMark = 0x1234\n"));
    assert_eq!(out.matches("\n[Peer]\n").count(), 2);
    assert!(!out.contains("iptables"));
}

const PRIV: &str = "zZiojYAvembIIhBW3jIPI91uexSn1oYWC3/vVrAbMj0=";
const PUB: &str = "PsvPX3MfJ4JVnNpUy/tflueDBxs2S0Ne2kEHsslTkDg=";
const PUB2: &str = "bIJjUkhArZ+Nx4EbyfI7lIUaWmNTDXsbjVV9b8PCeaI=";

fn err(text: &str) -> ParseError {
    match parse("se-sto.conf", text) {
        Ok(p) => panic!("parsed, but should not have:\n{text}\n{:?}", p.config),
        Err(e) => e,
    }
}

fn good_file() -> String {
    format!(
        "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n\n[Peer]\nPublicKey = {PUB}\nAllowedIPs = 0.0.0.0/0\nEndpoint = 192.0.2.1:51820\n"
    )
}

/// `good_file()` with line `n` (1-based) replaced.
fn with_line(n: usize, replacement: &str) -> String {
    let good = good_file();
    let mut lines: Vec<&str> = good.lines().collect();
    lines[n - 1] = replacement;
    lines.join("\n")
}

#[test]
fn the_good_file_used_below_is_good() {
    parse("se-sto.conf", &good_file()).unwrap();
}

#[test]
fn short_public_key_names_file_line_key_and_length() {
    let e = err(&with_line(7, "PublicKey = AAAA"));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:7: key \"PublicKey\": not a valid WireGuard key (decodes to 3 bytes; a WireGuard key is 32 bytes)"
    );
    assert_eq!(e.line, Some(7));
    assert_eq!(e.key.as_deref(), Some("PublicKey"));
}

#[test]
fn non_base64_private_key_is_refused() {
    let e = err(&with_line(2, "PrivateKey = not-a-key!"));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:2: key \"PrivateKey\": not a valid WireGuard key (not base64; a WireGuard key is 44 base64 characters)"
    );
}

#[test]
fn endpoint_without_port_is_refused() {
    let e = err(&with_line(9, "Endpoint = vpn.example.com"));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:9: key \"Endpoint\": \"vpn.example.com\" has no port (write host:port, or [v6]:port for IPv6)"
    );
}

#[test]
fn unbracketed_ipv6_endpoint_is_refused_with_the_fix() {
    let e = err(&with_line(9, "Endpoint = 2001:db8::1x:51820"));
    assert!(
        e.to_string()
            .contains("needs brackets, as in [2001:db8::1]:51820"),
        "{e}"
    );
}

#[test]
fn unknown_key_is_refused_by_name() {
    let e = err(&with_line(4, "Jc = 4"));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:4: key \"Jc\": unknown key in [Interface]"
    );
}

#[test]
fn key_outside_a_section_is_refused() {
    let text = format!("PrivateKey = {PRIV}\n{}", good_file());
    assert_eq!(
        err(&text).to_string(),
        "se-sto.conf:1: key \"PrivateKey\": outside any section; put it under [Interface]"
    );
}

#[test]
fn key_in_the_wrong_section_is_refused() {
    let e = err(&with_line(4, &format!("PublicKey = {PUB2}")));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:4: key \"PublicKey\": belongs in [Peer], not in [Interface]"
    );
}

#[test]
fn bad_cidr_is_refused() {
    let e = err(&with_line(8, "AllowedIPs = 0.0.0.0/0, 10.0.0.0/33"));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:8: key \"AllowedIPs\": \"10.0.0.0/33\" is not an IP address or prefix (e.g. 10.0.0.0/24, fd00::/64)"
    );
    let e = err(&with_line(3, "Address = 10.64.0.300"));
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key.as_deref(), Some("Address"));
}

#[test]
fn duplicate_private_key_is_refused_naming_the_first() {
    let text = good_file().replacen("Address", &format!("PrivateKey = {PRIV}\nAddress"), 1);
    assert_eq!(
        err(&text).to_string(),
        "se-sto.conf:3: key \"PrivateKey\": set twice (first on line 2)"
    );
}

#[test]
fn bad_dns_entry_is_refused() {
    let e = err(&with_line(4, "DNS = 10.64.0.1, 10.64.0.0/24"));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:4: key \"DNS\": \"10.64.0.0/24\" is neither an IP address nor a search domain"
    );
}

#[test]
fn out_of_range_values_are_refused() {
    let e = err(&with_line(4, "MTU = 100"));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:4: key \"MTU\": \"100\" is not an MTU between 576 and 9000"
    );
    let e = err(&with_line(8, "PersistentKeepalive = often"));
    assert!(e.to_string().contains("nor \"off\""), "{e}");
    let e = err(&with_line(4, "SaveConfig = yes"));
    assert!(e.to_string().contains("neither true nor false"), "{e}");
}

#[test]
fn lines_that_are_not_settings_are_refused() {
    let e = err(&with_line(4, "just some words"));
    assert_eq!(e.line, Some(4));
    assert!(e.reason.contains("expected `Key = Value`"), "{e}");
    let e = err(&with_line(5, "[Peers]"));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:5: unknown section [Peers]; a wg-quick file has [Interface] and [Peer]"
    );
    let e = err(&with_line(5, "[Peer"));
    assert!(e.reason.contains("malformed section header"), "{e}");
    let e = err(&with_line(2, "PrivateKey ="));
    assert_eq!(
        e.to_string(),
        "se-sto.conf:2: key \"PrivateKey\": has no value"
    );
}

#[test]
fn missing_interface_is_reported_for_the_file() {
    let e = err(&format!(
        "[Peer]\nPublicKey = {PUB}\nEndpoint = 192.0.2.1:51820\n"
    ));
    assert_eq!(
        e.to_string(),
        "se-sto.conf: no [Interface] section; is this a wg-quick .conf file?"
    );
    assert_eq!(err("").line, None);
}

#[test]
fn missing_private_key_points_at_the_interface_header() {
    let text = format!("# provider file\n{}", with_line(2, "# no key here"));
    assert_eq!(
        err(&text).to_string(),
        "se-sto.conf:2: [Interface] has no PrivateKey; the profile cannot work without it"
    );
}

#[test]
fn missing_address_points_at_the_interface_header() {
    let e = err(&with_line(3, ""));
    assert_eq!(e.line, Some(1));
    assert!(e.reason.contains("no Address"), "{e}");
}

#[test]
fn missing_peer_is_reported() {
    let text: String = good_file().lines().take(4).collect::<Vec<_>>().join("\n");
    assert_eq!(
        err(&text).to_string(),
        "se-sto.conf: no [Peer] section; the profile needs a server to connect to"
    );
}

#[test]
fn peer_without_public_key_points_at_its_header() {
    let e = err(&with_line(7, "# key lost"));
    assert_eq!(e.to_string(), "se-sto.conf:6: [Peer] has no PublicKey");
}

#[test]
fn peer_without_endpoint_points_at_its_header() {
    let text = format!(
        "{}\n[Peer]\nPublicKey = {PUB2}\nAllowedIPs = 10.0.0.0/8\n",
        good_file()
    );
    let e = err(&text);
    assert_eq!(e.line, Some(11));
    assert!(
        e.to_string()
            .starts_with("se-sto.conf:11: [Peer] has no Endpoint; a client needs"),
        "{e}"
    );
}

#[test]
fn two_peers_with_one_key_are_refused() {
    let text = format!(
        "{}\n[Peer]\nPublicKey = {PUB}\nEndpoint = 192.0.2.2:51820\n",
        good_file()
    );
    assert_eq!(
        err(&text).to_string(),
        "se-sto.conf:12: key \"PublicKey\": same key as the [Peer] on line 6"
    );
}

#[test]
fn second_interface_section_is_refused() {
    let text = format!("{}\n[Interface]\n", good_file());
    assert_eq!(
        err(&text).to_string(),
        "se-sto.conf:11: a second [Interface] section (the first is on line 1)"
    );
}

#[test]
fn hooks_are_collected_with_line_numbers_never_run() {
    let text = with_line(4, "PostUp = touch /tmp/underpass-hook-ran # with a comment");
    let p = parse("se-sto.conf", &text).unwrap();
    assert_eq!(p.ignored_hooks.len(), 1);
    let h = &p.ignored_hooks[0];
    assert_eq!((h.key.as_str(), h.line), ("PostUp", 4));
    assert_eq!(h.command, "touch /tmp/underpass-hook-ran");
    assert!(!std::path::Path::new("/tmp/underpass-hook-ran").exists());
}

#[test]
fn a_hand_built_config_round_trips() {
    let mut c: WgQuickConfig = parse("se-sto.conf", &good_file()).unwrap().config;
    c.interface.mtu = Some(1420);
    c.interface.table = Some("off".into());
    c.interface.dns_search = vec!["corp.example".into()];
    c.peers[0].preshared_key = Some(key(PUB2));
    c.peers[0].persistent_keepalive = Some(25);
    c.peers[0].allowed_ips.clear();
    let again = parse("x", &c.to_wg_quick()).unwrap().config;
    assert_eq!(again, c);
}

#[test]
fn table_off_means_the_tunnel_installs_no_routes() {
    let text = "[Interface]\nPrivateKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAddress = 10.0.0.2/32\nTable = off\n\n[Peer]\nPublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n";
    let parsed = parse("off.conf", text).unwrap();
    assert!(parsed.config.to_tunnel_config("off").routing.no_routes);
    let auto = parse(
        "auto.conf",
        &text.replace("Table = off\n", "Table = auto\n"),
    )
    .unwrap();
    assert!(!auto.config.to_tunnel_config("auto").routing.no_routes);
}
