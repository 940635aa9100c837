//! TLS: certificates from Kubernetes Secrets (served per SNI by the listeners'
//! resolver, `server/sni.rs`, from the live routing table, so a rotated Secret serves
//! new handshakes as soon as the table that carries it is swapped in, and open
//! connections keep the session they have), and TLS to endpoints.
//!
//! Crypto provider: aws-lc-rs. Its assembly for AES-GCM, ChaCha20 and P-256/RSA
//! signing is what OpenSSL uses too, and it signs RSA handshakes markedly faster than
//! ring, which is what full-handshake throughput against nginx comes down to.
//!
//! Protocols: TLS 1.2 and 1.3 only; rustls offers only AEAD suites with forward secrecy
//! (ECDHE), which is what an SSL Labs A+ asks for. ALPN `h2` then `http/1.1`. Session
//! resumption both ways: a server-side cache (TLS 1.2 IDs) and rotating tickets.

mod client_auth;
mod policy;

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls::{pki_types::CertificateDer, pki_types::PrivateKeyDer, pki_types::pem::PemObject};

pub use client_auth::{ClientAuth, ClientCert, Verify, VerifyClient};
pub use policy::TlsPolicy;

/// A certificate ready to serve, with what metrics and diagnostics need to know of it.
#[derive(Debug)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// `namespace/name` of the Secret it came from (or `default` for the generated one).
    pub source: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
    /// The DNS names it is valid for (subject alternative names).
    pub names: Vec<String>,
}

/// Why a Secret's certificate cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidCertificate {
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.crt is not a valid certificate: {0}")]
    BadCertificate(String),
    #[error("tls.key holds no PEM private key: {0}")]
    NoKey(String),
    #[error("tls.key is not a usable private key: {0}")]
    BadKey(String),
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
    #[error("the certificate expired at {0} (Unix time)")]
    Expired(i64),
    #[error("the certificate is not valid before {0} (Unix time)")]
    NotYetValid(i64),
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process's TLS provider, so every rustls user in the
/// process (the Kubernetes client too) agrees on one. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = aws_lc_rs::default_provider().install_default();
}

impl Certificate {
    /// Parses a Secret's `tls.crt` (leaf first, then its chain) and `tls.key`, and checks
    /// they belong together and that the leaf is valid at `now` (Unix seconds).
    pub fn from_pem(
        source: impl Into<String>,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: i64,
    ) -> Result<Self, InvalidCertificate> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| InvalidCertificate::BadCertificate(e.to_string()))?;
        let leaf = chain.first().ok_or(InvalidCertificate::NoCertificate)?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(leaf).map_err(|e| InvalidCertificate::BadCertificate(e.to_string()))?;
        let validity = parsed.validity();
        let not_after = validity.not_after.timestamp();
        let not_before = validity.not_before.timestamp();
        let names = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| InvalidCertificate::NoKey(e.to_string()))?;
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| InvalidCertificate::BadKey(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|_| InvalidCertificate::KeyMismatch)?;
        if not_after < now {
            return Err(InvalidCertificate::Expired(not_after));
        }
        if not_before > now {
            return Err(InvalidCertificate::NotYetValid(not_before));
        }
        Ok(Certificate {
            key: Arc::new(certified),
            source: source.into(),
            not_after,
            names,
        })
    }

    /// A self-signed certificate for handshakes no Secret answers, made at start-up (as
    /// ingress-nginx's "Fake Certificate"). Clients will not trust it, which is the point:
    /// an unknown name must not look valid.
    pub fn generate_default() -> Result<Self, InvalidCertificate> {
        let bad = |e: rcgen::Error| InvalidCertificate::BadCertificate(e.to_string());
        let mut params = rcgen::CertificateParams::new(vec!["portico.invalid".to_string()]).map_err(bad)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Portico Default Certificate");
        let signing_key = rcgen::KeyPair::generate().map_err(bad)?;
        let cert = params.self_signed(&signing_key).map_err(bad)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Certificate::from_pem(
            "default",
            cert.pem().as_bytes(),
            signing_key.serialize_pem().as_bytes(),
            now,
        )
    }
}

