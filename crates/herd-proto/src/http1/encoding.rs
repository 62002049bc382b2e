//! Content codings of responses (RFC 9110 §8.4, §12.5.3): `Accept-Encoding` negotiation and
//! the pure decisions around a compressed response.
//!
//! [`AcceptEncoding::parse`] reads every `Accept-Encoding` field of a request into the
//! q-values of the codings herd can produce (gzip, br) and of `identity`; [`AcceptEncoding::choose`]
//! picks the coding to send from the server's preference list. [`is_compressible`] says which
//! media types gain from compression, [`weak_etag`] derives the validator of an encoded
//! variant, and [`add_vary`] adds `Accept-Encoding` to a `Vary` value.
//!
//! Nothing here compresses (that is the caller's, herd-core's HTTP server and static files);
//! no I/O, no allocation beyond the returned strings, and no panic on any input.

/// A content coding herd can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// `gzip` (RFC 1952; `x-gzip` is read as the same).
    Gzip,
    /// `br`, Brotli (RFC 7932).
    Brotli,
}

impl Coding {
    /// The token in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
        }
    }

    /// The suffix of a pre-compressed file beside its original (`.gz`, `.br`).
    pub fn file_suffix(self) -> &'static str {
        match self {
            Coding::Gzip => ".gz",
            Coding::Brotli => ".br",
        }
    }
}

/// The q-values (in thousandths) a request gave the codings herd knows.
///
/// ```
/// use herd_proto::http1::encoding::{AcceptEncoding, Coding};
///
/// let a = AcceptEncoding::parse(["gzip;q=0.5, br"]);
/// assert_eq!(a.choose(&[Coding::Gzip, Coding::Brotli]), Some(Coding::Brotli));
/// let a = AcceptEncoding::parse(["gzip, br;q=0"]);
/// assert_eq!(a.choose(&[Coding::Brotli, Coding::Gzip]), Some(Coding::Gzip));
/// assert_eq!(AcceptEncoding::parse(Vec::<&str>::new()).choose(&[Coding::Gzip]), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcceptEncoding {
    gzip: Option<u16>,
    br: Option<u16>,
    identity: Option<u16>,
    any: Option<u16>,
}

impl AcceptEncoding {
    /// Reads the values of every `Accept-Encoding` field (a list split over several fields is
    /// one list). Unknown codings are ignored; a malformed member is skipped; a repeated
    /// coding keeps its first q-value. No field at all means "no preference", which herd
    /// answers with identity, as nginx does.
    pub fn parse<I, V>(values: I) -> AcceptEncoding
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut a = AcceptEncoding::default();
        for v in values {
            for member in v.as_ref().split(|&b| b == b',') {
                let mut params = member.split(|&b| b == b';');
                let name = trim(params.next().unwrap_or_default());
                if name.is_empty() {
                    continue;
                }
                let mut q = Some(1000);
                for p in params {
                    let p = trim(p);
                    if p.len() >= 2 && p[0].eq_ignore_ascii_case(&b'q') && p[1] == b'=' {
                        q = parse_q(trim(&p[2..]));
                    }
                }
                let Some(q) = q else { continue };
                let slot =
                    if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
                        &mut a.gzip
                    } else if name.eq_ignore_ascii_case(b"br") {
                        &mut a.br
                    } else if name.eq_ignore_ascii_case(b"identity") {
                        &mut a.identity
                    } else if name == b"*" {
                        &mut a.any
                    } else {
                        continue;
                    };
                slot.get_or_insert(q);
            }
        }
        a
    }

    /// The q-value (0–1000) the request gives `coding`: its own, else `*`'s, else 0.
    pub fn q(&self, coding: Coding) -> u16 {
        let own = match coding {
            Coding::Gzip => self.gzip,
            Coding::Brotli => self.br,
        };
        own.or(self.any).unwrap_or(0)
    }

    /// Whether identity (no coding) is acceptable. It always is unless excluded by
    /// `identity;q=0`, or by `*;q=0` without an `identity` member (RFC 9110 §12.5.3).
    pub fn identity_ok(&self) -> bool {
        self.identity.or(self.any).is_none_or(|q| q > 0)
    }

    /// The coding to send among `offered` (the server's order of preference): the one with
    /// the highest q-value above 0, ties going to the earlier in `offered`; `None` for
    /// identity. A coding is chosen only if the request named it or `*`.
    pub fn choose(&self, offered: &[Coding]) -> Option<Coding> {
        let mut best: Option<(Coding, u16)> = None;
        for &c in offered {
            let q = self.q(c);
            if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((c, q));
            }
        }
        best.map(|(c, _)| c)
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_q(s: &[u8]) -> Option<u16> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[][..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut milli = 0u16;
    for i in 0..3 {
        milli = milli * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int[0] {
        b'0' => Some(milli),
        b'1' if milli == 0 => Some(1000),
        _ => None,
    }
}

/// Whether a response of this `Content-Type` gains from compression: text, JSON, JavaScript,
/// XML (and `+json`/`+xml` types such as SVG), WebAssembly and a few other uncompressed
/// formats. Images, audio, video, archives and fonts in compressed formats do not.
///
/// ```
/// use herd_proto::http1::encoding::is_compressible;
///
/// assert!(is_compressible("text/html; charset=utf-8"));
/// assert!(is_compressible("image/svg+xml"));
/// assert!(!is_compressible("image/png"));
/// assert!(!is_compressible("application/gzip"));
/// ```
pub fn is_compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.starts_with("text/") {
        return true;
    }
    if essence.ends_with("+json") || essence.ends_with("+xml") {
        return true;
    }
    matches!(
        essence.as_str(),
        "application/json"
            | "application/javascript"
            | "application/x-javascript"
            | "application/ecmascript"
            | "application/xml"
            | "application/wasm"
            | "application/x-ndjson"
            | "application/manifest+json"
            | "application/x-www-form-urlencoded"
            | "application/rtf"
            | "application/x-sh"
            | "application/x-tar"
            | "application/vnd.ms-fontobject"
            | "font/ttf"
            | "font/otf"
            | "image/bmp"
            | "image/x-icon"
            | "image/vnd.microsoft.icon"
    )
}

