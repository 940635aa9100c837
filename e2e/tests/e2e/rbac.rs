//! `deploy/rbac.yaml` grants what portico needs and nothing more. (That it is enough
//! is shown by every other test: they all run portico with this ServiceAccount.)

use portico_e2e::{SYSTEM_NAMESPACE, Test};

/// `kubectl auth can-i ARGS` as portico's ServiceAccount.
fn can_i(t: &Test, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    let out = t.cluster().kubectl_as_portico(&full);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {args:?}: unexpected answer {answer:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
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
        &["list", "configmaps", "--all-namespaces"],
        &["list", "namespaces"],
        &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
    ];
    let mut wrong = Vec::new();
    for args in allowed {
        if !can_i(&t, args) {
            wrong.push(format!("denied but needed: {}", args.join(" ")));
        }
    }
    for args in denied {
        if can_i(&t, args) {
            wrong.push(format!("allowed but not needed: {}", args.join(" ")));
        }
    }
    assert!(wrong.is_empty(), "deploy/rbac.yaml:\n  {}", wrong.join("\n  "));
}
