//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer writes at the
//! start of a connection to pass on the client's real address. Sans-IO: [`decode`] looks at
//! the bytes read so far and says "need more", "here is the header and its length", or why the
//! bytes are not one.
//!
//! - Version 1 is one text line of at most 107 bytes:
//!   `PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n` (`TCP6` for IPv6, `UNKNOWN` when the
//!   balancer does not know, in which case the rest of the line is ignored).
//! - Version 2 is binary: a 12-byte signature, version and command (`LOCAL`: a health check
//!   of the balancer itself, use the socket's addresses; `PROXY`), address family and
//!   transport, a 16-bit length, then the addresses (IPv4, IPv6, or two 108-byte UNIX paths)
//!   and type-length-value extensions (ALPN, authority, TLS details, unique id, ...), which
//!   are kept as they are for the application.
//!
//! Strictness: the decoder fails as soon as the bytes seen so far cannot start a header (so a
//! client that talks HTTP straight to a PROXY listener is refused at its first byte, not after
//! a timeout); a v1 line must be exactly well-formed (one space between fields, decimal ports
//! without leading zeros, addresses of the family named); a v2 length above the caller's limit
//! is refused before anything is buffered for it, and its address block must fit the length
//! and the family. A decoder never reads past the header: the bytes after it belong to the
//! protocol above (TLS or the application).
//!
//! ```
//! use herd_proto::proxy::{decode, Addresses};
//!
//! let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
//! let (h, used) = decode(line, 4096).unwrap().unwrap();
//! assert_eq!(used, 45);
//! assert_eq!(h.source().unwrap().to_string(), "192.0.2.1:56324");
//! assert!(matches!(h.addresses, Addresses::Tcp { .. }));
//! // Half a header: more bytes are needed. Not a header at all: an error at once.
//! assert!(decode(b"PROXY TC", 4096).unwrap().is_none());
//! assert!(decode(b"GET / HTTP/1.1\r\n", 4096).is_err());
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The longest version 1 line, CRLF included (the specification's limit).
pub const V1_MAX_LEN: usize = 107;

/// The fixed part of a version 2 header: signature, version/command, family, length.
pub const V2_FIXED_LEN: usize = 16;

/// A decoded PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// `Proxy` (addresses are the client's) or `Local` (the balancer's own connection).
    pub command: Command,
    /// The addresses the header carries.
    pub addresses: Addresses,
    /// Version 2 extensions, in order (empty for version 1).
    pub tlvs: Vec<Tlv>,
}

impl ProxyHeader {
    /// The client's address, when the header relays one (`PROXY` command, TCP or UDP over IP).
    /// `None` for `LOCAL`, `UNKNOWN`/unspecified and UNIX sockets: use the socket's own peer.
    pub fn source(&self) -> Option<SocketAddr> {
        match (&self.command, &self.addresses) {
            (Command::Proxy, Addresses::Tcp { src, .. } | Addresses::Udp { src, .. }) => Some(*src),
            _ => None,
        }
    }

    /// The address the client connected to on the balancer, when relayed.
    pub fn destination(&self) -> Option<SocketAddr> {
        match (&self.command, &self.addresses) {
            (Command::Proxy, Addresses::Tcp { dst, .. } | Addresses::Udp { dst, .. }) => Some(*dst),
            _ => None,
        }
    }

    /// The value of the first extension of type `kind`, if any.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| &t.value[..])
    }
}

/// A version 2 header's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The connection was made by the balancer itself (health checks): no client address.
    Local,
    /// The connection is relayed for the client whose addresses follow.
    Proxy,
}

/// The addresses a header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    /// None: v1 `UNKNOWN`, v2 `AF_UNSPEC` (or `LOCAL`, whose address block is ignored).
    Unknown,
    /// A TCP connection over IPv4 or IPv6.
    Tcp {
        /// The client.
        src: SocketAddr,
        /// Where the client connected to.
        dst: SocketAddr,
    },
    /// A UDP exchange over IPv4 or IPv6 (version 2 only).
    Udp {
        /// The client.
        src: SocketAddr,
        /// Where the client sent to.
        dst: SocketAddr,
    },
    /// UNIX sockets (version 2 only): the two paths, NUL padding removed.
    Unix {
        /// The client's socket path.
        src: Vec<u8>,
        /// The server's socket path.
        dst: Vec<u8>,
    },
}

/// One version 2 extension (type-length-value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// Its type (see the `TLV_*` constants).
    pub kind: u8,
    /// Its value, as sent.
    pub value: Vec<u8>,
}

