//! The peer table: boringtun sessions plus cryptokey routing.
//!
//! Outbound, the longest AllowedIPs prefix that covers a packet's destination picks the peer
//! that encrypts it. Inbound, a decrypted packet is accepted only when its *source* maps back to
//! the peer that sent it; anything else is dropped, as the WireGuard paper requires.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use parking_lot::Mutex;
use prefix_trie::PrefixMap;
use underpass_proto::{Key, PeerStatus};

use crate::health::Sample;

/// One peer's settings after its endpoint has been resolved.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    pub endpoint: SocketAddr,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
}

pub struct Peer {
    pub public_key: Key,
    /// Where this peer's datagrams go: the configured endpoint, then wherever its authenticated
    /// packets last came from, when [`Roaming`] allows (see [`Peer::roam`]).
    endpoint: Mutex<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub tunn: Mutex<Tunn>,
    /// Encrypted bytes on the wire, both directions (as `wg show` counts them).
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Packets from the server that authenticated and answer us (data, keepalives, handshake
    /// responses): what liveness counts, since anyone can send bytes that merely look like
    /// WireGuard, and the server's own handshake initiations arrive even when ours do not.
    pub rx_packets: AtomicU64,
}

impl Peer {
    pub fn last_handshake(&self) -> Option<Duration> {
        self.tunn.lock().time_since_last_handshake()
    }

    /// Where the next datagram to this peer goes.
    pub fn endpoint(&self) -> SocketAddr {
        *self.endpoint.lock()
    }

    /// Roaming, as in WireGuard: once a datagram from `from` has authenticated (see
    /// [`authenticated`]), later sends go there, unless `roaming` confines the peer to other
    /// destinations. True when the endpoint moved. The socket stays unconnected, so the local
    /// side may roam too (a new address or uplink) without anything here.
    pub fn roam(&self, from: SocketAddr, roaming: &Roaming) -> bool {
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let mut endpoint = self.endpoint.lock();
        if *endpoint == from {
            return false;
        }
        if !roaming.admits(from) {
            tracing::debug!(%from, endpoint = %*endpoint,
                "an authenticated packet from outside the kill switch's endpoints: not followed");
            return false;
        }
        tracing::info!(from = %*endpoint, to = %from, "the server's endpoint moved (roaming)");
        *endpoint = from;
        true
    }
}

/// Where a peer's endpoint may follow its authenticated packets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Roaming {
    /// Anywhere, as in WireGuard: no kill switch decides where the encrypted UDP may go.
    #[default]
    Free,
    /// Only among these destinations: the endpoints a kill switch admits (the session's
    /// resolved endpoints), or, where the routes keep only those out of the tunnel (macOS,
    /// Windows), the configured ones. A packet can never widen the set: following it would
    /// send into a firewall that refuses, or into the tunnel itself.
    Within(Vec<SocketAddr>),
}

impl Roaming {
    /// What a firewall policy allows: confined to its tunnel hole's endpoints, free without one.
    pub fn under(policy: Option<&crate::firewall::FirewallPolicy>) -> Roaming {
        match policy.and_then(|p| p.tunnel.as_ref()) {
            Some(t) => Roaming::Within(t.endpoints.clone()),
            None => Roaming::Free,
        }
    }

    fn admits(&self, to: SocketAddr) -> bool {
        match self {
            Roaming::Free => true,
            Roaming::Within(set) => set
                .iter()
                .any(|e| e.ip().to_canonical() == to.ip() && e.port() == to.port()),
        }
    }
}

/// Whether decapsulating `datagram` into `result` proved that the peer sent it: a handshake
/// initiation or response that validated, or transport data (keepalives too) that decrypted.
/// A cookie reply proves nothing, and neither does a handshake message answered with a cookie
/// (boringtun under load answers before checking it).
pub fn authenticated(datagram: &[u8], result: &TunnResult) -> bool {
    matches!(datagram.first(), Some(1 | 2 | 4))
        && match result {
            TunnResult::Err(_) => false,
            TunnResult::WriteToNetwork(p) => p.first() != Some(&3),
            _ => true,
        }
}

