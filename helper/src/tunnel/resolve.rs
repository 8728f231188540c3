//! Endpoint names, resolved by the helper itself (issue 8).
//!
//! A hostname endpoint must resolve when the kill switch blocks (lockdown with no tunnel, a
//! reconnect with a dead one), and no other process may get a way past it for that. So the
//! helper does not ask the system's resolver library, whose packets are anyone's: it sends its
//! own queries, with hickory-resolver, from sockets carrying [`HELPER_MARK`] (only CAP_NET_ADMIN
//! can set a mark), to the resolvers the system had before the tunnel. The kill switch admits
//! exactly that (marked UDP and TCP to those addresses, port 53), and a policy rule sends the
//! marked packets to the main table, so they take the physical path like the encrypted UDP.
//!
//! Each lookup builds a fresh resolver: nothing is cached between attempts, so a reconnect
//! that resolves again (rung 2 of the ladder) follows a name that moved.
//!
//! Where the firewall admits the helper by its identity instead of a mark (macOS: its uid;
//! Windows: its app id), the DNS backend names no system resolvers, and the system's resolver
//! library is used as before.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts, ServerOrderingStrategy,
};
use hickory_resolver::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_resolver::net::runtime::{RuntimeProvider, TokioHandle, TokioTime};
use hickory_resolver::Resolver;
use socket2::{Domain, Protocol, Socket, Type};

use crate::firewall::{HELPER_DNS_PORT, HELPER_MARK};

/// The whole lookup, A and AAAA, over every server (it runs beside the daemon's actor, which
/// drops it sooner for a newer Connect or a Disconnect).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// One query to one server; with [`ATTEMPTS`], a dead first server leaves time for a second.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 2;

/// Where endpoint names are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolvers {
    /// The system's resolver library (getaddrinfo): where the firewall admits the helper by
    /// identity, and for probes through a live tunnel (whose DNS then answers).
    System,
    /// These servers, asked directly, from sockets with `mark` when given.
    Servers {
        servers: Vec<SocketAddr>,
        mark: Option<u32>,
    },
}

impl Resolvers {
    /// The helper's own lookups: the system's resolvers from before the tunnel, with the
    /// helper's mark; the system library when there are none to name (none configured, only
    /// local ones, or an OS that admits the helper by identity).
    pub fn helper(system: Vec<IpAddr>) -> Resolvers {
        if system.is_empty() {
            return Resolvers::System;
        }
        Resolvers::Servers {
            servers: system
                .into_iter()
                .map(|ip| SocketAddr::new(ip, HELPER_DNS_PORT))
                .collect(),
            mark: Some(HELPER_MARK),
        }
    }
}

/// Resolves `host:port` (or a literal `addr:port` / `[v6]:port`, which needs no lookup). Before
/// any route of the new session exists, so the lookup cannot go through the tunnel that it is
/// needed to build.
pub async fn resolve_endpoint(endpoint: &str, via: &Resolvers) -> Result<SocketAddr> {
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = split_host_port(endpoint)?;
    let lookup = async {
        match via {
            Resolvers::System => Ok(tokio::net::lookup_host((host, port))
                .await?
                .map(|a| a.ip())
                .collect()),
            Resolvers::Servers { servers, mark } => lookup_direct(host, servers, *mark).await,
        }
    };
    let addrs: Vec<IpAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| {
            anyhow!("resolving endpoint {endpoint}: no answer within {RESOLVE_TIMEOUT:?}")
        })?
        .with_context(|| format!("resolving endpoint {endpoint} ({})", describe(via)))?;
    let ip =
        preferred(&addrs).ok_or_else(|| anyhow!("endpoint {endpoint} resolves to no address"))?;
    Ok(SocketAddr::new(ip, port))
}

/// `name:port` split, with a clear error for what is neither that nor a literal address.
fn split_host_port(endpoint: &str) -> Result<(&str, u16)> {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        bail!("endpoint {endpoint}: expected host:port");
    };
    if host.is_empty() || host.contains(':') || host.starts_with('[') {
        bail!("endpoint {endpoint}: expected host:port, or [IPv6 address]:port");
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| anyhow!("endpoint {endpoint}: the port must be 1 to 65535"))?;
    Ok((host, port))
}

