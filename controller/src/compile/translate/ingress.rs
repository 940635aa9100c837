//! One Ingress translated into the route model: each `http.paths` entry a
//! [`model::Rule`], its `defaultBackend` a fallback rule on each of its hosts.
//!
//! ```text
//!  Ingress ─ annotations (parsed once, compile/annotations/) ─▶ filters, balancing, upstream
//!     rules × http.paths ─▶ model::Rule (one host, one match, its canary) ─▶ model::lower
//!     each host ─▶ app-root redirect rule; www alias rule (placed after every Ingress)
//!     defaultBackend ─▶ one fallback rule per host, and the catch-all ─▶ model::lower_fallback
//! ```
//!
//! What ingress-nginx's annotations say across Ingresses (regex hosts, canaries,
//! client certificates per host) is in `ingress_extras.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend};
use portico_dataplane::table::{Backend, ErrorPages, HostMatch, ObjectKind, PathKind, RoutePolicy, RuleError};

use super::super::annotations::{self, IngressAnnotations};
use super::super::backend::Resolved;
use super::super::diagnostics::{Problems, reason};
use super::super::{Compiler, namespace_of};
use super::ingress_extras::{self, CanaryKey};
use crate::model;

/// Who an Ingress is, for route labels and diagnostics.
#[derive(Clone, Copy)]
pub(super) struct Owner<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Owner<'a> {
    pub fn of(ingress: &'a Ingress) -> Self {
        Owner {
            namespace: namespace_of(&ingress.metadata),
            name: ingress.metadata.name.as_deref().unwrap_or_default(),
        }
    }

    /// The model's owner: this Ingress, and the index of the rule in `spec.rules`.
    pub fn model(self, rule: Option<usize>) -> model::Owner {
        model::Owner {
            kind: ObjectKind::Ingress,
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            rule,
        }
    }
}

/// A fallback of an Ingress's: every request to `host` no path matches goes to
/// `backend`, the Service named.
pub(super) fn fallback_rule(
    owner: model::Owner,
    host: model::Host,
    (backend, service): (Arc<Backend>, &str),
    policy: &RoutePolicy,
    filters: model::Filters,
) -> model::Rule {
    model::Rule {
        owner,
        hosts: vec![host],
        matches: Vec::new(),
        filters,
        backends: vec![model::WeightedBackend {
            backend,
            service: service.to_string(),
            weight: 1,
            request_headers: Default::default(),
        }],
        balance: Default::default(),
        timeouts: Default::default(),
        retry: None,
        policy: policy.clone(),
        canary: None,
        omit_empty_action: true,
    }
}

/// A host of a rule, as the model takes it.
pub(super) fn host(host: &HostMatch, written: &str) -> model::Host {
    model::Host {
        host: host.clone(),
        written: written.to_string(),
    }
}

