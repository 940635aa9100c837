//! What ingress-nginx's annotations make of an Ingress beyond its own rules: regex
//! hosts, canary Ingresses joining the main one's routes, `app-root` and
//! `from-to-www-redirect` routes, and the route action the annotations ask for.
//!
//! ```text
//!  owned Ingresses ─ prepare ─▶ regex hosts (use-regex / rewrite-target on any Ingress of the host)
//!                            └▶ canaries by (host, path) ─▶ main path's model::Canary: weighted
//!                                                           split + header / cookie candidates
//!  after every Ingress ─ finish ─▶ www aliases on hosts nobody claimed; canaries without a main
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use http::header::COOKIE;
use http::{HeaderName, StatusCode};
use k8s_openapi::api::networking::v1::Ingress;
use portico_dataplane::table::{
    Backend, Balance, HeaderCondition, HeaderModifier, HostMatch, MatchConditions, PathKind, RoutePolicy, ValueMatch,
    full_match_regex,
};

use portico_dataplane::tls::ClientAuth;

use super::super::Compiler;
use super::super::annotations::canary::Canary;
use super::super::annotations::{IngressAnnotations, NGINX_PREFIX, auth_tls};
use super::super::backend::Backends;
use super::super::diagnostics::{Problem, Problems, reason};
use super::ingress::{Owner, fallback_rule, host};
use crate::model::{self, PathRewrite, RedirectTo};

/// A canary's place: the main Ingress's host and path as written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CanaryKey(HostMatch, String);

impl CanaryKey {
    pub fn new(host: &HostMatch, path: &str) -> Self {
        CanaryKey(host.clone(), path.to_string())
    }
}

struct CanaryTarget<'a> {
    owner: Owner<'a>,
    service: &'a str,
    backend: Arc<Backend>,
    canary: Canary,
}

