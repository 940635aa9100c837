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

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls::{pki_types::CertificateDer, pki_types::PrivateKeyDer, pki_types::pem::PemObject};

pub use client_auth::{ClientAuth, ClientCert, Verify, VerifyClient};

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
    /// The name the endpoint's certificate must carry (and the SNI sent).
    pub server_name: ServerName<'static>,
    /// Whether the endpoint's certificate is checked against a CA bundle.
    pub verified: bool,
}

impl UpstreamTls {
    /// Verifies endpoints against the CA certificates in `ca_pem` for `server_name`.
    pub fn verified(ca_pem: &[u8], server_name: &str) -> Result<Self, InvalidCertificate> {
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
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| InvalidCertificate::BadCertificate(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::new(config, server_name, true)
    }

    /// Encrypts without checking the endpoint's certificate: what ingress-nginx does for
    /// `backend-protocol: HTTPS` unless `proxy-ssl-verify` is on. Pods commonly serve
    /// self-signed certificates; naming a CA bundle turns verification on.
    pub fn unverified(server_name: &str) -> Result<Self, InvalidCertificate> {
        let provider = provider();
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| InvalidCertificate::BadCertificate(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Self::new(config, server_name, false)
    }

    fn new(mut config: ClientConfig, server_name: &str, verified: bool) -> Result<Self, InvalidCertificate> {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|_| InvalidCertificate::BadCertificate(format!("{server_name:?} is not a valid server name")))?;
        Ok(UpstreamTls {
            config: Arc::new(config),
            server_name,
            verified,
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

/// Accepts any endpoint certificate while still checking the handshake's signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