impl<'a> Compiler<'a> {
    /// Adds one owned Ingress. Ingresses must come oldest first: every rule and fallback
    /// is first come, first served.
    ///
    /// A broken part never takes the rest down: an invalid host skips that rule, an
    /// invalid path skips that path, and the other rules of the same Ingress still
    /// compile.
    ///
    /// A path whose Service or port is missing still gets a route, to a backend with no
    /// endpoints, so it answers 503. Leaving it out would let the request fall through
    /// to a shorter path or the catch-all, quietly sending traffic meant for one
    /// application to another.
    pub(in crate::compile) fn add_ingress(&mut self, ingress: &'a Ingress) {
        if self.extras.is_canary(ingress) {
            // Its rules join the main Ingress's routes (ingress_extras.rs).
            return;
        }
        let owner = Owner::of(ingress);
        // Parsed once, by `prepare_ingresses`; parsed here only when that did not run.
        let (mut ann, mut problems) = self.extras.take_parsed(owner).unwrap_or_else(|| {
            let mut problems = Problems::default();
            let ann = IngressAnnotations::parse(
                &format!("{}/{}", owner.namespace, owner.name),
                ingress.metadata.annotations.as_ref(),
                self.opts,
                &mut problems,
            );
            (ann, problems)
        });
        // One filter for all the Ingress's paths: they share its verified passwords.
        ann.basic_auth_filter = ann
            .basic_auth
            .as_ref()
            .map(|spec| annotations::auth::resolve(spec, owner.namespace, &self.snapshot.secrets, &mut problems));
        // An `auth-tls-secret` that cannot be used denies the Ingress (503), as an
        // unusable basic-auth Secret does.
        if ann.auth_tls_denied {
            ann.basic_auth_filter = Some(Arc::new(portico_dataplane::table::BasicAuth::unavailable("")));
        }
        if let Some(spec) = &ann.proxy_ssl {
            match annotations::proxyssl::resolve(spec, &self.snapshot.secrets, self.opts.now, &mut problems) {
                Ok(settings) => ann.upstream.tls = Some(settings),
                // ingress-nginx's LocationDenied: 503 for everyone.
                Err(()) => ann.source_range.get_or_insert_with(Default::default).refuse_all = true,
            }
        }
        ann.default_backend = self.default_backend(ingress, &ann, &mut problems);
        let policy = ann.policy.clone();
        let tls_hosts = self.add_tls(ingress, owner.namespace, &mut problems);
        let tls_policy = annotations::tls_policy(&policy, ingress.metadata.annotations.as_ref(), self.opts);
        let spec = ingress.spec.as_ref();
        let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();

        // Every host the Ingress declares, as first written, for its defaultBackend.
        let mut hosts: BTreeMap<HostMatch, &str> = BTreeMap::new();
        for (rule_index, rule) in rules.iter().enumerate() {
            let written = rule.host.as_deref().unwrap_or_default();
            let host = match HostMatch::parse(written) {
                Ok(host) => host,
                Err(e) => {
                    problems.warning(reason::INVALID_HOST, format!("{e}; the rule is skipped"));
                    continue;
                }
            };
            hosts.entry(host.clone()).or_insert(written);
            // A host without `http` only declares the host: its defaultBackend serves it.
            let Some(http) = &rule.http else { continue };
            let host_policy = if tls_hosts.contains(&host) {
                &tls_policy
            } else {
                &policy
            };
            for (path_index, path) in http.paths.iter().enumerate() {
                let at = (rule_index, path_index);
                self.add_path(owner, (&host, written), path, at, (host_policy, &ann), &mut problems);
            }
            self.add_host_redirects(owner, (&host, written), (host_policy, &ann), &mut problems);
        }
        if ann.ssl_passthrough {
            self.add_passthrough(owner, ingress, &hosts, &mut problems);
        }
        self.extras.hosts.extend(hosts.keys().cloned());
        for host in hosts.keys() {
            if let HostMatch::Exact(h) = host {
                let aliases = ann.server_alias.iter().map(|a| (a.clone(), h.clone(), owner));
                self.extras.aliases.extend(aliases);
            }
        }
        if let Some(backend) = spec.and_then(|s| s.default_backend.as_ref()) {
            // A TLS host's defaultBackend gets the host's redirect and HSTS, as its paths do.
            // Its routes are the Ingress's too: authentication guards them as it does the paths.
            let auth = model::Filters {
                basic_auth: ann.basic_auth_filter.clone(),
                external_auth: ann.external_auth.clone(),
                source_range: ann.source_range.clone(),
                ..Default::default()
            };
            let policies = (&policy, &tls_policy, &tls_hosts, auth);
            self.add_default_backend(owner, &hosts, rules.is_empty(), backend, policies, &mut problems);
        }
        self.diagnostics
            .extend(problems.into_diagnostics("Ingress", owner.namespace, owner.name));
    }

