//! One watcher and reflector store per watched kind.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::crd::Route;
use crate::snapshot::Snapshot;

/// Read handles of every store.
pub struct Stores {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    /// `None` when the Route CRD is not installed (or Portico may not list Routes):
    /// Ingresses are served all the same.
    routes: Option<Store<Route>>,
}

fn metrics() -> &'static (prometheus::IntCounterVec, prometheus::IntGaugeVec) {
    static M: std::sync::OnceLock<(prometheus::IntCounterVec, prometheus::IntGaugeVec)> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "portico_watch_errors_total",
                "Watch failures by kind; each is retried with backoff.",
            ),
            &["kind"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        let synced = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "portico_watch_synced",
                "1 while a kind's store is in sync with the API server, 0 while it relists.",
            ),
            &["kind"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        let _ = prometheus::default_registry().register(Box::new(errors.clone()));
        let _ = prometheus::default_registry().register(Box::new(synced.clone()));
        (errors, synced)
    })
}

/// Starts the watcher for one kind; every event it sees wakes the compile loop.
fn watch<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    tokio::spawn(async move {
        let (errors, synced) = metrics();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => {
                    synced.with_label_values(&[&kind]).set(0);
                    tracing::info!(kind, "relisting");
                }
                Ok(watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::InitDone) => {
                    synced.with_label_values(&[&kind]).set(1);
                    tracing::info!(kind, "in sync");
                    changed.notify_one();
                }
                Ok(_) => changed.notify_one(),
                Err(e) => {
                    // The store keeps what it had; the watcher retries with backoff.
                    errors.with_label_values(&[&kind]).inc();
                    synced.with_label_values(&[&kind]).set(0);
                    tracing::warn!(kind, error = %e, "watch failed; serving the last known state while retrying");
                }
            }
        }
    });
    reader
}

impl Stores {
    /// Starts all watchers. `namespace` limits the namespaced kinds to one namespace.
    pub async fn start(client: Client, namespace: Option<&str>, changed: Arc<Notify>) -> Stores {
        fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
        where
            K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
            K::DynamicType: Default,
        {
            match ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            }
        }
        let cfg = watcher::Config::default;
        let routes = match routes_served(&api::<Route>(&client, namespace)).await {
            true => Some(watch(api(&client, namespace), cfg(), changed.clone())),
            false => None,
        };
        Stores {
            routes,
            ingresses: watch(api(&client, namespace), cfg(), changed.clone()),
            classes: watch(Api::all(client.clone()), cfg(), changed.clone()),
            services: watch(api(&client, namespace), cfg(), changed.clone()),
            slices: watch(api(&client, namespace), cfg(), changed.clone()),
            // Only TLS Secrets: the rest are none of an ingress controller's business.
            secrets: watch(api(&client, namespace), cfg().fields("type=kubernetes.io/tls"), changed),
        }
    }

    pub async fn wait_until_ready(&self) {
        let _ = self.ingresses.wait_until_ready().await;
        let _ = self.classes.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
        if let Some(routes) = &self.routes {
            let _ = routes.wait_until_ready().await;
        }
    }

    /// A consistent-enough copy of every store. Each store is copied atomically; across
    /// stores, one may be a moment ahead of another, which the next compile settles.
    pub fn snapshot(&self) -> Snapshot {
        fn all<K: Clone + kube::Resource + 'static>(s: &Store<K>) -> Vec<K>
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            s.state().iter().map(|o| K::clone(o)).collect()
        }
        Snapshot {
            ingresses: all(&self.ingresses),
            ingress_classes: all(&self.classes),
            services: all(&self.services),
            endpoint_slices: all(&self.slices),
            secrets: all(&self.secrets),
            routes: self.routes.as_ref().map(all).unwrap_or_default(),
        }
    }
}

/// Whether Routes can be watched: the CRD is installed and Portico may list them.
/// Checked once at start: installing the CRD later needs a restart, said in the log.
async fn routes_served(api: &Api<Route>) -> bool {
    let probe = kube::api::ListParams::default().limit(1);
    match api.list_metadata(&probe).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {
            tracing::warn!(
                code = e.code,
                "Routes (portico.dev/v1alpha1) are not served: the CRD is not installed or Portico may not list them; \
                 apply crds/portico.dev_routes.yaml and restart to serve them"
            );
            false
        }
        // Anything else (the API server restarting) is what the watcher retries.
        Err(e) => {
            tracing::warn!(error = %e, "checking for the Route CRD failed; watching Routes anyway");
            true
        }
    }
}