#[derive(Default)]
pub(in crate::compile) struct Extras<'a> {
    regex_hosts: BTreeSet<HostMatch>,
    canary_ingresses: BTreeSet<(&'a str, &'a str)>,
    canaries: BTreeMap<CanaryKey, CanaryTarget<'a>>,
    used: BTreeSet<CanaryKey>,
    /// Problems of each canary Ingress, reported when the compile finishes.
    canary_problems: Vec<(Owner<'a>, Problems)>,
    /// The annotations of each other Ingress, parsed once by `prepare_ingresses`, with
    /// their problems, until `add_ingress` takes them.
    parsed: BTreeMap<(&'a str, &'a str), (IngressAnnotations, Problems)>,
    /// `from-to-www-redirect` rules, placed once every Ingress has claimed its hosts.
    pub(super) www: Vec<model::Rule>,
    /// `server-alias` names (alias, host, the Ingress asking), placed last: a name
    /// with rules of its own keeps them.
    pub(super) aliases: Vec<(String, String, Owner<'a>)>,
    /// Each host's client certificate authentication (`auth-tls-*`): the oldest
    /// Ingress naming the host with it decides, for every Ingress path on the host.
    client_auth: BTreeMap<HostMatch, Arc<ClientAuth>>,
    /// Every host an Ingress rule names: `--default-backend-service` answers their
    /// paths no rule matches.
    pub(super) hosts: BTreeSet<HostMatch>,
}

impl<'a> Extras<'a> {
    pub(super) fn is_canary(&self, ingress: &Ingress) -> bool {
        let o = Owner::of(ingress);
        self.canary_ingresses.contains(&(o.namespace, o.name))
    }

    /// What `prepare_ingresses` parsed of this Ingress's annotations, once.
    pub(super) fn take_parsed(&mut self, owner: Owner<'a>) -> Option<(IngressAnnotations, Problems)> {
        self.parsed.remove(&(owner.namespace, owner.name))
    }

    /// The host's client certificate authentication, if an Ingress asks for one.
    pub(super) fn client_auth(&self, host: &HostMatch) -> Option<Arc<ClientAuth>> {
        self.client_auth.get(host).cloned()
    }

    pub(super) fn regex_host(&self, host: &HostMatch, ann: &IngressAnnotations) -> bool {
        ann.paths.regex || self.regex_hosts.contains(host)
    }

    /// The canary of a main path, if one is set for its host and path; its
    /// candidates in ingress-nginx's precedence.
    pub(super) fn canary_for(
        &mut self,
        key: &CanaryKey,
        ann: &IngressAnnotations,
        namespace: &str,
        backends: &mut Backends<'a>,
    ) -> Option<model::Canary> {
        let target = self.canaries.get(key)?;
        self.used.insert(key.clone());
        let backend = backends.for_upstream(&target.backend, &ann.upstream, target.service, namespace);
        let c = &target.canary;
        let mut conditions = Vec::new();
        let header = |name: &HeaderName, value: ValueMatch| MatchConditions {
            headers: vec![HeaderCondition {
                name: name.clone(),
                value,
            }],
            ..Default::default()
        };
        if let Some(h) = &c.header {
            match &h.value {
                Some(v) => conditions.push((header(&h.name, v.clone()), false)),
                None => {
                    conditions.push((header(&h.name, ValueMatch::Exact("always".into())), false));
                    conditions.push((header(&h.name, ValueMatch::Exact("never".into())), true));
                }
            }
        }
        if let Some(name) = &c.cookie {
            for (word, to_main) in [("always", false), ("never", true)] {
                let pattern = format!(r"(?:.*;)?\s*{}={word}\s*(?:;.*)?", regex::escape(name));
                if let Ok(re) = full_match_regex(&pattern) {
                    conditions.push((header(&COOKIE, ValueMatch::Regex(re)), to_main));
                }
            }
        }
        Some(model::Canary {
            owner: target.owner.model(None),
            service: target.service.to_string(),
            backend,
            weight: c.weight,
            total: c.total,
            candidates: conditions
                .into_iter()
                .map(|(conditions, to_main)| model::CanaryCandidate { conditions, to_main })
                .collect(),
        })
    }
}

/// An ImplementationSpecific path as ingress-nginx's regex location `~* "^<path>"`:
/// case-insensitive, anchored at the start only.
pub(super) fn nginx_regex(path: &str) -> String {
    format!("(?i){path}.*")
}

/// The filters an Ingress's annotations ask of a route on `path` (its error pages and
/// client certificates aside).
pub(super) fn filters(ann: &IngressAnnotations, path: &str, problems: &mut Problems) -> model::Filters {
    let regex_rewrite = match ann.paths.rewrite_for(path) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            problems.warning(
                reason::INVALID_ANNOTATION,
                format!("rewrite-target on path {path:?}: {e}; the path is not rewritten"),
            );
            None
        }
        None => None,
    };
    let mut request_headers = HeaderModifier::default();
    // As ingress-nginx's buildProxyPass: the header goes with a rewrite only.
    if regex_rewrite.is_some()
        && let Some(prefix) = &ann.paths.x_forwarded_prefix
    {
        request_headers
            .set
            .push((HeaderName::from_static("x-forwarded-prefix"), prefix.clone()));
    }
    model::Filters {
        request_headers,
        rewrite_host: ann.paths.upstream_vhost.clone(),
        regex_rewrite,
        return_redirect: ann.paths.return_redirect.clone(),
        source_range: ann.source_range.clone(),
        cors: ann.cors.clone(),
        rate_limit: ann.rate_limit.clone(),
        conn_limit: ann.conn_limit.clone(),
        basic_auth: ann.basic_auth_filter.clone(),
        external_auth: ann.external_auth.clone(),
        ..Default::default()
    }
}

/// The Ingress's balancing on `path`: its affinity cookie's `Path` is the Ingress path
/// unless `session-cookie-path` says (ingress-nginx's `sticky.lua` uses
/// `$location_path`), and left out when the path cannot be one.
pub(super) fn balance_on(balance: &Balance, path: &str) -> Balance {
    let mut balance = balance.clone();
    if let Some(c) = &mut balance.affinity_cookie
        && c.path.is_none()
        && super::super::annotations::upstream::is_attribute_value(path)
    {
        c.path = Some(path.to_string());
    }
    balance
}

/// A rule of the Ingress that only redirects: no backend, no rule index.
fn redirect_rule(
    owner: Owner<'_>,
    host: model::Host,
    kind: PathKind,
    redirect: RedirectTo,
    policy: RoutePolicy,
) -> model::Rule {
    model::Rule {
        owner: owner.model(None),
        hosts: vec![host],
        matches: vec![model::Match {
            index: None,
            kind,
            path: "/".to_string(),
            table_path: None,
            conditions: MatchConditions::default(),
        }],
        filters: model::Filters {
            redirect: Some(redirect),
            ..Default::default()
        },
        backends: Vec::new(),
        balance: Balance::default(),
        timeouts: Default::default(),
        retry: None,
        policy,
        canary: None,
        omit_empty_action: true,
    }
}

