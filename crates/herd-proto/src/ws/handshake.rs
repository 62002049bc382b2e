//! The WebSocket opening handshake (RFC 6455 section 4.2): checking the client's HTTP/1.1
//! upgrade request and writing the server's response.
//!
//! [`check_upgrade`] validates an already-parsed request head (method, version, headers as
//! `http` crate types) and returns an [`Upgrade`] with the client's key, offered subprotocols
//! and offered extensions, or a [`HandshakeError`] that knows its status code (400, or 426 for
//! a wrong `Sec-WebSocket-Version`) and can write its response. [`encode_accept_response`]
//! writes the `101 Switching Protocols` response. This file does not parse HTTP (the `http1`
//! codec does), does not choose a subprotocol (the handler does, see
//! [`Upgrade::select_protocol`]) and negotiates no extension: in particular
//! permessage-deflate is declined simply by not echoing `Sec-WebSocket-Extensions`, which RFC
//! 7692 section 5 defines as "no compression", so RSV1 stays a protocol error. Called by the
//! loop's HTTP code when a request asks for an upgrade.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 appends to the client's key before hashing.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks (`Sec-WebSocket-Version: 13`).
pub const VERSION: &str = "13";

/// Computes `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64 of the SHA-1 of
/// the key followed by [`GUID`].
///
/// ```
/// use herd_proto::ws::accept_key;
///
/// // The example from RFC 6455 section 1.3.
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(sec_websocket_key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(sec_websocket_key);
    sha1.update(GUID.as_bytes());
    STANDARD.encode(sha1.finalize())
}

/// A valid WebSocket upgrade request, as seen by [`check_upgrade`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The client's `Sec-WebSocket-Key` (base64 of 16 bytes), surrounding whitespace removed.
    pub key: String,
    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in its order of
    /// preference. Each is an RFC 7230 token.
    pub protocols: Vec<String>,
    /// The extensions the client offered in `Sec-WebSocket-Extensions`, one entry per
    /// comma-separated offer with its parameters (for example
    /// `permessage-deflate; client_max_window_bits`). Informational: herd accepts none.
    pub extensions: Vec<String>,
}

impl Upgrade {
    /// The `Sec-WebSocket-Accept` value for this request.
    pub fn accept_key(&self) -> String {
        accept_key(self.key.as_bytes())
    }

    /// The first subprotocol the client offered that appears in `supported`, if any; pass it
    /// to [`encode_accept_response`].
    pub fn select_protocol<'s>(&self, supported: &[&'s str]) -> Option<&'s str> {
        self.protocols
            .iter()
            .find_map(|offered| supported.iter().copied().find(|s| *s == offered.as_str()))
    }
}

/// Why an upgrade request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The method is not GET.
    NotGet,
    /// The request is older than HTTP/1.1.
    OldHttpVersion,
    /// No `Host` header.
    MissingHost,
    /// `Connection` does not contain the token `upgrade`.
    NoConnectionUpgrade,
    /// `Upgrade` does not contain the token `websocket`.
    NoUpgradeWebsocket,
    /// `Sec-WebSocket-Key` is missing, repeated, or not base64 of 16 bytes.
    BadKey,
    /// `Sec-WebSocket-Protocol` holds something other than comma-separated tokens.
    BadProtocol,
    /// `Sec-WebSocket-Version` is missing or not 13: answered with 426 and
    /// `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
}

impl HandshakeError {
    /// The response status: 426 Upgrade Required for [`HandshakeError::UnsupportedVersion`],
    /// 400 Bad Request for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short description, safe to log and to send as the response body.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::NotGet => "websocket upgrade must use GET",
            HandshakeError::OldHttpVersion => "websocket upgrade needs HTTP/1.1",
            HandshakeError::MissingHost => "missing Host header",
            HandshakeError::NoConnectionUpgrade => "Connection header lacks \"upgrade\"",
            HandshakeError::NoUpgradeWebsocket => "Upgrade header lacks \"websocket\"",
            HandshakeError::BadKey => "invalid Sec-WebSocket-Key",
            HandshakeError::BadProtocol => "invalid Sec-WebSocket-Protocol",
            HandshakeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version",
        }
    }

    /// Appends the complete error response (status line, headers, a one-line text body) to
    /// `dst`. The response says `Connection: close`: close the connection after sending it.
    ///
    /// ```
    /// use herd_proto::ws::HandshakeError;
    ///
    /// let mut out = Vec::new();
    /// HandshakeError::UnsupportedVersion.encode_error_response(&mut out);
    /// let text = String::from_utf8(out).unwrap();
    /// assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    /// assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    /// ```
    pub fn encode_error_response(&self, dst: &mut Vec<u8>) {
        let status = self.status();
        let body = self.reason();
        dst.extend_from_slice(b"HTTP/1.1 ");
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        dst.extend_from_slice(b"\r\n");
        if *self == HandshakeError::UnsupportedVersion {
            dst.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
        }
        dst.extend_from_slice(b"Content-Type: text/plain\r\nConnection: close\r\n");
        dst.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len() + 1).as_bytes());
        dst.extend_from_slice(body.as_bytes());
        dst.push(b'\n');
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status().as_u16())
    }
}