    fn add_path(
        &mut self,
        owner: Owner<'a>,
        (host, written_host): (&HostMatch, &str),
        rule: &'a HTTPIngressPath,
        (rule_index, path_index): (usize, usize),
        (policy, ann): (&RoutePolicy, &IngressAnnotations),
        problems: &mut Problems,
    ) {
        let written_path = rule.path.as_deref().unwrap_or_default();
        // The API server fills in a missing pathType; a hand-written file may not have
        // one, and ingress-nginx users expect its behaviour then.
        let kind = match rule.path_type.as_str() {
            "Exact" => PathKind::Exact,
            "Prefix" => PathKind::Prefix,
            "ImplementationSpecific" | "" => PathKind::ImplementationSpecific,
            other => {
                problems.warning(
                    reason::INVALID_PATH,
                    format!(
                        "unknown pathType {other:?} on path {written_path:?}; expected Exact, Prefix or ImplementationSpecific; the path is skipped"
                    ),
                );
                return;
            }
        };
        // As in ingress-nginx, an ImplementationSpecific rule without a path serves "/".
        let path = match (written_path, kind) {
            ("", PathKind::ImplementationSpecific) => "/",
            _ => written_path,
        };
        let Some((service, resolved)) = self.resolve(owner, &rule.backend, problems) else {
            return;
        };
        // ingress-nginx makes every ImplementationSpecific path of a host a regex
        // location (`~* "^<path>"`) once one Ingress on it asks for regex paths.
        let (kind, indexed) = if kind == PathKind::ImplementationSpecific && self.extras.regex_host(host, ann) {
            (PathKind::RegularExpression, ingress_extras::nginx_regex(path))
        } else {
            (kind, path.to_string())
        };
        let backend = self
            .backends
            .for_upstream(&resolved.backend, &ann.upstream, service, owner.namespace);
        // ingress-nginx's `service-upstream`: the Service's cluster IP, not its pods.
        let backend = match (ann.service_upstream, &rule.backend.service) {
            (true, Some(svc)) => match self.backends.through_cluster_ip(&backend, owner.namespace, svc) {
                Ok(b) => b,
                Err(why) => {
                    problems.warning(
                        reason::INVALID_BACKEND,
                        format!(
                            "{}service-upstream: {why}; its endpoints are used",
                            annotations::NGINX_PREFIX
                        ),
                    );
                    backend
                }
            },
            _ => backend,
        };
        // ingress-nginx's `default-backend`: it serves the rule while the rule's own
        // Service has no ready endpoint (the table follows every EndpointSlice change).
        let backend = match &ann.default_backend {
            Some(fallback) if backend.endpoints.is_empty() => fallback.clone(),
            _ => backend,
        };
        let error_pages = self.error_pages(owner, rule, service, ann, problems);
        let canary = self
            .extras
            .canary_for(&CanaryKey::new(host, path), ann, owner.namespace, &mut self.backends);
        let model = model::Rule {
            owner: owner.model(Some(rule_index)),
            hosts: vec![self::host(host, written_host)],
            matches: vec![model::Match {
                index: Some(path_index),
                kind,
                path: written_path.to_string(),
                table_path: (indexed != written_path).then_some(indexed),
                conditions: Default::default(),
            }],
            filters: model::Filters {
                error_pages,
                client_auth: self.extras.client_auth(host),
                ..ingress_extras::filters(ann, path, problems)
            },
            backends: vec![model::WeightedBackend {
                backend,
                service: service.to_string(),
                weight: 1,
                request_headers: Default::default(),
            }],
            balance: ingress_extras::balance_on(&ann.upstream.balance, path),
            timeouts: ann.upstream.timeouts,
            retry: ann.upstream.retry.clone(),
            policy: policy.clone(),
            canary,
            omit_empty_action: true,
        };
        let lowered = model::lower(&mut self.builder, &model);
        // Backend problems are reported only for paths that made it into the table.
        if lowered.placed > 0 {
            problems.extend(resolved.problem);
        }
        for e in lowered.canary_refused {
            problems.warning(reason::DUPLICATE_RULE, format!("canary: {e}"));
        }
        for e in lowered.refused {
            match e {
                RuleError::Path(e) => problems.warning(reason::INVALID_PATH, format!("{e}; the path is skipped")),
                e @ RuleError::Duplicate { .. } => {
                    problems.warning(reason::DUPLICATE_RULE, format!("{e}; this rule is ignored"))
                }
            }
        }
    }

    /// The Service of the `default-backend` annotation on its first port, when the
    /// annotation is there; its problems (no such Service, no ready endpoint) are the
    /// Ingress's.
    fn default_backend(
        &mut self,
        ingress: &'a Ingress,
        ann: &IngressAnnotations,
        problems: &mut Problems,
    ) -> Option<Arc<Backend>> {
        let errors = ann.error_backend.as_ref()?;
        if errors.service.is_none() {
            if self.default_backend.is_none() {
                problems.warning(
                    reason::UNSUPPORTED_ANNOTATION,
                    format!("{}custom-http-errors without default-backend: the errors go to the global default backend, and --default-backend-service names none; it has no effect", annotations::NGINX_PREFIX),
                );
            }
            return None;
        }
        let key = format!("{}default-backend", annotations::NGINX_PREFIX);
        let name = ingress.metadata.annotations.as_ref()?.get(&key)?.trim();
        let resolved = self.backends.resolve_first_port(namespace_of(&ingress.metadata), name);
        if let Some(p) = resolved.problem {
            problems.push(p.about(key));
        }
        Some(resolved.backend)
    }

