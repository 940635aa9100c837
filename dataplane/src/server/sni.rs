//! The listeners' TLS side: the certificate for each handshake, read from the live
//! routing table (not from the proxy, which this layer only serves through).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::table::LiveTable;
use crate::tls::Certificate;

/// Picks the certificate for each handshake from the live routing table: exact name,
/// then wildcard, then the default.
pub struct SniResolver {
    table: LiveTable,
    /// The Gateway listener port this resolver serves, whose certificates alone it
    /// chooses from; `None`: the Ingress HTTPS port's.
    listener: Option<u16>,
    default: Arc<Certificate>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("listener", &self.listener)
            .field("default", &self.default.source)
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let ingress = table.default_certificate();
        let cert = match self.listener {
            None => hello.server_name().and_then(|sni| table.certificate(sni)).or(ingress),
            // A listener's own certificates, then its default, then the table's: never
            // a certificate another listener or an Ingress serves by name.
            Some(port) => table.listener(port).and_then(|l| {
                hello
                    .server_name()
                    .and_then(|sni| l.table.certificate(sni))
                    .or(l.table.default_certificate())
            }),
        };
        Some(cert.or(ingress).unwrap_or(&self.default).key.clone())
    }
}

/// The TLS configuration of the Ingress HTTPS port (`listener` `None`) or of a Gateway
/// listener port. Each has its own session cache and ticket keys: a session made on
/// one port does not resume on another, whose certificates differ.
pub fn server_config(
    table: LiveTable,
    listener: Option<u16>,
    default: Arc<Certificate>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    crate::metrics::Metrics::get().set_fallback_certificate(&default.source, default.not_after as f64);
    let mut cfg = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            table,
            listener,
            default,
        }));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's cipher order (AES-GCM, then ChaCha20) decides, not the client's, so
    // a client that lists a weaker AEAD first still gets the stronger one.
    cfg.ignore_client_order = true;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(cfg))
}
