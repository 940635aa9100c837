//! `Strict-Transport-Security` on every HTTPS response of a host with TLS, the proxy's
//! own answers included (ingress-nginx's `hsts`).

use std::sync::LazyLock;

use http::header::{HeaderName, HeaderValue, STRICT_TRANSPORT_SECURITY};

use super::{Filter, Phases, ResponseHead};

/// ingress-nginx's default: one year, subdomains included.
pub static DEFAULT_HSTS: LazyLock<HeaderValue> =
    LazyLock::new(|| HeaderValue::from_static("max-age=31536000; includeSubDomains"));

#[derive(Debug)]
pub struct Hsts(pub HeaderValue);

impl Filter for Hsts {
    fn response(&self, resp: &mut ResponseHead<'_>) {
        if resp.tls {
            resp.headers.insert(STRICT_TRANSPORT_SECURITY, self.0.clone());
        }
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE
    }

    fn header_names(&self) -> Option<Vec<HeaderName>> {
        Some(vec![STRICT_TRANSPORT_SECURITY])
    }
}
