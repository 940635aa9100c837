//! Client certificates, per request (ingress-nginx's `auth-tls-*`): the connection's
//! certificate, checked after the handshake against the host's CAs
//! (`tls::ClientAuth`), decides whether the request goes on, as nginx's
//! `ssl_verify_client` does after its handshake; the endpoint is told the outcome in
//! the headers ingress-nginx's template sets.
//!
//! - `on`: no certificate is 400 (nginx's 496), an invalid one is 400 (495);
//! - `optional`: no certificate goes on, an invalid one is 400;
//! - `optional_no_ca`: a certificate whose issuer is unknown goes on too;
//! - `auth-tls-error-page`: a 302 to that URL instead of those 400s
//!   (`error_page 495 496 = URL`);
//! - `auth-tls-match-cn`: a subject DN the expression does not find is 403, on any
//!   request (the template's `if ($ssl_client_s_dn !~ ...)`, where a plain-HTTP
//!   request's DN is empty);
//! - plain-HTTP requests are not asked for a certificate (nginx verifies TLS
//!   connections only).
//!
//! Headers (`proxy_set_header`, so whatever the client sent under these names is
//! replaced or removed): `ssl-client-verify`, `ssl-client-subject-dn`,
//! `ssl-client-issuer-dn`, and `ssl-client-cert` with
//! `auth-tls-pass-certificate-to-upstream`. A header whose nginx variable would be
//! empty is not sent.

use std::sync::Arc;

use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};

use super::{Answer, Filter, Phases, RequestHead, UpstreamHead};
use crate::tls::{ClientAuth, ClientCert, Verify, VerifyClient};

static VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
static SUBJECT: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
static ISSUER: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
static CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

#[derive(Debug)]
pub(super) struct ClientCertCheck(pub Arc<ClientAuth>);

impl ClientCertCheck {
    /// The connection's certificate, when it was checked against this host's CAs: a
    /// handshake that named another host was not asked for this one's.
    fn cert<'a>(&self, cert: Option<&'a ClientCert>) -> Option<&'a ClientCert> {
        cert.filter(|c| c.checked_by(&self.0))
    }
}

impl Filter for ClientCertCheck {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        let auth = &self.0;
        let cert = self.cert(req.client_cert);
        if req.tls {
            let verify = cert.map_or(&Verify::None, |c| &c.verify);
            let refused = match (auth.mode, verify) {
                (VerifyClient::Off, _) | (_, Verify::Success) => false,
                (VerifyClient::On, Verify::None) => true,
                (_, Verify::None) => false,
                (VerifyClient::OptionalNoCa, Verify::Failed { unknown_issuer, .. }) => !unknown_issuer,
                (_, Verify::Failed { .. }) => true,
            };
            if refused {
                let mut headers = HeaderMap::new();
                let status = match &auth.error_page {
                    Some(url) => {
                        headers.insert(LOCATION, url.clone());
                        StatusCode::FOUND
                    }
                    None => StatusCode::BAD_REQUEST,
                };
                return Some(Answer::Status { status, headers });
            }
        }
        if let Some(cn) = &auth.match_cn {
            let subject = cert.and_then(|c| c.subject.as_deref()).unwrap_or_default();
            if !cn.is_match(subject) {
                return Some(Answer::Status {
                    status: StatusCode::FORBIDDEN,
                    headers: HeaderMap::new(),
                });
            }
        }
        None
    }

    fn upstream_request(&self, req: &mut UpstreamHead<'_>) {
        let headers = &mut *req.headers;
        for name in [&VERIFY, &SUBJECT, &ISSUER, &CERT] {
            headers.remove(name);
        }
        if !req.tls {
            return;
        }
        let cert = self.cert(req.client_cert);
        let verify = cert.map_or(Verify::None.text(), |c| c.verify.text());
        let values = [
            (&VERIFY, Some(verify.as_str())),
            (&SUBJECT, cert.and_then(|c| c.subject.as_deref())),
            (&ISSUER, cert.and_then(|c| c.issuer.as_deref())),
            (&CERT, cert.and_then(|c| c.pem.as_deref())),
        ];
        for (name, value) in values {
            if let Some(v) = value
                .filter(|v| !v.is_empty())
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                headers.insert(name.clone(), v);
            }
        }
    }

    fn phases(&self) -> Phases {
        Phases {
            request: true,
            upstream_request: true,
            ..Phases::default()
        }
    }
    fn header_names(&self) -> Option<Vec<HeaderName>> {
        Some([&VERIFY, &SUBJECT, &ISSUER, &CERT].into_iter().cloned().collect())
    }
}
