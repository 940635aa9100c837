//! `auth-type`, `auth-secret`, `auth-secret-type` and `auth-realm` (ingress-nginx's
//! `auth` parser): HTTP basic authentication against an htpasswd file kept in a Secret.
//!
//! ingress-nginx denies the location (503 for every request) when `auth-type` is not
//! `basic` or `digest`, when `auth-secret` is missing, names no Secret, or the Secret
//! lacks what `auth-secret-type` says it holds. Portico does the same and says why in a
//! diagnostic; it never serves such a path without authentication. Digest
//! authentication is not implemented, so `digest` is refused the same way.
//!
//! The annotations are read here; the Secret, which only the snapshot has, is read by
//! [`resolve`] when the Ingress is compiled.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use portico_dataplane::filter::Credentials;
use portico_dataplane::table::BasicAuth;

use super::{NGINX_PREFIX, get, invalid};
use crate::compile::diagnostics::{Problem, Problems, reason};

/// Bad lines of one Secret reported one by one; beyond, a count.
const MAX_LINE_PROBLEMS: usize = 5;

/// Where the users are, as `auth-secret-type` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretType {
    /// `auth-file` (the default): key `auth` holds an htpasswd file.
    File,
    /// `auth-map`: each key is a user, its value the hash.
    Map,
}

/// What an Ingress's basic-auth annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BasicAuthSpec {
    /// Check users from this Secret.
    Secret {
        namespace: Option<String>,
        name: String,
        secret_type: SecretType,
        realm: String,
    },
    /// The annotations ask for authentication Portico cannot set up: every request
    /// gets 503 (the reason was reported when parsing).
    Denied { realm: String },
}

