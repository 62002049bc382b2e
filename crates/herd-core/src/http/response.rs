//! What a route may return: [`IntoResponse`] turns strings, bytes, status codes, `(status,
//! body)` pairs, [`Json`], [`Html`], [`Redirect`] and `Result`s of them into a response, so a
//! handler can use `?` and return whatever is natural.
//!
//! ```
//! use herd_core::http::{Body, Request, Router, StatusCode};
//!
//! fn user(req: Request<Body>) -> Result<String, (StatusCode, &'static str)> {
//!     let id: u32 = req.uri().query().unwrap_or("").parse()
//!         .map_err(|_| (StatusCode::BAD_REQUEST, "id must be a number"))?;
//!     Ok(format!("user {id}"))
//! }
//! let router = Router::new()
//!     .get("/user", user)
//!     .get("/health", |_| "ok")
//!     .get("/gone", |_| StatusCode::GONE);
//! # let _ = router;
//! ```

use ::http::header::{self, HeaderValue};
use ::http::{Response, StatusCode};
use bytes::Bytes;

use super::Body;

/// Turns a handler's return value into a response.
pub trait IntoResponse {
    /// The response.
    fn into_response(self) -> Response<Body>;
}

impl IntoResponse for Response<Body> {
    #[inline(always)]
    fn into_response(self) -> Response<Body> {
        self
    }
}

fn with_type(body: Body, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";

impl IntoResponse for &'static str {
    fn into_response(self) -> Response<Body> {
        with_type(Body::from_static(self.as_bytes()), TEXT)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response<Body> {
        with_type(Body::from(self), TEXT)
    }
}

impl IntoResponse for &'static [u8] {
    fn into_response(self) -> Response<Body> {
        with_type(Body::from_static(self), OCTETS)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response<Body> {
        with_type(Body::from(self), OCTETS)
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response<Body> {
        with_type(Body::from(self), OCTETS)
    }
}

impl IntoResponse for Body {
    fn into_response(self) -> Response<Body> {
        Response::new(self)
    }
}

/// 200 with an empty body.
impl IntoResponse for () {
    fn into_response(self) -> Response<Body> {
        Response::new(Body::empty())
    }
}

/// The status with an empty body.
impl IntoResponse for StatusCode {
    fn into_response(self) -> Response<Body> {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = self;
        r
    }
}

/// `body` answered with `status`.
impl<B: IntoResponse> IntoResponse for (StatusCode, B) {
    fn into_response(self) -> Response<Body> {
        let mut r = self.1.into_response();
        *r.status_mut() = self.0;
        r
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response<Body> {
        match self {
            Ok(t) => t.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// An HTML body (`text/html; charset=utf-8`).
#[derive(Debug, Clone)]
pub struct Html<T>(pub T);

impl<T: Into<Body>> IntoResponse for Html<T> {
    fn into_response(self) -> Response<Body> {
        with_type(self.0.into(), "text/html; charset=utf-8")
    }
}

/// A redirect: `Location` and a status.
#[derive(Debug, Clone)]
pub struct Redirect {
    status: StatusCode,
    location: HeaderValue,
}

impl Redirect {
    fn new(status: StatusCode, to: &str) -> Redirect {
        Redirect {
            status,
            // A location that is not a valid header value becomes `/`, not a panic.
            location: HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        }
    }

    /// 303 See Other: the client GETs `to` (after a POST, say).
    pub fn to(to: &str) -> Redirect {
        Redirect::new(StatusCode::SEE_OTHER, to)
    }

    /// 307 Temporary Redirect: the same method, to `to`, this time.
    pub fn temporary(to: &str) -> Redirect {
        Redirect::new(StatusCode::TEMPORARY_REDIRECT, to)
    }

    /// 308 Permanent Redirect: the same method, to `to`, from now on.
    pub fn permanent(to: &str) -> Redirect {
        Redirect::new(StatusCode::PERMANENT_REDIRECT, to)
    }
}

impl IntoResponse for Redirect {
    fn into_response(self) -> Response<Body> {
        let mut r = StatusCode::into_response(self.status);
        r.headers_mut().insert(header::LOCATION, self.location);
        r
    }
}

/// A JSON body (feature `json`): serialized with `serde_json`, `application/json`. A value
/// that does not serialize (a map with non-string keys, say) answers 500.
#[cfg(feature = "json")]
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

#[cfg(feature = "json")]
impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response<Body> {
        match serde_json::to_vec(&self.0) {
            Ok(v) => with_type(Body::from(v), "application/json"),
            Err(e) => {
                tracing::error!("http: a JSON response did not serialize: {e}");
                super::text_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}
