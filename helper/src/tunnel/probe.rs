//! Measuring servers by what matters: the round trip of a real WireGuard handshake.
//!
//! Each candidate gets its own UDP socket and its own boringtun session; an initiation goes out
//! and the clock stops when the server's response completes the handshake. All candidates run
//! at once and the whole measurement is bounded by a timeout, so a silent server costs the
//! timeout once, not once per server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use underpass_proto::{ProbeCandidate, ProbeResult};

use super::resolve_endpoint;

/// Measures every candidate in parallel; the result order follows the input.
pub async fn probe_all(
    candidates: Vec<ProbeCandidate>,
    fwmark: Option<u32>,
    timeout: Duration,
) -> Vec<ProbeResult> {
    let tasks = candidates
        .into_iter()
        .map(|c| tokio::spawn(probe_one(c, fwmark, timeout)));
    let mut results = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            results.push(r);
        }
    }
    results
}

async fn probe_one(c: ProbeCandidate, fwmark: Option<u32>, timeout: Duration) -> ProbeResult {
    let mut result = ProbeResult {
        id: c.id.clone(),
        endpoint: None,
        rtt_ms: None,
        error: None,
    };
    let endpoint = match resolve_endpoint(&c.endpoint).await {
        Ok(e) => e,
        Err(e) => {
            result.error = Some(format!("{e:#}"));
            return result;
        }
    };
    result.endpoint = Some(endpoint);
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
        set_mark(&socket, mark)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&any.into())?;
    UdpSocket::from_std(socket.into())
}

/// With a tunnel up, the probe carries the helper's mark so it goes to the real network.
#[cfg(target_os = "linux")]
fn set_mark(socket: &Socket, mark: u32) -> std::io::Result<()> {
    socket.set_mark(mark)
}

#[cfg(not(target_os = "linux"))]
fn set_mark(_socket: &Socket, _mark: u32) -> std::io::Result<()> {
    Ok(())
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
        let results = probe_all(
            vec![
                candidate("live", addr),
                candidate("silent", silent.local_addr().unwrap()),
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
}
