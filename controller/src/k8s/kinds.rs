//! One watcher and reflector store per kind of [`crate::snapshot`]'s list.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use k8s_openapi::api::core::v1::ConfigMap;

use crate::gateway_api::BackendTLSPolicy;
use crate::snapshot::{InputObject, Kind, KindInfo, KindVisitor, Snapshot};

/// Read handles of every store, one per kind served.
pub struct Stores {
    /// Grows when an optional kind is discovered after start.
    stores: Arc<RwLock<Vec<Arc<dyn AnyStore>>>>,
}

/// A reflector store of any kind.
trait AnyStore: Send + Sync {
    fn copy_into(&self, snapshot: &mut Snapshot);
    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<T: InputObject> AnyStore for Store<T> {
    fn copy_into(&self, snapshot: &mut Snapshot) {
        T::list_mut(snapshot).extend(self.state().iter().map(|o| T::clone(o)));
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = self.wait_until_ready().await;
        })
    }
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
    watch_trimmed(api, config, changed, |_| {})
}

/// [`watch`], with `trim` applied to each object before the store keeps it.
fn watch_trimmed<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
    trim: impl FnMut(&mut K) + Send + 'static,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().modify(trim).reflect(writer);
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

/// How often an optional kind that is not served yet is looked for again. Installing
/// its CRD (or granting Portico its RBAC) later is picked up within this, without a
/// restart. One `list` of at most one object's metadata per missing kind and period:
/// cheaper than watching every CustomResourceDefinition of the cluster, and it needs no
/// permission beyond the kind's own `list`.
pub const DISCOVERY_PERIOD: Duration = Duration::from_secs(5);

/// Starts the watcher of one kind. An optional kind that is not served (its CRD is not
/// installed, or Portico may not list it) is looked for again every
/// [`DISCOVERY_PERIOD`] and its watcher started, and its store added, once it is.
struct Start {
    client: Client,
    namespace: Option<String>,
    /// `namespace/name` of the one object of an `only_named` kind (`--configmap`).
    named: Option<(String, String)>,
    changed: Arc<Notify>,
    stores: Arc<RwLock<Vec<Arc<dyn AnyStore>>>>,
}

impl KindVisitor for Start {
    type Output = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn visit<T: InputObject>(self) -> Self::Output {
        Box::pin(async move {
            let info = T::KIND.info();
            let (api, configs) = if info.only_named {
                // One object, watched by name: nothing without the flag that names it.
                let Some((namespace, name)) = &self.named else {
                    return;
                };
                let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
                (T::api(&self.client, Some(namespace)), vec![by_name])
            } else {
                (T::api(&self.client, self.namespace.as_deref()), configs(info))
            };
            if !info.optional || served(&api, T::KIND, true).await {
                watch_all(&api, &configs, &self.changed, &self.stores);
                return;
            }
            // Later: the first table goes out without this kind.
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(DISCOVERY_PERIOD).await;
                    if served(&api, T::KIND, false).await {
                        tracing::info!(
                            kind = info.name,
                            api_version = %info.api_version(),
                            "kind now served: watching it"
                        );
                        watch_all(&api, &configs, &self.changed, &self.stores);
                        // Its first list wakes the compile loop (InitDone).
                        return;
                    }
                }
            });
        })
    }
}

/// One watch per field selector of the kind (one of everything when it has none).
fn configs(info: &KindInfo) -> Vec<watcher::Config> {
    match info.field_selectors {
        [] => vec![watcher::Config::default()],
        selectors => selectors.iter().map(|f| watcher::Config::default().fields(f)).collect(),
    }
}

/// One watcher and store per config; the stores of one kind fill the same snapshot list.
fn watch_all<T: InputObject>(
    api: &Api<T>,
    configs: &[watcher::Config],
    changed: &Arc<Notify>,
    stores: &RwLock<Vec<Arc<dyn AnyStore>>>,
) {
    for config in configs {
        push(stores, Arc::new(watch(api.clone(), config.clone(), changed.clone())));
    }
}

fn push(stores: &RwLock<Vec<Arc<dyn AnyStore>>>, store: Arc<dyn AnyStore>) {
    stores.write().unwrap_or_else(PoisonError::into_inner).push(store);
}