impl Peer {
    /// What boringtun's timers (or, when `forced`, a new handshake now) want sent to this peer.
    pub fn timer_packet(&self, forced: bool, buf: &mut [u8]) -> Option<Vec<u8>> {
        let mut tunn = self.tunn.lock();
        let result = if forced {
            tunn.format_handshake_initiation(buf, true)
        } else {
            tunn.update_timers(buf)
        };
        match result {
            TunnResult::WriteToNetwork(p) => Some(p.to_vec()),
            TunnResult::Err(WireGuardError::ConnectionExpired) => None,
            TunnResult::Err(e) => {
                tracing::debug!(error = ?e, "timer error");
                None
            }
            _ => None,
        }
    }
}

/// A handshake response (2) or transport data (4): proof that the server hears us. Its own
/// handshake initiations (1) are not, since they reach us even when ours do not reach it.
pub fn answers_us(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(2 | 4))
}

/// Whether a failed send means that no path reaches the server (the daemon then looks at the
/// routes again).
pub fn path_is_gone(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    let codes = [libc::ENETUNREACH, libc::EADDRNOTAVAIL, libc::EHOSTUNREACH];
    #[cfg(windows)]
    let codes = [10051, 10049, 10065]; // WSAENETUNREACH, WSAEADDRNOTAVAIL, WSAEHOSTUNREACH
    e.raw_os_error().is_some_and(|c| codes.contains(&c))
}

pub struct PeerTable {
    peers: Vec<Arc<Peer>>,
    v4: PrefixMap<Ipv4Net, usize>,
    v6: PrefixMap<Ipv6Net, usize>,
    static_private: StaticSecret,
    static_public: PublicKey,
    roaming: Roaming,
}

/// The session index boringtun puts in the upper 24 bits of every receiver index.
fn peer_of_receiver_index(idx: u32) -> usize {
    (idx >> 8) as usize
}

impl PeerTable {
    pub fn new(private_key: &Key, specs: &[PeerSpec], roaming: Roaming) -> PeerTable {
        let static_private = StaticSecret::from(private_key.0);
        let static_public = PublicKey::from(&static_private);
        let mut v4 = PrefixMap::new();
        let mut v6 = PrefixMap::new();
        let mut peers = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            for net in &spec.allowed_ips {
                // Later peers win a tie, as with `wg set`: an AllowedIP belongs to one peer.
                match net.trunc() {
                    IpNet::V4(n) => v4.insert(n, i),
                    IpNet::V6(n) => v6.insert(n, i),
                };
            }
            let tunn = Tunn::new(
                static_private.clone(),
                PublicKey::from(spec.public_key.0),
                spec.preshared_key.as_ref().map(|k| k.0),
                spec.persistent_keepalive.filter(|k| *k > 0),
                i as u32,
                None,
            );
            peers.push(Arc::new(Peer {
                public_key: spec.public_key.clone(),
                endpoint: Mutex::new(spec.endpoint),
                allowed_ips: spec.allowed_ips.clone(),
                tunn: Mutex::new(tunn),
                rx_bytes: AtomicU64::new(0),
                tx_bytes: AtomicU64::new(0),
                rx_packets: AtomicU64::new(0),
            }));
        }
        PeerTable {
            peers,
            v4,
            v6,
            static_private,
            static_public,
            roaming,
        }
    }

    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.peers
    }

    /// Where the peers' endpoints may roam.
    pub fn roaming(&self) -> &Roaming {
        &self.roaming
    }

    fn index_for(&self, addr: IpAddr) -> Option<usize> {
        match addr {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, i)| *i),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, i)| *i),
        }
    }

    /// Cryptokey routing, outbound: the peer that should carry a packet to `dst`.
    pub fn route(&self, dst: IpAddr) -> Option<(usize, &Arc<Peer>)> {
        self.index_for(dst).map(|i| (i, &self.peers[i]))
    }

    /// Cryptokey routing, inbound: may peer `index` send packets from `src`?
    pub fn allows_source(&self, index: usize, src: IpAddr) -> bool {
        self.index_for(src) == Some(index)
    }

    /// Which peer an incoming datagram belongs to: by receiver index for responses, cookies and
    /// data; by decrypting the initiator's static key for a handshake initiation.
    pub fn for_datagram(&self, datagram: &[u8]) -> Option<(usize, &Arc<Peer>)> {
        let index = match Tunn::parse_incoming_packet(datagram).ok()? {
            Packet::HandshakeInit(init) => {
                let half =
                    parse_handshake_anon(&self.static_private, &self.static_public, &init).ok()?;
                self.peers
                    .iter()
                    .position(|p| p.public_key.0 == half.peer_static_public)?
            }
            Packet::HandshakeResponse(p) => peer_of_receiver_index(p.receiver_idx),
            Packet::PacketCookieReply(p) => peer_of_receiver_index(p.receiver_idx),
            Packet::PacketData(p) => peer_of_receiver_index(p.receiver_idx),
        };
        self.peers.get(index).map(|p| (index, p))
    }

    /// The counters liveness reads, summed over the peers, and the youngest handshake.
    pub fn sample(&self) -> Sample {
        Sample {
            rx_packets: self
                .peers
                .iter()
                .map(|p| p.rx_packets.load(Ordering::Relaxed))
                .sum(),
            tx_bytes: self
                .peers
                .iter()
                .map(|p| p.tx_bytes.load(Ordering::Relaxed))
                .sum(),
            handshake_age: self.peers.iter().filter_map(|p| p.last_handshake()).min(),
        }
    }

    /// Each peer as the status shows it.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|p| PeerStatus {
                public_key: p.public_key.clone(),
                endpoint: Some(p.endpoint()),
                allowed_ips: p.allowed_ips.clone(),
                rx_bytes: p.rx_bytes.load(Ordering::Relaxed),
                tx_bytes: p.tx_bytes.load(Ordering::Relaxed),
                last_handshake_secs: p.last_handshake().map(|d| d.as_secs()),
            })
            .collect()
    }
}