pub(super) fn parse(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<BasicAuthSpec> {
    let deny = |problems: &mut Problems, name: &str, why: String| {
        problems.push(
            Problem::warning(
                reason::INVALID_ANNOTATION,
                format!("{NGINX_PREFIX}{name}: {why}; every request to this Ingress gets 503, as in ingress-nginx"),
            )
            .about(format!("{NGINX_PREFIX}{name}")),
        );
    };
    let Some(auth_type) = get(all, "auth-type") else {
        if get(all, "auth-secret").is_some() {
            problems.push(
                Problem::warning(
                    reason::INVALID_ANNOTATION,
                    format!("{NGINX_PREFIX}auth-secret has no effect without {NGINX_PREFIX}auth-type: basic, as in ingress-nginx"),
                )
                .about(format!("{NGINX_PREFIX}auth-secret")),
            );
        }
        return None;
    };
    let realm = match get(all, "auth-realm") {
        Some(r) if r.chars().any(char::is_control) => {
            invalid(problems, "auth-realm", r, "has a control character");
            String::new()
        }
        Some(r) => r.to_string(),
        None => String::new(),
    };
    let denied = Some(BasicAuthSpec::Denied { realm: realm.clone() });
    match auth_type.trim() {
        "basic" => {}
        "digest" => {
            problems.push(
                Problem::warning(
                    reason::UNSUPPORTED_ANNOTATION,
                    format!("{NGINX_PREFIX}auth-type: digest authentication is not implemented; every request to this Ingress gets 503 rather than being served without authentication"),
                )
                .about(format!("{NGINX_PREFIX}auth-type")),
            );
            return denied;
        }
        other => {
            deny(
                problems,
                "auth-type",
                format!("{other:?} is not \"basic\" or \"digest\""),
            );
            return denied;
        }
    }
    let secret_type = match get(all, "auth-secret-type").map(str::trim) {
        None | Some("auth-file") => SecretType::File,
        Some("auth-map") => SecretType::Map,
        Some(other) => {
            deny(
                problems,
                "auth-secret-type",
                format!("{other:?} is not \"auth-file\" or \"auth-map\""),
            );
            return denied;
        }
    };
    let Some(secret) = get(all, "auth-secret").map(str::trim) else {
        deny(
            problems,
            "auth-secret",
            "is missing: auth-type basic needs it".to_string(),
        );
        return denied;
    };
    // client-go's SplitMetaNamespaceKey: `name` or `namespace/name`.
    let (namespace, name) = match secret.split('/').collect::<Vec<_>>()[..] {
        [name] if !name.is_empty() => (None, name),
        [ns, name] if !name.is_empty() => ((!ns.is_empty()).then(|| ns.to_string()), name),
        _ => {
            deny(
                problems,
                "auth-secret",
                format!("{secret:?} is not a name or namespace/name"),
            );
            return denied;
        }
    };
    Some(BasicAuthSpec::Secret {
        namespace,
        name: name.to_string(),
        secret_type,
        realm,
    })
}

/// The filter `spec` asks for, with the users of its Secret (`secrets` holds every
/// Secret Portico watches) as they are in this snapshot. `ingress_namespace` is where
/// a Secret named without a namespace is looked for.
pub(in crate::compile) fn resolve(
    spec: &BasicAuthSpec,
    ingress_namespace: &str,
    secrets: &[Secret],
    problems: &mut Problems,
) -> Arc<BasicAuth> {
    let (namespace, name, secret_type, realm) = match spec {
        BasicAuthSpec::Denied { realm } => return denied(realm),
        BasicAuthSpec::Secret {
            namespace,
            name,
            secret_type,
            realm,
        } => (
            namespace.as_deref().unwrap_or(ingress_namespace),
            name,
            *secret_type,
            realm,
        ),
    };
    let key = format!("{NGINX_PREFIX}auth-secret");
    let found = secrets.iter().find(|s| {
        crate::compile::namespace_of(&s.metadata) == namespace && s.metadata.name.as_deref() == Some(name.as_str())
    });
    let Some(secret) = found else {
        problems.push(
            Problem::warning(
                reason::SECRET_NOT_FOUND,
                format!(
                    "basic-auth Secret \"{name}\" not found in namespace {namespace:?} (Portico reads Opaque Secrets for it); every request to this Ingress gets 503, as in ingress-nginx"
                ),
            )
            .about(key),
        );
        return denied(realm);
    };
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let (credentials, bad) = match secret_type {
        SecretType::File => match data.get("auth") {
            Some(file) => Credentials::from_htpasswd(&file.0),
            None => {
                problems.push(
                    Problem::warning(
                        reason::INVALID_AUTH_SECRET,
                        format!("basic-auth Secret \"{name}\" has no key \"auth\" (auth-secret-type auth-file); every request to this Ingress gets 503, as in ingress-nginx"),
                    )
                    .about(key),
                );
                return denied(realm);
            }
        },
        SecretType::Map => Credentials::from_map(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice()))),
    };
    for line in bad.iter().take(MAX_LINE_PROBLEMS) {
        let user = match line.user.as_str() {
            "" => String::new(),
            u => format!(" (user {u:?})"),
        };
        problems.push(
            Problem::warning(
                reason::INVALID_AUTH_SECRET,
                format!("basic-auth Secret \"{name}\": line {}{user} {}", line.line, line.why),
            )
            .about(key.clone()),
        );
    }
    if bad.len() > MAX_LINE_PROBLEMS {
        problems.push(
            Problem::warning(
                reason::INVALID_AUTH_SECRET,
                format!(
                    "basic-auth Secret \"{name}\": {} more lines cannot let their user in",
                    bad.len() - MAX_LINE_PROBLEMS
                ),
            )
            .about(key.clone()),
        );
    }
    if credentials.is_empty() {
        problems.push(
            Problem::warning(
                reason::INVALID_AUTH_SECRET,
                format!("basic-auth Secret \"{name}\" lists no user; every request to this Ingress gets 401"),
            )
            .about(key),
        );
    }
    // The realm has no control character (checked when parsing), so it always fits.
    BasicAuth::new(realm, credentials).map_or_else(|_| denied(""), Arc::new)
}

fn denied(realm: &str) -> Arc<BasicAuth> {
    Arc::new(BasicAuth::unavailable(realm))
}
