//! Compile rules, one test per rule, on objects built by the fixtures below.

mod access;
mod annotations;
mod auth;
mod backend_tls;
mod backends;
mod classes;
mod gateway;
mod routes;
mod rules;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec, TypedLocalObjectReference};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use portico_dataplane::table::{Route, RoutingTable};

use super::{CompileOptions, Diagnostic, compile};
use crate::snapshot::Snapshot;

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn annotate(meta: &mut ObjectMeta, key: &str, value: &str) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
}

/// How a fixture names a Service port: `80` or `"http"`.
pub trait PortSpec {
    fn port(self) -> ServiceBackendPort;
}

impl PortSpec for i32 {
    fn port(self) -> ServiceBackendPort {
        ServiceBackendPort {
            number: Some(self),
            name: None,
        }
    }
}

impl PortSpec for &str {
    fn port(self) -> ServiceBackendPort {
        ServiceBackendPort {
            number: None,
            name: Some(self.into()),
        }
    }
}

fn service_backend(service: &str, port: impl PortSpec) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.into(),
            port: Some(port.port()),
        }),
        resource: None,
    }
}

/// An Ingress of class `portico` (change with `class`, drop with `no_class`).
pub fn ingress(namespace: &str, name: &str) -> IngressBuilder {
    IngressBuilder(Ingress {
        metadata: meta(namespace, name),
        spec: Some(IngressSpec {
            ingress_class_name: Some("portico".into()),
            ..Default::default()
        }),
        status: None,
    })
}

pub struct IngressBuilder(Ingress);

impl IngressBuilder {
    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    pub fn class(mut self, class: &str) -> Self {
        self.spec().ingress_class_name = Some(class.into());
        self
    }

    pub fn no_class(mut self) -> Self {
        self.spec().ingress_class_name = None;
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        annotate(&mut self.0.metadata, key, value);
        self
    }

    /// Sets `creationTimestamp` to `seconds` after the epoch.
    pub fn created(mut self, seconds: i64) -> Self {
        let ts = Timestamp::from_second(seconds).unwrap();
        self.0.metadata.creation_timestamp = Some(Time(ts));
        self
    }

    /// Starts a rule for `host` (`""` for no host); later `path`s go into it.
    pub fn host(mut self, host: &str) -> Self {
        let host = (!host.is_empty()).then(|| host.to_string());
        self.spec()
            .rules
            .get_or_insert_with(Vec::new)
            .push(IngressRule { host, http: None });
        self
    }

    fn add_path(mut self, path: &str, path_type: &str, backend: IngressBackend) -> Self {
        let rules = self.spec().rules.get_or_insert_with(Vec::new);
        if rules.is_empty() {
            rules.push(IngressRule::default());
        }
        let Some(rule) = rules.last_mut() else { unreachable!() };
        let path = (!path.is_empty()).then(|| path.to_string());
        rule.http
            .get_or_insert_with(|| HTTPIngressRuleValue { paths: Vec::new() })
            .paths
            .push(HTTPIngressPath {
                path,
                path_type: path_type.into(),
                backend,
            });
        self
    }

    /// Adds a path to the current rule (a no-host rule if there is none yet).
    /// A `path_type` of `""` leaves `pathType` out, as a hand-written file may.
    pub fn path(self, path: &str, path_type: &str, service: &str, port: impl PortSpec) -> Self {
        self.add_path(path, path_type, service_backend(service, port))
    }

    pub fn resource_path(self, path: &str, path_type: &str, kind: &str, name: &str) -> Self {
        let resource = TypedLocalObjectReference {
            api_group: Some("storage.example.com".into()),
            kind: kind.into(),
            name: name.into(),
        };
        self.add_path(
            path,
            path_type,
            IngressBackend {
                service: None,
                resource: Some(resource),
            },
        )
    }

    pub fn default_backend(mut self, service: &str, port: impl PortSpec) -> Self {
        self.spec().default_backend = Some(service_backend(service, port));
        self
    }
}

/// A Service with no ports; add them with `port`.
pub fn service(namespace: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec::default()),
        status: None,
    })
}

pub struct ServiceBuilder(Service);

impl ServiceBuilder {
    fn ports(&mut self) -> &mut Vec<ServicePort> {
        self.0
            .spec
            .get_or_insert_with(Default::default)
            .ports
            .get_or_insert_with(Vec::new)
    }

    /// Adds a port; `""` leaves it unnamed.
    pub fn port(mut self, name: &str, port: i32) -> Self {
        let name = (!name.is_empty()).then(|| name.to_string());
        self.ports().push(ServicePort {
            name,
            port,
            ..Default::default()
        });
        self
    }

    /// Sets `appProtocol` on the last port added.
    pub fn app_protocol(mut self, protocol: &str) -> Self {
        if let Some(port) = self.ports().last_mut() {
            port.app_protocol = Some(protocol.into());
        }
        self
    }

    pub fn external_name(mut self, host: &str) -> Self {
        let spec = self.0.spec.get_or_insert_with(Default::default);
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some(host.into());
        self
    }
}