/// The CA bundles BackendTLSPolicies name: every ConfigMap's `ca.crt` and nothing
/// else of it (a ConfigMap may be large; only that key is kept in memory). Watched only
/// once BackendTLSPolicy is served, so a cluster without the CRD pays nothing.
struct CaBundles(Store<ConfigMap>);

impl AnyStore for CaBundles {
    fn copy_into(&self, snapshot: &mut Snapshot) {
        snapshot
            .ca_config_maps
            .extend(self.0.state().iter().map(|o| ConfigMap::clone(o)));
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.0.ready()
    }
}

/// Keeps a ConfigMap's name, namespace and `ca.crt`, drops the rest.
pub(crate) fn only_ca_crt(config_map: &mut ConfigMap) {
    let meta = &mut config_map.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    config_map.binary_data = None;
    if let Some(data) = &mut config_map.data {
        data.retain(|k, _| k == "ca.crt");
    }
}

/// Starts the [`CaBundles`] watch as soon as BackendTLSPolicy is served.
fn start_ca_bundles(
    client: Client,
    namespace: Option<String>,
    changed: Arc<Notify>,
    stores: Arc<RwLock<Vec<Arc<dyn AnyStore>>>>,
) {
    tokio::spawn(async move {
        let policies = BackendTLSPolicy::api(&client, namespace.as_deref());
        // Quiet: BackendTLSPolicy's own watcher says when it is not served.
        while !served(&policies, Kind::BackendTLSPolicy, false).await {
            tokio::time::sleep(DISCOVERY_PERIOD).await;
        }
        let api: Api<ConfigMap> = match namespace.as_deref() {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let store = watch_trimmed(api, watcher::Config::default(), changed, only_ca_crt);
        push(&stores, Arc::new(CaBundles(store)));
    });
}

impl Stores {
    /// Starts all watchers. `namespace` limits the namespaced kinds to one namespace;
    /// `named` is the `namespace/name` of the one ConfigMap read (`--configmap`).
    pub async fn start(
        client: Client,
        namespace: Option<&str>,
        named: Option<&(String, String)>,
        changed: Arc<Notify>,
    ) -> Stores {
        let stores = Arc::new(RwLock::new(Vec::new()));
        for kind in Kind::ALL {
            let start = Start {
                client: client.clone(),
                namespace: namespace.map(str::to_string),
                named: named.cloned(),
                changed: changed.clone(),
                stores: stores.clone(),
            };
            kind.visit(start).await;
        }
        start_ca_bundles(client, namespace.map(str::to_string), changed, stores.clone());
        Stores { stores }
    }

    fn current(&self) -> Vec<Arc<dyn AnyStore>> {
        self.stores.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits for the first list of every kind served at start (a kind discovered later
    /// joins without holding anything up).
    pub async fn wait_until_ready(&self) {
        for store in self.current() {
            store.ready().await;
        }
    }

    /// A consistent-enough copy of every store. Each store is copied atomically; across
    /// stores, one may be a moment ahead of another, which the next compile settles.
    /// A kind discovered late is empty here until its first list is done.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for store in self.current() {
            store.copy_into(&mut snapshot);
        }
        snapshot
    }
}

/// Whether an optional kind (a custom resource) can be watched: its CRD is installed
/// and Portico may list it. `first`: the check at start, which says in the log why a
/// kind is not served; the later ones are quiet until the kind appears.
async fn served<T: InputObject>(api: &Api<T>, kind: Kind, first: bool) -> bool {
    let info = kind.info();
    let probe = kube::api::ListParams::default().limit(1);
    match api.list_metadata(&probe).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {
            if first {
                tracing::warn!(
                    code = e.code,
                    kind = info.name,
                    api_version = %info.api_version(),
                    "kind not served: its CRD is not installed or Portico may not list it; \
                     serving without it, and looking again every few seconds"
                );
            }
            false
        }
        // Anything else (the API server restarting) is what the watcher retries.
        Err(e) => {
            tracing::warn!(kind = info.name, error = %e, "checking for the CRD failed; watching anyway");
            true
        }
    }
}
