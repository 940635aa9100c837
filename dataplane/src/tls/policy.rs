//! The protocol versions and TLS 1.2 cipher suites the Ingress HTTPS port offers:
//! ingress-nginx's `ssl-protocols` and `ssl-ciphers` ConfigMap keys, live with the
//! table that carries them.

use std::sync::Arc;

use rustls::{CipherSuite, ServerConfig};

/// What a table asks of the Ingress HTTPS port's handshakes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    pub tls12: bool,
    pub tls13: bool,
    /// TLS 1.2's cipher suites in the server's order of preference; `None`: all that
    /// rustls offers. TLS 1.3's are not chosen here, as nginx's `ssl_ciphers` does not
    /// choose them either.
    pub tls12_suites: Option<Vec<CipherSuite>>,
}

/// OpenSSL's names of the TLS 1.2 cipher suites rustls offers (`openssl ciphers -V`).
/// Every other OpenSSL suite (CBC modes, DHE, RSA key exchange) is one rustls never
/// negotiates.
const OPENSSL_NAMES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

impl TlsPolicy {
    /// The TLS 1.2 suite an OpenSSL cipher name (`ECDHE-RSA-AES128-GCM-SHA256`) stands
    /// for, when rustls offers it.
    pub fn openssl_suite(name: &str) -> Option<CipherSuite> {
        OPENSSL_NAMES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// `base` (the port's configuration: certificates, ALPN, session cache and ticket
    /// keys, all shared) offering only what this policy allows.
    pub fn apply(&self, base: &ServerConfig) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut provider = (**base.crypto_provider()).clone();
        // A version turned off takes its suites along, so what the provider holds says
        // which versions are offered (see [`versions_of`]).
        provider.cipher_suites.retain(|s| {
            let v = s.version();
            (self.tls12 || v != &rustls::version::TLS12) && (self.tls13 || v != &rustls::version::TLS13)
        });
        if let Some(order) = &self.tls12_suites {
            let all = std::mem::take(&mut provider.cipher_suites);
            let tls13 = all.iter().filter(|s| s.version() == &rustls::version::TLS13);
            let tls12 = order.iter().filter_map(|id| {
                all.iter()
                    .find(|s| s.suite() == *id && s.version() == &rustls::version::TLS12)
            });
            provider.cipher_suites = tls13.chain(tls12).copied().collect();
        }
        let versions = versions_of(&provider);
        let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)?
            .with_no_client_auth()
            .with_cert_resolver(base.cert_resolver.clone());
        cfg.alpn_protocols = base.alpn_protocols.clone();
        cfg.ignore_client_order = base.ignore_client_order;
        cfg.session_storage = base.session_storage.clone();
        cfg.ticketer = base.ticketer.clone();
        Ok(Arc::new(cfg))
    }
}

/// The protocol versions a provider has cipher suites for: those a configuration made
/// by [`TlsPolicy::apply`] offers.
pub(crate) fn versions_of(provider: &rustls::crypto::CryptoProvider) -> Vec<&'static rustls::SupportedProtocolVersion> {
    [&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .filter(|v| provider.cipher_suites.iter().any(|s| s.version() == *v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Arc<ServerConfig> {
        let table: crate::table::LiveTable = Default::default();
        let fallback = Arc::new(crate::tls::Certificate::generate_default().expect("a certificate"));
        crate::server::sni::server_config(table, None, fallback).expect("the port's configuration")
    }

    /// Only TLS 1.3: TLS 1.2 is not offered. Only two TLS 1.2 suites, in the listed
    /// order, beside every TLS 1.3 suite.
    #[test]
    fn a_policy_narrows_versions_and_orders_tls12_suites() {
        let base = base();
        let only13 = TlsPolicy {
            tls12: false,
            tls13: true,
            tls12_suites: None,
        }
        .apply(&base)
        .expect("a configuration");
        assert_eq!(versions_of(only13.crypto_provider()), vec![&rustls::version::TLS13]);
        assert_eq!(versions_of(base.crypto_provider()).len(), 2);
        let order = vec![
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ];
        let two = TlsPolicy {
            tls12: true,
            tls13: true,
            tls12_suites: Some(order.clone()),
        }
        .apply(&base)
        .expect("a configuration");
        let suites = &two.crypto_provider().cipher_suites;
        let tls12: Vec<CipherSuite> = suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| s.suite())
            .collect();
        assert_eq!(tls12, order);
        assert!(suites.iter().any(|s| s.version() == &rustls::version::TLS13));
        assert!(Arc::ptr_eq(&two.cert_resolver, &base.cert_resolver));
        assert_eq!(TlsPolicy::openssl_suite("DHE-RSA-AES128-GCM-SHA256"), None);
    }
}
