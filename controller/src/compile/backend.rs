//! From an Ingress's Service reference to a [`Backend`] of ready endpoints.
//!
//! ```text
//!  backend.service {name, port: number | name}
//!        │ same namespace as the Ingress
//!        ▼
//!  Service ── spec.ports[] ──▶ the ServicePort (its name, its appProtocol)
//!        │ label kubernetes.io/service-name=<name>
//!        ▼
//!  EndpointSlices ── ports[] with the ServicePort's name ──▶ target port number
//!                 └─ endpoints[] not marked unready ──▶ addresses ──▶ Endpoint
//! ```
//!
//! Traffic goes straight to the pod addresses, never through the Service's cluster IP,
//! so readiness is honoured per endpoint and connections are pooled per pod.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressServiceBackend;
use portico_dataplane::table::{Backend, Endpoint, UpstreamProtocol};
use portico_dataplane::tls::{TlsKey, UpstreamTls, UpstreamTlsSettings};

use super::annotations::upstream::Upstream;
use super::diagnostics::{Problem, reason};
use super::namespace_of;

/// The label the EndpointSlice controller puts on every slice of a Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `appProtocol` values that mean "speak HTTP/2 without TLS": the standard
/// `kubernetes.io/h2c`, and the short forms people write for gRPC services.
const H2C_APP_PROTOCOLS: &[&str] = &["kubernetes.io/h2c", "h2c", "grpc"];

/// `appProtocol` values that mean "speak HTTP/1.1 over TLS".
const HTTPS_APP_PROTOCOLS: &[&str] = &["https", "kubernetes.io/https"];

/// Service annotation: a `kubernetes.io/tls` Secret in the Service's namespace whose
/// `ca.crt` (else `tls.crt`) verifies the endpoints of an `https` port. Without it the
/// connection is encrypted but the endpoint's certificate is not checked, as with
/// ingress-nginx's `backend-protocol: HTTPS`.
pub const UPSTREAM_CA_SECRET: &str = "portico.dev/upstream-ca-secret";
/// Service annotation: the name endpoint certificates must carry (default
/// `<service>.<namespace>.svc`).
pub const UPSTREAM_SERVER_NAME: &str = "portico.dev/upstream-server-name";

/// A resolved backend and what, if anything, is wrong with it.
pub(super) struct Resolved {
    pub backend: Arc<Backend>,
    pub problem: Option<Problem>,
}

/// A Service port's shared backend and the TLS problem it has, if any.
type ResolvedPort = (Arc<Backend>, Option<Problem>);

/// Resolves Service references against one snapshot.
///
/// Each Service port becomes one shared `Arc<Backend>` whichever way it is referenced
/// (by number or by name, from one Ingress or many), because the round-robin position
/// lives in the backend: separate copies would each start at the first endpoint.
pub(super) struct Backends<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    /// Each Service port once, with the TLS problem it has (if any), which every
    /// Ingress naming it reports.
    resolved: HashMap<(&'a str, &'a str, i32), ResolvedPort>,
    /// Backends that cannot resolve, by their display name; they have no endpoints.
    unresolved: HashMap<String, Arc<Backend>>,
    /// Service ports spoken to in another protocol than their `appProtocol` says
    /// (ingress-nginx's `backend-protocol`), or with other TLS settings (its
    /// `proxy-ssl-*`), shared like the others.
    overridden: HashMap<(String, UpstreamProtocol, Option<TlsKey>), Arc<Backend>>,
}

#[derive(Debug)]
enum PortRef<'a> {
    Number(i32),
    Name(&'a str),
}

impl std::fmt::Display for PortRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