/// TLV type: the ALPN protocol the client negotiated with the balancer.
pub const TLV_ALPN: u8 = 0x01;
/// TLV type: the host name the client asked for (SNI).
pub const TLV_AUTHORITY: u8 = 0x02;
/// TLV type: a CRC32c of the whole header.
pub const TLV_CRC32C: u8 = 0x03;
/// TLV type: padding, to be ignored.
pub const TLV_NOOP: u8 = 0x04;
/// TLV type: an opaque connection id assigned by the balancer.
pub const TLV_UNIQUE_ID: u8 = 0x05;
/// TLV type: TLS details of the client's connection to the balancer.
pub const TLV_SSL: u8 = 0x20;
/// TLV type: the network namespace the connection came from.
pub const TLV_NETNS: u8 = 0x30;

/// Why bytes are not a PROXY header. [`ProxyError::reason`] is a short label for counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The first bytes are neither `PROXY ` nor the version 2 signature.
    NotProxy,
    /// A version 1 line without its CRLF within 107 bytes, or a version 2 header longer than
    /// the caller's limit.
    TooLong,
    /// A version 1 line that breaks the grammar (what is wrong).
    BadV1(&'static str),
    /// A version 2 header that breaks the format (what is wrong).
    BadV2(&'static str),
}

impl ProxyError {
    /// A short label: `not_proxy`, `too_long`, `bad_v1`, `bad_v2`.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::NotProxy => "not_proxy",
            ProxyError::TooLong => "too_long",
            ProxyError::BadV1(_) => "bad_v1",
            ProxyError::BadV2(_) => "bad_v2",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxy => f.write_str("not a PROXY protocol header"),
            ProxyError::TooLong => f.write_str("PROXY header too long"),
            ProxyError::BadV1(why) => write!(f, "bad PROXY v1 header: {why}"),
            ProxyError::BadV2(why) => write!(f, "bad PROXY v2 header: {why}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Decode the PROXY header at the start of `buf`: `Ok(None)` when the bytes so far are a
/// valid start but the header is not complete, `Ok(Some((header, len)))` with the header's
/// length in bytes once it is (the application's bytes follow it), or an error as soon as the
/// bytes cannot be one. `max_len` bounds a version 2 header (fixed part included; 16 + 216
/// covers every address block, HAProxy's TLS extensions add a few hundred bytes); version 1
/// is always bounded by 107.
pub fn decode(buf: &[u8], max_len: usize) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if buf.len() < V2_SIGNATURE.len() {
            return Ok(None);
        }
        return decode_v2(buf, max_len);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return decode_v1(buf);
    }
    Err(ProxyError::NotProxy)
}

fn decode_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.contains(&b'\n') {
            return Err(ProxyError::BadV1("a bare LF"));
        }
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::TooLong)
        } else {
            Ok(None)
        };
    };
    if window[..cr].contains(&b'\n') {
        return Err(ProxyError::BadV1("a bare LF"));
    }
    match window.get(cr + 1) {
        None if buf.len() < V1_MAX_LEN => return Ok(None),
        Some(b'\n') => {}
        _ => return Err(ProxyError::BadV1("CR without LF")),
    }
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[6..cr]).map_err(|_| ProxyError::BadV1("not ASCII"))?;
    let header = |addresses| ProxyHeader {
        version: 1,
        command: Command::Proxy,
        addresses,
        tlvs: Vec::new(),
    };
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(Some((header(Addresses::Unknown), len)));
    }
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or("");
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::BadV1("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyError::BadV1("not five space-separated fields"));
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let ip = if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| ProxyError::BadV1("an address not of the family named"))
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        if s.is_empty()
            || s.len() > 5
            || (s.len() > 1 && s.starts_with('0'))
            || !s.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ProxyError::BadV1("a port that is not 0 to 65535"));
        }
        s.parse()
            .map_err(|_| ProxyError::BadV1("a port that is not 0 to 65535"))
    };
    let src = SocketAddr::new(ip(src)?, port(sport)?);
    let dst = SocketAddr::new(ip(dst)?, port(dport)?);
    Ok(Some((header(Addresses::Tcp { src, dst }), len)))
}

