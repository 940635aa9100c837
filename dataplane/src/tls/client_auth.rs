//! Client certificates on the Ingress HTTPS port (ingress-nginx's `auth-tls-*`
//! annotations: nginx's `ssl_client_certificate`, `ssl_verify_client`,
//! `ssl_verify_depth`).
//!
//! As nginx does, the handshake asks for a certificate (naming the host's CAs) and
//! completes whatever the client sends: the signature that proves the client holds the
//! certificate's key is checked in the handshake, the chain is checked after it, and
//! the request is what is refused (400, or a redirect to `auth-tls-error-page`), not
//! the connection. That keeps nginx's answers and its `ssl-client-verify` header
//! (`SUCCESS`, `FAILED:reason`, `NONE`) for requests that may go on without a valid
//! certificate (`optional`, `optional_no_ca`).
//!
//! Only handshakes naming a host with client authentication get a configuration that
//! asks for a certificate (its own session cache and tickets, so a session made
//! without a certificate never resumes into one that needs it); every other handshake
//! is as before.

use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime, pem::PemObject};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::InvalidCertificate;

/// nginx's `ssl_verify_client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyClient {
    /// A valid certificate is required.
    On,
    /// No certificate is asked for.
    Off,
    /// A certificate is asked for; none is accepted, an invalid one is not.
    Optional,
    /// As `Optional`, and a certificate whose issuer is unknown is accepted too.
    OptionalNoCa,
}

impl VerifyClient {
    /// Parses ingress-nginx's `auth-tls-verify-client` values.
    pub fn parse(s: &str) -> Option<VerifyClient> {
        Some(match s {
            "on" => VerifyClient::On,
            "off" => VerifyClient::Off,
            "optional" => VerifyClient::Optional,
            "optional_no_ca" => VerifyClient::OptionalNoCa,
            _ => return None,
        })
    }
}

/// One host's client certificate authentication.
#[derive(Debug)]
pub struct ClientAuth {
    /// `namespace/name` of the Secret holding the CAs.
    pub source: String,
    pub mode: VerifyClient,
    /// nginx's `ssl_verify_depth`: intermediates beyond `depth - 1` are not used.
    pub depth: usize,
    /// `auth-tls-match-cn`: the subject DN must match it, else 403.
    pub match_cn: Option<regex::Regex>,
    /// `auth-tls-error-page`: where a request without a valid certificate is
    /// redirected, instead of getting 400.
    pub error_page: Option<HeaderValue>,
    /// `auth-tls-pass-certificate-to-upstream`: the certificate goes to the endpoint in
    /// `ssl-client-cert`.
    pub pass_certificate: bool,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The handshake configuration that asks for a certificate, made from the port's
    /// on first use.
    config: OnceLock<Arc<ServerConfig>>,
}

impl ClientAuth {
    /// Client authentication against the CA certificates in `ca_pem` (and the
    /// revocation lists in `crl_pem`, when given).
    pub fn new(source: impl Into<String>, ca_pem: &[u8], crl_pem: Option<&[u8]>) -> Result<Self, InvalidCertificate> {
        let roots = super::roots_from_pem(ca_pem)?;
        let crls = match crl_pem {
            Some(pem) => CertificateRevocationListDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| InvalidCertificate::BadCertificate(format!("ca.crl: {e}")))?,
            None => Vec::new(),
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider())
            .with_crls(crls)
            .allow_unauthenticated()
            .build()
            .map_err(|e| InvalidCertificate::BadCertificate(e.to_string()))?;
        Ok(ClientAuth {
            source: source.into(),
            mode: VerifyClient::On,
            depth: 1,
            match_cn: None,
            error_page: None,
            pass_certificate: false,
            verifier,
            config: OnceLock::new(),
        })
    }

    /// Whether handshakes for the host ask for a certificate.
    pub fn asks(&self) -> bool {
        self.mode != VerifyClient::Off
    }

    /// The handshake configuration for the host: `base`'s certificates, protocols and
    /// ALPN, asking for a client certificate.
    pub(crate) fn server_config(&self, base: &ServerConfig) -> Result<Arc<ServerConfig>, rustls::Error> {
        if let Some(cfg) = self.config.get() {
            return Ok(cfg.clone());
        }
        // The port's versions and suites (`ssl-protocols`, `ssl-ciphers`) hold here too.
        let versions = super::policy::versions_of(base.crypto_provider());
        let mut cfg = ServerConfig::builder_with_provider(base.crypto_provider().clone())
            .with_protocol_versions(&versions)?
            .with_client_cert_verifier(Arc::new(AskOnly(self.verifier.clone())))
            .with_cert_resolver(base.cert_resolver.clone());
        cfg.alpn_protocols = base.alpn_protocols.clone();
        cfg.ignore_client_order = base.ignore_client_order;
        cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
        cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        Ok(self.config.get_or_init(|| Arc::new(cfg)).clone())
    }

    /// Checks what the client sent in the handshake (`None`: no certificate).
    pub fn check(self: &Arc<Self>, chain: Option<&[CertificateDer<'static>]>) -> ClientCert {
        let Some((leaf, rest)) = chain.and_then(|c| c.split_first()) else {
            return ClientCert {
                auth: self.clone(),
                verify: Verify::None,
                subject: None,
                issuer: None,
                pem: None,
            };
        };
        let intermediates = &rest[..rest.len().min(self.depth.saturating_sub(1))];
        let verify = match self.verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            Ok(_) => Verify::Success,
            Err(e) => Verify::Failed {
                unknown_issuer: matches!(
                    e,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                ),
                reason: e.to_string(),
            },
        };
        let (subject, issuer) = match x509_parser::parse_x509_certificate(leaf) {
            Ok((_, parsed)) => (Some(rfc2253(parsed.subject())), Some(rfc2253(parsed.issuer()))),
            Err(_) => (None, None),
        };
        let pem = self.pass_certificate.then(|| escaped_pem(leaf));
        ClientCert {
            auth: self.clone(),
            verify,
            subject,
            issuer,
            pem,
        }
    }
}