/// The destination and source address of an IP packet, without copying it.
pub fn packet_addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let src: [u8; 4] = packet[12..16].try_into().ok()?;
            let dst: [u8; 4] = packet[16..20].try_into().ok()?;
            Some((Ipv4Addr::from(src).into(), Ipv4Addr::from(dst).into()))
        }
        6 if packet.len() >= 40 => {
            let src: [u8; 16] = packet[8..24].try_into().ok()?;
            let dst: [u8; 16] = packet[24..40].try_into().ok()?;
            Some((Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into()))
        }
        _ => None,
    }
}

/// Sessions established in memory, for the data planes' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A client table whose one peer (the server, at `endpoint`, allowed everything) has an
    /// established session, and the server's side of it: the handshake runs in memory, so
    /// `encapsulate` produces data messages both ways.
    pub(crate) fn established(endpoint: SocketAddr, roaming: Roaming) -> (PeerTable, Tunn) {
        let (client_priv, server_priv) = (Key([1; 32]), Key([9; 32]));
        let table = PeerTable::new(
            &client_priv,
            &[PeerSpec {
                public_key: Key(PublicKey::from(&StaticSecret::from(server_priv.0)).to_bytes()),
                preshared_key: None,
                endpoint,
                allowed_ips: vec!["0.0.0.0/0".parse().unwrap()],
                persistent_keepalive: None,
            }],
            roaming,
        );
        let mut server = Tunn::new(
            StaticSecret::from(server_priv.0),
            PublicKey::from(&StaticSecret::from(client_priv.0)),
            None,
            None,
            3,
            None,
        );
        let mut buf = vec![0u8; 2048];
        let tunn = &table.peers()[0].tunn;
        let init = match tunn.lock().format_handshake_initiation(&mut buf, false) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("expected an initiation, got {other:?}"),
        };
        let response = match server.decapsulate(None, &init, &mut buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("expected a response, got {other:?}"),
        };
        let keepalive = match tunn.lock().decapsulate(None, &response, &mut buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("expected a keepalive, got {other:?}"),
        };
        let _ = server.decapsulate(None, &keepalive, &mut buf);
        assert!(tunn.lock().time_since_last_handshake().is_some());
        (table, server)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::established;
    use super::*;
    use boringtun::noise::TunnResult;

    fn key(seed: u8) -> Key {
        Key([seed; 32])
    }

    fn public_of(k: &Key) -> Key {
        Key(PublicKey::from(&StaticSecret::from(k.0)).to_bytes())
    }

    fn spec(public: Key, nets: &[&str]) -> PeerSpec {
        PeerSpec {
            public_key: public,
            preshared_key: None,
            endpoint: "192.0.2.10:51820".parse().unwrap(),
            allowed_ips: nets.iter().map(|n| n.parse().unwrap()).collect(),
            persistent_keepalive: None,
        }
    }

    #[test]
    fn longest_allowed_prefix_picks_the_peer() {
        let table = PeerTable::new(
            &key(1),
            &[
                spec(key(2), &["0.0.0.0/0", "::/0"]),
                spec(key(3), &["10.10.0.0/16"]),
                spec(key(4), &["10.10.5.0/24"]),
            ],
            Roaming::Free,
        );
        let idx = |a: &str| table.route(a.parse().unwrap()).map(|(i, _)| i);
        assert_eq!(idx("198.18.1.2"), Some(0));
        assert_eq!(idx("10.10.1.1"), Some(1));
        assert_eq!(idx("10.10.5.9"), Some(2));
        assert_eq!(idx("2001:db8::1"), Some(0));
    }

    #[test]
    fn a_peer_may_not_send_from_another_peers_addresses() {
        let table = PeerTable::new(
            &key(1),
            &[
                spec(key(2), &["10.64.1.0/24"]),
                spec(key(3), &["10.64.2.0/24"]),
            ],
            Roaming::Free,
        );
        assert!(table.allows_source(0, "10.64.1.7".parse().unwrap()));
        assert!(!table.allows_source(0, "10.64.2.7".parse().unwrap()));
        assert!(!table.allows_source(1, "198.18.0.1".parse().unwrap()));
    }

    #[test]
    fn no_route_without_a_covering_allowed_ip() {
        let table = PeerTable::new(&key(1), &[spec(key(2), &["10.64.1.0/24"])], Roaming::Free);
        assert!(table.route("10.65.0.1".parse().unwrap()).is_none());
        assert!(table.route("fd00::1".parse().unwrap()).is_none());
    }

    #[test]
    fn handshake_initiation_is_matched_to_its_peer_by_static_key() {
        // Client table with two peers; the second peer (a "server") initiates.
        let client_priv = key(1);
        let server_priv = key(9);
        let client = PeerTable::new(
            &client_priv,
            &[
                spec(key(5), &["10.1.0.0/16"]),
                spec(public_of(&server_priv), &["0.0.0.0/0"]),
            ],
            Roaming::Free,
        );
        let mut server = Tunn::new(
            StaticSecret::from(server_priv.0),
            PublicKey::from(&StaticSecret::from(client_priv.0)),
            None,
            None,
            77,
            None,
        );
        let mut buf = vec![0u8; 2048];
        let init = match server.format_handshake_initiation(&mut buf, false) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("expected an initiation, got {other:?}"),
        };
        let (idx, _) = client.for_datagram(&init).expect("peer found");
        assert_eq!(idx, 1);
        // And the whole handshake then completes through the table's session.
        let mut out = vec![0u8; 2048];
        let resp = match client.peers()[1]
            .tunn
            .lock()
            .decapsulate(None, &init, &mut out)
        {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("expected a response, got {other:?}"),
        };
        assert_eq!(
            client.for_datagram(&resp).map(|(i, _)| i),
            None,
            "a response is addressed to the initiator, not to us"
        );
        assert!(matches!(
            server.decapsulate(None, &resp, &mut out),
            TunnResult::WriteToNetwork(_) | TunnResult::Done
        ));
        assert!(server.time_since_last_handshake().is_some());
    }

    fn configured() -> SocketAddr {
        "192.0.2.10:51820".parse().unwrap()
    }

    /// A data message from the server carrying an IPv4 packet from 10.64.1.1.
    fn data_from(server: &mut Tunn) -> Vec<u8> {
        let mut packet = [0u8; 28];
        packet[0] = 0x45;
        packet[3] = 28;
        packet[8] = 64;
        packet[12..16].copy_from_slice(&[10, 64, 1, 1]);
        packet[16..20].copy_from_slice(&[10, 64, 1, 2]);
        let mut buf = vec![0u8; 2048];
        match server.encapsulate(&packet, &mut buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("expected a data message, got {other:?}"),
        }
    }

    /// What the data plane does with a datagram from `from`: decrypt, and roam if it
    /// authenticated. True when it authenticated.
    fn receive(table: &PeerTable, from: &str, datagram: &[u8]) -> bool {
        let from: SocketAddr = from.parse().unwrap();
        let peer = &table.peers()[0];
        let mut out = vec![0u8; 2048];
        let result = peer
            .tunn
            .lock()
            .decapsulate(Some(from.ip()), datagram, &mut out);
        let ok = authenticated(datagram, &result);
        if ok {
            peer.roam(from, table.roaming());
        }
        ok
    }

    #[test]
    fn an_authenticated_packet_from_a_new_source_moves_the_endpoint_there() {
        let (table, mut server) = established(configured(), Roaming::Free);
        let moved = "203.0.113.7:40001";
        assert!(receive(&table, moved, &data_from(&mut server)));
        assert_eq!(table.peers()[0].endpoint(), moved.parse().unwrap());
        // A v4-mapped source (a dual-stack socket) is the same address.
        assert!(receive(
            &table,
            "[::ffff:203.0.113.8]:40002",
            &data_from(&mut server)
        ));
        assert_eq!(
            table.peers()[0].endpoint(),
            "203.0.113.8:40002".parse().unwrap()
        );
    }

    #[test]
    fn a_packet_that_does_not_authenticate_moves_nothing() {
        let (table, mut server) = established(configured(), Roaming::Free);
        let mut forged = data_from(&mut server);
        let last = forged.len() - 1;
        forged[last] ^= 1; // the tag no longer matches
        assert!(!receive(&table, "203.0.113.66:40000", &forged));
        // A replay of a packet already received, from elsewhere, is refused by its counter.
        let data = data_from(&mut server);
        assert!(receive(&table, "192.0.2.10:51820", &data));
        assert!(!receive(&table, "203.0.113.66:40000", &data));
        assert_eq!(
            table.peers()[0].endpoint(),
            "192.0.2.10:51820".parse().unwrap()
        );
    }

    #[test]
    fn under_a_kill_switch_the_endpoint_stays_among_the_admitted_ones() {
        let admitted: Vec<SocketAddr> = vec![
            "192.0.2.10:51820".parse().unwrap(),
            "192.0.2.11:51820".parse().unwrap(),
        ];
        let (table, mut server) = established(configured(), Roaming::Within(admitted.clone()));
        // Authenticated, but to a destination the firewall refuses: not followed.
        assert!(receive(
            &table,
            "203.0.113.7:40001",
            &data_from(&mut server)
        ));
        assert_eq!(table.peers()[0].endpoint(), admitted[0]);
        // Among the admitted endpoints it roams as usual.
        assert!(receive(&table, "192.0.2.11:51820", &data_from(&mut server)));
        assert_eq!(table.peers()[0].endpoint(), admitted[1]);
    }

    #[test]
    fn roaming_is_confined_exactly_when_the_firewall_has_a_tunnel_hole() {
        use crate::firewall::{FirewallPolicy, TunnelHole};
        let endpoint: SocketAddr = "192.0.2.10:51820".parse().unwrap();
        let blocking = FirewallPolicy {
            tunnel: None,
            allow_lan: false,
            helper_dns: None,
        };
        let tunnel = FirewallPolicy {
            tunnel: Some(TunnelHole {
                interface: "underpass0".into(),
                endpoints: vec![endpoint],
                fwmark: 0x7570,
                dns: vec![],
                addresses: vec![],
                include: vec!["0.0.0.0/0".parse().unwrap()],
                exclude: vec![],
            }),
            ..blocking.clone()
        };
        assert_eq!(Roaming::under(None), Roaming::Free);
        assert_eq!(Roaming::under(Some(&blocking)), Roaming::Free);
        assert_eq!(
            Roaming::under(Some(&tunnel)),
            Roaming::Within(vec![endpoint])
        );
    }

    #[test]
    fn cookies_prove_nothing() {
        let cookie = [3u8, 0, 0, 0];
        assert!(!authenticated(&cookie, &TunnResult::Done));
        let init = [1u8, 0, 0, 0];
        // A handshake initiation answered with a cookie (boringtun under load).
        let mut reply = [3u8, 0, 0, 0];
        assert!(!authenticated(
            &init,
            &TunnResult::WriteToNetwork(&mut reply)
        ));
        let mut response = [2u8, 0, 0, 0];
        assert!(authenticated(
            &init,
            &TunnResult::WriteToNetwork(&mut response)
        ));
    }

    #[test]
    fn packet_addresses_reads_v4_and_v6_headers() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 0, 0, 1]);
        v4[16..20].copy_from_slice(&[198, 18, 0, 2]);
        assert_eq!(
            packet_addresses(&v4),
            Some(("10.0.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap()))
        );
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        assert_eq!(
            packet_addresses(&v6).unwrap().1,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(packet_addresses(&[0x45, 0, 0]), None);
    }
}
