//! Close codes and the close handshake (RFC 6455 sections 5.5.1, 7 and 7.4).
//!
//! [`parse_close_payload`] checks a received Close body (code, then a UTF-8 reason);
//! [`CloseState`] remembers which side has sent its Close and tells the loop, through a
//! [`CloseAction`], what to send and when to drop the TCP connection. Nothing here reads a
//! clock: waiting for the peer's Close after the server sent its own is bounded by a timer the
//! loop owns. Called by the [`Decoder`](super::Decoder) (payload checks) and by the loop's
//! WebSocket connection code (the handshake).

use super::frame::encode_close;
use super::WsError;

/// 1000: normal closure.
pub const NORMAL: u16 = 1000;
/// 1001: the endpoint is going away (server shutdown, page navigation).
pub const GOING_AWAY: u16 = 1001;
/// 1002: the peer broke the protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1003: the endpoint cannot accept this kind of data (text or binary).
pub const UNSUPPORTED_DATA: u16 = 1003;
/// 1005: no code was present. Reported locally, never sent.
pub const NO_STATUS: u16 = 1005;
/// 1006: the connection dropped without a Close. Reported locally, never sent.
pub const ABNORMAL: u16 = 1006;
/// 1007: a text payload (or close reason) was not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: a policy was violated.
pub const POLICY_VIOLATION: u16 = 1008;
/// 1009: a frame or message was bigger than this endpoint accepts.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1010: the client needed an extension the server did not negotiate.
pub const MANDATORY_EXTENSION: u16 = 1010;
/// 1011: the server hit an unexpected condition.
pub const INTERNAL_ERROR: u16 = 1011;
/// 1015: the TLS handshake failed. Reported locally, never sent.
pub const TLS_HANDSHAKE: u16 = 1015;

/// Whether a peer may send `code` in a Close frame.
///
/// Valid: 1000-1003, 1007-1014 (1012-1014 are IANA-registered: service restart, try again
/// later, bad gateway), 3000-4999 (registered and private use). Invalid: below 1000, 1004
/// (reserved), 1005, 1006 and 1015 (local-only), 1016-2999 (unassigned), 5000 and above.
///
/// ```
/// use herd_proto::ws::close::is_valid_close_code;
///
/// assert!(is_valid_close_code(1000) && is_valid_close_code(4999));
/// assert!(!is_valid_close_code(1005) && !is_valid_close_code(2999));
/// ```
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Checks the payload of a received Close frame (already unmasked).
///
/// Returns `None` for an empty payload (no code given), or the code and reason. Errors: a
/// 1-byte payload or an invalid code (see [`is_valid_close_code`]) is 1002; a reason that is
/// not UTF-8 is 1007.
///
/// ```
/// use herd_proto::ws::close::parse_close_payload;
///
/// assert_eq!(parse_close_payload(b""), Ok(None));
/// assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(Some((1000, "bye"))));
/// assert_eq!(parse_close_payload(b"\x03").unwrap_err().close_code, 1002);
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::protocol("close payload of 1 byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| WsError::invalid_payload("close reason is not UTF-8"))?;
            Ok(Some((code, reason)))
        }
    }
}

/// What the loop must do after a [`CloseState`] transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// Nothing to send and nothing to close (the handshake is already past this point).
    Nothing,
    /// A Close frame was appended to `dst`: flush it, then close the TCP connection (the
    /// server closes first, RFC 6455 section 7.1.1). Send nothing after it.
    SendThenClose,
    /// A Close frame was appended to `dst`: flush it and keep reading until the peer's Close
    /// arrives (then call [`CloseState::on_peer_close`]) or the loop's close timeout fires
    /// (then close TCP). Send no more data frames; received data may be dropped.
    SendThenAwaitPeer,
    /// Close the TCP connection now; nothing is left to send.
    CloseNow,
}

