//! ingress-nginx's controller ConfigMap (`--configmap NAMESPACE/NAME`): the global keys
//! Portico reads, with ingress-nginx's defaults (its
//! `docs/user-guide/nginx-configuration/configmap.md`). Every key is read on every
//! compile, so a change to the ConfigMap is live with the next table. A key Portico
//! does not read, or a value that does not parse, is a diagnostic on the ConfigMap;
//! the other keys still apply.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use k8s_openapi::api::core::v1::ConfigMap;
use portico_dataplane::filter::Cidr;
use portico_dataplane::table::{ConnectionSettings, DEFAULT_TRUSTED, ForwardedPolicy};
use portico_dataplane::tls::TlsPolicy;

use super::CompileOptions;
use super::annotations::access::cidr_list;
use super::annotations::catalog::{self, Status};
use super::annotations::{NGINX_PREFIX, parse_seconds, parse_size};
use super::diagnostics::{Problem, Problems, reason};

/// What the ConfigMap sets for the whole table.
#[derive(Debug, Default)]
pub(super) struct Global {
    /// The forwarded-header and PROXY protocol keys; `None` when all are off.
    pub forwarded: Option<ForwardedPolicy>,
    /// `hsts`: `Strict-Transport-Security` on or off; `None`: as `--hsts` says.
    pub hsts: Option<bool>,
    /// `hsts-max-age` (seconds), `hsts-include-subdomains`, `hsts-preload`: the parts
    /// of the header; each `None` when unset.
    pub hsts_max_age: Option<u64>,
    pub hsts_include_subdomains: Option<bool>,
    pub hsts_preload: Option<bool>,
    /// `proxy-body-size`: `Some(None)` is no limit.
    pub proxy_body_size: Option<Option<u64>>,
    /// `proxy-read-timeout`, `proxy-send-timeout`, `proxy-connect-timeout` (whole
    /// seconds).
    pub proxy_read_timeout: Option<Duration>,
    pub proxy_send_timeout: Option<Duration>,
    pub proxy_connect_timeout: Option<Duration>,
    /// `whitelist-source-range`, `denylist-source-range`: the lists of Ingresses
    /// without the annotations of the same names.
    /// `Some(Err(()))`: the key is there and does not parse, so Ingresses that take
    /// the list are refused (ingress-nginx denies their locations, as for a bad
    /// annotation) rather than served to the clients the list was meant to keep out.
    pub whitelist_source_range: Option<Result<Vec<Cidr>, ()>>,
    pub denylist_source_range: Option<Result<Vec<Cidr>, ()>>,
    /// `limit-req-status-code`.
    pub limit_req_status_code: Option<StatusCode>,
    /// `custom-http-errors`.
    pub custom_http_errors: Option<Vec<u16>>,
    /// `ssl-redirect` and `force-ssl-redirect`: the annotations' defaults.
    pub ssl_redirect: Option<bool>,
    pub force_ssl_redirect: Option<bool>,
    /// `proxy-request-buffering` (`on` or `off`).
    pub request_buffering: Option<bool>,
    /// `limit-conn-status-code`.
    pub limit_conn_status_code: Option<StatusCode>,
    /// `service-upstream`: the annotation's default.
    pub service_upstream: Option<bool>,
    /// `http-redirect-code`.
    pub http_redirect_code: Option<StatusCode>,
    /// `block-cidrs`: the entries that parse.
    pub block_cidrs: Option<Vec<Cidr>>,
    /// `keep-alive`, `keep-alive-requests`, `large-client-header-buffers` and the
    /// `upstream-keepalive-*` keys: for the whole process.
    pub connections: ConnectionSettings,
    /// `ssl-protocols` and `ssl-ciphers`, when either narrows what the Ingress HTTPS
    /// port offers.
    pub tls_policy: Option<TlsPolicy>,
    /// The keys in [`ANNOTATION_DEFAULTS`] that are set and parse as their annotation
    /// does, keyed by the annotation's full name.
    pub annotation_defaults: BTreeMap<String, String>,
}

/// ConfigMap keys that are the defaults of the Ingress annotations of the same names
/// (ingress-nginx's annotation parsers fall back on them), checked and applied by the
/// annotations' own parser.
const ANNOTATION_DEFAULTS: &[&str] = &[
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "proxy-next-upstream-timeout",
    "load-balance",
];

/// The keys read here, each handled in [`read`].
const READ: &[&str] = &[
    "use-forwarded-headers",
    "enable-real-ip",
    "forwarded-for-header",
    "compute-full-forwarded-for",
    "proxy-real-ip-cidr",
    "hsts",
    "hsts-max-age",
    "hsts-include-subdomains",
    "hsts-preload",
    "proxy-body-size",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-connect-timeout",
    "whitelist-source-range",
    "denylist-source-range",
    "limit-req-status-code",
    "custom-http-errors",
    "use-proxy-protocol",
    "proxy-protocol-header-timeout",
    "ssl-redirect",
    "force-ssl-redirect",
    "proxy-request-buffering",
    "limit-conn-status-code",
    "service-upstream",
    "http-redirect-code",
    "block-cidrs",
    "keep-alive",
    "keep-alive-requests",
    "large-client-header-buffers",
    "upstream-keepalive-connections",
    "upstream-keepalive-timeout",
    "upstream-keepalive-requests",
    "server-tokens",
    "ssl-protocols",
    "ssl-ciphers",
];

/// Whether Portico reads ConfigMap key `key`.
pub fn is_read(key: &str) -> bool {
    READ.contains(&key) || ANNOTATION_DEFAULTS.contains(&key)
}

