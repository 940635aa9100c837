//! The kinds Portico reads, listed once, and the [`Snapshot`] that holds them.
//!
//! [`input_kinds!`] below is the one list: each entry names the kind, its API group and
//! version, its scope, the [`Snapshot`] field that holds its objects and how it is
//! watched. From it come the [`Snapshot`] struct, the [`Kind`] and [`Object`] enums the
//! file reader uses, and, through [`InputObject`], the watchers of cluster mode. Adding
//! a kind is one entry here plus the translation that reads it in `compile/`.
//!
//! Both sources fill the same [`Snapshot`]: the Kubernetes watcher from its reflector
//! stores, file mode from a YAML file. Order inside each list carries no meaning: the
//! compile step sorts what it needs, so a relist that returns objects in another order
//! publishes the same table.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// What is known of a kind besides its Rust type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// `kind` as objects write it.
    pub name: &'static str,
    /// API group; empty for the core group.
    pub group: &'static str,
    /// The one version served.
    pub version: &'static str,
    pub namespaced: bool,
    /// A custom resource whose definition may not be installed: Portico serves the
    /// rest without it.
    pub optional: bool,
    /// Field selectors, one watch (and one list) each; none: one watch of everything.
    /// Secrets: TLS and Opaque ones only.
    pub field_selectors: &'static [&'static str],
    /// Only the one object a flag names is read (`metadata.name` as the field
    /// selector, in its namespace), and none without the flag: the ingress-nginx
    /// ConfigMap of `--configmap`.
    pub only_named: bool,
}

impl KindInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// One Rust type of the list: what cluster mode needs to watch it and file mode to put
/// it in a [`Snapshot`].
pub trait InputObject:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Into<Object>
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    /// The API to list and watch it with, limited to `namespace` when it is namespaced.
    fn api(client: &kube::Client, namespace: Option<&str>) -> kube::Api<Self>;
    /// Its list in a snapshot.
    fn list_mut(snapshot: &mut Snapshot) -> &mut Vec<Self>;
}

/// Something done once per kind, generically over its type (see [`Kind::visit`]).
pub trait KindVisitor {
    type Output;
    fn visit<T: InputObject>(self) -> Self::Output;
}

macro_rules! api_for {
    (namespaced, $client:expr, $ns:expr) => {
        match $ns {
            Some(ns) => kube::Api::namespaced($client.clone(), ns),
            None => kube::Api::all($client.clone()),
        }
    };
    (cluster, $client:expr, $ns:expr) => {{
        let _ = $ns;
        kube::Api::all($client.clone())
    }};
}

macro_rules! namespaced {
    (namespaced) => {
        true
    };
    (cluster) => {
        false
    };
}

macro_rules! or_false {
    () => {
        false
    };
    ($value:literal) => {
        $value
    };
}

macro_rules! input_kinds {
    ($(
        $(#[doc = $doc:literal])*
        $kind:ident($field:ident: $ty:ty) {
            group: $group:literal,
            version: $version:literal,
            scope: $scope:ident,
            optional: $optional:literal,
            field_selectors: $selectors:expr
            $(, only_named: $only_named:literal)? $(,)?
        }
    ),* $(,)?) => {
        /// One consistent view of the objects Portico routes by.
        #[derive(Clone, Debug, Default)]
        pub struct Snapshot {
            $( $(#[doc = $doc])* pub $field: Vec<$ty>, )*
            /// ConfigMaps holding a `ca.crt` that BackendTLSPolicies may name, with no
            /// other data (cluster mode watches them once BackendTLSPolicy is served;
            /// file mode and `config_maps` hold whole ConfigMaps, which are read too).
            pub ca_config_maps: Vec<ConfigMap>,
        }

        /// The kinds Portico reads.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $($kind),* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),*];

            pub fn info(self) -> &'static KindInfo {
                match self {
                    $(Kind::$kind => &KindInfo {
                        name: stringify!($kind),
                        group: $group,
                        version: $version,
                        namespaced: namespaced!($scope),
                        optional: $optional,
                        field_selectors: $selectors,
                        only_named: or_false!($($only_named)?),
                    },)*
                }
            }

            /// The kind named `name` (as objects write `kind`), if Portico reads it.
            pub fn from_name(name: &str) -> Option<Kind> {
                match name {
                    $(stringify!($kind) => Some(Kind::$kind),)*
                    _ => None,
                }
            }

            /// Runs `visitor` with this kind's Rust type.
            pub fn visit<V: KindVisitor>(self, visitor: V) -> V::Output {
                match self {
                    $(Kind::$kind => visitor.visit::<$ty>(),)*
                }
            }
        }

        /// One object of any kind Portico reads.
        #[derive(Debug)]
        #[expect(clippy::large_enum_variant, reason = "one at a time, moved straight into a snapshot")]
        pub enum Object { $($kind($ty)),* }

        impl Object {
            pub fn kind(&self) -> Kind {
                match self { $(Object::$kind(_) => Kind::$kind,)* }
            }

            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Object::$kind(o) => &mut o.metadata,)* }
            }
        }

        impl Snapshot {
            /// Adds one object to its kind's list.
            pub fn push(&mut self, object: Object) {
                match object { $(Object::$kind(o) => self.$field.push(o),)* }
            }
        }

        $(
            impl InputObject for $ty {
                const KIND: Kind = Kind::$kind;
                fn api(client: &kube::Client, namespace: Option<&str>) -> kube::Api<Self> {
                    api_for!($scope, client, namespace)
                }
                fn list_mut(snapshot: &mut Snapshot) -> &mut Vec<Self> {
                    &mut snapshot.$field
                }
            }

            impl From<$ty> for Object {
                fn from(o: $ty) -> Object {
                    Object::$kind(o)
                }
            }
        )*
    };
}

