//! Everything the compile step reads, as plain Kubernetes objects.
//!
//! Both sources fill the same [`Snapshot`]: the Kubernetes watcher from its reflector
//! stores, file mode from a YAML file. Order inside each list carries no meaning: the
//! compile step sorts what it needs, so a relist that returns objects in another order
//! publishes the same table.

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// One consistent view of the objects Portico routes by.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub ingresses: Vec<Ingress>,
    pub ingress_classes: Vec<IngressClass>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// TLS certificates referenced by Ingress `spec.tls`.
    pub secrets: Vec<Secret>,
    /// `portico.dev/v1alpha1` Routes.
    pub routes: Vec<crate::crd::Route>,
}