/// Reads `config_map`'s data: the settings, and a problem for each key that is not
/// read or does not parse.
pub(super) fn read(config_map: &ConfigMap) -> (Global, Problems) {
    let empty = BTreeMap::new();
    let data = config_map.data.as_ref().unwrap_or(&empty);
    let mut keys = Keys {
        data,
        problems: Problems::default(),
    };
    for key in data.keys() {
        if let Some(problem) = not_read(key) {
            keys.problems.push(problem);
        }
    }
    let use_forwarded_headers = keys.flag("use-forwarded-headers", false);
    let enable_real_ip = keys.flag("enable-real-ip", false);
    let proxy_protocol = keys.flag("use-proxy-protocol", false);
    let compute_full_forwarded_for = keys.flag("compute-full-forwarded-for", false);
    let real_ip_header = keys
        .parsed("forwarded-for-header", "is not a header name", |v| {
            HeaderName::from_bytes(v.as_bytes()).ok()
        })
        .unwrap_or(HeaderName::from_static("x-forwarded-for"));
    let trusted = keys
        .parsed(
            "proxy-real-ip-cidr",
            "is not a list of networks like 198.51.100.0/24",
            cidrs,
        )
        .unwrap_or_else(|| vec![DEFAULT_TRUSTED]);
    let proxy_protocol_timeout = keys
        .parsed(
            "proxy-protocol-header-timeout",
            "is not a duration above zero like 5s or 500ms",
            go_duration,
        )
        .unwrap_or(DEFAULT_PROXY_PROTOCOL_TIMEOUT);
    let forwarded = (use_forwarded_headers || enable_real_ip || proxy_protocol).then(|| ForwardedPolicy {
        use_forwarded_headers,
        // nginx's `real_ip_header proxy_protocol` replaces the header when the PROXY
        // protocol is on.
        real_ip_header: (!proxy_protocol).then_some(real_ip_header),
        compute_full_forwarded_for,
        trusted,
        proxy_protocol,
        proxy_protocol_timeout,
    });
    let global = Global {
        forwarded,
        hsts: keys.some_flag("hsts"),
        hsts_max_age: keys.parsed("hsts-max-age", "is not a whole number of seconds", |v| v.parse().ok()),
        hsts_include_subdomains: keys.some_flag("hsts-include-subdomains"),
        hsts_preload: keys.some_flag("hsts-preload"),
        proxy_body_size: keys.parsed("proxy-body-size", "is not a size like 8m (0: no limit)", |v| {
            parse_size(v).ok()
        }),
        proxy_read_timeout: keys.parsed("proxy-read-timeout", SECONDS, parse_seconds),
        proxy_send_timeout: keys.parsed("proxy-send-timeout", SECONDS, parse_seconds),
        proxy_connect_timeout: keys.parsed("proxy-connect-timeout", SECONDS, parse_seconds),
        whitelist_source_range: keys.source_range("whitelist-source-range"),
        denylist_source_range: keys.source_range("denylist-source-range"),
        custom_http_errors: keys.parsed(
            "custom-http-errors",
            "is not a comma-separated list of status codes from 400 to 599",
            super::annotations::errors::parse_codes,
        ),
        limit_req_status_code: keys.parsed("limit-req-status-code", ERROR_STATUS, error_status),
        limit_conn_status_code: keys.parsed("limit-conn-status-code", ERROR_STATUS, error_status),
        ssl_redirect: keys.some_flag("ssl-redirect"),
        force_ssl_redirect: keys.some_flag("force-ssl-redirect"),
        request_buffering: keys.parsed(
            "proxy-request-buffering",
            "is not \"on\" or \"off\"",
            super::annotations::on_off,
        ),
        service_upstream: keys.some_flag("service-upstream"),
        http_redirect_code: keys.parsed("http-redirect-code", "is not 301, 302, 307 or 308", |v| {
            match v.parse::<u16>().ok()? {
                301 => Some(StatusCode::MOVED_PERMANENTLY),
                302 => Some(StatusCode::FOUND),
                307 => Some(StatusCode::TEMPORARY_REDIRECT),
                308 => Some(StatusCode::PERMANENT_REDIRECT),
                _ => None,
            }
        }),
        block_cidrs: keys.block_cidrs("block-cidrs"),
        connections: connections(&mut keys),
        tls_policy: tls_policy(&mut keys),
        annotation_defaults: ANNOTATION_DEFAULTS
            .iter()
            .filter_map(|key| keys.annotation_default(key))
            .collect(),
    };
    (global, keys.problems)
}

/// The keys for client and endpoint connections (configmap.md, with nginx's
/// `keepalive_timeout`, `keepalive_requests`, `large_client_header_buffers` and the
/// upstream module's `keepalive*` directives they set).
fn connections(keys: &mut Keys<'_>) -> ConnectionSettings {
    const COUNT: &str = "is not a whole number from 0 to 4294967295";
    // nginx: a connection whose requests reach the limit is not kept alive, so a limit
    // of 0 is the same as 1 (one request, then the close). Portico's 0 is no limit.
    let requests = |v: &str| v.trim().parse::<u32>().ok().map(|n| n.max(1));
    // `server-tokens` changes nothing (Portico never names itself in a `Server` header
    // or an error page), but a value that is not a boolean is still reported.
    let _ = keys.some_flag("server-tokens");
    ConnectionSettings {
        keepalive_timeout: keys.parsed(
            "keep-alive",
            "is not a whole number of seconds (0: no keep-alive)",
            |v| v.trim().parse::<u64>().ok().map(Duration::from_secs),
        ),
        keepalive_requests: keys.parsed("keep-alive-requests", COUNT, requests),
        max_header_size: keys.parsed(
            "large-client-header-buffers",
            "is not a number of buffers and a size like \"4 8k\"",
            header_buffers,
        ),
        upstream_idle: keys.parsed("upstream-keepalive-connections", COUNT, |v| v.trim().parse().ok()),
        upstream_idle_timeout: keys.parsed("upstream-keepalive-timeout", SECONDS, parse_seconds),
        upstream_requests: keys.parsed("upstream-keepalive-requests", COUNT, requests),
    }
}