input_kinds! {
    Ingress(ingresses: Ingress) {
        group: "networking.k8s.io", version: "v1", scope: namespaced, optional: false, field_selectors: &[],
    },
    IngressClass(ingress_classes: IngressClass) {
        group: "networking.k8s.io", version: "v1", scope: cluster, optional: false, field_selectors: &[],
    },
    Service(services: Service) {
        group: "", version: "v1", scope: namespaced, optional: false, field_selectors: &[],
    },
    EndpointSlice(endpoint_slices: EndpointSlice) {
        group: "discovery.k8s.io", version: "v1", scope: namespaced, optional: false, field_selectors: &[],
    },
    /// TLS certificates referenced by Ingress `spec.tls` (`kubernetes.io/tls`), and the
    /// htpasswd files of ingress-nginx's basic authentication (`Opaque`, the type
    /// `kubectl create secret generic` gives them). Secrets of every other type (service
    /// account tokens, registry credentials, Helm releases) are none of an ingress
    /// controller's business and are not watched. RBAC cannot limit `list` by type:
    /// the selectors keep them out of memory, not out of reach.
    Secret(secrets: Secret) {
        group: "", version: "v1", scope: namespaced, optional: false,
        field_selectors: &["type=kubernetes.io/tls", "type=Opaque"],
    },
    /// `portico.dev/v1alpha1` Routes.
    Route(routes: crate::crd::Route) {
        group: "portico.dev", version: "v1alpha1", scope: namespaced, optional: true, field_selectors: &[],
    },
    /// Namespaces, for their labels: a Gateway listener's `allowedRoutes` may select
    /// the namespaces whose routes it accepts.
    Namespace(namespaces: Namespace) {
        group: "", version: "v1", scope: cluster, optional: false, field_selectors: &[],
    },
    /// Gateway API: the classes, of which Portico serves those naming its controller.
    GatewayClass(gateway_classes: crate::gateway_api::GatewayClass) {
        group: "gateway.networking.k8s.io", version: "v1", scope: cluster, optional: true, field_selectors: &[],
    },
    Gateway(gateways: crate::gateway_api::Gateway) {
        group: "gateway.networking.k8s.io", version: "v1", scope: namespaced, optional: true, field_selectors: &[],
    },
    HTTPRoute(http_routes: crate::gateway_api::HTTPRoute) {
        group: "gateway.networking.k8s.io", version: "v1", scope: namespaced, optional: true, field_selectors: &[],
    },
    GRPCRoute(grpc_routes: crate::gateway_api::GRPCRoute) {
        group: "gateway.networking.k8s.io", version: "v1", scope: namespaced, optional: true, field_selectors: &[],
    },
    /// ingress-nginx's controller ConfigMap (`--configmap`): its global settings.
    ConfigMap(config_maps: ConfigMap) {
        group: "", version: "v1", scope: namespaced, optional: false, field_selectors: &[], only_named: true,
    },
    /// How the Gateway speaks TLS to a Service's endpoints (their CA bundles are
    /// [`Snapshot::ca_config_maps`]).
    BackendTLSPolicy(backend_tls_policies: crate::gateway_api::BackendTLSPolicy) {
        group: "gateway.networking.k8s.io", version: "v1", scope: namespaced, optional: true, field_selectors: &[],
    },
    /// Permits a Gateway's certificateRefs and a route's backendRefs across namespaces.
    ReferenceGrant(reference_grants: crate::gateway_api::ReferenceGrant) {
        group: "gateway.networking.k8s.io", version: "v1beta1", scope: namespaced, optional: true, field_selectors: &[],
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind's entry agrees with the type's own group, version and kind, so the
    /// list cannot drift from what the watchers ask the API server for.
    #[test]
    fn kind_list_matches_the_types() {
        struct Check;
        impl KindVisitor for Check {
            type Output = (String, String);
            fn visit<T: InputObject>(self) -> (String, String) {
                (T::api_version(&()).to_string(), T::kind(&()).to_string())
            }
        }
        for kind in Kind::ALL {
            let info = kind.info();
            assert_eq!(kind.visit(Check), (info.api_version(), info.name.to_string()));
            assert_eq!(Kind::from_name(info.name), Some(*kind));
        }
        assert!(Kind::Route.info().optional && !Kind::Ingress.info().optional);
        assert!(!Kind::IngressClass.info().namespaced && Kind::Secret.info().namespaced);
        assert!(Kind::ConfigMap.info().only_named && !Kind::Secret.info().only_named);
    }
}
