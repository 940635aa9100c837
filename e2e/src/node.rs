//! The rig's node (`e2e/cluster up --node`): Helm, Deployments of the echo image,
//! pods and their addresses, the API server's audit log.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::objects::BACKEND_PORT;
use crate::{Cluster, Test, run, wait_until_async};

/// The node's address (e2e/lib/node.sh): NodePorts answer here.
pub const NODE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
/// The images e2e/images/build.sh builds and loads.
pub const PORTICO_IMAGE_REPOSITORY: &str = "localhost/portico";
pub const IMAGE_TAG: &str = "dev";
pub const ECHO_IMAGE: &str = "localhost/portico-echo:dev";

impl Cluster {
    /// `helm ARGS` as the cluster admin (scripts/helm.sh builds Helm once, cached).
    pub fn helm(&self, args: &[&str]) -> Result<String, String> {
        static HELM: OnceLock<Result<String, String>> = OnceLock::new();
        let helm = HELM
            .get_or_init(|| {
                run(Command::new(self.repo().join("scripts/helm.sh")).arg("--which"))
                    .map(|s| s.lines().last().unwrap_or("").trim().to_string())
            })
            .clone()?;
        run(Command::new(helm)
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .args(args)
            .current_dir(self.repo()))
    }

    /// Events of the API server's audit log (requests made by ServiceAccounts).
    pub fn audit_events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.cluster_dir().join("audit.log")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

/// Deployment `name` of the echo image: `replicas` pods labelled `app: name`, port
/// `http` 8080, ready while GET /healthz answers 200 (probed every second).
pub fn echo_deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
                    "containers": [{
                        "name": "echo",
                        "image": ECHO_IMAGE,
                        "imagePullPolicy": "Never",
                        "ports": [{"name": "http", "containerPort": BACKEND_PORT}],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                            {"name": "DRAIN_SECONDS", "value": "5"},
                        ],
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http"},
                            "periodSeconds": 1,
                            "failureThreshold": 1,
                            "successThreshold": 1,
                        },
                    }],
                },
            },
        },
    }))
    .expect("a well-formed Deployment")
}

/// A pod's name and address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodAddr {
    pub name: String,
    pub ip: Ipv4Addr,
}

fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Pods of `ns` matching `selector`, ready and not being deleted.
pub async fn ready_pods(client: &kube::Client, ns: &str, selector: &str) -> Vec<PodAddr> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|e| panic!("listing pods {selector} in {ns}: {e}"));
    let mut out: Vec<PodAddr> = pods
        .items
        .iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| {
            Some(PodAddr {
                name: p.metadata.name.clone()?,
                ip: p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?,
            })
        })
        .collect();
    out.sort();
    out
}

/// Every pod of `ns` matching `selector`, in any state.
pub async fn all_pods(client: &kube::Client, ns: &str, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|e| panic!("listing pods {selector} in {ns}: {e}"))
        .items
}

/// Waits until exactly `n` pods matching `selector` are ready and no other pod of
/// that selector exists (the rollout or scale is over); returns them.
pub async fn wait_pods(client: &kube::Client, ns: &str, selector: &str, n: usize, timeout: Duration) -> Vec<PodAddr> {
    wait_until_async(
        &format!("{n} ready pods ({selector} in {ns}) and no others"),
        timeout,
        Duration::from_millis(250),
        || async {
            let all = all_pods(client, ns, selector).await;
            let ready = ready_pods(client, ns, selector).await;
            if ready.len() == n && all.len() == n {
                Ok(ready)
            } else {
                let states: Vec<String> = all
                    .iter()
                    .map(|p| {
                        let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                        let waiting = p
                            .status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .and_then(|c| c.first()?.state.as_ref()?.waiting.as_ref()?.reason.clone())
                            .unwrap_or_default();
                        format!(
                            "{} {phase}{}{}",
                            p.metadata.name.clone().unwrap_or_default(),
                            if is_ready(p) { " ready" } else { "" },
                            if waiting.is_empty() {
                                String::new()
                            } else {
                                format!(" ({waiting})")
                            }
                        )
                    })
                    .collect();
                Err(format!("{} ready of {}: {states:?}", ready.len(), all.len()))
            }
        },
    )
    .await
}

/// The NodePort of Service `name`'s port `port_name`, as an address on the node.
pub async fn node_port(client: &kube::Client, ns: &str, name: &str, port_name: &str) -> SocketAddr {
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("getting Service {ns}/{name}: {e}"));
    let port = svc
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.name.as_deref() == Some(port_name))
        .and_then(|p| p.node_port)
        .unwrap_or_else(|| panic!("Service {ns}/{name} has no node port named {port_name}"));
    SocketAddr::from((NODE_ADDR, port as u16))
}

impl Test {
    /// `kubectl logs POD` (all of it) in `ns`.
    pub fn pod_logs(&self, ns: &str, pod: &str) -> String {
        self.cluster()
            .kubectl_ok(&["logs", "-n", ns, pod])
            .unwrap_or_else(|e| panic!("kubectl logs {ns}/{pod}: {e}"))
    }

    /// Scales Deployment `name` of this test's namespace.
    pub async fn scale(&self, name: &str, replicas: i32) {
        let patch = json!({"spec": {"replicas": replicas}});
        self.api::<Deployment>()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap_or_else(|e| panic!("scaling {name} to {replicas}: {e}"));
    }
}