/// `ssl-protocols` ("TLSv1.2 TLSv1.3") and `ssl-ciphers` (OpenSSL's cipher list):
/// `None` when neither is set or parses.
fn tls_policy(keys: &mut Keys<'_>) -> Option<TlsPolicy> {
    let versions = keys.parsed(
        "ssl-protocols",
        "is not a list of TLSv1.2 and TLSv1.3 (TLSv1 and TLSv1.1 are never offered)",
        |v| {
            let (mut tls12, mut tls13) = (false, false);
            for token in v.split_whitespace() {
                match token {
                    "TLSv1.2" => tls12 = true,
                    "TLSv1.3" => tls13 = true,
                    "TLSv1" | "TLSv1.1" | "SSLv2" | "SSLv3" => {}
                    _ => return None,
                }
            }
            (tls12 || tls13).then_some((tls12, tls13))
        },
    );
    let suites = keys.parsed(
        "ssl-ciphers",
        "names none of the TLS 1.2 suites Portico offers (ECDHE with AES-GCM or CHACHA20-POLY1305)",
        |v| {
            let suites: Vec<_> =
                v.split([':', ',', ' '])
                    .filter_map(TlsPolicy::openssl_suite)
                    .fold(Vec::new(), |mut all, s| {
                        if !all.contains(&s) {
                            all.push(s);
                        }
                        all
                    });
            (!suites.is_empty()).then_some(suites)
        },
    );
    if versions.is_none() && suites.is_none() {
        return None;
    }
    let (tls12, tls13) = versions.unwrap_or((true, true));
    Some(TlsPolicy {
        tls12,
        tls13,
        tls12_suites: suites,
    })
}

/// `large-client-header-buffers: "4 8k"`: the largest request head, number × size
/// (nginx reads a head into up to that many buffers of that size).
fn header_buffers(v: &str) -> Option<usize> {
    let mut parts = v.split_whitespace();
    let (Some(number), Some(size), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let size = parse_size(size).ok()??;
    // Bounded: a request head is read into memory whole.
    usize::try_from(number.checked_mul(size)?)
        .ok()
        .filter(|total| (1..=MAX_HEAD).contains(total))
}

/// The largest request head `large-client-header-buffers` may ask for: 1 MiB.
const MAX_HEAD: usize = 1 << 20;

impl Global {
    /// `opts` with the keys that are set in place of the flags' values. The ConfigMap is
    /// what ingress-nginx users keep their settings in, so a key beats its flag even
    /// when the flag is given; a key not set (or not parsed) leaves the flag's value.
    pub(super) fn over(&self, opts: &CompileOptions) -> CompileOptions {
        let mut opts = opts.clone();
        let hsts_parts =
            self.hsts_max_age.is_some() || self.hsts_include_subdomains.is_some() || self.hsts_preload.is_some();
        if self.hsts.is_some() || hsts_parts {
            let on = self.hsts.unwrap_or(opts.hsts.is_some());
            opts.hsts = on.then(|| {
                hsts_header(
                    self.hsts_max_age.unwrap_or(HSTS_MAX_AGE),
                    self.hsts_include_subdomains.unwrap_or(true),
                    self.hsts_preload.unwrap_or(false),
                )
            });
        }
        if let Some(size) = self.proxy_body_size {
            opts.max_body_size = size;
        }
        if let Some(t) = self.proxy_read_timeout {
            opts.read_timeout = Some(t);
        }
        if let Some(t) = self.proxy_send_timeout {
            opts.send_timeout = Some(t);
        }
        if let Some(t) = self.proxy_connect_timeout {
            opts.connect_timeout = Some(t);
        }
        for (key, list, slot) in [
            (
                "whitelist-source-range",
                &self.whitelist_source_range,
                &mut opts.source_range.allow,
            ),
            (
                "denylist-source-range",
                &self.denylist_source_range,
                &mut opts.source_range.deny,
            ),
        ] {
            match list {
                Some(Ok(list)) => *slot = list.clone(),
                Some(Err(())) => opts.broken_source_ranges.push(key),
                None => {}
            }
        }
        if let Some(codes) = &self.custom_http_errors {
            opts.custom_http_errors = codes.clone();
        }
        if let Some(status) = self.limit_req_status_code {
            opts.limit_req_status = status;
        }
        if let Some(on) = self.ssl_redirect {
            opts.ssl_redirect = on;
        }
        let nginx = &mut opts.nginx;
        if let Some(on) = self.force_ssl_redirect {
            nginx.force_ssl_redirect = on;
        }
        if let Some(on) = self.request_buffering {
            nginx.request_buffering = Some(on);
        }
        if let Some(status) = self.limit_conn_status_code {
            nginx.limit_conn_status = status;
        }
        if let Some(on) = self.service_upstream {
            nginx.service_upstream = on;
        }
        if let Some(status) = self.http_redirect_code {
            nginx.http_redirect_code = status;
        }
        if let Some(list) = &self.block_cidrs {
            nginx.block_cidrs = list.clone();
        }
        nginx.annotations.extend(self.annotation_defaults.clone());
        opts
    }
}

/// Why a status key does not parse.
const ERROR_STATUS: &str = "is not a status code from 400 to 599";

/// `limit-req-status-code`, `limit-conn-status-code`: an error status.
fn error_status(value: &str) -> Option<StatusCode> {
    value
        .parse::<u16>()
        .ok()
        .filter(|n| (400..=599).contains(n))
        .and_then(|n| StatusCode::from_u16(n).ok())
}

/// Why a timeout key does not parse.
const SECONDS: &str = "is not a whole number of seconds from 1 to 86400";

/// ingress-nginx's `hsts-max-age` default: a year.
const HSTS_MAX_AGE: u64 = 31_536_000;

/// `max-age=N; includeSubDomains; preload`, as ingress-nginx writes it.
fn hsts_header(max_age: u64, include_subdomains: bool, preload: bool) -> HeaderValue {
    let mut value = format!("max-age={max_age}");
    if include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if preload {
        value.push_str("; preload");
    }
    HeaderValue::try_from(value).unwrap_or_else(|_| portico_dataplane::filter::DEFAULT_HSTS.clone())
}

/// The problem with a key Portico does not read, if it is one.
fn not_read(key: &str) -> Option<Problem> {
    if is_read(key) {
        return None;
    }
    let problem = match catalog::config_status(key) {
        Some(Status::Refused) => Problem::warning(
            reason::SNIPPET_REFUSED,
            format!("{key}: nginx configuration text is never interpreted; it has no effect"),
        ),
        Some(_) => match catalog::config_flag(key) {
            Some(flag) => Problem::warning(
                reason::UNSUPPORTED_CONFIG_KEY,
                format!("{key}: not read from the ConfigMap; Portico's {flag} flag sets it"),
            ),
            None => Problem::warning(
                reason::UNSUPPORTED_CONFIG_KEY,
                format!("{key}: not supported by Portico; it has no effect"),
            ),
        },
        None => Problem::warning(
            reason::UNKNOWN_CONFIG_KEY,
            format!("{key}: not a key of ingress-nginx's ConfigMap; it has no effect"),
        ),
    };
    Some(problem.about(key))
}

struct Keys<'a> {
    data: &'a BTreeMap<String, String>,
    problems: Problems,
}