/// Every `reason` of `portico_tls_handshake_errors_total`: each value
/// [`handshake_failure_reason`] gives, and `timeout`.
pub const HANDSHAKE_FAILURE_REASONS: [&str; 9] = [
    "timeout",
    "client_closed",
    "incompatible_version_or_cipher",
    "no_application_protocol",
    "alert_received",
    "invalid_message",
    "peer_misbehaved",
    "other_tls_error",
    "io_error",
];

/// A short, stable label for why a handshake failed, for metrics.
pub fn handshake_failure_reason(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return "client_closed";
    }
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible_version_or_cipher",
        Some(rustls::Error::NoApplicationProtocol) => "no_application_protocol",
        Some(rustls::Error::AlertReceived(_)) => "alert_received",
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => "invalid_message",
        Some(rustls::Error::PeerMisbehaved(_)) => "peer_misbehaved",
        Some(_) => "other_tls_error",
        None => "io_error",
    }
}

/// How the proxy speaks TLS to a backend's endpoints (`appProtocol: https`).
#[derive(Debug)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    /// The name the endpoint's certificate must carry (and the SNI sent, when sent).
    pub server_name: ServerName<'static>,
    /// Whether the endpoint's certificate is checked against a CA bundle.
    pub verified: bool,
    /// Tells these settings apart from any others (see [`UpstreamTlsSettings::key`]):
    /// the pool keeps connections made with different settings apart.
    pub key: TlsKey,
}

/// A digest of [`UpstreamTlsSettings`]: equal settings, equal key, so connections
/// stay pooled across table swaps that rebuild the same settings. 64 bits, so that a
/// pooled connection's key (endpoint and this) keeps every request's response body
/// small; finding other settings with a given key is a second preimage of SHA-256
/// truncated to 64 bits.
pub type TlsKey = std::num::NonZeroU64;

/// What [`UpstreamTls`] is built from.
#[derive(Clone, Debug)]
pub struct UpstreamTlsSettings {
    /// The CA certificates (PEM) endpoints are verified against; `None`: not verified.
    pub verify_with: Option<Vec<u8>>,
    /// At most this many of the intermediate certificates an endpoint sends are used
    /// to reach a CA of `verify_with` (nginx's `proxy_ssl_verify_depth`, counted as
    /// OpenSSL counts it: depth 1 is the leaf, one intermediate, then the CA);
    /// `None`: no limit.
    pub verify_depth: Option<usize>,
    /// The certificate the proxy presents when an endpoint asks for one (nginx's
    /// `proxy_ssl_certificate`).
    pub client_cert: Option<Arc<CertifiedKey>>,
    /// The name the endpoint's certificate must carry, and the SNI when sent.
    pub server_name: String,
    /// Whether the name is sent as SNI (nginx's `proxy_ssl_server_name`).
    pub sni: bool,
    /// TLS 1.2 and TLS 1.3 offered (nginx's `proxy_ssl_protocols`); at least one.
    pub tls12: bool,
    pub tls13: bool,
    /// ALPN `h2` (HTTP/2 over TLS: gRPC over TLS) instead of `http/1.1`.
    pub h2: bool,
    /// Verify against the system's CA certificates (BackendTLSPolicy's
    /// `wellKnownCACertificates: System`) instead of `verify_with`.
    pub system_roots: bool,
    /// When not empty, the certificate must carry one of these names instead of
    /// `server_name` (BackendTLSPolicy's `subjectAltNames`); `server_name` stays the SNI.
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// A name an endpoint's certificate may be required to carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    /// A DNS name (the certificate's own may be a wildcard).
    Dns(String),
    /// A URI, such as a SPIFFE ID, compared exactly.
    Uri(String),
}

impl UpstreamTlsSettings {
    /// Unverified, no client certificate, SNI sent, TLS 1.2 and 1.3.
    pub fn new(server_name: impl Into<String>) -> Self {
        UpstreamTlsSettings {
            verify_with: None,
            verify_depth: None,
            client_cert: None,
            server_name: server_name.into(),
            sni: true,
            tls12: true,
            tls13: true,
            h2: false,
            system_roots: false,
            subject_alt_names: Vec::new(),
        }
    }

