//! Gateway API (`gateway.networking.k8s.io`) objects as Portico reads and writes them.
//!
//! Written by hand: the `gateway-api` crate is built on an older kube and k8s-openapi
//! than ours. Only what Portico reads or writes is typed; every field is defaulted and
//! unknown fields are ignored, so an object from a newer API version (or a file written
//! by hand) still reads, and its unsupported parts are reported in status rather than
//! refused by the deserializer. Enumerations are kept as strings for the same reason:
//! an unknown protocol is a listener condition, not a parse error.
//!
//! ```text
//!  GatewayClass ◀─ gatewayClassName ─ Gateway ◀─ parentRefs ─ HTTPRoute / GRPCRoute
//!  (cluster)                           │ listeners             │ backendRefs
//!                                      └─ certificateRefs ─▶ Secret   └─▶ Service
//!                ReferenceGrant (in the target's namespace) permits the cross-namespace arrows
//!                BackendTLSPolicy ─ targetRefs ─▶ Service (port) ; caCertificateRefs ─▶ ConfigMap
//! ```

mod gateway;
mod policy;
mod route;

pub use gateway::*;
pub use policy::*;
pub use route::*;

use serde::{Deserialize, Serialize};

/// The API group of every kind here.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// A `metav1.Condition`. Lenient on read (a missing field is empty); Portico writes
/// every field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339.
    pub last_transition_time: String,
    pub reason: String,
    pub message: String,
}

/// `group` and `kind` of a route kind (a listener's `allowedRoutes.kinds`,
/// `supportedKinds` in its status).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// Absent means `gateway.networking.k8s.io`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
}

/// A reference to a Secret (a listener's `certificateRefs`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// Absent or empty: the core group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Absent: `Secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    /// Absent: the referring object's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a backend (`backendRefs`, `requestMirror.backendRef`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendObjectReference {
    /// Absent or empty: the core group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Absent: `Service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Required for a Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// A route's reference to its parent (a Gateway).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(default, rename_all = "camelCase")]
pub struct ParentReference {
    /// Absent: `gateway.networking.k8s.io`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Absent: `Gateway`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Absent: the route's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// A listener's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// Route status: one entry per parent the route names and a controller handles.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteStatus {
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests;