/// The validator of an encoded variant produced on the fly: the original tag made weak (a
/// compressed body is not byte-for-byte the same representation, RFC 9110 §8.8.1). A weak
/// `If-None-Match` still matches the original, so revalidation keeps working, while
/// `If-Range` (strong comparison) never serves a byte range of the compressed form.
///
/// ```
/// use herd_proto::http1::encoding::weak_etag;
///
/// assert_eq!(weak_etag("\"5-abc\""), "W/\"5-abc\"");
/// assert_eq!(weak_etag("W/\"x\""), "W/\"x\"");
/// ```
pub fn weak_etag(tag: &str) -> String {
    if tag.starts_with("W/") {
        tag.to_owned()
    } else {
        format!("W/{tag}")
    }
}

/// `Vary` with `Accept-Encoding` in it: `None` when `existing` already names it (or is `*`),
/// otherwise the new value.
///
/// ```
/// use herd_proto::http1::encoding::add_vary;
///
/// assert_eq!(add_vary(None).as_deref(), Some("Accept-Encoding"));
/// assert_eq!(add_vary(Some("Origin")).as_deref(), Some("Origin, Accept-Encoding"));
/// assert_eq!(add_vary(Some("accept-encoding")), None);
/// assert_eq!(add_vary(Some("*")), None);
/// ```
pub fn add_vary(existing: Option<&str>) -> Option<String> {
    match existing.map(str::trim) {
        None | Some("") => Some("Accept-Encoding".into()),
        Some(v) => {
            let named = v
                .split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case("accept-encoding"));
            (!named).then(|| format!("{v}, Accept-Encoding"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &str) -> AcceptEncoding {
        AcceptEncoding::parse([v])
    }

    const BOTH: [Coding; 2] = [Coding::Brotli, Coding::Gzip];

    #[test]
    fn negotiation_table() {
        let cases: &[(&str, Option<Coding>)] = &[
            ("gzip", Some(Coding::Gzip)),
            ("GZIP", Some(Coding::Gzip)),
            ("x-gzip", Some(Coding::Gzip)),
            ("br", Some(Coding::Brotli)),
            ("gzip, deflate, br, zstd", Some(Coding::Brotli)), // Chromium: tie, server order
            ("gzip;q=1.0, br;q=0.9", Some(Coding::Gzip)),
            ("br;q=0, gzip;q=0.001", Some(Coding::Gzip)),
            ("gzip;q=0, br;q=0", None),
            ("*", Some(Coding::Brotli)),
            ("*;q=0.5, gzip", Some(Coding::Gzip)),
            ("*;q=0", None),
            ("identity", None),
            ("deflate, zstd", None),
            ("", None),
            (" gzip ; q = 0.5 ", Some(Coding::Gzip)), // OWS around ';' and the value
            ("gzip;q=2", None),                       // invalid q: member skipped
            ("gzip;q=0.5000", None),
            ("gzip;q=1.001", None),
            ("gzip;q=", None),
            ("gzip;q=0.5;foo=bar", Some(Coding::Gzip)),
            ("gzip;q=0, gzip", None), // the first occurrence counts
            (",,, ,gzip", Some(Coding::Gzip)),
        ];
        for (value, want) in cases {
            assert_eq!(a(value).choose(&BOTH), *want, "{value:?}");
        }
        assert_eq!(a("br").choose(&[Coding::Gzip]), None);
        assert_eq!(
            a("gzip;q=0.3, br;q=0.3").choose(&[Coding::Gzip, Coding::Brotli]),
            Some(Coding::Gzip)
        );
        assert_eq!(a("gzip;q=0.25").q(Coding::Gzip), 250);
        assert_eq!(a("gzip;q=0.2").q(Coding::Gzip), 200);
        // Several fields are one list.
        let two = AcceptEncoding::parse(["gzip;q=0.1", "br;q=0.2"]);
        assert_eq!(
            two.choose(&[Coding::Gzip, Coding::Brotli]),
            Some(Coding::Brotli)
        );
    }

    #[test]
    fn identity_rules() {
        assert!(a("gzip").identity_ok());
        assert!(!a("gzip, identity;q=0").identity_ok());
        assert!(!a("*;q=0").identity_ok());
        assert!(a("*;q=0, identity").identity_ok());
        assert!(AcceptEncoding::default().identity_ok());
    }

    #[test]
    fn compressible_types() {
        for t in [
            "text/plain",
            "TEXT/CSS",
            "application/json; charset=utf-8",
            "application/ld+json",
            "application/javascript",
            "application/wasm",
        ] {
            assert!(is_compressible(t), "{t}");
        }
        for t in [
            "image/jpeg",
            "video/mp4",
            "application/zip",
            "application/octet-stream",
            "font/woff2",
            "",
        ] {
            assert!(!is_compressible(t), "{t}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_values_never_panic(v in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let a = AcceptEncoding::parse([&v]);
            let _ = (a.choose(&BOTH), a.identity_ok());
            let s = String::from_utf8_lossy(&v);
            let _ = (is_compressible(&s), add_vary(Some(&s)), weak_etag(&s));
        }
    }
}