fn decode_v2(buf: &[u8], max_len: usize) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.len() < V2_FIXED_LEN {
        // Check what has arrived of the fixed part, so junk fails early.
        if let Some(&vc) = buf.get(12) {
            check_version_command(vc)?;
        }
        return Ok(None);
    }
    let command = check_version_command(buf[12])?;
    let fam = buf[13];
    let body_len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = V2_FIXED_LEN + body_len;
    if len > max_len {
        return Err(ProxyError::TooLong);
    }
    let need = match fam >> 4 {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Err(ProxyError::BadV2("unknown address family")),
    };
    let transport = fam & 0x0F;
    if transport > 2 {
        return Err(ProxyError::BadV2("unknown transport"));
    }
    if command == Command::Proxy && body_len < need {
        return Err(ProxyError::BadV2("address block longer than the header"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[V2_FIXED_LEN..len];
    let addresses = if command == Command::Local || fam == 0 {
        Addresses::Unknown
    } else {
        let a = &body[..need];
        let pair = |src: IpAddr, dst: IpAddr, ports: &[u8]| {
            let sp = u16::from_be_bytes([ports[0], ports[1]]);
            let dp = u16::from_be_bytes([ports[2], ports[3]]);
            (SocketAddr::new(src, sp), SocketAddr::new(dst, dp))
        };
        let ip_pair = match fam >> 4 {
            1 => {
                let s = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                let d = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
                Some(pair(s.into(), d.into(), &a[8..12]))
            }
            2 => {
                let s = Ipv6Addr::from(<[u8; 16]>::try_from(&a[..16]).expect("16 bytes"));
                let d = Ipv6Addr::from(<[u8; 16]>::try_from(&a[16..32]).expect("16 bytes"));
                Some(pair(s.into(), d.into(), &a[32..36]))
            }
            _ => None,
        };
        match (ip_pair, transport) {
            (Some((src, dst)), 1) => Addresses::Tcp { src, dst },
            (Some((src, dst)), 2) => Addresses::Udp { src, dst },
            (Some(_), _) => Addresses::Unknown,
            (None, _) => {
                let path =
                    |p: &[u8]| p[..p.iter().position(|&b| b == 0).unwrap_or(p.len())].to_vec();
                Addresses::Unix {
                    src: path(&a[..108]),
                    dst: path(&a[108..216]),
                }
            }
        }
    };
    // With LOCAL the address block may be anything; TLVs follow the block of the family.
    let skip = need.min(body.len());
    let tlvs = parse_tlvs(&body[skip..])?;
    Ok(Some((
        ProxyHeader {
            version: 2,
            command,
            addresses,
            tlvs,
        },
        len,
    )))
}

fn check_version_command(vc: u8) -> Result<Command, ProxyError> {
    if vc >> 4 != 2 {
        return Err(ProxyError::BadV2("version is not 2"));
    }
    match vc & 0x0F {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        _ => Err(ProxyError::BadV2("unknown command")),
    }
}

fn parse_tlvs(mut rest: &[u8]) -> Result<Vec<Tlv>, ProxyError> {
    let mut tlvs = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(ProxyError::BadV2("a truncated TLV"));
        }
        let kind = rest[0];
        let n = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        let Some(value) = rest.get(3..3 + n) else {
            return Err(ProxyError::BadV2("a TLV longer than the header"));
        };
        if kind != TLV_NOOP {
            tlvs.push(Tlv {
                kind,
                value: value.to_vec(),
            });
        }
        rest = &rest[3 + n..];
    }
    Ok(tlvs)
}

/// Encode a version 2 header relaying `src` → `dst` over TCP with `tlvs` (for tests, and for
/// a herd that forwards to another PROXY-aware server).
pub fn encode_v2(dst_buf: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr, tlvs: &[Tlv]) {
    let (fam, addrs): (u8, Vec<u8>) = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            let mut a = Vec::with_capacity(12);
            a.extend_from_slice(&s.ip().octets());
            a.extend_from_slice(&d.ip().octets());
            a.extend_from_slice(&s.port().to_be_bytes());
            a.extend_from_slice(&d.port().to_be_bytes());
            (0x11, a)
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let mut a = Vec::with_capacity(36);
            a.extend_from_slice(&v6(s).octets());
            a.extend_from_slice(&v6(d).octets());
            a.extend_from_slice(&s.port().to_be_bytes());
            a.extend_from_slice(&d.port().to_be_bytes());
            (0x21, a)
        }
    };
    let tlv_len: usize = tlvs.iter().map(|t| 3 + t.value.len()).sum();
    dst_buf.extend_from_slice(&V2_SIGNATURE);
    dst_buf.push(0x21);
    dst_buf.push(fam);
    dst_buf.extend_from_slice(&((addrs.len() + tlv_len) as u16).to_be_bytes());
    dst_buf.extend_from_slice(&addrs);
    for t in tlvs {
        dst_buf.push(t.kind);
        dst_buf.extend_from_slice(&(t.value.len() as u16).to_be_bytes());
        dst_buf.extend_from_slice(&t.value);
    }
}

#[cfg(test)]
mod tests;