/// IPv4 first: it works on more networks, and the choice is stable.
fn preferred(addrs: &[IpAddr]) -> Option<IpAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

fn describe(via: &Resolvers) -> String {
    match via {
        Resolvers::System => "through the system resolver".to_string(),
        Resolvers::Servers { servers, .. } => {
            let list: Vec<String> = servers.iter().map(|s| s.ip().to_string()).collect();
            format!("asked {}", list.join(", "))
        }
    }
}

/// What the lookup is told: these servers only, no search list (an endpoint name is taken as
/// it is), /etc/hosts first as getaddrinfo would, A and AAAA in parallel, bounded retries, no
/// cache worth keeping (the resolver lives for one lookup).
fn config(servers: &[SocketAddr]) -> (ResolverConfig, ResolverOpts) {
    let name_servers = servers
        .iter()
        .map(|s| {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = s.port();
                    c
                })
                .collect();
            NameServerConfig::new(s.ip(), true, connections)
        })
        .collect();
    let mut opts = ResolverOpts::default();
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = ATTEMPTS;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.use_hosts_file = ResolveHosts::Always;
    opts.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
    opts.cache_size = 0;
    (ResolverConfig::from_parts(None, vec![], name_servers), opts)
}

async fn lookup_direct(
    host: &str,
    servers: &[SocketAddr],
    mark: Option<u32>,
) -> Result<Vec<IpAddr>> {
    let (config, opts) = config(servers);
    let resolver = Resolver::builder_with_config(config, MarkedRuntime::new(mark))
        .with_options(opts)
        .build()
        .context("building the helper's resolver")?;
    let answer = resolver.lookup_ip(host).await?;
    Ok(answer.iter().collect())
}

/// hickory's tokio runtime, except that every socket it opens carries the mark.
#[derive(Clone, Default)]
struct MarkedRuntime {
    handle: TokioHandle,
    mark: Option<u32>,
}

impl MarkedRuntime {
    fn new(mark: Option<u32>) -> MarkedRuntime {
        MarkedRuntime {
            handle: TokioHandle::default(),
            mark,
        }
    }

    fn socket(&self, peer: SocketAddr, udp: bool) -> io::Result<Socket> {
        let domain = Domain::for_address(peer);
        let socket = if udp {
            Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?
        } else {
            Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?
        };
        if let Some(mark) = self.mark {
            super::set_mark(&socket, mark)?;
        }
        socket.set_nonblocking(true)?;
        Ok(socket)
    }
}

type Boxed<T> = Pin<Box<dyn Send + Future<Output = io::Result<T>>>>;

impl RuntimeProvider for MarkedRuntime {
    type Handle = TokioHandle;
    type Timer = TokioTime;
    type Udp = tokio::net::UdpSocket;
    type Tcp = AsyncIoTokioAsStd<tokio::net::TcpStream>;

    fn create_handle(&self) -> TokioHandle {
        self.handle.clone()
    }