impl std::error::Error for HandshakeError {}

/// Checks that a request head is a valid WebSocket upgrade (RFC 6455 section 4.2.1).
///
/// Requires: GET; HTTP/1.1 or later; a `Host` header; `Connection` containing the token
/// `upgrade` and `Upgrade` containing the token `websocket` (both case-insensitive, in
/// comma-separated lists, possibly over several header lines); exactly one
/// `Sec-WebSocket-Key` that is base64 of 16 bytes; `Sec-WebSocket-Version: 13`.
///
/// ```
/// use herd_proto::ws::{check_upgrade, HandshakeError};
/// use http::{HeaderMap, HeaderValue, Method, Version};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("host", HeaderValue::from_static("example.com"));
/// headers.insert("connection", HeaderValue::from_static("keep-alive, Upgrade"));
/// headers.insert("upgrade", HeaderValue::from_static("WebSocket"));
/// headers.insert("sec-websocket-key", HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
/// headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
/// headers.insert("sec-websocket-protocol", HeaderValue::from_static("chat, superchat"));
///
/// let upgrade = check_upgrade(&Method::GET, Version::HTTP_11, &headers).unwrap();
/// assert_eq!(upgrade.protocols, ["chat", "superchat"]);
/// assert_eq!(upgrade.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
///
/// headers.insert("sec-websocket-version", HeaderValue::from_static("8"));
/// let err = check_upgrade(&Method::GET, Version::HTTP_11, &headers).unwrap_err();
/// assert_eq!(err, HandshakeError::UnsupportedVersion);
/// assert_eq!(err.status().as_u16(), 426);
/// ```
pub fn check_upgrade(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<Upgrade, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if version < Version::HTTP_11 {
        return Err(HandshakeError::OldHttpVersion);
    }
    if !headers.contains_key(header::HOST) {
        return Err(HandshakeError::MissingHost);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(HandshakeError::NoUpgradeWebsocket);
    }
    let key = check_key(headers)?;
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == VERSION.as_bytes() => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }

    let mut protocols = Vec::new();
    for value in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        for item in list_items(value.as_bytes()) {
            if !is_token(item) {
                return Err(HandshakeError::BadProtocol);
            }
            protocols.push(String::from_utf8_lossy(item).into_owned());
        }
    }
    // Extensions are only reported, never accepted, so unreadable values are skipped.
    let extensions = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Upgrade {
        key,
        protocols,
        extensions,
    })
}

/// [`check_upgrade`] on the head of an `http::Request`.
pub fn check_upgrade_parts(parts: &http::request::Parts) -> Result<Upgrade, HandshakeError> {
    check_upgrade(&parts.method, parts.version, &parts.headers)
}

/// Appends the `101 Switching Protocols` response to `dst`.
///
/// `accept` is [`Upgrade::accept_key`]. `protocol` is the chosen subprotocol, which must be
/// one the client offered (see [`Upgrade::select_protocol`]); a value that is not an RFC 7230
/// token is left out rather than written, so it can never inject a header. No
/// `Sec-WebSocket-Extensions` header is written: every offered extension is declined (see
/// [`encode_accept_response_with`] to accept one).
///
/// ```
/// use herd_proto::ws::{accept_key, encode_accept_response};
///
/// let mut out = Vec::new();
/// encode_accept_response(&mut out, &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), Some("chat"));
/// assert_eq!(
///     out,
///     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
/// );
/// ```
pub fn encode_accept_response(dst: &mut Vec<u8>, accept: &str, protocol: Option<&str>) {
    encode_accept_response_with(dst, accept, protocol, None);
}