/// An EndpointSlice of `service`, with no ports or endpoints yet.
pub fn slice(namespace: &str, service: &str, name: &str) -> SliceBuilder {
    let mut metadata = meta(namespace, name);
    metadata.labels = Some(BTreeMap::from([(
        super::SERVICE_NAME_LABEL.to_string(),
        service.to_string(),
    )]));
    SliceBuilder(EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: Vec::new(),
        metadata,
        ports: Some(Vec::new()),
    })
}

pub struct SliceBuilder(EndpointSlice);

impl SliceBuilder {
    /// Adds a port; `None` leaves the name out, `Some("")` writes it empty.
    pub fn port(mut self, name: Option<&str>, port: i32) -> Self {
        let port = EndpointPort {
            name: name.map(Into::into),
            port: Some(port),
            ..Default::default()
        };
        self.0.ports.get_or_insert_with(Vec::new).push(port);
        self
    }

    /// Adds an endpoint with `conditions.ready` set to `ready` (`None`: left out).
    pub fn endpoint(mut self, address: &str, ready: Option<bool>) -> Self {
        self.0.endpoints.push(Endpoint {
            addresses: vec![address.into()],
            conditions: Some(EndpointConditions {
                ready,
                ..Default::default()
            }),
            ..Default::default()
        });
        self
    }
}

/// An IngressClass for `controller`.
pub fn ingress_class(name: &str, controller: &str) -> ClassBuilder {
    ClassBuilder(IngressClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(controller.into()),
            parameters: None,
        }),
    })
}

pub struct ClassBuilder(IngressClass);

impl ClassBuilder {
    pub fn default_class(mut self) -> Self {
        annotate(&mut self.0.metadata, super::DEFAULT_CLASS_ANNOTATION, "true");
        self
    }
}

pub const OURS: &str = "portico.dev/ingress-controller";

/// Any object a test puts in the world.
#[derive(Clone)]
#[expect(clippy::large_enum_variant, reason = "a test fixture: clarity over size")]
pub enum Object {
    Ingress(Ingress),
    Class(IngressClass),
    Service(Service),
    Slice(EndpointSlice),
}

impl From<IngressBuilder> for Object {
    fn from(b: IngressBuilder) -> Self {
        Object::Ingress(b.0)
    }
}
impl From<ServiceBuilder> for Object {
    fn from(b: ServiceBuilder) -> Self {
        Object::Service(b.0)
    }
}
impl From<SliceBuilder> for Object {
    fn from(b: SliceBuilder) -> Self {
        Object::Slice(b.0)
    }
}
impl From<ClassBuilder> for Object {
    fn from(b: ClassBuilder) -> Self {
        Object::Class(b.0)
    }
}

/// The objects of one test.
#[derive(Clone, Default)]
pub struct World(pub Snapshot);

pub fn world() -> World {
    World::default()
}

impl World {
    pub fn with(mut self, object: impl Into<Object>) -> Self {
        match object.into() {
            Object::Ingress(o) => self.0.ingresses.push(o),
            Object::Class(o) => self.0.ingress_classes.push(o),
            Object::Service(o) => self.0.services.push(o),
            Object::Slice(o) => self.0.endpoint_slices.push(o),
        }
        self
    }

    /// A Service `name` with port 80 named `http`, backed by `addresses` on port 8080, all ready.
    pub fn backend(self, namespace: &str, name: &str, addresses: &[&str]) -> Self {
        let slice = addresses.iter().fold(
            slice(namespace, name, &format!("{name}-abc")).port(Some("http"), 8080),
            |s, a| s.endpoint(a, Some(true)),
        );
        self.with(service(namespace, name).port("http", 80)).with(slice)
    }

    pub fn compile(&self) -> Compiled {
        self.compile_with(&CompileOptions::default())
    }

    pub fn compile_with(&self, opts: &CompileOptions) -> Compiled {
        let (table, diagnostics) = compile(&self.0, opts);
        Compiled { table, diagnostics }
    }
}

pub struct Compiled {
    pub table: RoutingTable,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.table.lookup(host, path)
    }

    /// `namespace/ingress` of the route a request gets.
    pub fn hit(&self, host: &str, path: &str) -> Option<String> {
        self.route(host, path)
            .map(|r| format!("{}/{}", r.meta.namespace, r.meta.ingress))
    }

    /// The endpoints the request's backend would pick from.
    pub fn endpoints(&self, host: &str, path: &str) -> Vec<String> {
        let route = self
            .route(host, path)
            .unwrap_or_else(|| panic!("no route for {host}{path}"));
        route.backend.endpoints.iter().map(|e| e.addr.to_string()).collect()
    }

    /// `(namespace/name, reason)` of every diagnostic, in order.
    pub fn reasons(&self) -> Vec<(String, &'static str)> {
        self.diagnostics
            .iter()
            .map(|d| (format!("{}/{}", d.namespace, d.name), d.reason))
            .collect()
    }

    pub fn assert_clean(&self) {
        assert!(
            self.diagnostics.is_empty(),
            "unexpected diagnostics: {:#?}",
            self.diagnostics
        );
    }
}
