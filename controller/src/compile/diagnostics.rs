//! What the compile step has to say about an object it could not route as written.

use std::fmt;

/// Reasons, in the CamelCase Kubernetes uses for Event reasons and condition reasons.
///
/// They are a contract with whoever reads Events or alerts on the
/// `portico_diagnostics` metric: add new ones, never rename.
pub mod reason {
    /// The backend Service does not exist in the Ingress's namespace.
    pub const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
    /// The Service has no port with the number or name the backend asks for.
    pub const PORT_NOT_FOUND: &str = "PortNotFound";
    /// The Service port resolved but none of its endpoints is ready (informational).
    pub const NO_READY_ENDPOINTS: &str = "NoReadyEndpoints";
    /// A backend that is neither a usable Service reference nor a resource.
    pub const INVALID_BACKEND: &str = "InvalidBackend";
    /// A backend Portico cannot serve: a `resource` backend or an ExternalName Service.
    pub const UNSUPPORTED_BACKEND: &str = "UnsupportedBackend";
    /// A rule path that is not a valid path for its `pathType`, or an unknown `pathType`.
    pub const INVALID_PATH: &str = "InvalidPath";
    /// A rule host that is not a DNS name or a single leading wildcard.
    pub const INVALID_HOST: &str = "InvalidHost";
    /// The same host, path and `pathType` (or a host's defaultBackend) is already
    /// claimed by an older Ingress, or earlier in the same one.
    pub const DUPLICATE_RULE: &str = "DuplicateRule";
    /// A supported annotation whose value does not parse.
    pub const INVALID_ANNOTATION: &str = "InvalidAnnotation";
    /// An ingress-nginx annotation Portico does not implement; it has no effect.
    pub const UNSUPPORTED_ANNOTATION: &str = "UnsupportedAnnotation";
    /// A `*-snippet` annotation: nginx configuration text, never interpreted.
    pub const SNIPPET_REFUSED: &str = "SnippetRefused";
    /// A canary Ingress whose host and path no other Ingress serves.
    pub const CANARY_WITHOUT_MAIN: &str = "CanaryWithoutMain";
    /// A `spec.tls` Secret that does not exist or is not a `kubernetes.io/tls` Secret,
    /// or a basic-auth Secret that does not exist or is not an Opaque Secret.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// A basic-auth Secret without the key its `auth-secret-type` names, or with lines
    /// that cannot let their user in.
    pub const INVALID_AUTH_SECRET: &str = "InvalidAuthSecret";
    /// A TLS Secret whose certificate or key cannot be served (bad PEM, mismatched key,
    /// expired); its hosts get the default certificate.
    pub const INVALID_CERTIFICATE: &str = "InvalidCertificate";
    /// A Route that breaks a rule of its CRD (only possible when no API server checked
    /// it: `--from-file`, or a CRD older than the controller), or a part of one that
    /// cannot be built (a header value HTTP does not allow).
    pub const INVALID_ROUTE: &str = "InvalidRoute";
    /// An HTTPRoute filter Portico does not implement (RequestMirror, CORS, ...): the
    /// rule is left out rather than served without it.
    pub const UNSUPPORTED_FILTER: &str = "UnsupportedFilter";
    /// A key of the ingress-nginx ConfigMap whose value does not parse; its default
    /// applies.
    pub const INVALID_CONFIG_VALUE: &str = "InvalidConfigValue";
    /// A key of ingress-nginx's ConfigMap Portico does not read; it has no effect.
    pub const UNSUPPORTED_CONFIG_KEY: &str = "UnsupportedConfigKey";
    /// A key ingress-nginx's ConfigMap does not have (a typo?); it has no effect.
    pub const UNKNOWN_CONFIG_KEY: &str = "UnknownConfigKey";
    /// The ConfigMap `--configmap` names does not exist: every key has its default.
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";

    /// Every reason, so metrics can report zero for the ones that currently have none.
    pub const ALL: &[&str] = &[
        SERVICE_NOT_FOUND,
        PORT_NOT_FOUND,
        NO_READY_ENDPOINTS,
        INVALID_BACKEND,
        UNSUPPORTED_BACKEND,
        INVALID_PATH,
        INVALID_HOST,
        DUPLICATE_RULE,
        INVALID_ANNOTATION,
        UNSUPPORTED_ANNOTATION,
        SNIPPET_REFUSED,
        CANARY_WITHOUT_MAIN,
        SECRET_NOT_FOUND,
        INVALID_CERTIFICATE,
        INVALID_AUTH_SECRET,
        INVALID_ROUTE,
        UNSUPPORTED_FILTER,
        INVALID_CONFIG_VALUE,
        UNSUPPORTED_CONFIG_KEY,
        UNKNOWN_CONFIG_KEY,
        CONFIG_MAP_NOT_FOUND,
    ];
}

/// How loud a diagnostic is; named after the Kubernetes Event types it becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, nothing to fix in the object (a Service scaled to zero).
    Normal,
    /// Part of the object was left out or serves 503 until the object is fixed.
    Warning,
}

/// One problem found in one object while compiling.
///
/// `reason` and `message` are written to read well as a Kubernetes Event on the
/// object: the message names the offending part and never repeats the object's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The object's kind: `"Ingress"`, `"Route"` or `"ConfigMap"`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// One of [`reason`].
    pub reason: &'static str,
    pub message: String,
    pub severity: Severity,
}

impl Diagnostic {
    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {}: {}",
            self.kind, self.namespace, self.name, self.reason, self.message
        )
    }
}

/// A problem not yet tied to an object: backends are shared by every Ingress that
/// names them, and each of those Ingresses gets its own copy of the diagnostic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Problem {
    pub reason: &'static str,
    pub message: String,
    pub severity: Severity,
    /// The annotation (full key) the problem is about, when it is about one:
    /// `portico migrate` reports it beside that annotation.
    pub annotation: Option<String>,
}

impl Problem {
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
            severity: Severity::Warning,
            annotation: None,
        }
    }

    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
            severity: Severity::Normal,
            annotation: None,
        }
    }

    /// The same problem, said to be about annotation `key`.
    pub fn about(self, key: impl Into<String>) -> Self {
        Problem {
            annotation: Some(key.into()),
            ..self
        }
    }
}

/// The problems of one object, each distinct one once: ten paths to the same missing
/// Service make one Event, not ten.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        if !self.0.contains(&problem) {
            self.0.push(problem);
        }
    }

    pub fn warning(&mut self, reason: &'static str, message: impl Into<String>) {
        self.push(Problem::warning(reason, message));
    }

    pub fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        for problem in problems {
            self.push(problem);
        }
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }

    pub fn into_diagnostics(self, kind: &'static str, namespace: &str, name: &str) -> impl Iterator<Item = Diagnostic> {
        self.0.into_iter().map(move |p| Diagnostic {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason: p.reason,
            message: p.message,
            severity: p.severity,
        })
    }
}