/// Where the close handshake stands, from this endpoint's point of view.
///
/// Start at [`CloseState::Open`] (the default) when the connection is upgraded and feed it
/// the close-related events; each method appends any Close frame to send to `dst` and returns
/// what to do with the connection.
///
/// ```
/// use herd_proto::ws::{CloseAction, CloseState};
///
/// // The server starts the close, then the peer answers.
/// let mut state = CloseState::default();
/// let mut out = Vec::new();
/// assert_eq!(state.initiate(&mut out, 1001, "shutting down"), CloseAction::SendThenAwaitPeer);
/// assert!(!out.is_empty());
/// out.clear();
/// assert_eq!(state.on_peer_close(&mut out, Some((1001, ""))), CloseAction::CloseNow);
/// assert!(out.is_empty());
/// assert_eq!(state, CloseState::Closed);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CloseState {
    /// No Close sent or received: data flows both ways.
    #[default]
    Open,
    /// This endpoint sent a Close and waits for the peer's.
    CloseSent,
    /// The handshake is over (or the connection failed): the TCP connection is being closed.
    Closed,
}

impl CloseState {
    /// Call when the decoder returned `Message::Close(payload)`.
    ///
    /// If the connection was open, appends the reply to `dst` — the peer's code echoed, or
    /// 1000 when it gave none (never 1005, 1006 or 1015, which the decoder rejects anyway) —
    /// and returns [`CloseAction::SendThenClose`]. If this endpoint had already sent its
    /// Close, the handshake is complete: [`CloseAction::CloseNow`].
    pub fn on_peer_close(
        &mut self,
        dst: &mut Vec<u8>,
        payload: Option<(u16, &str)>,
    ) -> CloseAction {
        match *self {
            CloseState::Open => {
                let code = match payload {
                    Some((code, _)) if is_valid_close_code(code) => code,
                    _ => NORMAL,
                };
                encode_close(dst, code, "");
                *self = CloseState::Closed;
                CloseAction::SendThenClose
            }
            CloseState::CloseSent => {
                *self = CloseState::Closed;
                CloseAction::CloseNow
            }
            CloseState::Closed => CloseAction::Nothing,
        }
    }

    /// Call when this endpoint wants to close (shutdown, idle timeout, handler request).
    ///
    /// If open, appends a Close with `code` and `reason` to `dst` and returns
    /// [`CloseAction::SendThenAwaitPeer`]; otherwise does nothing. `code` must be one a peer
    /// may receive (see [`is_valid_close_code`]); anything else is replaced by 1000.
    pub fn initiate(&mut self, dst: &mut Vec<u8>, code: u16, reason: &str) -> CloseAction {
        if *self != CloseState::Open {
            return CloseAction::Nothing;
        }
        let code = if is_valid_close_code(code) {
            code
        } else {
            NORMAL
        };
        encode_close(dst, code, reason);
        *self = CloseState::CloseSent;
        CloseAction::SendThenAwaitPeer
    }

    /// Call when the decoder returned an error: the connection fails.
    ///
    /// If open, appends a Close carrying the error's code and reason and returns
    /// [`CloseAction::SendThenClose`]; if a Close was already sent, [`CloseAction::CloseNow`].
    pub fn on_error(&mut self, dst: &mut Vec<u8>, err: &WsError) -> CloseAction {
        match *self {
            CloseState::Open => {
                encode_close(dst, err.close_code, err.reason);
                *self = CloseState::Closed;
                CloseAction::SendThenClose
            }
            CloseState::CloseSent => {
                *self = CloseState::Closed;
                CloseAction::CloseNow
            }
            CloseState::Closed => CloseAction::Nothing,
        }
    }

