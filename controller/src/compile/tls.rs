//! `spec.tls`: certificates from `kubernetes.io/tls` Secrets, per host.
//!
//! A host listed under `spec.tls` is a TLS host whether or not its Secret is usable: it
//! gets the HTTPS redirect and HSTS either way, and a broken Secret only costs it its
//! own certificate (handshakes fall back to the default one) plus a diagnostic. Every
//! other host keeps its certificate.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use portico_dataplane::table::HostMatch;
use portico_dataplane::tls::Certificate;

use super::diagnostics::{Problem, Problems, reason};
use super::{Compiler, namespace_of};

/// The `kubernetes.io/tls` Secrets, each parsed at most once per compile however many
/// Ingresses name it.
pub(super) struct Certificates<'a> {
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    parsed: HashMap<(String, String), Result<Arc<Certificate>, String>>,
    now: i64,
}

impl<'a> Certificates<'a> {
    pub fn new(secrets: &'a [Secret], now: i64) -> Self {
        let secrets = secrets
            .iter()
            .filter_map(|s| Some(((namespace_of(&s.metadata), s.metadata.name.as_deref()?), s)))
            .collect();
        Certificates {
            secrets,
            parsed: HashMap::new(),
            now,
        }
    }

    /// The certificate in Secret `namespace/name`, or the problem to report.
    pub fn get(&mut self, namespace: &str, name: &str) -> Result<Arc<Certificate>, Problem> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(done) = self.parsed.get(&key) {
            return done
                .clone()
                .map_err(|m| Problem::warning(reason::INVALID_CERTIFICATE, m));
        }
        let Some(secret) = self.secrets.get(&(namespace, name)) else {
            return Err(Problem::warning(
                reason::SECRET_NOT_FOUND,
                format!(
                    "TLS Secret \"{name}\" not found in namespace {namespace:?}; its hosts get the default certificate"
                ),
            ));
        };
        let data = secret.data.as_ref();
        let field = |f: &str| data.and_then(|d| d.get(f)).map(|b| b.0.as_slice()).unwrap_or_default();
        let result = Certificate::from_pem(
            format!("{namespace}/{name}"),
            field("tls.crt"),
            field("tls.key"),
            self.now,
        )
        .map(Arc::new)
        .map_err(|e| format!("TLS Secret \"{name}\": {e}; its hosts get the default certificate"));
        self.parsed.insert(key, result.clone());
        result.map_err(|m| Problem::warning(reason::INVALID_CERTIFICATE, m))
    }
}

impl<'a> Compiler<'a> {
    /// `--default-ssl-certificate`: the certificate for handshakes no host matches.
    pub(super) fn add_default_certificate(&mut self) {
        let Some((ns, name)) = self.opts.default_ssl_certificate.clone() else {
            return;
        };
        match self.certificates.get(&ns, &name) {
            Ok(cert) => self.builder.default_certificate(cert),
            Err(problem) => {
                let mut problems = Problems::default();
                problems.push(problem);
                self.diagnostics.extend(problems.into_diagnostics("Secret", &ns, &name));
            }
        }
    }

    /// Installs the certificates of one Ingress's `spec.tls` and returns its TLS hosts.
    pub(super) fn add_tls(
        &mut self,
        ingress: &'a Ingress,
        namespace: &str,
        problems: &mut Problems,
    ) -> BTreeSet<HostMatch> {
        let mut hosts = BTreeSet::new();
        let entries = ingress.spec.as_ref().and_then(|s| s.tls.as_deref()).unwrap_or_default();
        for entry in entries {
            let parsed: Vec<HostMatch> = entry
                .hosts
                .iter()
                .flatten()
                .filter_map(|h| match HostMatch::parse(h) {
                    Ok(HostMatch::Any) | Err(_) => {
                        problems.warning(
                            reason::INVALID_HOST,
                            format!("spec.tls host {h:?} is not a DNS name; ignored"),
                        );
                        None
                    }
                    Ok(host) => Some(host),
                })
                .collect();
            let cert = match entry.secret_name.as_deref().filter(|s| !s.is_empty()) {
                Some(secret) => match self.certificates.get(namespace, secret) {
                    Ok(cert) => Some(cert),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                },
                // No secretName: the hosts are TLS hosts served with the default certificate.
                None => None,
            };
            for host in parsed {
                if let Some(cert) = &cert {
                    // First Ingress (oldest) to name a certificate for a host keeps it.
                    self.builder.certificate(&host, cert.clone());
                }
                hosts.insert(host);
            }
        }
        hosts
    }
}
