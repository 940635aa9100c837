//! One Ingress's rules and defaultBackend into the table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend};
use portico_dataplane::table::{
    Backend, ErrorPages, HostMatch, ObjectKind, PathKind, Route, RouteAction, RouteMeta, RoutePolicy, RouteRule,
    RuleError,
};

use super::annotations::IngressAnnotations;
use super::backend::Resolved;
use super::diagnostics::{Problems, reason};
use super::ingress_extras::{self, CanaryKey};
use super::{Compiler, annotations, namespace_of};

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
    pub(super) fn add_ingress(&mut self, ingress: &'a Ingress) {
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
                let at = Some((rule_index, path_index));
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
            let guarded = ann.basic_auth_filter.is_some() || ann.external_auth.is_some() || ann.source_range.is_some();
            let auth = guarded.then(|| {
                Arc::new(RouteAction {
                    basic_auth: ann.basic_auth_filter.clone(),
                    external_auth: ann.external_auth.clone(),
                    source_range: ann.source_range.clone(),
                    ..Default::default()
                })
            });
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
        at: Option<(usize, usize)>,
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
        let pages = self.error_pages(owner, rule, service, ann, problems);
        let canary = self.extras.canary_for(
            &CanaryKey::new(host, path),
            ann,
            &backend,
            owner.namespace,
            &mut self.backends,
        );
        let client_auth = self.extras.client_auth(host);
        let action = ingress_extras::action(
            ann,
            path,
            canary.as_ref().and_then(|c| c.split.clone()),
            pages.clone(),
            problems,
        );
        let action = ingress_extras::with_client_auth(action, client_auth.clone());
        let route = Arc::new(Route::new(
            meta(owner, service, written_host, written_path, at),
            backend.clone(),
            policy.clone(),
            action,
        ));
        match self.builder.add(RouteRule {
            host: host.clone(),
            path: indexed.clone(),
            kind,
            route,
        }) {
            // Backend problems are reported only for paths that made it into the table.
            Ok(()) => {
                problems.extend(resolved.problem);
                if let Some(canary) = canary {
                    let plain = ingress_extras::action(ann, path, None, pages, &mut Problems::default());
                    let plain = ingress_extras::with_client_auth(plain, client_auth);
                    let main = Arc::new(Route::new(
                        meta(owner, service, written_host, written_path, at),
                        backend,
                        policy.clone(),
                        plain.clone(),
                    ));
                    let to_canary = Arc::new(Route::new(
                        canary.meta(written_host, written_path),
                        canary.backend.clone(),
                        policy.clone(),
                        plain,
                    ));
                    for (conditions, to_main) in canary.conditions {
                        let route = if to_main { main.clone() } else { to_canary.clone() };
                        let rule = RouteRule {
                            host: host.clone(),
                            path: indexed.clone(),
                            kind,
                            route,
                        };
                        if let Err(e) = self.builder.add_with(rule, conditions) {
                            problems.warning(reason::DUPLICATE_RULE, format!("canary: {e}"));
                        }
                    }
                }
            }
            Err(RuleError::Path(e)) => problems.warning(reason::INVALID_PATH, format!("{e}; the path is skipped")),
            Err(e @ RuleError::Duplicate { .. }) => {
                problems.warning(reason::DUPLICATE_RULE, format!("{e}; this rule is ignored"))
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
        (policy, tls_policy, tls_hosts, action): (
            &RoutePolicy,
            &RoutePolicy,
            &BTreeSet<HostMatch>,
            Option<Arc<RouteAction>>,
        ),
        problems: &mut Problems,
    ) {
        let Some((service, resolved)) = self.resolve(owner, backend, problems) else {
            return;
        };
        let route = |host: &str, policy: &RoutePolicy, auth| {
            Arc::new(Route::new(
                meta(owner, service, host, "", None),
                resolved.backend.clone(),
                policy.clone(),
                ingress_extras::with_client_auth(action.clone(), auth),
            ))
        };
        let mut used = false;
        for (host, written) in hosts.iter().filter(|(h, _)| **h != HostMatch::Any) {
            let policy = if tls_hosts.contains(host) { tls_policy } else { policy };
            let route = route(written, policy, self.extras.client_auth(host));
            match self.claim_fallback(host, route, owner) {
                Ok(()) => used = true,
                Err(holder) => problems.warning(
                    reason::DUPLICATE_RULE,
                    format!(
                        "defaultBackend for host {written:?} is already set by {holder}; it is ignored for that host"
                    ),
                ),
            }
        }
        match self.claim_fallback(&HostMatch::Any, route("", policy, None), owner) {
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
            let route = ingress_extras::app_root_route(meta(owner, "", written, "/", None), policy, root);
            let rule = RouteRule {
                host: host.clone(),
                path: "/".to_string(),
                kind: PathKind::Exact,
                route,
            };
            if let Err(e) = self.builder.add(rule) {
                problems.warning(reason::DUPLICATE_RULE, format!("app-root: {e}; it is ignored"));
            }
        }
        if ann.paths.from_to_www
            && let Some(alias) = annotations::rewrite::www_alias(written)
            && let Ok(alias_host) = HostMatch::parse(&alias)
        {
            let route = ingress_extras::www_route(
                meta(owner, "", &alias, "/", None),
                written,
                self.opts.nginx.http_redirect_code,
            );
            self.extras.www.push((alias_host, route));
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

    /// Sets a host's fallback, or names the Ingress that already holds it.
    fn claim_fallback(&mut self, host: &HostMatch, route: Arc<Route>, owner: Owner<'_>) -> Result<(), String> {
        if self.builder.fallback(host, route) {
            self.fallback_owners
                .insert(host.clone(), format!("{}/{}", owner.namespace, owner.name));
            Ok(())
        } else {
            Err(self.fallback_owners.get(host).cloned().unwrap_or_default())
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

/// `at` is the (rule, path) index of an `http.paths` entry; `None` for the
/// defaultBackend.
pub(super) fn meta(owner: Owner<'_>, service: &str, host: &str, path: &str, at: Option<(usize, usize)>) -> RouteMeta {
    let index = |i: usize| u32::try_from(i).ok();
    RouteMeta {
        kind: ObjectKind::Ingress,
        namespace: owner.namespace.to_string(),
        ingress: owner.name.to_string(),
        service: service.to_string(),
        host: host.to_string(),
        path: path.to_string(),
        rule: at.and_then(|(r, _)| index(r)),
        path_index: at.and_then(|(_, p)| index(p)),
    }
}
