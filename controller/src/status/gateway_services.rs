//! The Service of each served Gateway (service mode), kept by the leader: one port per
//! distinct listener port (`port: <listener port>`, `targetPort: <internal port>`),
//! selecting Portico's own pods. Created and updated by server-side apply (field
//! manager `portico`); a Service whose Gateway is gone, or no longer Portico's, is
//! deleted. Its address (load balancer, else cluster IP) becomes the Gateway's.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::compile::{GatewayPorts, GatewayServiceOptions, gateway_service_name};

/// Labels naming the Gateway a Service is kept for; also how Portico finds its own.
pub const GATEWAY_NAMESPACE_LABEL: &str = "portico.dev/gateway-namespace";
pub const GATEWAY_NAME_LABEL: &str = "portico.dev/gateway-name";

/// The Service Portico keeps for one Gateway.
pub fn desired_service(
    gateway: &GatewayPorts,
    opts: &GatewayServiceOptions,
    selector: &BTreeMap<String, String>,
) -> Service {
    let labels = BTreeMap::from([
        (GATEWAY_NAMESPACE_LABEL.to_string(), label_value(&gateway.namespace)),
        (GATEWAY_NAME_LABEL.to_string(), label_value(&gateway.name)),
        ("app.kubernetes.io/managed-by".to_string(), "portico".to_string()),
    ]);
    Service {
        metadata: ObjectMeta {
            name: Some(gateway_service_name(&gateway.namespace, &gateway.name)),
            namespace: Some(opts.namespace.clone()),
            labels: Some(labels),
            // The label values are cut to 63 characters; the annotation is exact.
            annotations: Some(BTreeMap::from([(
                "portico.dev/gateway".to_string(),
                format!("{}/{}", gateway.namespace, gateway.name),
            )])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(opts.service_type.as_str().to_string()),
            selector: Some(selector.clone()),
            ports: Some(
                gateway
                    .ports
                    .iter()
                    .map(|&(port, internal)| ServicePort {
                        name: Some(format!("p{port}")),
                        port: i32::from(port),
                        target_port: Some(IntOrString::Int(i32::from(internal))),
                        protocol: Some("TCP".to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// A label value: at most 63 characters, ending in an alphanumeric one (namespaces
/// and Gateway names are lower-case DNS names, so nothing else needs changing).
fn label_value(s: &str) -> String {
    let cut: String = s.chars().take(63).collect();
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// Applies the Service of every Gateway in `gateways` and deletes the Services of
/// Gateways no longer there. `applied` remembers what was last applied, so an
/// unchanged Gateway costs no API call; the caller clears it when leadership changes.
pub async fn write_gateway_services(
    client: &Client,
    opts: &GatewayServiceOptions,
    selector: &BTreeMap<String, String>,
    gateways: &[GatewayPorts],
    applied: &mut HashMap<String, Service>,
) -> Result<(), kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), &opts.namespace);
    let mut wanted = HashSet::new();
    // One Service the API server refuses does not keep the other Gateways from theirs.
    let mut first_error = None;
    for gateway in gateways {
        let service = desired_service(gateway, opts, selector);
        let name = service.name_any();
        wanted.insert(name.clone());
        if applied.get(&name) == Some(&service) {
            continue;
        }
        let result = api
            .patch(
                &name,
                &PatchParams::apply(super::FIELD_MANAGER).force(),
                &Patch::Apply(&service),
            )
            .await;
        if let Err(e) = result {
            first_error.get_or_insert(e);
            continue;
        }
        tracing::info!(namespace = %opts.namespace, name = %name, gateway = %format!("{}/{}", gateway.namespace, gateway.name), "Gateway Service applied");
        applied.insert(name, service);
    }
    let ours = api
        .list_metadata(&ListParams::default().labels(GATEWAY_NAME_LABEL))
        .await?;
    for svc in ours.items {
        let name = svc.name_any();
        if wanted.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(namespace = %opts.namespace, name = %name, "Service of a Gateway that is gone deleted")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        applied.remove(&name);
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::GatewayServiceType;

    /// Per the design: one port per listener port, named p<port>, to the internal port,
    /// selecting Portico's pods, labelled with the Gateway it serves.
    #[test]
    fn one_service_port_per_listener_port_to_its_internal_port() {
        let gateway = GatewayPorts {
            namespace: "apps".into(),
            name: "web".into(),
            ports: vec![(80, 21234), (443, 27001)],
        };
        let opts = GatewayServiceOptions {
            namespace: "portico-system".into(),
            service_type: GatewayServiceType::LoadBalancer,
        };
        let selector = BTreeMap::from([("app".to_string(), "portico".to_string())]);
        let svc = desired_service(&gateway, &opts, &selector);
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.selector.as_ref(), Some(&selector));
        let ports: Vec<_> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port, p.target_port.clone()))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("p80".to_string(), 80, Some(IntOrString::Int(21234))),
                ("p443".to_string(), 443, Some(IntOrString::Int(27001))),
            ]
        );
        let labels = svc.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(GATEWAY_NAME_LABEL).map(String::as_str), Some("web"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("portico-system"));
        assert_eq!(svc.metadata.name, Some(gateway_service_name("apps", "web")));
    }

    /// A Gateway name longer than a label value allows still gives a valid label.
    #[test]
    fn long_gateway_name_gives_a_valid_label_value() {
        let v = label_value(&format!("{}-b", "a".repeat(62)));
        assert!(v.len() <= 63 && v.ends_with('a'));
    }
}