/// The outcome of checking a connection's client certificate, kept with the
/// connection for its requests.
#[derive(Debug)]
pub struct ClientCert {
    /// The host settings it was checked against.
    auth: Arc<ClientAuth>,
    pub verify: Verify,
    /// nginx's `$ssl_client_s_dn` and `$ssl_client_i_dn` (RFC 2253).
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// nginx's `$ssl_client_escaped_cert`, when it is passed on.
    pub pem: Option<String>,
}

impl ClientCert {
    /// Whether it was checked against `auth` (the route's host's), not another host's.
    pub fn checked_by(&self, auth: &Arc<ClientAuth>) -> bool {
        Arc::ptr_eq(&self.auth, auth)
    }
}

/// nginx's `$ssl_client_verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    Success,
    Failed { reason: String, unknown_issuer: bool },
    None,
}

impl Verify {
    /// The `ssl-client-verify` header's text.
    pub fn text(&self) -> String {
        match self {
            Verify::Success => "SUCCESS".into(),
            Verify::Failed { reason, .. } => format!("FAILED:{reason}"),
            Verify::None => "NONE".into(),
        }
    }
}

/// A distinguished name as RFC 2253 writes it (nginx's `$ssl_client_s_dn` since 1.11.6):
/// the last RDN first, `,` between them, `+` within one, specials escaped.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let oids = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for rdn in name.iter_rdn().collect::<Vec<_>>().into_iter().rev() {
        if !out.is_empty() {
            out.push(',');
        }
        for (i, attr) in rdn.iter().enumerate() {
            if i > 0 {
                out.push('+');
            }
            let oid = attr.attr_type();
            match x509_parser::objects::oid2abbrev(oid, oids) {
                Ok(short) => out.push_str(short),
                Err(_) => out.push_str(&oid.to_id_string()),
            }
            out.push('=');
            let value = attr.as_str().unwrap_or_default();
            for (j, c) in value.chars().enumerate() {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                    || (j == 0 && (c == '#' || c == ' '))
                    || (j + 1 == value.chars().count() && c == ' ');
                if special {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// The certificate as PEM, URL-escaped (nginx's `$ssl_client_escaped_cert`): every
/// byte but letters, digits and `-._~` as `%XX`.
fn escaped_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() * 3 / 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asks for a certificate naming the CAs, checks the client's proof of its key, and
/// leaves the chain to [`ClientAuth::check`] after the handshake.
#[derive(Debug)]
struct AskOnly(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for AskOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ca = (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>);

    fn ca(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert, rcgen::Issuer::new(params, key))
    }

    fn client(cn: &str, by: &Ca) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        // rcgen writes CN first, then O.
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc");
        params.signed_by(&key, &by.1).unwrap().der().clone()
    }

    #[test]
    fn a_chain_is_judged_as_nginx_reports_it() {
        let trusted = ca("Trusted CA");
        let auth = Arc::new(ClientAuth::new("default/ca", trusted.0.pem().as_bytes(), None).unwrap());
        let good = auth.check(Some(&[client("alice", &trusted)]));
        assert_eq!(good.verify, Verify::Success);
        assert_eq!(good.verify.text(), "SUCCESS");
        // RFC 2253: the last RDN first, the comma in the value escaped.
        assert_eq!(good.subject.as_deref(), Some("O=Example\\, Inc,CN=alice"));
        assert_eq!(good.issuer.as_deref(), Some("CN=Trusted CA"));
        assert!(good.checked_by(&auth) && good.pem.is_none());

        let other = ca("Other CA");
        let bad = auth.check(Some(&[client("mallory", &other)]));
        assert!(
            matches!(
                bad.verify,
                Verify::Failed {
                    unknown_issuer: true,
                    ..
                }
            ),
            "{:?}",
            bad.verify
        );
        assert!(bad.verify.text().starts_with("FAILED:"));

        assert_eq!(auth.check(None).verify, Verify::None);
        assert_eq!(auth.check(Some(&[])).verify.text(), "NONE");
    }

    #[test]
    fn the_certificate_passed_on_is_escaped_pem() {
        let trusted = ca("Trusted CA");
        let mut auth = ClientAuth::new("default/ca", trusted.0.pem().as_bytes(), None).unwrap();
        auth.pass_certificate = true;
        let cert = client("alice", &trusted);
        let pem = Arc::new(auth).check(Some(std::slice::from_ref(&cert))).pem.unwrap();
        assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
        assert!(pem.ends_with("-----END%20CERTIFICATE-----%0A"), "{pem}");
        assert!(!pem.contains(['+', '/', '=', ' ', '\n']), "{pem}");
    }

    #[test]
    fn a_secret_without_a_ca_is_refused() {
        assert_eq!(
            ClientAuth::new("default/ca", b"no pem here", None).unwrap_err(),
            InvalidCertificate::NoCertificate
        );
        assert_eq!(VerifyClient::parse("optional_no_ca"), Some(VerifyClient::OptionalNoCa));
        assert_eq!(VerifyClient::parse("yes"), None);
    }
}