    /// `custom-http-errors` for the path whose rule names `service`: the codes its
    /// default backend answers in its place.
    fn error_pages(
        &self,
        owner: Owner<'a>,
        rule: &HTTPIngressPath,
        service: &str,
        ann: &IngressAnnotations,
        problems: &mut Problems,
    ) -> Option<Arc<ErrorPages>> {
        // The annotation's codes, else the ConfigMap's; the annotation's default-backend,
        // else `--default-backend-service` (ingress-nginx's global default backend).
        let codes = match ann.error_backend.as_ref().map(|e| &e.codes) {
            Some(codes) if !codes.is_empty() => codes,
            _ => &self.opts.custom_http_errors,
        };
        if codes.is_empty() {
            return None;
        }
        let backend = ann.default_backend.clone().or_else(|| self.default_backend.clone())?;
        let port = rule.backend.service.as_ref().and_then(|s| s.port.as_ref());
        let port = port
            .and_then(|p| p.number.map(|n| n.to_string()).or_else(|| p.name.clone()))
            .unwrap_or_default();
        match ErrorPages::new(codes, backend, owner.namespace, owner.name, service, &port) {
            Ok(pages) => Some(Arc::new(pages)),
            Err(e) => {
                problems.warning(
                    reason::INVALID_ANNOTATION,
                    format!("{}custom-http-errors: {e}; it has no effect", annotations::NGINX_PREFIX),
                );
                None
            }
        }
    }

    /// `spec.defaultBackend` serves the paths no rule matches on each host this Ingress
    /// declares, and, for the oldest Ingress that has one, every request that matches
    /// no host and no path at all (the catch-all). A host's defaultBackend, like its
    /// paths, belongs to the oldest Ingress that declares one for it.
    fn add_default_backend(
        &mut self,
        owner: Owner<'a>,
        hosts: &BTreeMap<HostMatch, &str>,
        only_default_backend: bool,
        backend: &'a IngressBackend,
        (policy, tls_policy, tls_hosts, auth): (&RoutePolicy, &RoutePolicy, &BTreeSet<HostMatch>, model::Filters),
        problems: &mut Problems,
    ) {
        let Some((service, resolved)) = self.resolve(owner, backend, problems) else {
            return;
        };
        let fallback = |host: model::Host, policy: &RoutePolicy, client_auth| {
            let filters = model::Filters {
                client_auth,
                ..auth.clone()
            };
            let backend = (resolved.backend.clone(), service);
            fallback_rule(owner.model(None), host, backend, policy, filters)
        };
        let mut used = false;
        for (host, written) in hosts.iter().filter(|(h, _)| **h != HostMatch::Any) {
            let policy = if tls_hosts.contains(host) { tls_policy } else { policy };
            let rule = fallback(self::host(host, written), policy, self.extras.client_auth(host));
            match self.claim_fallback(&rule, owner) {
                Ok(()) => used = true,
                Err(holder) => problems.warning(
                    reason::DUPLICATE_RULE,
                    format!(
                        "defaultBackend for host {written:?} is already set by {holder}; it is ignored for that host"
                    ),
                ),
            }
        }
        match self.claim_fallback(&fallback(model::Host::any(), policy, None), owner) {
            Ok(()) => used = true,
            // Only an Ingress whose sole purpose is the catch-all is told it lost it;
            // the others still serve their own hosts.
            Err(holder) if only_default_backend => problems.warning(
                reason::DUPLICATE_RULE,
                format!(
                    "the catch-all defaultBackend is already set by {holder}, the oldest Ingress with a defaultBackend; this one has no effect"
                ),
            ),
            Err(_) => {}
        }
        if used {
            problems.extend(resolved.problem);
        }
    }