    /// A digest of every setting (SHA-256, truncated): content, not identity, so that
    /// two tables with the same settings share pooled connections, and one with other
    /// settings (another CA, no verification, another client certificate) never gets
    /// a connection made under these.
    pub fn key(&self) -> TlsKey {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(self.verify_with.as_deref().unwrap_or(b"-"));
        field(&[u8::from(self.verify_with.is_some())]);
        field(&self.verify_depth.map_or(u64::MAX, |d| d as u64).to_be_bytes());
        for cert in self.client_cert.iter().flat_map(|c| c.cert.iter()) {
            field(cert.as_ref());
        }
        field(self.server_name.as_bytes());
        field(&[
            u8::from(self.sni),
            u8::from(self.tls12),
            u8::from(self.tls13),
            u8::from(self.h2),
            u8::from(self.system_roots),
        ]);
        for name in &self.subject_alt_names {
            let (tag, value) = match name {
                SubjectAltName::Dns(v) => (b"d", v),
                SubjectAltName::Uri(v) => (b"u", v),
            };
            field(tag);
            field(value.as_bytes());
        }
        let digest = h.finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest[..8]);
        TlsKey::new(u64::from_be_bytes(first)).unwrap_or(TlsKey::MIN)
    }
}

impl UpstreamTls {
    /// Verifies endpoints against the CA certificates in `ca_pem` for `server_name`.
    pub fn verified(ca_pem: &[u8], server_name: &str) -> Result<Self, InvalidCertificate> {
        Self::build(&UpstreamTlsSettings {
            verify_with: Some(ca_pem.to_vec()),
            ..UpstreamTlsSettings::new(server_name)
        })
    }

    /// Encrypts without checking the endpoint's certificate: what ingress-nginx does for
    /// `backend-protocol: HTTPS` unless `proxy-ssl-verify` is on. Pods commonly serve
    /// self-signed certificates; naming a CA bundle turns verification on.
    pub fn unverified(server_name: &str) -> Result<Self, InvalidCertificate> {
        Self::build(&UpstreamTlsSettings::new(server_name))
    }

