//! BackendTLSPolicy: how the Gateway speaks TLS to a Service's endpoints.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::{Condition, ParentReference};

/// TLS from the Gateway to the endpoints of the Services it targets (a Direct Attached
/// Policy, GEP-1897).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "BackendTLSPolicy",
    namespaced,
    status = "PolicyStatus",
    schema = "disabled"
)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendTLSPolicySpec {
    pub target_refs: Vec<LocalPolicyTargetReference>,
    pub validation: BackendTLSPolicyValidation,
}

/// A Service (or one of its ports, by name) in the policy's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalPolicyTargetReference {
    /// Empty: the core group.
    pub group: String,
    pub kind: String,
    pub name: String,
    /// A port's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendTLSPolicyValidation {
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    /// `System`, the only value defined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub well_known_ca_certificates: Option<String>,
    /// The SNI, and the name the certificate must carry unless `subjectAltNames` is set.
    pub hostname: String,
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// A reference to an object in the referring object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Empty: the core group.
    pub group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct SubjectAltName {
    /// `Hostname` or `URI`.
    #[serde(rename = "type")]
    pub type_: String,
    pub hostname: String,
    pub uri: String,
}

/// A policy's status: one entry per ancestor (a Gateway) and controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyStatus {
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: ParentReference,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}
