//! Measuring servers by what matters: the round trip of a real WireGuard handshake.
//!
//! Each candidate gets its own UDP socket and its own boringtun session; an initiation goes out
//! and the clock stops when the server's response completes the handshake. All candidates run
//! at once and the whole measurement is bounded by a timeout, so a silent server costs the
//! timeout once, not once per server.
//!
//! A probe is a packet any member of the group can aim, so [`Prober`] holds it to the kill
//! switch's rules (issue 9): while a tunnel is up a probe goes *through* it, and a candidate the
//! tunnel does not carry is refused, so no probe ever shows the real address; with no tunnel
//! and the kill switch blocking, exactly the candidates of this measurement are admitted, for
//! its length, in the firewall's measurement sets. Candidates are validated, each user has a
//! request budget, and results are cached in a bounded LRU keyed by everything that affects
//! them (endpoint, all keys, route).

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use lru::LruCache;
use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use underpass_proto::{ErrorBody, ErrorCode, ProbeCandidate, ProbeResult, MAX_PROBE_CANDIDATES};

use super::{resolve_endpoint, Resolvers};
use crate::firewall::{Firewall, PlatformFirewall, TunnelHole, HELPER_MARK};
use crate::limits::PerUid;

/// How long one probe waits for a handshake response, and how long its result is reused.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const CACHE_FOR: Duration = Duration::from_secs(30);
/// Results kept: a few full measurements' worth. Each entry is a few hundred bytes.
const CACHE_ENTRIES: usize = 256;
/// Requests per user: a burst (the app measures once per Connect, in a few batches), then one
/// every two seconds.
const BURST: u32 = 8;
const REFILL: Duration = Duration::from_secs(2);
const MAX_ID_LEN: usize = 128;
/// A DNS name (253) plus `:port`, with room for brackets.
const MAX_ENDPOINT_LEN: usize = 262;

/// How probes may leave, decided from the helper's state when the request arrives.
#[derive(Debug, Clone)]
pub enum Route {
    /// A tunnel is up: probes go through it (unmarked, so its policy routing takes them), and
    /// a candidate it does not carry is refused.
    Tunnel(TunnelHole),
    /// No tunnel. While the kill switch blocks, the candidates are admitted to its measurement
    /// sets first and the probes carry [`HELPER_MARK`]; their names are looked up `via` the
    /// helper's own resolvers then (the kill switch admits those), else the system's.
    Direct { blocking: bool, via: Resolvers },
}

impl Route {
    fn tag(&self) -> String {
        match self {
            Route::Tunnel(hole) => format!("tunnel {}", hole.interface),
            Route::Direct { .. } => "direct".into(),
        }
    }
}

/// The helper's one prober: bounded cache, per-user budget.
pub struct Prober {
    cache: Mutex<LruCache<u64, (ProbeResult, Instant)>>,
    budget: Mutex<PerUid>,
    /// Keys are hashed with a per-process secret, so the cache holds no key material.
    hasher: RandomState,
}

impl Default for Prober {
    fn default() -> Self {
        Prober {
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_ENTRIES).expect("nonzero"),
            )),
            budget: Mutex::new(PerUid::new(BURST, REFILL)),
            hasher: RandomState::new(),
        }
    }
}