    /// The client side of TLS as `settings` ask.
    pub fn build(settings: &UpstreamTlsSettings) -> Result<Self, InvalidCertificate> {
        let bad = |e: rustls::Error| InvalidCertificate::BadCertificate(e.to_string());
        let provider = provider();
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (settings.tls12, &rustls::version::TLS12),
            (settings.tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter_map(|(on, v)| on.then_some(v))
        .collect();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(bad)?;
        let verifier = Arc::new(EndpointVerifier::new(settings, provider)?);
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let mut config = match &settings.client_cert {
            Some(cert) => builder.with_client_cert_resolver(Arc::new(UpstreamClientCert(cert.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![if settings.h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        config.enable_sni = settings.sni;
        let name = &settings.server_name;
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| InvalidCertificate::BadCertificate(format!("{name:?} is not a valid server name")))?;
        Ok(UpstreamTls {
            config: Arc::new(config),
            server_name,
            verified: settings.verify_with.is_some() || settings.system_roots,
            key: settings.key(),
        })
    }
}

/// The CA certificates in `ca_pem`, as trust anchors; at least one.
pub(crate) fn roots_from_pem(ca_pem: &[u8]) -> Result<rustls::RootCertStore, InvalidCertificate> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| InvalidCertificate::BadCertificate(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| InvalidCertificate::BadCertificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(InvalidCertificate::NoCertificate);
    }
    Ok(roots)
}

/// Presents one certificate to every endpoint that asks for one.
#[derive(Debug)]
struct UpstreamClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for UpstreamClientCert {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The system's CA certificates, read once (`SSL_CERT_FILE`/`SSL_CERT_DIR` or the
/// platform's store).
fn system_roots() -> Result<Arc<rustls::RootCertStore>, InvalidCertificate> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(errors = ?found.errors, "no system CA certificates found");
        }
        Arc::new(roots)
    });
    if roots.is_empty() {
        return Err(InvalidCertificate::NoCertificate);
    }
    Ok(roots.clone())
}

/// Checks an endpoint's certificate as the settings ask: against a CA bundle, or not
/// at all; the handshake's signatures are checked either way.
#[derive(Debug)]
struct EndpointVerifier {
    /// `None`: any certificate is accepted.
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// The trust anchors and names for `subject_alt_names` (checked instead of the
    /// server name); `None` when there are none.
    alt_names: Option<(Arc<rustls::RootCertStore>, Vec<SubjectAltName>)>,
    /// At most this many of the intermediates the endpoint sends are used, the first
    /// ones in the order sent: OpenSSL's verify depth, approximated (webpki has no
    /// depth of its own; certificates of the CA bundle are trust anchors whatever
    /// their depth).
    depth: usize,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl EndpointVerifier {
    fn new(
        settings: &UpstreamTlsSettings,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, InvalidCertificate> {
        let bad = |e: String| InvalidCertificate::BadCertificate(e);
        let roots = match (&settings.verify_with, settings.system_roots) {
            (_, true) => Some(system_roots()?),
            (Some(ca_pem), false) => Some(Arc::new(roots_from_pem(ca_pem)?)),
            (None, false) => None,
        };
        let chain = match &roots {
            Some(roots) => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            None => None,
        };
        let alt_names = roots
            .filter(|_| !settings.subject_alt_names.is_empty())
            .map(|roots| (roots, settings.subject_alt_names.clone()));
        Ok(EndpointVerifier {
            chain,
            alt_names,
            depth: settings.verify_depth.unwrap_or(usize::MAX),
            provider,
        })
    }
}

impl EndpointVerifier {
    /// The chain up to a trust anchor, then at least one of `names` in the
    /// certificate's subject alternative names: DNS names as webpki matches a server
    /// name (wildcards included), URIs exactly. The server name (the SNI) is not one
    /// of them unless listed.
    fn verify_alt_names(
        &self,
        roots: &rustls::RootCertStore,
        names: &[SubjectAltName],
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let uris = || -> Vec<String> {
            let Ok((_, parsed)) = x509_parser::parse_x509_certificate(end_entity) else {
                return Vec::new();
            };
            let Ok(Some(san)) = parsed.subject_alternative_name() else {
                return Vec::new();
            };
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        };
        let matched = names.iter().any(|name| match name {
            SubjectAltName::Dns(dns) => {
                ServerName::try_from(dns.as_str()).is_ok_and(|n| rustls::client::verify_server_name(&cert, &n).is_ok())
            }
            SubjectAltName::Uri(uri) => uris().iter().any(|u| u == uri),
        });
        if matched {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }
}

impl ServerCertVerifier for EndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        let used = &intermediates[..intermediates.len().min(self.depth)];
        match &self.alt_names {
            None => chain.verify_server_cert(end_entity, used, server_name, ocsp, now),
            Some((roots, names)) => self.verify_alt_names(roots, names, end_entity, used, now),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root CA, two intermediates under it, and a leaf for `web.internal` under
    /// those: (root PEM, [leaf, intermediate 2, intermediate 1] as DER).
    fn chain() -> (String, Vec<CertificateDer<'static>>) {
        let ca_params = |cn: &str| {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p
        };
        let root = rcgen::CertifiedIssuer::self_signed(ca_params("root"), rcgen::KeyPair::generate().unwrap()).unwrap();
        let int1 =
            rcgen::CertifiedIssuer::signed_by(ca_params("int1"), rcgen::KeyPair::generate().unwrap(), &root).unwrap();
        let int2 =
            rcgen::CertifiedIssuer::signed_by(ca_params("int2"), rcgen::KeyPair::generate().unwrap(), &int1).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["web.internal".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &int2)
            .unwrap();
        let ders = vec![leaf.der().clone(), int2.der().clone(), int1.der().clone()];
        (root.pem(), ders)
    }

    fn verify(depth: Option<usize>) -> Result<ServerCertVerified, rustls::Error> {
        let (root, ders) = chain();
        let settings = UpstreamTlsSettings {
            verify_with: Some(root.into_bytes()),
            verify_depth: depth,
            ..UpstreamTlsSettings::new("web.internal")
        };
        let verifier = EndpointVerifier::new(&settings, provider()).unwrap();
        let name = ServerName::try_from("web.internal").unwrap();
        verifier.verify_server_cert(&ders[0], &ders[1..], &name, &[], UnixTime::now())
    }

    /// nginx's `proxy_ssl_verify_depth` as OpenSSL counts it: depth N lets a chain
    /// through N intermediates to the CA; a chain that needs more fails.
    #[test]
    fn verify_depth_limits_the_intermediates_used() {
        assert!(verify(None).is_ok());
        assert!(verify(Some(2)).is_ok());
        assert!(verify(Some(1)).is_err());
    }
}
