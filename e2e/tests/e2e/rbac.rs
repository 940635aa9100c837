//! `deploy/rbac.yaml` grants what portico needs and nothing more. (That it is enough
//! is shown by every other test: they all run portico with this ServiceAccount.)

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Api;
use kube::api::PostParams;
use portico_e2e::{SERVICE_ACCOUNT, SYSTEM_NAMESPACE, Test};

/// Whether portico's ServiceAccount may do what `args` says, written the way
/// `kubectl auth can-i` takes it (`VERB RESOURCE[.GROUP] [-n NS | --all-namespaces]
/// [--subresource=S]`). The question goes to the authorizer as a SubjectAccessReview
/// with the API group spelled out: `kubectl auth can-i` resolves the group through
/// discovery, and answers "no" for a kind whose CRD is not installed (Gateway API's,
/// here) even when a rule grants it.
async fn can_i(client: &kube::Client, args: &[&str]) -> bool {
    let (verb, resource) = (args[0], args[1]);
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    let mut attributes = ResourceAttributes {
        verb: Some(verb.to_string()),
        resource: Some(resource.to_string()),
        group: Some(group.to_string()),
        ..Default::default()
    };
    let mut rest = args[2..].iter();
    while let Some(arg) = rest.next() {
        if let Some(sub) = arg.strip_prefix("--subresource=") {
            attributes.subresource = Some(sub.to_string());
        } else if *arg == "-n" {
            attributes.namespace = rest.next().map(|ns| ns.to_string());
        } else if *arg != "--all-namespaces" {
            panic!("can_i {args:?}: unknown argument {arg}");
        }
    }
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{SYSTEM_NAMESPACE}:{SERVICE_ACCOUNT}")),
            groups: Some(vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{SYSTEM_NAMESPACE}"),
                "system:authenticated".to_string(),
            ]),
            resource_attributes: Some(attributes),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SubjectAccessReview for {args:?}: {e}"));
    answer.status.is_some_and(|s| s.allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_is_least_privilege() {
    let t = Test::start("rbac").await;
    let ns = t.ns.as_str();
    let allowed: &[&[&str]] = &[
        &["list", "ingresses.networking.k8s.io", "--all-namespaces"],
        &["watch", "ingresses.networking.k8s.io", "--all-namespaces"],
        &["watch", "ingressclasses.networking.k8s.io"],
        &["watch", "services", "--all-namespaces"],
        &["get", "services", "-n", ns],
        &["watch", "endpointslices.discovery.k8s.io", "--all-namespaces"],
        &["watch", "secrets", "--all-namespaces"],
        &["patch", "ingresses.networking.k8s.io", "--subresource=status", "-n", ns],
        &[
            "update",
            "ingresses.networking.k8s.io",
            "--subresource=status",
            "-n",
            ns,
        ],
        &["create", "events.events.k8s.io", "-n", ns],
        &["patch", "events.events.k8s.io", "-n", ns],
        &["create", "events", "-n", ns],
        &["get", "leases.coordination.k8s.io", "-n", SYSTEM_NAMESPACE],
        &["create", "leases.coordination.k8s.io", "-n", SYSTEM_NAMESPACE],
        &["update", "leases.coordination.k8s.io", "-n", SYSTEM_NAMESPACE],
        &["watch", "routes.portico.dev", "--all-namespaces"],
        &["patch", "routes.portico.dev", "--subresource=status", "-n", ns],
        &["watch", "gateways.gateway.networking.k8s.io", "--all-namespaces"],
        &["watch", "httproutes.gateway.networking.k8s.io", "--all-namespaces"],
        &["watch", "gatewayclasses.gateway.networking.k8s.io"],
        &[
            "patch",
            "gateways.gateway.networking.k8s.io",
            "--subresource=status",
            "-n",
            ns,
        ],
        &[
            "patch",
            "httproutes.gateway.networking.k8s.io",
            "--subresource=status",
            "-n",
            ns,
        ],
        // BackendTLSPolicies, and the ConfigMaps whose `ca.crt` they name (any
        // namespace a policy may be in; only that key is kept).
        &[
            "watch",
            "backendtlspolicies.gateway.networking.k8s.io",
            "--all-namespaces",
        ],
        &[
            "patch",
            "backendtlspolicies.gateway.networking.k8s.io",
            "--subresource=status",
            "-n",
            ns,
        ],
        &["list", "configmaps", "--all-namespaces"],
        &["watch", "configmaps", "--all-namespaces"],
        // Namespaces' labels, for Gateway listeners' allowedRoutes selectors.
        &["list", "namespaces"],
        &["watch", "namespaces"],
        // The Service of each Gateway, in portico's own namespace only.
        &["create", "services", "-n", SYSTEM_NAMESPACE],
        &["patch", "services", "-n", SYSTEM_NAMESPACE],
        &["delete", "services", "-n", SYSTEM_NAMESPACE],
    ];
    let denied: &[&[&str]] = &[
        // Reading one Secret by name, or writing any.
        &["get", "secrets", "-n", ns],
        &["create", "secrets", "-n", ns],
        // An Ingress's spec and metadata are the user's.
        &["update", "ingresses.networking.k8s.io", "-n", ns],
        &["patch", "ingresses.networking.k8s.io", "-n", ns],
        &["delete", "ingresses.networking.k8s.io", "-n", ns],
        &["create", "ingresses.networking.k8s.io", "-n", ns],
        &["update", "routes.portico.dev", "-n", ns],
        &["delete", "routes.portico.dev", "-n", ns],
        &["update", "services", "-n", ns],
        &["delete", "services", "-n", ns],
        &["create", "services", "-n", ns],
        // A Gateway's or HTTPRoute's spec is the user's.
        &["update", "gateways.gateway.networking.k8s.io", "-n", ns],
        &["patch", "httproutes.gateway.networking.k8s.io", "-n", ns],
        &["patch", "services", "--subresource=status", "-n", ns],
        &["update", "endpointslices.discovery.k8s.io", "-n", ns],
        // Leases only in portico's own namespace, and never deleted.
        &["update", "leases.coordination.k8s.io", "-n", ns],
        &["create", "leases.coordination.k8s.io", "-n", ns],
        &["delete", "leases.coordination.k8s.io", "-n", SYSTEM_NAMESPACE],
        &["delete", "events.events.k8s.io", "-n", ns],
        &["list", "pods", "--all-namespaces"],
        // ConfigMaps are listed and watched, never read one by one or written.
        &["get", "configmaps", "-n", ns],
        &["update", "configmaps", "-n", ns],
        &["get", "namespaces"],
        &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
    ];
    let mut wrong = Vec::new();
    for args in allowed {
        if !can_i(&t.client, args).await {
            wrong.push(format!("denied but needed: {}", args.join(" ")));
        }
    }
    for args in denied {
        if can_i(&t.client, args).await {
            wrong.push(format!("allowed but not needed: {}", args.join(" ")));
        }
    }
    assert!(wrong.is_empty(), "deploy/rbac.yaml:\n  {}", wrong.join("\n  "));
}