    /// Whether this endpoint may still send data frames (no Close sent yet).
    pub fn can_send(&self) -> bool {
        *self == CloseState::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::parse_header;

    fn close_body(wire: &[u8]) -> &[u8] {
        let h = parse_header(wire).unwrap().unwrap();
        assert_eq!(h.opcode, crate::ws::Opcode::Close);
        assert!(h.mask.is_none(), "server frames are unmasked");
        &wire[h.buffer_len()..]
    }

    #[test]
    fn valid_and_invalid_codes() {
        // Autobahn 7.7.x (valid) and 7.9.x / 7.13.x (invalid).
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn close_payload_rules() {
        // Autobahn 7.3.1 (empty), 7.3.2 (1 byte), 7.3.3 (code only), 7.5.1 (bad UTF-8 reason).
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(parse_close_payload(&[0x03]).unwrap_err().close_code, 1002);
        assert_eq!(parse_close_payload(&[0x03, 0xE8]), Ok(Some((1000, ""))));
        let bad = [0x03, 0xE8, 0xCE, 0xBA, 0xED, 0xA0, 0x80];
        assert_eq!(parse_close_payload(&bad).unwrap_err().close_code, 1007);
        assert_eq!(
            parse_close_payload(&[0x03, 0xEC]).unwrap_err().close_code,
            1002
        ); // 1004
        assert_eq!(
            parse_close_payload(&[0x13, 0x88]).unwrap_err().close_code,
            1002
        ); // 5000
    }

    #[test]
    fn peer_close_is_echoed_then_tcp_closed() {
        // Autobahn 7.1.1 / 7.7.x: the code comes back.
        let mut state = CloseState::Open;
        let mut out = Vec::new();
        assert_eq!(
            state.on_peer_close(&mut out, Some((3000, "x"))),
            CloseAction::SendThenClose
        );
        assert_eq!(close_body(&out), &3000u16.to_be_bytes());
        assert_eq!(state, CloseState::Closed);
        assert!(!state.can_send());
        // Autobahn 7.1.2: a second Close is ignored.
        out.clear();
        assert_eq!(state.on_peer_close(&mut out, None), CloseAction::Nothing);
        assert!(out.is_empty());
    }

    #[test]
    fn empty_peer_close_is_answered_with_1000() {
        // Autobahn 7.3.1.
        let mut state = CloseState::Open;
        let mut out = Vec::new();
        state.on_peer_close(&mut out, None);
        assert_eq!(close_body(&out), &1000u16.to_be_bytes());
    }

    #[test]
    fn server_initiated_close_waits_for_the_peer() {
        let mut state = CloseState::Open;
        let mut out = Vec::new();
        assert_eq!(
            state.initiate(&mut out, 1001, "bye"),
            CloseAction::SendThenAwaitPeer
        );
        assert_eq!(close_body(&out), b"\x03\xe9bye");
        assert!(!state.can_send());
        // A second initiate sends nothing.
        let before = out.len();
        assert_eq!(state.initiate(&mut out, 1000, ""), CloseAction::Nothing);
        assert_eq!(out.len(), before);
        // An error while waiting: just close.
        let err = WsError::protocol("x");
        assert_eq!(state.on_error(&mut out, &err), CloseAction::CloseNow);
        assert_eq!(out.len(), before);
    }

    #[test]
    fn local_only_codes_are_never_sent() {
        for code in [NO_STATUS, ABNORMAL, TLS_HANDSHAKE] {
            let mut state = CloseState::Open;
            let mut out = Vec::new();
            state.initiate(&mut out, code, "");
            assert_eq!(close_body(&out), &1000u16.to_be_bytes());
        }
    }

    #[test]
    fn error_sends_its_code() {
        let mut state = CloseState::Open;
        let mut out = Vec::new();
        let err = WsError::too_big("message over max_message");
        assert_eq!(state.on_error(&mut out, &err), CloseAction::SendThenClose);
        let body = close_body(&out);
        assert_eq!(&body[..2], &1009u16.to_be_bytes());
        assert_eq!(&body[2..], b"message over max_message");
        assert_eq!(state, CloseState::Closed);
    }
}