/// [`encode_accept_response`] that also accepts an extension: `extensions` is the value of the
/// `Sec-WebSocket-Extensions` response header (such as
/// [`DeflateParams::response_value`](super::deflate::DeflateParams::response_value)); a value
/// with a byte that may not appear in a header line (CR, LF, other controls) is left out.
pub fn encode_accept_response_with(
    dst: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    dst.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    dst.extend_from_slice(accept.as_bytes());
    dst.extend_from_slice(b"\r\n");
    if let Some(protocol) = protocol.filter(|p| is_token(p.as_bytes())) {
        dst.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        dst.extend_from_slice(protocol.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if let Some(ext) =
        extensions.filter(|e| e.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b)))
    {
        dst.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        dst.extend_from_slice(ext.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// The one `Sec-WebSocket-Key`, checked to be base64 of exactly 16 bytes.
fn check_key(headers: &HeaderMap) -> Result<String, HandshakeError> {
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let (Some(value), None) = (keys.next(), keys.next()) else {
        return Err(HandshakeError::BadKey);
    };
    let key = value.as_bytes().trim_ascii();
    // 16 bytes are always 24 base64 characters; checking first bounds the decode.
    let mut raw = [0u8; 18];
    if key.len() != 24 || STANDARD.decode_slice(key, &mut raw) != Ok(16) {
        return Err(HandshakeError::BadKey);
    }
    // base64 is ASCII, so this never loses anything.
    Ok(String::from_utf8_lossy(key).into_owned())
}

/// Whether any `name` header holds `token` in its comma-separated list (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| list_items(value.as_bytes()))
        .any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

/// The non-empty, trimmed items of a comma-separated header value.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// Whether `s` is an RFC 7230 token (one or more tchar).
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn good_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("server.example.com"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        h
    }

    fn check(h: &HeaderMap) -> Result<Upgrade, HandshakeError> {
        check_upgrade(&Method::GET, Version::HTTP_11, h)
    }

    #[test]
    fn rfc_6455_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn minimal_request_is_accepted() {
        let up = check(&good_headers()).unwrap();
        assert_eq!(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(up.protocols.is_empty() && up.extensions.is_empty());
    }

    #[test]
    fn method_and_version() {
        let h = good_headers();
        assert_eq!(
            check_upgrade(&Method::POST, Version::HTTP_11, &h),
            Err(HandshakeError::NotGet)
        );
        assert_eq!(
            check_upgrade(&Method::GET, Version::HTTP_10, &h),
            Err(HandshakeError::OldHttpVersion)
        );
        assert_eq!(HandshakeError::NotGet.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn connection_and_upgrade_tokens() {
        let mut h = good_headers();
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        assert_eq!(check(&h), Err(HandshakeError::NoConnectionUpgrade));
        // A token split over two header lines, in mixed case, is found.
        h.append("connection", HeaderValue::from_static(" , UPGRADE "));
        assert!(check(&h).is_ok());
        // "upgrades" is not "upgrade".
        h.insert("connection", HeaderValue::from_static("upgrades"));
        assert_eq!(check(&h), Err(HandshakeError::NoConnectionUpgrade));

        let mut h = good_headers();
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        assert_eq!(check(&h), Err(HandshakeError::NoUpgradeWebsocket));
        h.insert("upgrade", HeaderValue::from_static("h2c, WebSocket"));
        assert!(check(&h).is_ok());
        h.remove("upgrade");
        assert_eq!(check(&h), Err(HandshakeError::NoUpgradeWebsocket));
    }

    #[test]
    fn host_is_required() {
        let mut h = good_headers();
        h.remove("host");
        assert_eq!(check(&h), Err(HandshakeError::MissingHost));
    }

    #[test]
    fn key_must_be_16_bytes_of_base64() {
        for bad in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "dGhlIHNhbXBsZSBub25jZQ==dGhl",
            "!GhlIHNhbXBsZSBub25jZQ==",
        ] {
            let mut h = good_headers();
            h.insert("sec-websocket-key", HeaderValue::from_str(bad).unwrap());
            assert_eq!(check(&h), Err(HandshakeError::BadKey), "{bad:?}");
        }
        let mut h = good_headers();
        h.remove("sec-websocket-key");
        assert_eq!(check(&h), Err(HandshakeError::BadKey));
        let mut h = good_headers();
        h.append(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(check(&h), Err(HandshakeError::BadKey));
        // Surrounding whitespace is tolerated and removed.
        let mut h = good_headers();
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static(" dGhlIHNhbXBsZSBub25jZQ== "),
        );
        assert_eq!(check(&h).unwrap().key, "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn version_must_be_13() {
        for bad in ["8", "14", "13, 8", ""] {
            let mut h = good_headers();
            h.insert("sec-websocket-version", HeaderValue::from_str(bad).unwrap());
            let err = check(&h).unwrap_err();
            assert_eq!(err, HandshakeError::UnsupportedVersion, "{bad:?}");
            assert_eq!(err.status(), StatusCode::UPGRADE_REQUIRED);
        }
        let mut h = good_headers();
        h.remove("sec-websocket-version");
        assert_eq!(check(&h), Err(HandshakeError::UnsupportedVersion));
    }

    #[test]
    fn protocols_and_extensions_are_listed() {
        let mut h = good_headers();
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("chat, v2.chat"),
        );
        h.append("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        h.insert(
            "sec-websocket-extensions",
            HeaderValue::from_static("permessage-deflate; client_max_window_bits, x-foo"),
        );
        let up = check(&h).unwrap();
        assert_eq!(up.protocols, ["chat", "v2.chat", "mqtt"]);
        assert_eq!(
            up.extensions,
            ["permessage-deflate; client_max_window_bits", "x-foo"]
        );
        assert_eq!(up.select_protocol(&["mqtt", "v2.chat"]), Some("v2.chat"));
        assert_eq!(up.select_protocol(&["wamp"]), None);

        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("chat, bad value"),
        );
        assert_eq!(check(&h), Err(HandshakeError::BadProtocol));
    }

    #[test]
    fn accept_response_never_echoes_extensions_or_bad_protocols() {
        let mut out = Vec::new();
        encode_accept_response(&mut out, "abc=", Some("x\r\nSet-Cookie: a=b"));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: abc=\r\n\r\n"
        );
        assert!(!text.contains("Extensions"));
    }

    #[test]
    fn error_response_is_complete_http() {
        let mut out = Vec::new();
        HandshakeError::BadKey.encode_error_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(!head.contains("Sec-WebSocket-Version"));
        assert_eq!(body, "invalid Sec-WebSocket-Key\n");
    }
}
