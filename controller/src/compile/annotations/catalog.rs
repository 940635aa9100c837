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

const AUTH_TLS: &str = "the host's Ingress paths and defaultBackends are checked; Route and Gateway API routes on the same host are not, and a rule without a host cannot ask";

const NEXT_UPSTREAM: &str = "error, timeout, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent and off; invalid_header is taken as error";

const NEXT_UPSTREAM_TIMEOUT: &str = "bounds the whole request, first attempt included";

const LOAD_BALANCE: &str = "round_robin; ewma is served by least-request (power of two choices on requests in flight)";

const PASSTHROUGH: &str = "needs no --enable-ssl-passthrough flag; the connection goes to the Service's ready endpoints in turn, not to its cluster IP";

/// `(name without the prefix, status)`, in the order of ingress-nginx's table.
pub const CATALOG: &[(&str, Status)] = &[
    ("app-root", Honoured),
    (
        "affinity",
        Differs("the cookie's value names the endpoint by a hash, not by a random key"),
    ),
    (
        "affinity-mode",
        Differs("sessions always stay on their endpoint while it is ready (\"persistent\")"),
    ),
    ("affinity-canary-behavior", Unsupported),
    (
        "auth-realm",
        Differs("\"off\" is a realm like any other; nginx would switch authentication off"),
    ),
    (
        "auth-secret",
        Differs(
            "an Opaque Secret (no other type is watched for it); a bcrypt cost above 12 or SHA-crypt above 50000 rounds is refused (500 for that user): one check would hold a thread too long",
        ),
    ),
    ("auth-secret-type", Honoured),
    (
        "auth-type",
        Differs("\"digest\" is not implemented: its paths get 503, never served without authentication"),
    ),
    ("auth-tls-secret", Differs(AUTH_TLS)),
    (
        "auth-tls-verify-depth",
        Differs(
            "the client's intermediates beyond depth - 1 are not used to build the chain; nginx counts the chain it built",
        ),
    ),
    ("auth-tls-verify-client", Honoured),
    ("auth-tls-error-page", Honoured),
    ("auth-tls-pass-certificate-to-upstream", Honoured),
    (
        "auth-tls-match-cn",
        Differs("Rust regular expressions (no look-around or backreferences), not PCRE"),
    ),
    (
        "auth-url",
        Differs("http:// only, without nginx variables; the auth answer's Set-Cookie is not passed on to the client"),
    ),
    ("auth-method", Honoured),
    (
        "auth-signin",
        Differs(
            "of nginx's variables, $host, $http_host, $best_http_host, $scheme, $pass_access_scheme, $request_uri and $escaped_request_uri are filled; any other refuses the Ingress (503)",
        ),
    ),
    ("auth-signin-redirect-param", Honoured),
    ("auth-response-headers", Honoured),
    ("auth-request-redirect", Honoured),
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
        Differs("HTTP, HTTPS, GRPC, GRPCS and H2C; AUTO_HTTP, FCGI and AJP are not supported"),
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
    (
        "client-body-buffer-size",
        Differs(
            "the most of a body read before the endpoint is contacted (with proxy-request-buffering on); the rest of a larger body then streams after it, where nginx writes it to a temporary file and still sends it whole",
        ),
    ),
    ("configuration-snippet", Refused),
    (
        "custom-http-errors",
        Differs("only with default-backend: Portico has no global default backend to send the errors to"),
    ),
    ("custom-headers", Unsupported),
    ("default-backend", Honoured),
    ("enable-cors", Honoured),
    (
        "cors-allow-origin",
        Differs("an Origin must match an entry whole; ingress-nginx's pattern is anchored at the end only"),
    ),
    ("cors-allow-methods", Honoured),
    ("cors-allow-headers", Honoured),
    ("cors-expose-headers", Honoured),
    ("cors-allow-credentials", Honoured),
    ("cors-max-age", Honoured),
    ("force-ssl-redirect", Honoured),
    ("from-to-www-redirect", Honoured),
    ("http2-push-preload", Unsupported),
    ("limit-connections", Honoured),
    ("limit-rps", Honoured),
    ("limit-rpm", Honoured),
    ("limit-burst-multiplier", Honoured),
    ("limit-rate", Unsupported),
    ("limit-rate-after", Unsupported),
    ("limit-whitelist", Honoured),
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
    ("proxy-connect-timeout", Honoured),
    ("proxy-send-timeout", Honoured),
    ("proxy-read-timeout", Honoured),
    ("proxy-next-upstream", Differs(NEXT_UPSTREAM)),
    ("proxy-next-upstream-timeout", Differs(NEXT_UPSTREAM_TIMEOUT)),
    ("proxy-next-upstream-tries", Honoured),
    ("proxy-request-buffering", Honoured),
    ("proxy-redirect-from", Unsupported),
    ("proxy-redirect-to", Unsupported),
    ("proxy-http-version", Unsupported),
    (
        "proxy-ssl-secret",
        Differs(
            "also applies to a Service port with appProtocol https; with proxy-ssl-verify on, a Secret without ca.crt denies the paths (503) where ingress-nginx would not verify; a Secret of another namespace is always refused",
        ),
    ),
    ("proxy-ssl-ciphers", Unsupported),
    (
        "proxy-ssl-name",
        Differs(
            "without it the name is the Service's cluster name (web.default.svc for Service web in namespace default), where ingress-nginx uses its upstream's name",
        ),
    ),
    (
        "proxy-ssl-protocols",
        Differs("TLSv1.2 and TLSv1.3 only, both by default (ingress-nginx's default is TLSv1 TLSv1.1 TLSv1.2)"),
    ),
    ("proxy-ssl-verify", Honoured),
    (
        "proxy-ssl-verify-depth",
        Differs(
            "limits how many of the intermediate certificates the endpoint sends are used, the first ones as sent; a certificate in ca.crt is trusted at any depth",
        ),
    ),
    ("proxy-ssl-server-name", Honoured),
    ("enable-rewrite-log", Unsupported),
    (
        "rewrite-target",
        Differs(
            "$1 to $9 only; nginx variables in the target are refused; the path is matched as sent, not percent-decoded",
        ),
    ),
    ("satisfy", Unsupported),
    (
        "server-alias",
        Differs("exact host names only; wildcard and regular-expression names are reported and not served"),
    ),
    ("server-snippet", Refused),
    ("service-upstream", Honoured),
    ("session-cookie-name", Honoured),
    ("session-cookie-path", Honoured),
    ("session-cookie-domain", Honoured),
    (
        "session-cookie-change-on-failure",
        Differs(
            "a request retried on another endpoint after a failure is always pinned to that endpoint, as with \"true\"",
        ),
    ),
    ("session-cookie-samesite", Honoured),
    ("session-cookie-conditional-samesite-none", Honoured),
    ("session-cookie-max-age", Honoured),
    ("session-cookie-expires", Honoured),
    ("session-cookie-secure", Honoured),
    ("ssl-redirect", Honoured),
    ("ssl-passthrough", Differs(PASSTHROUGH)),
    ("stream-snippet", Refused),
    (
        "upstream-hash-by",
        Differs(
            "text with $request_uri, $uri, $args, $arg_<name>, $host, $scheme, $request_method, $remote_addr, $http_<name> and $cookie_<name>; other nginx variables are not supported, and the hash is rendezvous hashing rather than nginx's ketama ring",
        ),
    ),
    ("upstream-hash-by-subset", Unsupported),
    ("upstream-hash-by-subset-size", Unsupported),
    ("x-forwarded-prefix", Honoured),
    ("load-balance", Differs(LOAD_BALANCE)),
    ("upstream-vhost", Honoured),
    ("whitelist-source-range", Honoured),
    ("denylist-source-range", Honoured),
    (
        "proxy-buffering",
        Differs(
            "read ahead in memory only, up to --response-buffer-size (1 MiB) per response; a larger response's rest streams as with \"off\", keeping its endpoint connection, where nginx spills up to 1 GiB to a temporary file",
        ),
    ),
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

/// Every key of ingress-nginx's controller ConfigMap (its
/// `docs/user-guide/nginx-configuration/configmap.md`), with what Portico does with it,
/// in the order of that page's table. Portico reads the ConfigMap `--configmap` names;
/// the keys in [`CONFIG_FLAGS`] that it does not read have a command-line flag that
/// sets the same thing for every route.
pub const CONFIG_KEYS: &[(&str, Status)] = &[
    ("add-headers", Unsupported),
    ("allow-backend-server-header", Unsupported),
    ("allow-snippet-annotations", Unsupported),
    ("annotation-value-word-blocklist", Unsupported),
    ("hide-headers", Unsupported),
    ("access-log-params", Unsupported),
    ("access-log-path", Unsupported),
    ("http-access-log-path", Unsupported),
    ("stream-access-log-path", Unsupported),
    ("enable-access-log-for-default-backend", Unsupported),
    ("error-log-path", Unsupported),
    ("enable-modsecurity", Unsupported),
    ("modsecurity-snippet", Refused),
    ("enable-owasp-modsecurity-crs", Unsupported),
    ("client-header-buffer-size", Unsupported),
    ("client-header-timeout", Unsupported),
    ("client-body-buffer-size", Unsupported),
    ("client-body-timeout", Unsupported),
    ("disable-access-log", Unsupported),
    ("disable-ipv6", Unsupported),
    ("disable-ipv6-dns", Unsupported),
    ("enable-underscores-in-headers", Unsupported),
    ("enable-ocsp", Unsupported),
    ("ignore-invalid-headers", Unsupported),
    ("retry-non-idempotent", Unsupported),
    ("error-log-level", Unsupported),
    ("http2-max-field-size", Unsupported),
    ("http2-max-header-size", Unsupported),
    ("http2-max-requests", Unsupported),
    ("http2-max-concurrent-streams", Unsupported),
    ("hsts", Honoured),
    ("hsts-include-subdomains", Honoured),
    ("hsts-max-age", Honoured),
    ("hsts-preload", Honoured),
    ("keep-alive", Honoured),
    (
        "keep-alive-requests",
        Differs(
            "honoured when set, for HTTP/1.1 and HTTP/2; without the key Portico sets no limit (--keepalive-requests 0), where ingress-nginx's default is 1000",
        ),
    ),
    (
        "large-client-header-buffers",
        Differs(
            "limits the whole request head to number × size (at least 8k): a single line longer than one buffer is not refused on its own, and a head over the limit is 431 where nginx answers 400 or 414",
        ),
    ),
    ("log-format-escape-none", Unsupported),
    ("log-format-escape-json", Unsupported),
    ("log-format-upstream", Unsupported),
    ("log-format-stream", Unsupported),
    ("enable-multi-accept", Unsupported),
    ("max-worker-connections", Unsupported),
    ("max-worker-open-files", Unsupported),
    ("map-hash-bucket-size", Unsupported),
    ("nginx-status-ipv4-whitelist", Unsupported),
    ("nginx-status-ipv6-whitelist", Unsupported),
    ("proxy-real-ip-cidr", Honoured),
    ("proxy-set-headers", Unsupported),
    ("server-name-hash-max-size", Unsupported),
    ("server-name-hash-bucket-size", Unsupported),
    ("proxy-headers-hash-max-size", Unsupported),
    ("proxy-headers-hash-bucket-size", Unsupported),
    ("plugins", Unsupported),
    ("reuse-port", Unsupported),
    (
        "server-tokens",
        Differs(
            "Portico sends no Server header and names no version in its own responses, whatever the value; ingress-nginx sends Server: nginx, with nginx's version when true",
        ),
    ),
    (
        "ssl-ciphers",
        Differs(
            "chooses among rustls's six TLS 1.2 suites (ECDHE with AES-GCM or CHACHA20-POLY1305), in the listed order; other OpenSSL names and keywords (DHE, CBC, HIGH, !aNULL) are skipped; every TLS 1.3 suite stays offered, as with nginx's ssl_ciphers",
        ),
    ),
    ("ssl-ecdh-curve", Unsupported),
    ("ssl-dh-param", Unsupported),
    (
        "ssl-protocols",
        Differs("TLSv1.2 and TLSv1.3 only: TLSv1 and TLSv1.1 in the list are not offered"),
    ),
    ("ssl-session-cache", Unsupported),
    ("ssl-session-cache-size", Unsupported),
    ("ssl-session-tickets", Unsupported),
    ("ssl-session-ticket-key", Unsupported),
    ("ssl-session-timeout", Unsupported),
    ("ssl-buffer-size", Unsupported),
    ("use-proxy-protocol", Honoured),
    (
        "proxy-protocol-header-timeout",
        Differs(
            "bounds the wait for the PROXY header on both Ingress listeners; ingress-nginx applies it to its TLS passthrough listener, and nginx waits for the header as long as for a request head",
        ),
    ),
    ("use-gzip", Unsupported),
    ("use-geoip", Unsupported),
    ("use-geoip2", Unsupported),
    ("enable-brotli", Unsupported),
    ("brotli-level", Unsupported),
    ("brotli-min-length", Unsupported),
    ("brotli-types", Unsupported),
    ("use-http2", Unsupported),
    ("gzip-level", Unsupported),
    ("gzip-types", Unsupported),
    ("worker-processes", Unsupported),
    ("worker-cpu-affinity", Unsupported),
    ("worker-shutdown-timeout", Unsupported),
    ("load-balance", Differs(LOAD_BALANCE)),
    ("variables-hash-bucket-size", Unsupported),
    ("variables-hash-max-size", Unsupported),
    (
        "upstream-keepalive-connections",
        Differs(
            "idle connections kept per endpoint, shared by every serving thread; nginx keeps them per upstream (Service) and per worker process",
        ),
    ),
    ("upstream-keepalive-time", Unsupported),
    ("upstream-keepalive-timeout", Honoured),
    (
        "upstream-keepalive-requests",
        Differs(
            "limits HTTP/1.1 endpoint connections; the one HTTP/2 connection per endpoint (backend-protocol GRPC, GRPCS or H2C) carries requests without a limit",
        ),
    ),
    ("limit-conn-zone-variable", Unsupported),
    ("proxy-stream-timeout", Unsupported),
    ("proxy-stream-next-upstream", Unsupported),
    ("proxy-stream-next-upstream-timeout", Unsupported),
    ("proxy-stream-next-upstream-tries", Unsupported),
    ("proxy-stream-responses", Unsupported),
    ("bind-address", Unsupported),
    (
        "use-forwarded-headers",
        Differs(
            "X-Forwarded-Proto, -Host and -Port are believed only from peers in proxy-real-ip-cidr (its default, 0.0.0.0/0, is every IPv4 peer); ingress-nginx believes them from any peer",
        ),
    ),
    ("enable-real-ip", Honoured),
    ("forwarded-for-header", Honoured),
    ("compute-full-forwarded-for", Honoured),
    ("proxy-add-original-uri-header", Unsupported),
    ("generate-request-id", Unsupported),
    ("enable-opentracing", Unsupported),
    ("opentracing-operation-name", Unsupported),
    ("opentracing-location-operation-name", Unsupported),
    ("zipkin-collector-host", Unsupported),
    ("zipkin-collector-port", Unsupported),
    ("zipkin-service-name", Unsupported),
    ("zipkin-sample-rate", Unsupported),
    ("jaeger-collector-host", Unsupported),
    ("jaeger-collector-port", Unsupported),
    ("jaeger-endpoint", Unsupported),
    ("jaeger-service-name", Unsupported),
    ("jaeger-propagation-format", Unsupported),
    ("jaeger-sampler-type", Unsupported),
    ("jaeger-sampler-param", Unsupported),
    ("jaeger-sampler-host", Unsupported),
    ("jaeger-sampler-port", Unsupported),
    ("jaeger-trace-context-header-name", Unsupported),
    ("jaeger-debug-header", Unsupported),
    ("jaeger-baggage-header", Unsupported),
    ("jaeger-trace-baggage-header-prefix", Unsupported),
    ("datadog-collector-host", Unsupported),
    ("datadog-collector-port", Unsupported),
    ("datadog-service-name", Unsupported),
    ("datadog-environment", Unsupported),
    ("datadog-operation-name-override", Unsupported),
    ("datadog-priority-sampling", Unsupported),
    ("datadog-sample-rate", Unsupported),
    ("main-snippet", Refused),
    ("http-snippet", Refused),
    ("server-snippet", Refused),
    ("stream-snippet", Refused),
    ("location-snippet", Refused),
    (
        "custom-http-errors",
        Differs(
            "the pages come from --default-backend-service; without it the key has no effect, where ingress-nginx's built-in default backend answers plain pages",
        ),
    ),
    ("proxy-body-size", Honoured),
    ("proxy-connect-timeout", Honoured),
    ("proxy-read-timeout", Honoured),
    ("proxy-send-timeout", Honoured),
    ("proxy-buffers-number", Unsupported),
    ("proxy-buffer-size", Unsupported),
    ("proxy-cookie-path", Unsupported),
    ("proxy-cookie-domain", Unsupported),
    ("proxy-next-upstream", Differs(NEXT_UPSTREAM)),
    ("proxy-next-upstream-timeout", Differs(NEXT_UPSTREAM_TIMEOUT)),
    ("proxy-next-upstream-tries", Honoured),
    ("proxy-redirect-from", Unsupported),
    ("proxy-request-buffering", Honoured),
    ("ssl-redirect", Honoured),
    ("force-ssl-redirect", Honoured),
    ("whitelist-source-range", Honoured),
    ("denylist-source-range", Honoured),
    ("skip-access-log-urls", Unsupported),
    ("limit-rate", Unsupported),
    ("limit-rate-after", Unsupported),
    ("lua-shared-dicts", Unsupported),
    ("http-redirect-code", Honoured),
    (
        "proxy-buffering",
        Differs(
            "read ahead in memory only, up to --response-buffer-size (1 MiB) per response; a larger response's rest streams as with \"off\", keeping its endpoint connection, where nginx spills up to 1 GiB to a temporary file",
        ),
    ),
    ("limit-req-status-code", Honoured),
    ("limit-conn-status-code", Honoured),
    ("enable-syslog", Unsupported),
    ("syslog-host", Unsupported),
    ("syslog-port", Unsupported),
    ("no-tls-redirect-locations", Unsupported),
    ("global-auth-url", Unsupported),
    ("global-auth-method", Unsupported),
    ("global-auth-signin", Unsupported),
    ("global-auth-signin-redirect-param", Unsupported),
    ("global-auth-response-headers", Unsupported),
    ("global-auth-request-redirect", Unsupported),
    ("global-auth-snippet", Refused),
    ("global-auth-cache-key", Unsupported),
    ("global-auth-cache-duration", Unsupported),
    ("no-auth-locations", Unsupported),
    (
        "block-cidrs",
        Differs(
            "checked on Ingress paths only (not on requests no rule matches, nor on Route and Gateway API routes), and also on paths with their own source ranges, whose location allow and deny replace nginx's global deny; an entry that does not parse is reported and skipped, where nginx refuses the whole configuration",
        ),
    ),
    ("block-user-agents", Unsupported),
    ("block-referers", Unsupported),
    ("proxy-ssl-location-only", Unsupported),
    ("default-type", Unsupported),
    ("global-rate-limit-memcached-host", Unsupported),
    ("global-rate-limit-memcached-port", Unsupported),
    ("global-rate-limit-memcached-connect-timeout", Unsupported),
    ("global-rate-limit-memcached-max-idle-timeout", Unsupported),
    ("global-rate-limit-memcached-pool-size", Unsupported),
    ("global-rate-limit-status-code", Unsupported),
    ("service-upstream", Honoured),
    ("ssl-reject-handshake", Unsupported),
    ("debug-connections", Unsupported),
];

/// ConfigMap keys whose setting a Portico flag makes: `(key, flag)`.
pub const CONFIG_FLAGS: &[(&str, &str)] = &[
    ("proxy-body-size", "--max-body-size"),
    ("ssl-redirect", "--ssl-redirect"),
    ("hsts", "--hsts"),
    ("proxy-connect-timeout", "--connect-timeout"),
    ("proxy-read-timeout", "--upstream-timeout"),
    ("proxy-send-timeout", "--proxy-send-timeout"),
    ("client-body-timeout", "--client-body-timeout"),
    ("client-header-timeout", "--client-header-timeout"),
    ("proxy-request-buffering", "--proxy-request-buffering"),
    ("client-body-buffer-size", "--client-body-buffer-size"),
    ("proxy-buffering", "--proxy-buffering"),
    ("disable-access-log", "--access-log"),
    ("worker-processes", "--worker-threads"),
    ("worker-shutdown-timeout", "--drain-timeout"),
];

/// The status of ConfigMap key `key`; any key ending in `-snippet` is refused. `None`
/// for a key ingress-nginx does not have.
pub fn config_status(key: &str) -> Option<Status> {
    if key.ends_with("-snippet") {
        return Some(Refused);
    }
    CONFIG_KEYS.iter().find(|(n, _)| *n == key).map(|(_, s)| *s)
}

/// The Portico flag that sets what ConfigMap key `key` sets, if there is one.
pub fn config_flag(key: &str) -> Option<&'static str> {
    CONFIG_FLAGS.iter().find(|(k, _)| *k == key).map(|(_, f)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name of `table` appears once, and every snippet is refused.
    fn assert_set_refusing_snippets(table: &[(&str, Status)]) {
        let mut names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for (name, s) in table {
            assert_eq!(name.ends_with("-snippet"), *s == Refused, "{name}");
        }
    }

    #[test]
    fn catalog_is_a_set_and_refuses_snippets() {
        assert_set_refusing_snippets(CATALOG);
        assert_eq!(status("nginx.ingress.kubernetes.io/lua-snippet"), Some(Refused));
        assert_eq!(status("nginx.ingress.kubernetes.io/no-such-thing"), None);
    }

    /// The ConfigMap table too; every flag equivalent names a key of it.
    #[test]
    fn config_keys_are_a_set() {
        assert_set_refusing_snippets(CONFIG_KEYS);
        for (key, flag) in CONFIG_FLAGS {
            assert!(config_status(key).is_some(), "{key}");
            assert!(flag.starts_with("--"), "{flag}");
        }
    }
}