impl Keys<'_> {
    /// A boolean as ingress-nginx reads it (Go's `strconv.ParseBool`).
    fn flag(&mut self, key: &str, default: bool) -> bool {
        self.some_flag(key).unwrap_or(default)
    }

    /// A boolean, or `None` when the key is unset or does not parse.
    fn some_flag(&mut self, key: &str) -> Option<bool> {
        self.parsed(key, "is not true or false", parse_bool)
    }

    /// The key's value through `parse`; a value that does not parse is reported and
    /// counts as unset.
    /// A source range key: absent, a list, or there and broken (said here).
    fn source_range(&mut self, key: &str) -> Option<Result<Vec<Cidr>, ()>> {
        let value = self.data.get(key)?;
        let list = cidr_list(value.trim());
        if let Err(why) = &list {
            self.problems.push(
                Problem::warning(
                    reason::INVALID_CONFIG_VALUE,
                    format!(
                        "{key}: {value:?}: {why}; every request to an Ingress without its own {key} annotation gets 503, as in ingress-nginx"
                    ),
                )
                .about(key),
            );
        }
        Some(list.map_err(drop))
    }

    /// `block-cidrs`: the entries that parse are refused; each that does not is
    /// reported, and does not unblock its neighbours.
    fn block_cidrs(&mut self, key: &str) -> Option<Vec<Cidr>> {
        let value = self.data.get(key)?;
        let mut list = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.parse::<Cidr>() {
                Ok(cidr) => list.push(cidr),
                Err(e) => self.problems.push(
                    Problem::warning(
                        reason::INVALID_CONFIG_VALUE,
                        format!("{key}: {e}; that entry blocks nothing, the others still do"),
                    )
                    .about(key),
                ),
            }
        }
        Some(list)
    }

    /// A key that is the default of the annotation of the same name: `(annotation,
    /// value)` when its value parses as the annotation's would; otherwise the
    /// annotation parser's complaint, said of the key.
    fn annotation_default(&mut self, key: &str) -> Option<(String, String)> {
        let value = self.data.get(key)?;
        let annotation = format!("{NGINX_PREFIX}{key}");
        let alone = BTreeMap::from([(annotation.clone(), value.clone())]);
        let complaints = super::annotations::check(&alone);
        if complaints.is_empty() {
            return Some((annotation, value.clone()));
        }
        for c in complaints {
            let message = c.message.strip_prefix(NGINX_PREFIX).unwrap_or(&c.message);
            self.problems
                .push(Problem::warning(reason::INVALID_CONFIG_VALUE, message.to_string()).about(key));
        }
        None
    }

    fn parsed<T>(&mut self, key: &str, why: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let value = self.data.get(key)?;
        let parsed = parse(value.trim());
        if parsed.is_none() {
            self.problems.push(
                Problem::warning(
                    reason::INVALID_CONFIG_VALUE,
                    format!("{key}: {value:?} {why}; using the default"),
                )
                .about(key),
            );
        }
        parsed
    }
}

/// A boolean as ingress-nginx reads it (Go's `strconv.ParseBool`).
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// ingress-nginx's default `proxy-protocol-header-timeout`.
const DEFAULT_PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);

/// A duration as ingress-nginx reads `proxy-protocol-header-timeout` (Go's
/// `time.ParseDuration`): decimal numbers, each with a unit of `ns`, `us` (`µs`),
/// `ms`, `s`, `m` or `h`, as in `5s`, `1.5s` or `1m30s`. Zero, a sign, or more than a
/// day is refused: a connection must be given some time, and not forever.
fn go_duration(value: &str) -> Option<Duration> {
    const UNITS: [(&str, f64); 8] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("\u{b5}s", 1e-6),
        ("\u{3bc}s", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let mut rest = value;
    let mut secs = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = UNITS
            .iter()
            .filter(|(unit, _)| rest.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())?;
        secs += number * scale;
        rest = &rest[unit.len()..];
    }
    (secs > 0.0 && secs <= 86_400.0).then(|| Duration::from_secs_f64(secs))
}

