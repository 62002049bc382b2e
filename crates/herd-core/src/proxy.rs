//! The PROXY protocol on accepted connections: a load balancer (HAProxy `send-proxy` or
//! `send-proxy-v2`, AWS NLB, ...) writes a header with the client's real address before the
//! client's first byte, and herd takes that address as the connection's peer.
//!
//! [`ProxyProtocol`] in [`Options::proxy_protocol`](crate::Options::proxy_protocol) turns it on
//! for every connection of a server. The header is a read-side stage below TLS and the codec
//! (`conn/transport.rs`): the loop peeks at the socket (`MSG_PEEK`) until a whole header is
//! there, then consumes exactly its bytes, so what follows (a TLS ClientHello, an HTTP
//! request) is read by the next stage as if the header had never been sent, and no bytes need
//! to be handed from one stage to the other. Until the header is complete the handler has not
//! seen the connection (`on_open` runs afterwards, with [`Conn::peer_addr`](crate::Conn::peer_addr)
//! already the client's), so access logs, `max_connections_per_ip`, flood guards and metrics
//! all key on the real client. [`Conn::socket_addr`](crate::Conn::socket_addr) keeps the
//! balancer's address and [`Conn::proxy_header`](crate::Conn::proxy_header) the whole header
//! (its TLVs: ALPN, SNI, unique id).
//!
//! A header from a source outside [`ProxyProtocol::trusted`] is refused at accept (anyone could
//! otherwise claim any address); a header that is malformed, too long, or does not arrive
//! within [`ProxyProtocol::timeout`] closes the connection. Each is counted by reason in
//! [`Stats::proxy_failed`](crate::Stats::proxy_failed) and logged at debug level (a scanner
//! must not flood the log). A `LOCAL` header (the balancer's own health check) and `UNKNOWN`
//! keep the socket's address.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// PROXY protocol settings of a server.
///
/// ```
/// use herd_core::proxy::ProxyProtocol;
///
/// let p = ProxyProtocol {
///     trusted: vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
///     ..ProxyProtocol::default()
/// };
/// assert!(p.trusts("10.1.2.3".parse().unwrap()));
/// assert!(!p.trusts("192.0.2.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Sources allowed to send a header; empty: any source (only safe when nothing but the
    /// balancer can reach the port). Default: empty.
    pub trusted: Vec<Network>,
    /// The header must be complete within this long after accept. Default: 5 s.
    pub timeout: Duration,
    /// Largest version 2 header accepted, fixed part included (version 1 is always at most
    /// 107 bytes). Default: 4096, room for every address block plus TLS details and ids.
    pub max_len: usize,
}

impl Default for ProxyProtocol {
    fn default() -> Self {
        ProxyProtocol {
            trusted: Vec::new(),
            timeout: Duration::from_secs(5),
            max_len: 4096,
        }
    }
}

impl ProxyProtocol {
    /// Whether a connection from `ip` may send a header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.is_empty() || self.trusted.iter().any(|n| n.contains(ip))
    }
}

/// An IP network: an address and a prefix length, written `10.0.0.0/8`, `2001:db8::/32`, or a
/// bare address for a single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// The network of `addr` with `prefix` leading bits (at most 32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Network> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Network { addr, prefix })
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what
    /// a dual-stack socket reports) matches the IPv4 network it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Network, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}`: not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a PROXY header was not taken, for [`Stats::proxy_failed`](crate::Stats::proxy_failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The first bytes were not a PROXY header (a client that skipped the balancer).
    NotProxy,
    /// Longer than allowed.
    TooLong,
    /// A malformed version 1 line.
    BadV1,
    /// A malformed version 2 header.
    BadV2,
    /// From a source outside `trusted` (refused at accept).
    Untrusted,
    /// Not complete within the timeout.
    Timeout,
    /// The peer closed before the header was complete.
    Eof,
}

/// Number of [`ProxyFailure`] kinds (size of `Stats::proxy_failed`).
pub const PROXY_FAILURES: usize = 7;

impl ProxyFailure {
    /// Every kind, in index order.
    pub const ALL: [ProxyFailure; PROXY_FAILURES] = [
        ProxyFailure::NotProxy,
        ProxyFailure::TooLong,
        ProxyFailure::BadV1,
        ProxyFailure::BadV2,
        ProxyFailure::Untrusted,
        ProxyFailure::Timeout,
        ProxyFailure::Eof,
    ];

    /// Index into `Stats::proxy_failed`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyFailure::NotProxy => "not_proxy",
            ProxyFailure::TooLong => "too_long",
            ProxyFailure::BadV1 => "bad_v1",
            ProxyFailure::BadV2 => "bad_v2",
            ProxyFailure::Untrusted => "untrusted",
            ProxyFailure::Timeout => "timeout",
            ProxyFailure::Eof => "eof",
        }
    }

    pub(crate) fn of(e: &herd_proto::proxy::ProxyError) -> ProxyFailure {
        use herd_proto::proxy::ProxyError;
        match e {
            ProxyError::NotProxy => ProxyFailure::NotProxy,
            ProxyError::TooLong => ProxyFailure::TooLong,
            ProxyError::BadV1(_) => ProxyFailure::BadV1,
            ProxyError::BadV2(_) => ProxyFailure::BadV2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.255.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.1.1".parse().unwrap()), "v4-mapped");
        let host: Network = "127.0.0.1".parse().unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let all6: Network = "::/0".parse().unwrap();
        assert!(all6.contains("::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        assert_eq!(Network::new("::1".parse().unwrap(), 129), None);
        assert!(ProxyProtocol::default().trusts("192.0.2.1".parse().unwrap()));
        for (i, f) in ProxyFailure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
    }
}