impl<'a> Backends<'a> {
    pub fn new(services: &'a [Service], slices: &'a [EndpointSlice], secrets: &'a [Secret]) -> Self {
        let secrets = secrets
            .iter()
            .filter_map(|s| Some(((namespace_of(&s.metadata), s.metadata.name.as_deref()?), s)))
            .collect();
        let services = services
            .iter()
            .filter_map(|s| Some(((namespace_of(&s.metadata), s.metadata.name.as_deref()?), s)))
            .collect();
        let mut by_service: HashMap<_, Vec<_>> = HashMap::new();
        for slice in slices {
            let labels = slice.metadata.labels.as_ref();
            if let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                by_service
                    .entry((namespace_of(&slice.metadata), service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        Backends {
            services,
            slices: by_service,
            secrets,
            resolved: HashMap::new(),
            unresolved: HashMap::new(),
            overridden: HashMap::new(),
        }
    }

    /// Resolves `service` in `namespace`. Always returns a backend: one that cannot
    /// resolve has no endpoints, so its paths answer 503 (see `ingress.rs` for why).
    pub fn resolve(&mut self, namespace: &'a str, service: &'a IngressServiceBackend) -> Resolved {
        let name = service.name.as_str();
        match port_ref(service) {
            Ok(port) => self.resolve_port(namespace, name, port),
            Err(why) => {
                let problem = Problem::warning(reason::INVALID_BACKEND, format!("backend service {name:?} {why}"));
                self.unresolved(namespace, name, "?", problem)
            }
        }
    }

    /// Resolves Service `name`'s port `number` in `namespace` (a Route's backendRef).
    pub fn resolve_number(&mut self, namespace: &'a str, name: &'a str, number: i32) -> Resolved {
        self.resolve_port(namespace, name, PortRef::Number(number))
    }

    /// `backend` (Service `service` in `namespace`) reached through the Service's
    /// cluster IP and port instead of its endpoints (ingress-nginx's
    /// `service-upstream`): one endpoint, which kube-proxy balances. `Err` says why the
    /// Service has no cluster IP to use.
    pub fn through_cluster_ip(
        &mut self,
        backend: &Arc<Backend>,
        namespace: &'a str,
        service: &'a IngressServiceBackend,
    ) -> Result<Arc<Backend>, String> {
        let name = service.name.as_str();
        let svc = self
            .services
            .get(&(namespace, name))
            .ok_or_else(|| format!("service {name:?} not found"))?;
        let spec = svc.spec.as_ref();
        let ip = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .filter(|ip| *ip != "None" && !ip.is_empty())
            .ok_or_else(|| format!("service {name:?} has no cluster IP (a headless Service)"))?;
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("service {name:?} has cluster IP {ip:?}, which is not an address"))?;
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let port = match port_ref(service) {
            Ok(PortRef::Number(n)) => ports.iter().find(|p| p.port == n),
            Ok(PortRef::Name(want)) => ports.iter().find(|p| p.name.as_deref() == Some(want)),
            Err(why) => return Err(format!("backend service {name:?} {why}")),
        };
        let port = port
            .and_then(|p| u16::try_from(p.port).ok())
            .ok_or_else(|| format!("service {name:?} has no such port"))?;
        let addr = std::net::SocketAddr::new(ip, port);
        let key = (
            format!("{}@{addr}", backend.name),
            backend.protocol,
            backend.tls.as_ref().map(|t| t.key),
        );
        let made = self.overridden.entry(key).or_insert_with(|| {
            let one = Backend::new(backend.name.clone(), backend.protocol, vec![Endpoint { addr }]);
            Arc::new(match &backend.tls {
                Some(tls) => one.with_tls(tls.clone()),
                None => one,
            })
        });
        Ok(made.clone())
    }

    /// Resolves Service `name`'s first port in `namespace` (ingress-nginx's
    /// `default-backend` annotation names a Service, not a port).
    pub fn resolve_first_port(&mut self, namespace: &'a str, name: &'a str) -> Resolved {
        let first = self
            .services
            .get(&(namespace, name))
            .and_then(|s| s.spec.as_ref()?.ports.as_ref()?.first())
            .map(|p| p.port);
        match first {
            Some(port) => self.resolve_port(namespace, name, PortRef::Number(port)),
            None if self.services.contains_key(&(namespace, name)) => {
                let problem = Problem::warning(reason::PORT_NOT_FOUND, format!("service {name:?} has no port"));
                self.unresolved(namespace, name, "?", problem)
            }
            None => self.resolve_port(namespace, name, PortRef::Name("")),
        }
    }

    fn resolve_port(&mut self, namespace: &'a str, name: &'a str, port: PortRef<'a>) -> Resolved {
        let Some(svc) = self.services.get(&(namespace, name)).copied() else {
            let problem = Problem::warning(reason::SERVICE_NOT_FOUND, format!("service {name:?} not found"));
            return self.unresolved(namespace, name, &port.to_string(), problem);
        };
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            let problem = Problem::warning(
                reason::UNSUPPORTED_BACKEND,
                format!("service {name:?} is of type ExternalName; ExternalName services are not supported yet"),
            );
            return self.unresolved(namespace, name, &port.to_string(), problem);
        }
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let found = match port {
            PortRef::Number(n) => ports.iter().find(|p| p.port == n),
            PortRef::Name(want) => ports.iter().find(|p| p.name.as_deref() == Some(want)),
        };
        let Some(service_port) = found else {
            let message = match port {
                PortRef::Number(n) => format!("service {name:?} has no port {n}"),
                PortRef::Name(want) => format!("service {name:?} has no port named {want:?}"),
            };
            let problem = Problem::warning(reason::PORT_NOT_FOUND, message);
            return self.unresolved(namespace, name, &port.to_string(), problem);
        };

        let slices = &self.slices;
        let secrets = &self.secrets;
        let (backend, tls_problem) = self
            .resolved
            .entry((namespace, name, service_port.port))
            .or_insert_with(|| {
                let port_name = service_port.name.as_deref().unwrap_or_default();
                let slices = slices.get(&(namespace, name)).map(Vec::as_slice).unwrap_or_default();
                let proto = protocol(service_port.app_protocol.as_deref());
                let backend = Backend::new(
                    format!("{namespace}/{name}:{}", service_port.port),
                    proto,
                    ready_endpoints(slices, port_name),
                );
                if proto != UpstreamProtocol::Https {
                    return (Arc::new(backend), None);
                }
                match upstream_tls(svc, namespace, name, secrets) {
                    Ok(tls) => (Arc::new(backend.with_tls(Arc::new(tls))), None),
                    // No TLS settings: the proxy refuses to connect (502) rather than
                    // fall back to an unverified or plain connection.
                    Err(problem) => (Arc::new(backend), Some(problem)),
                }
            })
            .clone();
        let problem = tls_problem.or_else(|| {
            backend.endpoints.is_empty().then(|| {
                Problem::normal(
                    reason::NO_READY_ENDPOINTS,
                    format!("service {name:?} port {} has no ready endpoints", service_port.port),
                )
            })
        });
        Resolved { backend, problem }
    }

    /// `backend` spoken to in `protocol` instead; HTTPS without certificate checks, as
    /// ingress-nginx's `backend-protocol: HTTPS` does unless `proxy-ssl-verify` is on.
    /// The same name keeps the same balancing state; the connection pool tells the
    /// protocols apart.
    pub fn with_protocol(
        &mut self,
        backend: &Arc<Backend>,
        protocol: UpstreamProtocol,
        service: &str,
        namespace: &str,
    ) -> Arc<Backend> {
        if backend.protocol == protocol {
            return backend.clone();
        }
        self.overridden
            .entry((backend.name.clone(), protocol, None))
            .or_insert_with(|| {
                let plain = Backend::new(backend.name.clone(), protocol, backend.endpoints.clone());
                if !protocol.is_tls() {
                    return Arc::new(plain);
                }
                let settings = UpstreamTlsSettings {
                    h2: protocol == UpstreamProtocol::H2Tls,
                    ..UpstreamTlsSettings::new(format!("{service}.{namespace}.svc"))
                };
                match UpstreamTls::build(&settings) {
                    Ok(tls) => Arc::new(plain.with_tls(Arc::new(tls))),
                    // The proxy refuses a TLS backend without TLS settings (502).
                    Err(_) => Arc::new(plain),
                }
            })
            .clone()
    }

    /// `backend` as an Ingress's annotations ask: in `backend-protocol`'s protocol, and
    /// over HTTPS with the `proxy-ssl-*` settings when it speaks HTTPS. `backend-protocol:
    /// HTTPS` alone keeps nginx's defaults: no verification, and no SNI
    /// (`proxy_ssl_server_name` is off unless `proxy-ssl-server-name` says).
    pub fn for_upstream(
        &mut self,
        backend: &Arc<Backend>,
        upstream: &Upstream,
        service: &str,
        namespace: &str,
    ) -> Arc<Backend> {
        let was_https = backend.protocol.is_tls();
        let backend = match upstream.protocol {
            Some(p) => self.with_protocol(backend, p, service, namespace),
            None => backend.clone(),
        };
        if !backend.protocol.is_tls() {
            return backend;
        }
        let settings = match &upstream.tls {
            Some(settings) => settings.clone(),
            None if !was_https => UpstreamTlsSettings {
                sni: false,
                ..UpstreamTlsSettings::new("")
            },
            // The Service's own TLS (its `appProtocol` and Portico annotations).
            None => return backend,
        };
        self.with_tls(&backend, settings, service, namespace)
    }

    /// `backend` over TLS with a BackendTLSPolicy's `settings`: HTTP/1.1 becomes HTTPS
    /// and h2c HTTP/2 over TLS, whatever the Service's `appProtocol` said.
    pub fn with_backend_tls(
        &mut self,
        backend: &Arc<Backend>,
        settings: UpstreamTlsSettings,
        service: &str,
        namespace: &str,
    ) -> Arc<Backend> {
        let protocol = match backend.protocol {
            UpstreamProtocol::Http1 | UpstreamProtocol::Https => UpstreamProtocol::Https,
            UpstreamProtocol::H2c | UpstreamProtocol::H2Tls => UpstreamProtocol::H2Tls,
        };
        let backend = self.with_protocol(backend, protocol, service, namespace);
        self.with_tls(&backend, settings, service, namespace)
    }

    /// `backend` over HTTPS with `settings`; an empty server name is the Service's
    /// `<service>.<namespace>.svc`. Settings that do not build leave the backend
    /// without TLS, which the proxy refuses (502): never a weaker connection.
    fn with_tls(
        &mut self,
        backend: &Arc<Backend>,
        mut settings: UpstreamTlsSettings,
        service: &str,
        namespace: &str,
    ) -> Arc<Backend> {
        if settings.server_name.is_empty() {
            settings.server_name = format!("{service}.{namespace}.svc");
        }
        let protocol = backend.protocol;
        settings.h2 = protocol == UpstreamProtocol::H2Tls;
        let key = (backend.name.clone(), protocol, Some(settings.key()));
        self.overridden
            .entry(key)
            .or_insert_with(|| {
                let plain = Backend::new(backend.name.clone(), protocol, backend.endpoints.clone());
                match UpstreamTls::build(&settings) {
                    Ok(tls) => Arc::new(plain.with_tls(Arc::new(tls))),
                    Err(_) => Arc::new(plain),
                }
            })
            .clone()
    }

    fn unresolved(&mut self, namespace: &str, name: &str, port: &str, problem: Problem) -> Resolved {
        let display = format!("{namespace}/{name}:{port}");
        let backend = self
            .unresolved
            .entry(display.clone())
            .or_insert_with(|| Arc::new(Backend::new(display, UpstreamProtocol::Http1, Vec::new())))
            .clone();
        Resolved {
            backend,
            problem: Some(problem),
        }
    }
}

fn port_ref(service: &IngressServiceBackend) -> Result<PortRef<'_>, &'static str> {
    let port = service.port.as_ref();
    let number = port.and_then(|p| p.number);
    let name = port.and_then(|p| p.name.as_deref()).filter(|n| !n.is_empty());
    match (number, name) {
        (Some(n), None) => Ok(PortRef::Number(n)),
        (None, Some(name)) => Ok(PortRef::Name(name)),
        (Some(_), Some(_)) => Err("sets both port.number and port.name; set exactly one"),
        (None, None) => Err("has no port; set port.number or port.name"),
    }
}

/// The TLS settings for a Service's `https` port, from its annotations.
fn upstream_tls(
    svc: &Service,
    namespace: &str,
    name: &str,
    secrets: &HashMap<(&str, &str), &Secret>,
) -> Result<UpstreamTls, Problem> {
    let annotations = svc.metadata.annotations.as_ref();
    let server_name = annotations
        .and_then(|a| a.get(UPSTREAM_SERVER_NAME))
        .cloned()
        .unwrap_or_else(|| format!("{name}.{namespace}.svc"));
    let invalid = |m: String| Problem::warning(reason::INVALID_CERTIFICATE, m);
    let Some(ca_secret) = annotations.and_then(|a| a.get(UPSTREAM_CA_SECRET)) else {
        return UpstreamTls::unverified(&server_name).map_err(|e| invalid(format!("service {name:?}: {e}")));
    };
    let Some(secret) = secrets.get(&(namespace, ca_secret.as_str())) else {
        return Err(Problem::warning(
            reason::SECRET_NOT_FOUND,
            format!(
                "service {name:?}: {UPSTREAM_CA_SECRET} names Secret {ca_secret:?}, which is not a kubernetes.io/tls Secret in {namespace:?}; its HTTPS endpoints are refused"
            ),
        ));
    };
    let data = secret.data.as_ref();
    let ca = data
        .and_then(|d| d.get("ca.crt").or_else(|| d.get("tls.crt")))
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    UpstreamTls::verified(ca, &server_name).map_err(|e| {
        invalid(format!(
            "service {name:?}: CA bundle in Secret {ca_secret:?}: {e}; its HTTPS endpoints are refused"
        ))
    })
}

fn protocol(app_protocol: Option<&str>) -> UpstreamProtocol {
    match app_protocol {
        Some(p) if H2C_APP_PROTOCOLS.contains(&p) => UpstreamProtocol::H2c,
        Some(p) if HTTPS_APP_PROTOCOLS.contains(&p) => UpstreamProtocol::Https,
        _ => UpstreamProtocol::Http1,
    }
}

/// The ready addresses of a Service port across all its slices, sorted and unique.
///
/// Slice ports are matched by name because that is the one thing a slice port shares
/// with its Service port (an unnamed Service port has a slice port named `""`). Each
/// slice carries its own port number: during a rollout that changes `targetPort`, old
/// and new slices differ. An endpoint counts unless `conditions.ready` is explicitly
/// false; the API defines a missing value as ready.
fn ready_endpoints(slices: &[&EndpointSlice], port_name: &str) -> Vec<Endpoint> {
    let mut addrs = Vec::new();
    for slice in slices {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        let Some(port) = port else { continue };
        for endpoint in &slice.endpoints {
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            // FQDN slices carry names, not addresses; they fail to parse and are skipped.
            addrs.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, port)),
            );
        }
    }
    addrs.sort_unstable();
    addrs.dedup();
    addrs.into_iter().map(|addr| Endpoint { addr }).collect()
}