    fn connect_tcp(
        &self,
        server: SocketAddr,
        bind: Option<SocketAddr>,
        wait: Option<Duration>,
    ) -> Boxed<Self::Tcp> {
        let socket = self.socket(server, false);
        Box::pin(async move {
            let socket = socket?;
            if let Some(b) = bind {
                socket.bind(&b.into())?;
            }
            socket.set_tcp_nodelay(true)?;
            let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
            let stream =
                tokio::time::timeout(wait.unwrap_or(QUERY_TIMEOUT), socket.connect(server))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out")
                    })??;
            Ok(AsyncIoTokioAsStd(stream))
        })
    }

    fn bind_udp(&self, local: SocketAddr, server: SocketAddr) -> Boxed<Self::Udp> {
        let socket = self.socket(server, true).and_then(|s| {
            s.bind(&local.into())?;
            tokio::net::UdpSocket::from_std(s.into())
        });
        Box::pin(async move { socket })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, AAAA};
    use hickory_resolver::proto::rr::{RData, Record, RecordType};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn literal_endpoints_need_no_lookup() {
        for via in [
            Resolvers::System,
            Resolvers::helper(vec!["192.0.2.53".parse().unwrap()]),
        ] {
            assert_eq!(
                resolve_endpoint("192.0.2.10:51820", &via).await.unwrap(),
                "192.0.2.10:51820".parse().unwrap()
            );
            assert_eq!(
                resolve_endpoint("[2001:db8::1]:51820", &via).await.unwrap(),
                "[2001:db8::1]:51820".parse().unwrap()
            );
        }
    }

    #[tokio::test]
    async fn the_system_library_resolves_hostnames() {
        let addr = resolve_endpoint("localhost:51820", &Resolvers::System)
            .await
            .unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 51820);
    }

    #[tokio::test]
    async fn an_unresolvable_endpoint_names_itself() {
        let err = resolve_endpoint("no-such-host.invalid:51820", &Resolvers::System)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("no-such-host.invalid:51820"));
    }

    #[test]
    fn malformed_endpoints_say_what_is_expected() {
        for (bad, why) in [
            ("vpn.example.net", "expected host:port"),
            (":51820", "expected host:port"),
            ("2001:db8::1:51820", "[IPv6 address]:port"),
            ("vpn.example.net:0", "1 to 65535"),
            ("vpn.example.net:99999", "1 to 65535"),
        ] {
            let err = split_host_port(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            split_host_port("vpn.example.net:51820").unwrap(),
            ("vpn.example.net", 51820)
        );
    }

    #[test]
    fn the_helper_asks_the_system_resolvers_on_port_53_with_its_mark() {
        assert_eq!(Resolvers::helper(vec![]), Resolvers::System);
        assert_eq!(
            Resolvers::helper(vec![
                "198.51.100.53".parse().unwrap(),
                "2001:db8::53".parse().unwrap()
            ]),
            Resolvers::Servers {
                servers: vec![
                    "198.51.100.53:53".parse().unwrap(),
                    "[2001:db8::53]:53".parse().unwrap()
                ],
                mark: Some(HELPER_MARK),
            }
        );
    }

    #[test]
    fn ipv4_is_preferred_and_the_first_address_otherwise() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(preferred(&[v6, v4]), Some(v4));
        assert_eq!(preferred(&[v6]), Some(v6));
        assert_eq!(preferred(&[]), None);
    }

    /// A DNS server on loopback that answers `A` and `AAAA` for one name, and counts queries.
    async fn dns_server(answers: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let counted = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                counted.fetch_add(1, Ordering::SeqCst);
                if !answers {
                    continue;
                }
                let query = Message::from_vec(&buf[..n]).unwrap();
                let mut reply = Message::new(query.id, MessageType::Response, query.op_code);
                reply.metadata.recursion_desired = true;
                reply.metadata.recursion_available = true;
                reply.metadata.response_code = ResponseCode::NoError;
                for q in &query.queries {
                    reply.add_query(q.clone());
                    let rdata = match q.query_type() {
                        RecordType::A => RData::A(A::new(192, 0, 2, 77)),
                        RecordType::AAAA => {
                            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 77))
                        }
                        _ => continue,
                    };
                    reply.add_answer(Record::from_rdata(q.name().clone(), 60, rdata));
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        (addr, queries)
    }

    #[tokio::test]
    async fn hostnames_are_resolved_by_asking_the_given_servers_directly() {
        let (server, queries) = dns_server(true).await;
        let via = Resolvers::Servers {
            servers: vec![server],
            mark: None,
        };
        let addr = resolve_endpoint("vpn.underpass.test:51820", &via)
            .await
            .unwrap();
        assert_eq!(addr, "192.0.2.77:51820".parse().unwrap());
        assert_eq!(
            queries.load(Ordering::SeqCst),
            2,
            "one A and one AAAA query"
        );
    }

    #[tokio::test]
    async fn a_silent_resolver_fails_within_the_bound_and_is_named() {
        let (server, queries) = dns_server(false).await;
        let via = Resolvers::Servers {
            servers: vec![server],
            mark: None,
        };
        let started = std::time::Instant::now();
        let err = resolve_endpoint("vpn.underpass.test:51820", &via)
            .await
            .unwrap_err();
        assert!(started.elapsed() <= RESOLVE_TIMEOUT + Duration::from_secs(1));
        let err = format!("{err:#}");
        assert!(err.contains("vpn.underpass.test:51820"), "{err}");
        assert!(
            queries.load(Ordering::SeqCst) >= 2,
            "it asked, more than once"
        );
    }
}
