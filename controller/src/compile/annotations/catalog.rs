//! Every annotation ingress-nginx documents (its
//! `docs/user-guide/nginx-configuration/annotations.md`), with what Portico does with
//! it. The compile, `portico migrate` and the migration guide all read this one table.

/// What Portico does with one ingress-nginx annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Same meaning and default as in ingress-nginx.
    Honoured,
    /// Has its effect, with the stated difference.
    Differs(&'static str),
    /// Not implemented: no effect (an `UnsupportedAnnotation` diagnostic says so).
    Unsupported,
    /// Never interpreted, on purpose: nginx configuration text (a snippet).
    Refused,
}

impl Status {
    /// The word `portico migrate` and the guide print.
    pub fn word(self) -> &'static str {
        match self {
            Status::Honoured => "honoured",
            Status::Differs(_) => "differs",
            Status::Unsupported => "unsupported",
            Status::Refused => "refused",
        }
    }

    /// The annotation changes what Portico does.
    pub fn has_effect(self) -> bool {
        matches!(self, Status::Honoured | Status::Differs(_))
    }
}

use Status::{Differs, Honoured, Refused, Unsupported};

const CASE: &str = "Prefix and Exact paths on the host stay case-sensitive; ingress-nginx makes them case-insensitive regular expressions too";

