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
use underpass_proto::Key;

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
    pub endpoint: SocketAddr,
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
}

/// The session index boringtun puts in the upper 24 bits of every receiver index.
fn peer_of_receiver_index(idx: u32) -> usize {
    (idx >> 8) as usize
}

impl PeerTable {
    pub fn new(private_key: &Key, specs: &[PeerSpec]) -> PeerTable {
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
                endpoint: spec.endpoint,
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
        }
    }

    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.peers
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

    /// Total encrypted bytes (rx, tx) over all peers.
    pub fn totals(&self) -> (u64, u64) {
        self.peers.iter().fold((0, 0), |(rx, tx), p| {
            (
                rx + p.rx_bytes.load(Ordering::Relaxed),
                tx + p.tx_bytes.load(Ordering::Relaxed),
            )
        })
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

#[cfg(test)]
mod tests {
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
        );
        assert!(table.allows_source(0, "10.64.1.7".parse().unwrap()));
        assert!(!table.allows_source(0, "10.64.2.7".parse().unwrap()));
        assert!(!table.allows_source(1, "198.18.0.1".parse().unwrap()));
    }

    #[test]
    fn no_route_without_a_covering_allowed_ip() {
        let table = PeerTable::new(&key(1), &[spec(key(2), &["10.64.1.0/24"])]);
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