/// `198.51.100.0/24,203.0.113.7`: every entry must parse.
fn cidrs(value: &str) -> Option<Vec<Cidr>> {
    let list: Option<Vec<Cidr>> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect();
    list.filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_map(pairs: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ConfigMap::default()
        }
    }

    fn reasons(problems: Problems) -> Vec<(&'static str, String)> {
        problems
            .into_vec()
            .into_iter()
            .map(|p| (p.reason, p.annotation.unwrap_or_default()))
            .collect()
    }

    /// With nothing set, nothing a client says about itself is believed.
    #[test]
    fn an_empty_config_map_believes_no_forwarded_header() {
        let (global, problems) = read(&config_map(&[]));
        assert!(global.forwarded.is_none());
        assert!(reasons(problems).is_empty());
    }

    /// `use-forwarded-headers: "true"`: X-Forwarded-For from any IPv4 peer, as
    /// ingress-nginx's defaults (`proxy-real-ip-cidr: 0.0.0.0/0`).
    #[test]
    fn use_forwarded_headers_takes_ingress_nginx_defaults() {
        let (global, _) = read(&config_map(&[("use-forwarded-headers", "true")]));
        let p = global.forwarded.unwrap();
        assert!(p.use_forwarded_headers && !p.proxy_protocol && !p.compute_full_forwarded_for);
        assert_eq!(p.real_ip_header, Some(HeaderName::from_static("x-forwarded-for")));
        assert_eq!(p.trusted, vec![DEFAULT_TRUSTED]);
    }

    /// `use-proxy-protocol: "true"`: the address comes from the PROXY protocol, not a
    /// header (nginx's `real_ip_header proxy_protocol`), read within ingress-nginx's
    /// default 5s.
    #[test]
    fn use_proxy_protocol_takes_the_address_from_the_header() {
        let (global, problems) = read(&config_map(&[("use-proxy-protocol", "true")]));
        let p = global.forwarded.unwrap();
        assert!(p.proxy_protocol && !p.use_forwarded_headers);
        assert_eq!(p.real_ip_header, None);
        assert_eq!(p.proxy_protocol_timeout, Duration::from_secs(5));
        assert!(reasons(problems).is_empty());
        let (global, _) = read(&config_map(&[
            ("use-proxy-protocol", "true"),
            ("proxy-protocol-header-timeout", "1.5s"),
        ]));
        assert_eq!(
            global.forwarded.unwrap().proxy_protocol_timeout,
            Duration::from_millis(1500)
        );
        // The timeout alone turns nothing on.
        let (global, _) = read(&config_map(&[("proxy-protocol-header-timeout", "10s")]));
        assert!(global.forwarded.is_none());
    }

    /// Go's `time.ParseDuration`, as ingress-nginx reads the header timeout; zero,
    /// negative, unitless and absurd values are refused.
    #[test]
    fn the_header_timeout_is_a_go_duration() {
        for (text, want) in [
            ("5s", Duration::from_secs(5)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("250000us", Duration::from_millis(250)),
            ("0.5s", Duration::from_millis(500)),
        ] {
            assert_eq!(go_duration(text), Some(want), "{text}");
        }
        for bad in ["", "5", "0s", "-5s", "5 s", "5x", "s", "1.2.3s", "48h", "1e3s"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
        let (global, problems) = read(&config_map(&[
            ("use-proxy-protocol", "true"),
            ("proxy-protocol-header-timeout", "5"),
        ]));
        assert_eq!(global.forwarded.unwrap().proxy_protocol_timeout, Duration::from_secs(5));
        assert_eq!(
            reasons(problems),
            vec![(
                reason::INVALID_CONFIG_VALUE,
                "proxy-protocol-header-timeout".to_string()
            )]
        );
    }

    /// A bad value is reported and its default applies; the other keys still do.
    #[test]
    fn a_bad_value_keeps_its_default_and_the_rest_applies() {
        let cm = config_map(&[
            ("use-forwarded-headers", "yes"),
            ("enable-real-ip", "true"),
            ("forwarded-for-header", "Not A Header"),
            ("proxy-real-ip-cidr", "198.18.0.0/15,nonsense"),
        ]);
        let (global, problems) = read(&cm);
        let p = global.forwarded.unwrap();
        assert!(!p.use_forwarded_headers);
        assert_eq!(p.real_ip_header, Some(HeaderName::from_static("x-forwarded-for")));
        assert_eq!(p.trusted, vec![DEFAULT_TRUSTED]);
        let invalid = |key: &str| (reason::INVALID_CONFIG_VALUE, key.to_string());
        assert_eq!(
            reasons(problems),
            vec![
                invalid("use-forwarded-headers"),
                invalid("forwarded-for-header"),
                invalid("proxy-real-ip-cidr"),
            ]
        );
    }

    /// The HSTS header of `opts` with `pairs` as the ConfigMap.
    fn hsts_over(opts: &CompileOptions, pairs: &[(&str, &str)]) -> Option<HeaderValue> {
        read(&config_map(pairs)).0.over(opts).hsts
    }

    /// Without HSTS keys the `--hsts` flag decides, as before.
    #[test]
    fn no_hsts_key_leaves_the_flag() {
        let on = CompileOptions::default();
        let off = CompileOptions {
            hsts: None,
            ..CompileOptions::default()
        };
        assert_eq!(hsts_over(&on, &[]), on.hsts);
        assert_eq!(hsts_over(&off, &[("use-forwarded-headers", "true")]), None);
    }

    /// The parts make the header as ingress-nginx writes it (e2e `settings/tls.go`,
    /// "should configure HSTS policy header").
    #[test]
    fn hsts_parts_make_ingress_nginx_header() {
        let opts = CompileOptions::default();
        let value = |pairs: &[(&str, &str)]| hsts_over(&opts, pairs).map(|v| v.to_str().unwrap_or("").to_string());
        assert_eq!(
            value(&[("hsts-max-age", "86400")]).as_deref(),
            Some("max-age=86400; includeSubDomains")
        );
        assert_eq!(
            value(&[("hsts-max-age", "86400"), ("hsts-include-subdomains", "false")]).as_deref(),
            Some("max-age=86400")
        );
        assert_eq!(
            value(&[
                ("hsts-max-age", "86400"),
                ("hsts-include-subdomains", "false"),
                ("hsts-preload", "true")
            ])
            .as_deref(),
            Some("max-age=86400; preload")
        );
        assert_eq!(value(&[("hsts", "false"), ("hsts-max-age", "86400")]), None);
    }

    /// The ConfigMap is the source of truth: `hsts: "true"` turns the header on even
    /// when `--hsts=false` was given, and `"false"` turns it off.
    #[test]
    fn hsts_key_beats_the_flag() {
        let off = CompileOptions {
            hsts: None,
            ..CompileOptions::default()
        };
        assert_eq!(
            hsts_over(&off, &[("hsts", "true")]),
            Some(HeaderValue::from_static("max-age=31536000; includeSubDomains"))
        );
        assert_eq!(hsts_over(&CompileOptions::default(), &[("hsts", "false")]), None);
    }

    /// A bad HSTS value is reported and keeps its default; the other HSTS keys apply.
    #[test]
    fn a_bad_hsts_value_keeps_its_default() {
        let cm = config_map(&[
            ("hsts-max-age", "a year"),
            ("hsts-preload", "yes"),
            ("hsts-include-subdomains", "false"),
        ]);
        let (global, problems) = read(&cm);
        assert_eq!(
            global.over(&CompileOptions::default()).hsts,
            Some(HeaderValue::from_static("max-age=31536000"))
        );
        let invalid = |key: &str| (reason::INVALID_CONFIG_VALUE, key.to_string());
        assert_eq!(
            reasons(problems),
            vec![invalid("hsts-max-age"), invalid("hsts-preload")]
        );
    }

    /// `proxy-body-size` and the proxy timeouts take the flags' place; `0` lifts the
    /// body limit, as nginx's `client_max_body_size 0`.
    #[test]
    fn body_size_and_timeouts_replace_the_flags() {
        let over = |pairs: &[(&str, &str)]| read(&config_map(pairs)).0.over(&CompileOptions::default());
        let opts = over(&[
            ("proxy-body-size", "8k"),
            ("proxy-read-timeout", "120"),
            ("proxy-send-timeout", "7"),
            ("proxy-connect-timeout", "2"),
        ]);
        assert_eq!(opts.max_body_size, Some(8192));
        assert_eq!(opts.read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(opts.send_timeout, Some(Duration::from_secs(7)));
        assert_eq!(opts.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(over(&[("proxy-body-size", "0")]).max_body_size, None);
        let untouched = over(&[]);
        assert_eq!(untouched.max_body_size, CompileOptions::default().max_body_size);
        assert_eq!(
            (
                untouched.read_timeout,
                untouched.send_timeout,
                untouched.connect_timeout
            ),
            (None, None, None)
        );
    }

    /// A bad size or timeout is reported and keeps the flag's value; the rest applies.
    #[test]
    fn a_bad_size_or_timeout_keeps_the_flag() {
        let cm = config_map(&[
            ("proxy-body-size", "8 megs"),
            ("proxy-read-timeout", "60s"),
            ("proxy-send-timeout", "30"),
        ]);
        let (global, problems) = read(&cm);
        let opts = global.over(&CompileOptions::default());
        assert_eq!(opts.max_body_size, CompileOptions::default().max_body_size);
        assert_eq!(opts.read_timeout, None);
        assert_eq!(opts.send_timeout, Some(Duration::from_secs(30)));
        let invalid = |key: &str| (reason::INVALID_CONFIG_VALUE, key.to_string());
        assert_eq!(
            reasons(problems),
            vec![invalid("proxy-body-size"), invalid("proxy-read-timeout")]
        );
    }

    /// The source range lists and the rate-limit status become the Ingresses' defaults.
    #[test]
    fn source_ranges_and_limit_status_become_defaults() {
        let cm = config_map(&[
            ("whitelist-source-range", "203.0.113.0/24, 198.51.100.7"),
            ("denylist-source-range", "203.0.113.9"),
            ("limit-req-status-code", "429"),
        ]);
        let opts = read(&cm).0.over(&CompileOptions::default());
        let cidr = |s: &str| s.parse::<Cidr>().ok();
        assert_eq!(
            opts.source_range.allow.iter().map(|c| Some(*c)).collect::<Vec<_>>(),
            vec![cidr("203.0.113.0/24"), cidr("198.51.100.7")]
        );
        assert_eq!(opts.source_range.deny.first().copied(), cidr("203.0.113.9"));
        assert!(!opts.source_range.refuse_all);
        assert_eq!(opts.limit_req_status, StatusCode::TOO_MANY_REQUESTS);
    }

    /// A status that does not parse is reported and keeps its default (503); a list
    /// that does not parse is reported and refuses the Ingresses that take it (fail
    /// closed, as ingress-nginx's `ipallowlist` parser denies the location); the other
    /// keys apply.
    #[test]
    fn a_bad_list_fails_closed_and_a_bad_status_keeps_its_default() {
        let cm = config_map(&[
            ("whitelist-source-range", "203.0.113.0/24,office"),
            ("denylist-source-range", "203.0.113.9"),
            ("limit-req-status-code", "200"),
        ]);
        let (global, problems) = read(&cm);
        let opts = global.over(&CompileOptions::default());
        assert!(opts.source_range.allow.is_empty());
        assert_eq!(opts.broken_source_ranges, vec!["whitelist-source-range"]);
        assert_eq!(opts.source_range.deny.len(), 1);
        assert_eq!(opts.limit_req_status, StatusCode::SERVICE_UNAVAILABLE);
        let invalid = |key: &str| (reason::INVALID_CONFIG_VALUE, key.to_string());
        assert_eq!(
            reasons(problems),
            vec![invalid("whitelist-source-range"), invalid("limit-req-status-code")]
        );
    }

    /// The connection keys (configmap.md): `keep-alive` in seconds with 0 for none;
    /// a request limit of 0 is nginx's "not kept alive", which is 1 here (Portico's 0
    /// is no limit); `large-client-header-buffers` is number × size; bad values are
    /// reported and leave the flags' values.
    #[test]
    fn connection_keys_set_the_process_settings() {
        let (global, problems) = read(&config_map(&[
            ("keep-alive", "0"),
            ("keep-alive-requests", "0"),
            ("large-client-header-buffers", "4 16k"),
            ("upstream-keepalive-connections", "0"),
            ("upstream-keepalive-timeout", "30"),
            ("upstream-keepalive-requests", "100"),
            ("server-tokens", "false"),
        ]));
        assert!(problems.into_vec().is_empty());
        assert_eq!(
            global.connections,
            ConnectionSettings {
                keepalive_timeout: Some(Duration::ZERO),
                keepalive_requests: Some(1),
                max_header_size: Some(64 * 1024),
                upstream_idle: Some(0),
                upstream_idle_timeout: Some(Duration::from_secs(30)),
                upstream_requests: Some(100),
            }
        );
        let (global, problems) = read(&config_map(&[
            ("keep-alive", "75s"),
            ("large-client-header-buffers", "4"),
            ("upstream-keepalive-timeout", "0"),
            ("server-tokens", "maybe"),
        ]));
        assert_eq!(global.connections, ConnectionSettings::default());
        let invalid = |key: &str| (reason::INVALID_CONFIG_VALUE, key.to_string());
        let mut got = reasons(problems);
        got.sort();
        assert_eq!(
            got,
            vec![
                invalid("keep-alive"),
                invalid("large-client-header-buffers"),
                invalid("server-tokens"),
                invalid("upstream-keepalive-timeout"),
            ]
        );
        assert_eq!(header_buffers("2 1k"), Some(2048));
        assert_eq!(header_buffers("4 8k extra"), None);
        assert_eq!(header_buffers("1024 1m"), None, "over the 1 MiB bound");
        assert_eq!(header_buffers("0 8k"), None);
    }

    /// `ssl-protocols` keeps TLSv1.2 and TLSv1.3 of its list (TLSv1 and TLSv1.1 are
    /// never offered); `ssl-ciphers` keeps the OpenSSL names of suites rustls offers,
    /// in order, once each. A list with nothing left is reported and narrows nothing.
    #[test]
    fn tls_keys_make_a_policy() {
        use rustls::CipherSuite as S;
        let policy = |pairs: &[(&str, &str)]| {
            let (global, problems) = read(&config_map(pairs));
            (global.tls_policy, reasons(problems))
        };
        assert_eq!(policy(&[]), (None, vec![]));
        let (p, problems) = policy(&[("ssl-protocols", "TLSv1 TLSv1.1 TLSv1.2")]);
        assert!(problems.is_empty());
        assert_eq!(
            p,
            Some(TlsPolicy {
                tls12: true,
                tls13: false,
                tls12_suites: None
            })
        );
        let (p, problems) = policy(&[(
            "ssl-ciphers",
            "ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
        )]);
        assert!(problems.is_empty());
        assert_eq!(
            p.and_then(|p| p.tls12_suites),
            Some(vec![
                S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ])
        );
        let invalid = |key: &str| (reason::INVALID_CONFIG_VALUE, key.to_string());
        assert_eq!(
            policy(&[("ssl-protocols", "TLSv1.1")]),
            (None, vec![invalid("ssl-protocols")])
        );
        assert_eq!(
            policy(&[("ssl-protocols", "TLSv1.4")]),
            (None, vec![invalid("ssl-protocols")])
        );
        assert_eq!(
            policy(&[("ssl-ciphers", "HIGH:!aNULL")]),
            (None, vec![invalid("ssl-ciphers")])
        );
    }

    /// The options `pairs` make of the defaults, with their diagnostics.
    fn over_default(pairs: &[(&str, &str)]) -> (CompileOptions, Vec<(&'static str, String)>) {
        let (global, problems) = read(&config_map(pairs));
        (global.over(&CompileOptions::default()), reasons(problems))
    }

    /// What an Ingress with `annotations` gets under `opts`.
    fn ingress(opts: &CompileOptions, annotations: &[(&str, &str)]) -> super::super::annotations::IngressAnnotations {
        let all: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (format!("{NGINX_PREFIX}{k}"), v.to_string()))
            .collect();
        let mut problems = Problems::default();
        let parsed = super::super::annotations::IngressAnnotations::parse("ns/web", Some(&all), opts, &mut problems);
        assert!(problems.into_vec().is_empty());
        parsed
    }

    /// `ssl-redirect` and `force-ssl-redirect` (configmap.md; the `sslredirect`
    /// annotation parser falls back on them) are the annotations' defaults; an
    /// annotation still wins.
    #[test]
    fn ssl_redirect_keys_are_the_annotations_defaults() {
        let (opts, problems) = over_default(&[("ssl-redirect", "false"), ("force-ssl-redirect", "true")]);
        assert!(problems.is_empty());
        assert!(!opts.ssl_redirect && opts.nginx.force_ssl_redirect);
        assert!(ingress(&opts, &[]).policy.ssl_redirect);
        assert!(!ingress(&opts, &[("force-ssl-redirect", "false")]).policy.ssl_redirect);
        let (opts, problems) = over_default(&[("ssl-redirect", "sometimes")]);
        assert!(opts.ssl_redirect && !opts.nginx.force_ssl_redirect);
        assert_eq!(
            problems,
            vec![(reason::INVALID_CONFIG_VALUE, "ssl-redirect".to_string())]
        );
    }

    /// `proxy-next-upstream`, `-tries`, `-timeout` and `load-balance` are checked by
    /// the annotations' own parser and become their defaults, each annotation still
    /// winning on its own (e2e `settings/proxy_next_upstream.go`).
    #[test]
    fn upstream_keys_are_the_annotations_defaults() {
        use portico_dataplane::table::LbPolicy;
        let (opts, problems) = over_default(&[
            ("proxy-next-upstream", "timeout http_502"),
            ("proxy-next-upstream-tries", "2"),
            ("proxy-next-upstream-timeout", "10"),
            ("load-balance", "ewma"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let up = ingress(&opts, &[]).upstream;
        let retry = up.retry.clone().unwrap_or_else(|| panic!("no retry policy"));
        assert_eq!((retry.attempts, retry.on_timeout, retry.on_reset), (1, true, false));
        assert_eq!(retry.codes, vec![502]);
        assert_eq!(up.timeouts.request, Some(Duration::from_secs(10)));
        assert_eq!(up.balance.policy, LbPolicy::LeastRequest);
        let own = ingress(
            &opts,
            &[("load-balance", "round_robin"), ("proxy-next-upstream-tries", "3")],
        )
        .upstream;
        assert_eq!(own.balance.policy, LbPolicy::RoundRobin);
        let retry = own.retry.unwrap_or_else(|| panic!("no retry policy"));
        assert_eq!((retry.attempts, retry.codes), (2, vec![502]));
        // Nothing set: the proxy's own retries, round robin.
        let plain = ingress(&CompileOptions::default(), &[]).upstream;
        assert!(plain.retry.is_none() && plain.balance.policy == LbPolicy::RoundRobin);
    }

    /// A value the annotation would refuse is reported on the key and not used.
    #[test]
    fn a_bad_upstream_key_keeps_the_default() {
        let (opts, problems) = over_default(&[("load-balance", "random"), ("proxy-next-upstream-tries", "x")]);
        assert!(opts.nginx.annotations.is_empty());
        let invalid = |key: &str| (reason::INVALID_CONFIG_VALUE, key.to_string());
        assert_eq!(
            problems,
            vec![invalid("proxy-next-upstream-tries"), invalid("load-balance")]
        );
        assert!(ingress(&opts, &[]).upstream.is_default());
    }

    /// `limit-conn-status-code`, `http-redirect-code`, `proxy-request-buffering` and
    /// `service-upstream` set what every route starts from; bad values keep 503, 308,
    /// the flag and `false`.
    #[test]
    fn status_buffering_and_service_upstream_keys() {
        let (opts, problems) = over_default(&[
            ("limit-conn-status-code", "429"),
            ("http-redirect-code", "301"),
            ("proxy-request-buffering", "off"),
            ("service-upstream", "true"),
        ]);
        assert!(problems.is_empty());
        assert_eq!(opts.nginx.limit_conn_status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(opts.base_policy().ssl_redirect_status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(opts.base_policy().request_buffering, Some(false));
        let parsed = ingress(&opts, &[("limit-connections", "1")]);
        assert!(parsed.service_upstream);
        assert!(!ingress(&opts, &[("service-upstream", "false")]).service_upstream);
        let (opts, problems) = over_default(&[
            ("limit-conn-status-code", "200"),
            ("http-redirect-code", "303"),
            ("proxy-request-buffering", "true"),
            ("service-upstream", "yes"),
        ]);
        assert_eq!(opts.nginx, super::super::NginxDefaults::default());
        assert_eq!(problems.len(), 4);
        assert_eq!(opts.base_policy().ssl_redirect_status, StatusCode::PERMANENT_REDIRECT);
    }

    /// `block-cidrs` (the template's `deny` in `http`, e2e
    /// `settings/global_access_block.go`) joins every Ingress's deny list, its own
    /// lists or not; an entry that does not parse is reported and the rest still
    /// block.
    #[test]
    fn block_cidrs_deny_on_every_ingress() {
        let (opts, problems) = over_default(&[("block-cidrs", "203.0.113.0/24, office,198.51.100.7")]);
        assert_eq!(
            problems,
            vec![(reason::INVALID_CONFIG_VALUE, "block-cidrs".to_string())]
        );
        assert_eq!(opts.nginx.block_cidrs.len(), 2);
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let own = ingress(&opts, &[("whitelist-source-range", "0.0.0.0/0")])
            .source_range
            .unwrap();
        assert!(!own.admits(ip("203.0.113.9")) && !own.admits(ip("198.51.100.7")) && own.admits(ip("192.0.2.1")));
        let plain = ingress(&opts, &[]).source_range.unwrap();
        assert!(!plain.admits(ip("203.0.113.9")) && plain.admits(ip("192.0.2.1")));
        assert!(ingress(&CompileOptions::default(), &[]).source_range.is_none());
    }

    /// Keys not read are named, each with why: unsupported, set by a flag, a snippet,
    /// or not ingress-nginx's at all.
    #[test]
    fn keys_not_read_are_reported_by_kind() {
        let cm = config_map(&[
            ("use-gzip", "true"),
            ("worker-processes", "4"),
            ("http-snippet", "evil"),
            ("no-such-key", "1"),
        ]);
        assert_eq!(
            reasons(read(&cm).1),
            vec![
                (reason::SNIPPET_REFUSED, "http-snippet".to_string()),
                (reason::UNKNOWN_CONFIG_KEY, "no-such-key".to_string()),
                (reason::UNSUPPORTED_CONFIG_KEY, "use-gzip".to_string()),
                (reason::UNSUPPORTED_CONFIG_KEY, "worker-processes".to_string()),
            ]
        );
    }
}
