//! One read of every kind of [`crate::snapshot`]'s list, for `portico explain` against
//! a cluster: plain paginated lists, no watch, no lease, no writes.

use std::future::Future;
use std::pin::Pin;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::ListParams;

use crate::snapshot::{InputObject, Kind, KindVisitor, Object, Snapshot};

/// Items per list call; the API server hands out the rest page by page.
const PAGE: u32 = 500;

type Listed<'a> = Pin<Box<dyn Future<Output = Result<Vec<Object>, kube::Error>> + Send + 'a>>;

/// Lists one kind, every page.
struct Lister<'a> {
    client: &'a Client,
    namespace: Option<&'a str>,
    fields: Option<&'a str>,
}

impl<'a> KindVisitor for Lister<'a> {
    type Output = Listed<'a>;

    fn visit<T: InputObject>(self) -> Listed<'a> {
        Box::pin(async move {
            let api = T::api(self.client, self.namespace);
            let mut params = ListParams::default().limit(PAGE);
            if let Some(f) = self.fields {
                params = params.fields(f);
            }
            let mut out = Vec::new();
            loop {
                let page = api.list(&params).await?;
                out.extend(page.items.into_iter().map(Into::into));
                match page.metadata.continue_ {
                    Some(token) if !token.is_empty() => params = params.continue_token(&token),
                    _ => return Ok(out),
                }
            }
        })
    }
}

/// Every object the compile reads, listed once. `namespace` limits the namespaced kinds
/// as `--watch-namespace` does. An optional kind (a custom resource) whose definition
/// is not installed, or that may not be listed, is left out with a warning on stderr,
/// as the controller itself serves without it.
/// `named` is the `namespace/name` of the one ConfigMap read (`--configmap`).
pub async fn list_once(
    client: &Client,
    namespace: Option<&str>,
    named: Option<&(String, String)>,
) -> Result<Snapshot, kube::Error> {
    let mut snapshot = Snapshot::default();
    for kind in Kind::ALL {
        let info = kind.info();
        let by_name;
        let (namespace, selectors): (Option<&str>, Vec<Option<&str>>) = if info.only_named {
            let Some((ns, name)) = named else {
                continue;
            };
            by_name = format!("metadata.name={name}");
            (Some(ns.as_str()), vec![Some(by_name.as_str())])
        } else {
            let selectors = match info.field_selectors {
                [] => vec![None],
                selectors => selectors.iter().copied().map(Some).collect(),
            };
            (namespace, selectors)
        };
        for fields in selectors {
            let lister = Lister {
                client,
                namespace,
                fields,
            };
            match kind.visit(lister).await {
                Ok(objects) => objects.into_iter().for_each(|o| snapshot.push(o)),
                Err(kube::Error::Api(e)) if info.optional && (e.code == 404 || e.code == 403) => {
                    eprintln!(
                        "warning: {} ({}) not read: {}",
                        info.name,
                        info.api_version(),
                        e.message
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
    if !snapshot.backend_tls_policies.is_empty() {
        // The CA bundles the policies may name, as the controller keeps them.
        let api: kube::Api<ConfigMap> = match namespace {
            Some(ns) => kube::Api::namespaced(client.clone(), ns),
            None => kube::Api::all(client.clone()),
        };
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page = api.list(&params).await?;
            snapshot.ca_config_maps.extend(page.items.into_iter().map(|mut c| {
                super::kinds::only_ca_crt(&mut c);
                c
            }));
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
    }
    Ok(snapshot)
}