/// `(name without the prefix, status)`, in the order of ingress-nginx's table.
pub const CATALOG: &[(&str, Status)] = &[
    ("app-root", Honoured),
    (
        "affinity",
        Differs(
            "the cookie carries Path=/, HttpOnly and SameSite=Lax and no expiry; its value names the endpoint by a hash",
        ),
    ),
    (
        "affinity-mode",
        Differs("sessions always stay on their endpoint while it is ready (\"persistent\")"),
    ),
    ("affinity-canary-behavior", Unsupported),
    ("auth-realm", Unsupported),
    ("auth-secret", Unsupported),
    ("auth-secret-type", Unsupported),
    ("auth-type", Unsupported),
    ("auth-tls-secret", Unsupported),
    ("auth-tls-verify-depth", Unsupported),
    ("auth-tls-verify-client", Unsupported),
    ("auth-tls-error-page", Unsupported),
    ("auth-tls-pass-certificate-to-upstream", Unsupported),
    ("auth-tls-match-cn", Unsupported),
    ("auth-url", Unsupported),
    ("auth-method", Unsupported),
    ("auth-signin", Unsupported),
    ("auth-signin-redirect-param", Unsupported),
    ("auth-response-headers", Unsupported),
    ("auth-request-redirect", Unsupported),
    ("auth-always-set-cookie", Unsupported),
    ("auth-cache-key", Unsupported),
    ("auth-cache-duration", Unsupported),
    ("auth-keepalive", Unsupported),
    ("auth-keepalive-requests", Unsupported),
    ("auth-keepalive-timeout", Unsupported),
    ("auth-keepalive-share-vars", Unsupported),
    ("auth-proxy-set-headers", Unsupported),
    ("auth-snippet", Refused),
    ("enable-global-auth", Unsupported),
    (
        "backend-protocol",
        Differs("HTTP, HTTPS, GRPC and H2C; GRPCS, AUTO_HTTP, FCGI and AJP are not supported"),
    ),
    ("canary", Honoured),
    ("canary-by-header", Honoured),
    ("canary-by-header-value", Honoured),
    ("canary-by-header-pattern", Honoured),
    ("canary-by-cookie", Honoured),
    (
        "canary-weight",
        Differs("an exact smooth weighted rotation, not a random draw"),
    ),
    ("canary-weight-total", Honoured),
    ("client-body-buffer-size", Unsupported),
    ("configuration-snippet", Refused),
    ("custom-http-errors", Unsupported),
    ("custom-headers", Unsupported),
    ("default-backend", Unsupported),
    ("enable-cors", Unsupported),
    ("cors-allow-origin", Unsupported),
    ("cors-allow-methods", Unsupported),
    ("cors-allow-headers", Unsupported),
    ("cors-expose-headers", Unsupported),
    ("cors-allow-credentials", Unsupported),
    ("cors-max-age", Unsupported),
    ("force-ssl-redirect", Honoured),
    ("from-to-www-redirect", Honoured),
    ("http2-push-preload", Unsupported),
    ("limit-connections", Unsupported),
    ("limit-rps", Unsupported),
    ("limit-rpm", Unsupported),
    ("limit-burst-multiplier", Unsupported),
    ("limit-rate", Unsupported),
    ("limit-rate-after", Unsupported),
    ("limit-whitelist", Unsupported),
    ("global-rate-limit", Unsupported),
    ("global-rate-limit-window", Unsupported),
    ("global-rate-limit-key", Unsupported),
    ("global-rate-limit-ignored-cidrs", Unsupported),
    ("permanent-redirect", Honoured),
    ("permanent-redirect-code", Honoured),
    ("temporal-redirect", Honoured),
    ("preserve-trailing-slash", Unsupported),
    ("proxy-body-size", Honoured),
    ("proxy-cookie-domain", Unsupported),
    ("proxy-cookie-path", Unsupported),
    ("proxy-connect-timeout", Unsupported),
    ("proxy-send-timeout", Honoured),
    ("proxy-read-timeout", Honoured),
    (
        "proxy-next-upstream",
        Differs(
            "error, timeout, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent and off; invalid_header is taken as error",
        ),
    ),
    (
        "proxy-next-upstream-timeout",
        Differs("bounds the whole request, first attempt included"),
    ),
    ("proxy-next-upstream-tries", Honoured),
    ("proxy-request-buffering", Honoured),
    ("proxy-redirect-from", Unsupported),
    ("proxy-redirect-to", Unsupported),
    ("proxy-http-version", Unsupported),
    ("proxy-ssl-secret", Unsupported),
    ("proxy-ssl-ciphers", Unsupported),
    ("proxy-ssl-name", Unsupported),
    ("proxy-ssl-protocols", Unsupported),
    ("proxy-ssl-verify", Unsupported),
    ("proxy-ssl-verify-depth", Unsupported),
    ("proxy-ssl-server-name", Unsupported),
    ("enable-rewrite-log", Unsupported),
    (
        "rewrite-target",
        Differs(
            "$1 to $9 only; nginx variables in the target are refused; the path is matched as sent, not percent-decoded",
        ),
    ),
    ("satisfy", Unsupported),
    ("server-alias", Unsupported),
    ("server-snippet", Refused),
    ("service-upstream", Unsupported),
    ("session-cookie-name", Honoured),
    ("session-cookie-path", Unsupported),
    ("session-cookie-domain", Unsupported),
    ("session-cookie-change-on-failure", Unsupported),
    ("session-cookie-samesite", Unsupported),
    ("session-cookie-conditional-samesite-none", Unsupported),
    ("session-cookie-max-age", Unsupported),
    ("session-cookie-expires", Unsupported),
    ("session-cookie-secure", Unsupported),
    ("ssl-redirect", Honoured),
    ("ssl-passthrough", Unsupported),
    ("stream-snippet", Refused),
    (
        "upstream-hash-by",
        Differs(
            "one of $remote_addr, $binary_remote_addr, $http_<name> or $cookie_<name>; other variables and combinations are not supported",
        ),
    ),
    ("upstream-hash-by-subset", Unsupported),
    ("upstream-hash-by-subset-size", Unsupported),
    ("x-forwarded-prefix", Honoured),
    (
        "load-balance",
        Differs("round_robin; ewma is served by least-request (power of two choices on requests in flight)"),
    ),
    ("upstream-vhost", Honoured),
    ("whitelist-source-range", Unsupported),
    ("denylist-source-range", Unsupported),
    ("proxy-buffering", Unsupported),
    ("proxy-buffers-number", Unsupported),
    ("proxy-buffer-size", Unsupported),
    ("proxy-max-temp-file-size", Unsupported),
    ("ssl-ciphers", Unsupported),
    ("ssl-prefer-server-ciphers", Unsupported),
    ("connection-proxy-header", Unsupported),
    ("enable-access-log", Honoured),
    ("enable-opentracing", Unsupported),
    ("opentracing-trust-incoming-span", Unsupported),
    ("enable-opentelemetry", Unsupported),
    ("opentelemetry-trust-incoming-span", Unsupported),
    ("enable-influxdb", Unsupported),
    ("influxdb-measurement", Unsupported),
    ("influxdb-port", Unsupported),
    ("influxdb-host", Unsupported),
    ("influxdb-server-name", Unsupported),
    ("use-regex", Differs(CASE)),
    ("enable-modsecurity", Unsupported),
    ("enable-owasp-core-rules", Unsupported),
    ("modsecurity-transaction-id", Unsupported),
    ("modsecurity-snippet", Refused),
    ("mirror-request-body", Unsupported),
    ("mirror-target", Unsupported),
    ("mirror-host", Unsupported),
];

/// The status of annotation `key` (with or without the prefix); any key ending in
/// `-snippet` is refused, listed or not. `None` for a name ingress-nginx does not have.
pub fn status(key: &str) -> Option<Status> {
    let name = key.strip_prefix(super::NGINX_PREFIX).unwrap_or(key);
    if name.ends_with("-snippet") {
        return Some(Refused);
    }
    CATALOG.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name appears once, and every snippet is refused.
    #[test]
    fn catalog_is_a_set_and_refuses_snippets() {
        let mut names: Vec<&str> = CATALOG.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for (name, s) in CATALOG {
            assert_eq!(name.ends_with("-snippet"), *s == Refused, "{name}");
        }
        assert_eq!(status("nginx.ingress.kubernetes.io/lua-snippet"), Some(Refused));
        assert_eq!(status("nginx.ingress.kubernetes.io/no-such-thing"), None);
    }
}