/// ingress-nginx's `app-root`: `if ($uri = /) { return 302 $scheme://$http_host<root>; }`.
pub(super) fn app_root_rule(owner: Owner<'_>, host: model::Host, policy: &RoutePolicy, root: &str) -> model::Rule {
    let redirect = RedirectTo {
        scheme: None,
        hostname: None,
        port: None,
        path: Some(PathRewrite::Full(root.to_string())),
        status: StatusCode::FOUND,
    };
    redirect_rule(owner, host, PathKind::Exact, redirect, policy.clone())
}

/// ingress-nginx's `from-to-www-redirect`: the other name (`alias`) answers
/// `<status> $scheme://<host>$request_uri`, the status being the ConfigMap's
/// `http-redirect-code` (308 by default).
pub(super) fn www_rule(owner: Owner<'_>, alias: model::Host, host: &str, status: StatusCode) -> model::Rule {
    let redirect = RedirectTo {
        scheme: None,
        hostname: Some(host.to_ascii_lowercase()),
        port: None,
        path: None,
        status,
    };
    redirect_rule(owner, alias, PathKind::Prefix, redirect, RoutePolicy::default())
}

impl<'a> Compiler<'a> {
    /// Reads what every owned Ingress says about the others before any claims a path:
    /// which hosts are regex hosts, and which Ingresses are canaries of which paths.
    /// Gives `host` client certificate authentication, unless an older Ingress did.
    fn claim_client_auth(&mut self, host: HostMatch, auth: Arc<ClientAuth>, problems: &mut Problems) {
        if host == HostMatch::Any {
            problems.warning(
                reason::INVALID_ANNOTATION,
                format!("{NGINX_PREFIX}auth-tls-secret: a rule without a host cannot ask for client certificates, which are asked for by TLS server name; that rule is not checked"),
            );
            return;
        }
        match self.extras.client_auth.get(&host) {
            Some(held) if !Arc::ptr_eq(held, &auth) => problems.warning(
                reason::DUPLICATE_RULE,
                format!(
                    "{NGINX_PREFIX}auth-tls-secret: host {host} already has client certificate authentication ({}) from an older Ingress; that one applies",
                    held.source
                ),
            ),
            Some(_) => {}
            None => {
                self.builder.client_auth(&host, auth.clone());
                self.extras.client_auth.insert(host, auth);
            }
        }
    }