impl Prober {
    /// Measures `candidates` for `uid`; results younger than [`CACHE_FOR`] are reused.
    pub async fn measure(
        &self,
        uid: u32,
        candidates: Vec<ProbeCandidate>,
        route: Route,
    ) -> Result<Vec<ProbeResult>, ErrorBody> {
        validate(&candidates)?;
        if let Err(wait) = self.budget.lock().take(uid, Instant::now()) {
            return Err(ErrorBody::new(
                ErrorCode::Busy,
                format!(
                    "too many server measurements from uid {uid}; try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let tag = route.tag();
        let key = |c: &ProbeCandidate| {
            self.hasher.hash_one((
                &c.endpoint,
                &c.public_key,
                &c.private_key,
                &c.preshared_key,
                &tag,
            ))
        };
        let cached = |c: &ProbeCandidate| {
            let mut cache = self.cache.lock();
            cache
                .get(&key(c))
                .filter(|(_, at)| at.elapsed() < CACHE_FOR)
                .map(|(r, _)| ProbeResult {
                    id: c.id.clone(),
                    ..r.clone()
                })
        };
        let fresh: Vec<ProbeCandidate> = candidates
            .iter()
            .filter(|c| cached(c).is_none())
            .cloned()
            .collect();
        let measured = measure_on(fresh.clone(), &route).await;
        {
            let mut cache = self.cache.lock();
            for (c, r) in fresh.iter().zip(&measured) {
                cache.put(key(c), (r.clone(), Instant::now()));
            }
        }
        Ok(candidates
            .iter()
            .map(|c| cached(c).unwrap_or_else(|| failed(&c.id, None, "not measured".into())))
            .collect())
    }
}

fn validate(candidates: &[ProbeCandidate]) -> Result<(), ErrorBody> {
    let invalid = |m: String| Err(ErrorBody::new(ErrorCode::InvalidConfig, m));
    if candidates.len() > MAX_PROBE_CANDIDATES {
        return invalid(format!("at most {MAX_PROBE_CANDIDATES} servers per probe"));
    }
    for (i, c) in candidates.iter().enumerate() {
        if c.id.is_empty() || c.id.len() > MAX_ID_LEN || c.id.chars().any(char::is_control) {
            return invalid(format!(
                "candidates[{i}].id: 1 to {MAX_ID_LEN} bytes without control characters"
            ));
        }
        if c.endpoint.len() > MAX_ENDPOINT_LEN || c.endpoint.chars().any(char::is_control) {
            return invalid(format!(
                "candidates[{i}].endpoint: at most {MAX_ENDPOINT_LEN} bytes without control characters"
            ));
        }
    }
    Ok(())
}

/// Why a resolved endpoint is not one to send a handshake to, if it is not.
fn unfit(endpoint: SocketAddr) -> Option<&'static str> {
    let ip = endpoint.ip().to_canonical();
    if endpoint.port() == 0 {
        Some("port 0")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_multicast() || ip == std::net::IpAddr::from([255, 255, 255, 255]) {
        Some("a multicast or broadcast address")
    } else {
        None
    }
}

fn failed(id: &str, endpoint: Option<SocketAddr>, error: String) -> ProbeResult {
    ProbeResult {
        id: id.to_string(),
        endpoint,
        rtt_ms: None,
        error: Some(error),
    }
}

/// Resolves and checks every candidate, opens the kill switch for the ones that may go, and
/// measures those; the result order follows the input.
async fn measure_on(candidates: Vec<ProbeCandidate>, route: &Route) -> Vec<ProbeResult> {
    let mut results = Vec::with_capacity(candidates.len());
    let mut go = Vec::new();
    for c in candidates {
        let via = match route {
            Route::Direct {
                blocking: true,
                via,
            } => via,
            _ => &Resolvers::System,
        };
        let endpoint = match resolve_endpoint(&c.endpoint, via).await {
            Ok(e) => e,
            Err(e) => {
                results.push(Some(failed(&c.id, None, format!("{e:#}"))));
                continue;
            }
        };
        let refusal = match (unfit(endpoint), route) {
            (Some(why), _) => Some(format!("refused: {endpoint} is {why}")),
            (None, Route::Tunnel(hole)) if !hole.routes_into_tunnel(endpoint.ip()) => {
                Some(format!(
                "refused: {endpoint} is not carried by the tunnel, and a probe around it would \
                 show your real address"
            ))
            }
            _ => None,
        };
        match refusal {
            Some(why) => {
                tracing::warn!(%endpoint, "server probe refused: {why}");
                results.push(Some(failed(&c.id, Some(endpoint), why)));
            }
            None => {
                results.push(None);
                go.push((c, endpoint));
            }
        }
    }
    let mark = match route {
        Route::Tunnel(_) => None,
        Route::Direct {
            blocking: false, ..
        } => None,
        Route::Direct { blocking: true, .. } => {
            let targets: Vec<SocketAddr> = go.iter().map(|(_, e)| *e).collect();
            let admitted = async {
                PlatformFirewall::open()
                    .await?
                    .admit_probes(&targets, PROBE_TIMEOUT + Duration::from_secs(1))
                    .await
            };
            if let Err(e) = admitted.await {
                let why = format!("the kill switch could not admit the measurement: {e:#}");
                for (c, e) in go.drain(..) {
                    let slot = results.iter_mut().find(|r| r.is_none());
                    *slot.expect("a slot per candidate") =
                        Some(failed(&c.id, Some(e), why.clone()));
                }
            }
            Some(HELPER_MARK)
        }
    };
    let mut measured = probe_all(go, mark, PROBE_TIMEOUT).await.into_iter();
    results
        .into_iter()
        .map(|r| {
            r.or_else(|| measured.next())
                .expect("one result per candidate")
        })
        .collect()
}

/// Measures every resolved candidate in parallel; the result order follows the input.
pub async fn probe_all(
    candidates: Vec<(ProbeCandidate, SocketAddr)>,
    fwmark: Option<u32>,
    timeout: Duration,
) -> Vec<ProbeResult> {
    let tasks: Vec<_> = candidates
        .into_iter()
        .map(|(c, e)| {
            let id = c.id.clone();
            (id, e, tokio::spawn(probe_one(c, e, fwmark, timeout)))
        })
        .collect();
    let mut results = Vec::new();
    for (id, endpoint, t) in tasks {
        results.push(t.await.unwrap_or_else(|e| {
            failed(&id, Some(endpoint), format!("the probe task failed: {e}"))
        }));
    }
    results
}

async fn probe_one(
    c: ProbeCandidate,
    endpoint: SocketAddr,
    fwmark: Option<u32>,
    timeout: Duration,
) -> ProbeResult {
    let mut result = ProbeResult {
        id: c.id.clone(),
        endpoint: Some(endpoint),
        rtt_ms: None,
        error: None,
    };
    match tokio::time::timeout(timeout, handshake(&c, endpoint, fwmark)).await {
        Ok(Ok(rtt)) => result.rtt_ms = Some(rtt.as_secs_f64() * 1000.0),
        Ok(Err(e)) => result.error = Some(e.to_string()),
        Err(_) => {
            result.error = Some(format!(
                "no handshake response within {} ms",
                timeout.as_millis()
            ))
        }
    }
    result
}

async fn handshake(
    c: &ProbeCandidate,
    endpoint: SocketAddr,
    fwmark: Option<u32>,
) -> std::io::Result<Duration> {
    let socket = bind(endpoint, fwmark)?;
    let mut tunn = Tunn::new(
        StaticSecret::from(c.private_key.0),
        PublicKey::from(c.public_key.0),
        c.preshared_key.as_ref().map(|k| k.0),
        None,
        rand::random::<u32>() >> 8,
        None,
    );
    let mut buf = vec![0u8; 2048];
    let init = match tunn.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        _ => {
            return Err(std::io::Error::other(
                "could not build a handshake initiation",
            ))
        }
    };
    let started = Instant::now();
    socket.send_to(&init, endpoint).await?;
    let mut recv = vec![0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut recv).await?;
        if from.ip().to_canonical() != endpoint.ip().to_canonical() {
            continue;
        }
        let _ = tunn.decapsulate(Some(from.ip()), &recv[..n], &mut buf);
        if tunn.time_since_last_handshake().is_some() {
            return Ok(started.elapsed());
        }
    }
}

fn bind(endpoint: SocketAddr, fwmark: Option<u32>) -> std::io::Result<UdpSocket> {
    let (domain, any): (Domain, SocketAddr) = if endpoint.is_ipv4() {
        (Domain::IPV4, "0.0.0.0:0".parse().expect("literal"))
    } else {
        (Domain::IPV6, "[::]:0".parse().expect("literal"))
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(mark) = fwmark {
        super::set_mark(&socket, mark)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&any.into())?;
    UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use underpass_proto::Key;

    /// A boringtun responder on loopback stands in for a server.
    #[tokio::test]
    async fn a_responding_server_gets_a_round_trip_and_a_silent_one_an_error() {
        let server_secret = StaticSecret::from([9u8; 32]);
        let client_secret = StaticSecret::from([1u8; 32]);
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let client_public = PublicKey::from(&client_secret);
        std::thread::spawn(move || {
            let mut tunn = Tunn::new(server_secret, client_public, None, None, 5, None);
            let mut buf = [0u8; 2048];
            let mut out = [0u8; 2048];
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            if let Ok((n, from)) = server.recv_from(&mut buf) {
                if let TunnResult::WriteToNetwork(p) = tunn.decapsulate(None, &buf[..n], &mut out) {
                    server.send_to(p, from).unwrap();
                }
            }
        });
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let candidate = |id: &str, endpoint: SocketAddr| ProbeCandidate {
            id: id.into(),
            endpoint: endpoint.to_string(),
            public_key: Key(PublicKey::from(&StaticSecret::from([9u8; 32])).to_bytes()),
            private_key: Key([1u8; 32]),
            preshared_key: None,
        };
        let silent = silent.local_addr().unwrap();
        let results = probe_all(
            vec![
                (candidate("live", addr), addr),
                (candidate("silent", silent), silent),
            ],
            None,
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(results[0].id, "live");
        assert!(results[0].rtt_ms.is_some(), "{:?}", results[0]);
        assert!(results[1].rtt_ms.is_none());
        assert!(results[1].error.as_deref().unwrap().contains("500 ms"));
    }

    fn candidate(id: &str, endpoint: &str, private: u8) -> ProbeCandidate {
        ProbeCandidate {
            id: id.into(),
            endpoint: endpoint.into(),
            public_key: Key([2u8; 32]),
            private_key: Key([private; 32]),
            preshared_key: None,
        }
    }

    #[tokio::test]
    async fn candidates_the_tunnel_does_not_carry_or_that_point_home_are_refused() {
        let split = TunnelHole {
            interface: "underpass0".into(),
            endpoints: vec![],
            fwmark: 0x7570,
            dns: vec![],
            addresses: vec![],
            include: vec!["198.18.1.0/24".parse().unwrap()],
            exclude: vec![],
        };
        let prober = Prober::default();
        let results = prober
            .measure(
                1000,
                vec![
                    candidate("outside", "203.0.113.7:51820", 1),
                    candidate("loopback", "127.0.0.1:51820", 1),
                    candidate("port0", "198.18.1.9:0", 1),
                ],
                Route::Tunnel(split),
            )
            .await
            .unwrap();
        let error = |i: usize| results[i].error.clone().unwrap();
        assert!(
            error(0).contains("not carried by the tunnel"),
            "{}",
            error(0)
        );
        assert!(error(1).contains("loopback"), "{}", error(1));
        assert!(error(2).contains("port 0"), "{}", error(2));
    }

    #[tokio::test]
    async fn each_user_gets_a_budget_and_bad_fields_are_named() {
        let prober = Prober::default();
        let mut bad = candidate("x", "203.0.113.7:51820", 1);
        bad.id = "a\u{202e}b\n".into();
        let e = prober
            .measure(
                1000,
                vec![bad],
                Route::Direct {
                    blocking: false,
                    via: Resolvers::System,
                },
            )
            .await
            .unwrap_err();
        assert!(e.message.contains("candidates[0].id"), "{}", e.message);
        let home = || vec![candidate("loopback", "127.0.0.1:51820", 1)];
        for _ in 0..BURST {
            prober
                .measure(
                    1000,
                    home(),
                    Route::Direct {
                        blocking: false,
                        via: Resolvers::System,
                    },
                )
                .await
                .unwrap();
        }
        let e = prober
            .measure(
                1000,
                home(),
                Route::Direct {
                    blocking: false,
                    via: Resolvers::System,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Busy);
        assert!(prober
            .measure(
                1001,
                home(),
                Route::Direct {
                    blocking: false,
                    via: Resolvers::System
                }
            )
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn the_cache_is_keyed_by_the_private_key_too_and_bounded() {
        let prober = Prober::default();
        let route = || Route::Direct {
            blocking: false,
            via: Resolvers::System,
        };
        let one = candidate("a", "127.0.0.1:51820", 1);
        let other_key = candidate("a", "127.0.0.1:51820", 3);
        prober.measure(0, vec![one.clone()], route()).await.unwrap();
        assert_eq!(prober.cache.lock().len(), 1);
        prober.measure(0, vec![one], route()).await.unwrap();
        assert_eq!(prober.cache.lock().len(), 1, "same everything: reused");
        prober.measure(0, vec![other_key], route()).await.unwrap();
        assert_eq!(
            prober.cache.lock().len(),
            2,
            "another private key: measured again"
        );
        for n in 0..(CACHE_ENTRIES as u32 + 50) {
            let c = candidate("n", &format!("127.0.0.1:{}", 1000 + n % 60000), 1);
            let key = prober.hasher.hash_one(n);
            prober
                .cache
                .lock()
                .put(key, (failed(&c.id, None, "x".into()), Instant::now()));
        }
        assert_eq!(prober.cache.lock().len(), CACHE_ENTRIES);
    }
}