    /// `app-root` on `host`, and the `from-to-www-redirect` alias, which waits until
    /// every Ingress has claimed its hosts.
    fn add_host_redirects(
        &mut self,
        owner: Owner<'a>,
        (host, written): (&HostMatch, &str),
        (policy, ann): (&RoutePolicy, &IngressAnnotations),
        problems: &mut Problems,
    ) {
        if let Some(root) = &ann.paths.app_root {
            let rule = ingress_extras::app_root_rule(owner, self::host(host, written), policy, root);
            for e in model::lower(&mut self.builder, &rule).refused {
                problems.warning(reason::DUPLICATE_RULE, format!("app-root: {e}; it is ignored"));
            }
        }
        if ann.paths.from_to_www
            && let Some(alias) = annotations::rewrite::www_alias(written)
            && let Ok(alias_host) = HostMatch::parse(&alias)
        {
            let rule = ingress_extras::www_rule(
                owner,
                self::host(&alias_host, &alias),
                written,
                self.opts.nginx.http_redirect_code,
            );
            self.extras.www.push(rule);
        }
    }

    /// ingress-nginx's `ssl-passthrough`: TLS connections naming one of the Ingress's
    /// exact hosts go, undecrypted, to the backend of the rule's `/` path, or to the
    /// Ingress's defaultBackend when the rule has none (its `controller.go`, which
    /// passes only the root location through). The rules still serve plain HTTP.
    fn add_passthrough(
        &mut self,
        owner: Owner<'a>,
        ingress: &'a Ingress,
        hosts: &BTreeMap<HostMatch, &str>,
        problems: &mut Problems,
    ) {
        let spec = ingress.spec.as_ref();
        let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
        let passthrough = annotations::NGINX_PREFIX.to_string() + "ssl-passthrough";
        for (host, written) in hosts {
            let HostMatch::Exact(name) = host else {
                problems.warning(
                    reason::INVALID_ANNOTATION,
                    format!("{passthrough}: host {written:?} is not an exact name, which a TLS server name must match; it is not passed through"),
                );
                continue;
            };
            let root = rules
                .iter()
                .filter(|r| r.host.as_deref().unwrap_or_default() == *written)
                .filter_map(|r| r.http.as_ref())
                .flat_map(|h| h.paths.iter())
                .find(|p| p.path.as_deref() == Some("/"))
                .map(|p| &p.backend)
                .or_else(|| spec.and_then(|s| s.default_backend.as_ref()));
            let Some(backend) = root else {
                problems.warning(
                    reason::INVALID_ANNOTATION,
                    format!("{passthrough}: host {name} has no \"/\" path and the Ingress no defaultBackend; it is not passed through"),
                );
                continue;
            };
            // Its problems (no such Service, no endpoints) are the path's, reported there.
            let Some((_, resolved)) = self.resolve(owner, backend, &mut Problems::default()) else {
                continue;
            };
            if !self.builder.passthrough(name, resolved.backend) {
                problems.warning(
                    reason::DUPLICATE_RULE,
                    format!("{passthrough}: host {name} is already passed through by an older Ingress"),
                );
            }
        }
    }

    /// Sets the fallback of the one host of `rule`, or names the Ingress that already
    /// holds it.
    fn claim_fallback(&mut self, rule: &model::Rule, owner: Owner<'_>) -> Result<(), String> {
        let host = rule.hosts.first().map(|h| h.host.clone()).unwrap_or(HostMatch::Any);
        if model::lower_fallback(&mut self.builder, rule).iter().all(|set| *set) {
            self.fallback_owners
                .insert(host, format!("{}/{}", owner.namespace, owner.name));
            Ok(())
        } else {
            Err(self.fallback_owners.get(&host).cloned().unwrap_or_default())
        }
    }

    /// The Service a backend names, resolved; `None` (with a diagnostic) for backends
    /// that are not Services, which get no route.
    fn resolve(
        &mut self,
        owner: Owner<'a>,
        backend: &'a IngressBackend,
        problems: &mut Problems,
    ) -> Option<(&'a str, Resolved)> {
        match (&backend.service, &backend.resource) {
            (Some(service), _) => Some((service.name.as_str(), self.backends.resolve(owner.namespace, service))),
            (None, Some(resource)) => {
                let group = resource
                    .api_group
                    .as_deref()
                    .map(|g| format!(".{g}"))
                    .unwrap_or_default();
                problems.warning(
                    reason::UNSUPPORTED_BACKEND,
                    format!(
                        "resource backend {}{group} {:?} is not supported, only Service backends are; the rule is skipped",
                        resource.kind, resource.name
                    ),
                );
                None
            }
            (None, None) => {
                problems.warning(
                    reason::INVALID_BACKEND,
                    "backend names neither a service nor a resource; the rule is skipped",
                );
                None
            }
        }
    }
}