    pub(in crate::compile) fn prepare_ingresses(&mut self, ingresses: &[&'a Ingress]) {
        for ingress in ingresses {
            let owner = Owner::of(ingress);
            let mut problems = Problems::default();
            let mut ann = IngressAnnotations::parse(
                &format!("{}/{}", owner.namespace, owner.name),
                ingress.metadata.annotations.as_ref(),
                self.opts,
                &mut problems,
            );
            let rules = ingress
                .spec
                .as_ref()
                .and_then(|s| s.rules.as_deref())
                .unwrap_or_default();
            let Some(canary) = ann.canary.take() else {
                if let Some(spec) = &ann.auth_tls {
                    let auth = auth_tls::resolve(spec, owner.namespace, &self.snapshot.secrets, &mut problems);
                    ann.auth_tls_denied = auth.is_none();
                    for (auth, rule) in auth.iter().flat_map(|a| rules.iter().map(move |r| (a, r))) {
                        if let Ok(host) = HostMatch::parse(rule.host.as_deref().unwrap_or_default()) {
                            self.claim_client_auth(host, auth.clone(), &mut problems);
                        }
                    }
                }
                if ann.paths.regex {
                    for rule in rules {
                        if let Ok(host) = HostMatch::parse(rule.host.as_deref().unwrap_or_default()) {
                            self.extras.regex_hosts.insert(host);
                        }
                    }
                }
                self.extras
                    .parsed
                    .insert((owner.namespace, owner.name), (ann, problems));
                continue;
            };
            self.extras.canary_ingresses.insert((owner.namespace, owner.name));
            for rule in rules {
                let Ok(host) = HostMatch::parse(rule.host.as_deref().unwrap_or_default()) else {
                    continue;
                };
                for path in rule.http.iter().flat_map(|h| &h.paths) {
                    let Some(service) = &path.backend.service else { continue };
                    let written = path.path.as_deref().unwrap_or_default();
                    let written = if written.is_empty() { "/" } else { written };
                    let resolved = self.backends.resolve(owner.namespace, service);
                    problems.extend(resolved.problem);
                    let key = CanaryKey::new(&host, written);
                    // ingress-nginx: one canary per rule; the oldest keeps it.
                    self.extras.canaries.entry(key).or_insert(CanaryTarget {
                        owner,
                        service: service.name.as_str(),
                        backend: resolved.backend,
                        canary: canary.clone(),
                    });
                }
            }
            self.extras.canary_problems.push((owner, problems));
        }
    }

    /// Places the www aliases no Ingress claimed, and reports canaries that found no
    /// main path.
    /// Resolves `--default-backend-service` (its first port, as ingress-nginx's
    /// `getDefaultUpstream`); its problems are the Service's diagnostics. Says so on
    /// the ConfigMap when its `custom-http-errors` has no default backend to go to.
    pub(in crate::compile) fn add_global_default_backend(&mut self) {
        let opts = self.opts;
        if let Some((namespace, name)) = &opts.default_backend_service {
            let resolved = self.backends.resolve_first_port(namespace, name);
            let mut problems = Problems::default();
            problems.extend(resolved.problem);
            self.diagnostics
                .extend(problems.into_diagnostics("Service", namespace, name));
            self.default_backend = Some(resolved.backend);
        } else if let (false, Some((namespace, name))) = (opts.custom_http_errors.is_empty(), &opts.config_map) {
            let mut problems = Problems::default();
            problems.push(
                Problem::warning(
                    reason::INVALID_CONFIG_VALUE,
                    "custom-http-errors: the error pages come from the default backend, and --default-backend-service names none; it has no effect",
                )
                .about("custom-http-errors".to_string()),
            );
            self.diagnostics
                .extend(problems.into_diagnostics("ConfigMap", namespace, name));
        }
    }

    /// ingress-nginx's default server and the `/` location it gives every server
    /// without one: with `--default-backend-service`, a request no Ingress rule or
    /// defaultBackend matches (on an Ingress's host, or for any other host) goes to it.
    fn add_default_backend_fallbacks(&mut self) {
        let Some(backend) = self.default_backend.clone() else {
            return;
        };
        let Some((namespace, name)) = &self.opts.default_backend_service else {
            return;
        };
        let hosts = std::mem::take(&mut self.extras.hosts);
        for host in hosts.iter().chain([&HostMatch::Any]) {
            // A host's own fallback (an Ingress's defaultBackend) keeps it.
            if self.fallback_owners.contains_key(host) {
                continue;
            }
            let rule = fallback_rule(
                Owner { namespace, name: "" }.model(None),
                self::host(host, &host_text(host)),
                (backend.clone(), name),
                &self.opts.base_policy(),
                model::Filters::default(),
            );
            model::lower_fallback(&mut self.builder, &rule);
        }
    }

    pub(in crate::compile) fn finish_ingresses(&mut self) {
        self.add_default_backend_fallbacks();
        for rule in std::mem::take(&mut self.extras.www) {
            // A host an Ingress serves keeps its own rules (ingress-nginx drops the
            // alias then too).
            model::lower(&mut self.builder, &rule);
        }
        for (alias, host, owner) in std::mem::take(&mut self.extras.aliases) {
            if let Err(why) = self.builder.alias(&alias, &host) {
                let mut problems = Problems::default();
                problems.warning(
                    reason::INVALID_ANNOTATION,
                    format!("{NGINX_PREFIX}server-alias: {why}; the alias is not served (as in ingress-nginx)"),
                );
                self.diagnostics
                    .extend(problems.into_diagnostics("Ingress", owner.namespace, owner.name));
            }
        }
        let unused: Vec<(Owner<'a>, String)> = self
            .extras
            .canaries
            .iter()
            .filter(|(k, _)| !self.extras.used.contains(*k))
            .map(|(k, t)| (t.owner, format!("{}{}", host_text(&k.0), k.1)))
            .collect();
        for (owner, mut problems) in std::mem::take(&mut self.extras.canary_problems) {
            for (_, at) in unused
                .iter()
                .filter(|(o, _)| o.namespace == owner.namespace && o.name == owner.name)
            {
                problems.warning(
                    reason::CANARY_WITHOUT_MAIN,
                    format!("canary for {at:?}: no other Ingress serves this host and path; it has no effect"),
                );
            }
            self.diagnostics
                .extend(problems.into_diagnostics("Ingress", owner.namespace, owner.name));
        }
    }
}

fn host_text(h: &HostMatch) -> String {
    match h {
        HostMatch::Any => String::new(),
        other => other.to_string(),
    }
}
