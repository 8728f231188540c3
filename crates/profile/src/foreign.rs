//! Configuration files of other VPNs, recognised so that importing one gets a plain answer
//! (what the file is, that Underpass speaks WireGuard only, what to ask for) instead of a
//! parse error on its first line.
//!
//! Recognition needs two directives of the same kind, so a wg-quick file with a stray word
//! is never mistaken for one; a file with an `[Interface]` or `[Peer]` section is always
//! treated as wg-quick.

/// A VPN configuration that is not WireGuard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignVpn {
    OpenVpn,
    /// ipsec.conf, swanctl.conf or ipsec.secrets (strongSwan, Libreswan).
    Ipsec,
}

const OPENVPN: &[&str] = &[
    "client",
    "remote",
    "dev",
    "proto",
    "nobind",
    "persist-key",
    "persist-tun",
    "remote-cert-tls",
    "auth-user-pass",
    "tls-auth",
    "tls-crypt",
    "cipher",
    "data-ciphers",
    "verb",
    "resolv-retry",
    "<ca>",
    "<cert>",
    "<key>",
    "<tls-auth>",
    "<tls-crypt>",
];

const IPSEC: &[&str] = &[
    "config setup",
    "conn",
    "left",
    "right",
    "leftid",
    "rightid",
    "leftsubnet",
    "rightsubnet",
    "keyexchange",
    "ike",
    "esp",
    "authby",
    "auto",
    "connections",
    "local_addrs",
    "remote_addrs",
    "children",
    "secrets",
    ": psk",
    ": rsa",
];

/// What kind of foreign VPN configuration `text` is, if it is one.
pub fn detect(text: &str) -> Option<ForeignVpn> {
    let mut openvpn = std::collections::HashSet::new();
    let mut ipsec = std::collections::HashSet::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("[interface]") || lower.starts_with("[peer]") {
            return None;
        }
        // `remote vpn.example.com 1194`, `left=%defaultroute`, `local_addrs = ...`, `conn corp`.
        let word = lower
            .split(|c: char| c.is_whitespace() || c == '=' || c == '{')
            .next()
            .unwrap_or("");
        if OPENVPN.contains(&word) {
            openvpn.insert(word.to_string());
        }
        if IPSEC.contains(&word) {
            ipsec.insert(word.to_string());
        }
        for phrase in ["config setup", ": psk", ": rsa"] {
            if lower.starts_with(phrase) || lower.contains(&format!(" {phrase}")) {
                ipsec.insert(phrase.to_string());
            }
        }
    }
    match (openvpn.len() >= 2, ipsec.len() >= 2) {
        (true, false) => Some(ForeignVpn::OpenVpn),
        (false, true) => Some(ForeignVpn::Ipsec),
        (true, true) if openvpn.len() >= ipsec.len() => Some(ForeignVpn::OpenVpn),
        (true, true) => Some(ForeignVpn::Ipsec),
        (false, false) => None,
    }
}

impl ForeignVpn {
    /// The whole answer, in words for the person importing the file.
    pub fn explanation(self) -> String {
        let (what, why) = match self {
            ForeignVpn::OpenVpn => (
                "an OpenVPN configuration (.ovpn), not a WireGuard one",
                "OpenVPN and WireGuard are different protocols, so the file cannot be converted: \
                 the server has to offer WireGuard too",
            ),
            ForeignVpn::Ipsec => (
                "an IPsec configuration (strongSwan or Libreswan: ipsec.conf, swanctl.conf or \
                 ipsec.secrets), not a WireGuard one",
                "IPsec and WireGuard are different protocols, so the file cannot be converted: \
                 the gateway has to offer WireGuard too",
            ),
        };
        format!(
            "this is {what}. Underpass speaks WireGuard only; {why}. Ask your VPN's administrator \
             for a WireGuard configuration: a wg-quick .conf file (with [Interface] and [Peer] \
             sections, as `wg-quick` and the WireGuard apps use) or a signed .underpass bundle"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ovpn_file_is_recognised() {
        let ovpn =
            "client\ndev tun\nproto udp\nremote vpn.example.com 1194\nresolv-retry infinite\n\
                    nobind\n<ca>\n-----BEGIN CERTIFICATE-----\n</ca>\n";
        assert_eq!(detect(ovpn), Some(ForeignVpn::OpenVpn));
        let err = crate::wgquick::parse("corp.ovpn", ovpn)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("corp.ovpn: this is an OpenVPN configuration"),
            "{err}"
        );
        assert!(!err.contains("expected `Key = Value`"), "{err}");
    }

    #[test]
    fn strongswan_files_are_recognised() {
        let ipsec_conf =
            "config setup\n    charondebug=\"ike 1\"\nconn corp\n    left=%defaultroute\n    \
                          right=vpn.example.com\n    keyexchange=ikev2\n    auto=start\n";
        assert_eq!(detect(ipsec_conf), Some(ForeignVpn::Ipsec));
        let swanctl = "connections {\n  corp {\n    remote_addrs = vpn.example.com\n    \
                       children {\n      net { }\n    }\n  }\n}\n";
        assert_eq!(detect(swanctl), Some(ForeignVpn::Ipsec));
        assert_eq!(
            detect("vpn.example.com : PSK \"secret\"\n%any : RSA key.pem\n"),
            Some(ForeignVpn::Ipsec)
        );
    }

    #[test]
    fn wg_quick_files_and_plain_garbage_are_not_foreign() {
        let wg = "[Interface]\nPrivateKey = x\n# remote access\n[Peer]\nEndpoint = a:1\n";
        assert_eq!(detect(wg), None);
        assert_eq!(detect("client\nhello world\n"), None);
    }

    #[test]
    fn the_answer_says_what_to_ask_for() {
        let text = ForeignVpn::OpenVpn.explanation();
        assert!(text.contains("OpenVPN") && text.contains("WireGuard only"));
        assert!(text.contains("administrator") && text.contains(".conf"));
    }
}
