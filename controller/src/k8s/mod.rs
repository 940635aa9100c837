//! Cluster mode: watch the Kubernetes API and keep the routing table current.
//!
//! ```text
//!   Ingress ──┐
//!   IngressClass ──┤ one watcher + reflector store per kind (kinds.rs)
//!   Service ──┤        │ any event
//!   EndpointSlice ──┤        ▼
//!   Secret (tls) ──┤   Notify ──▶ coalesce ──▶ Snapshot ──▶ compile() ──▶ watch channel
//!   Route ──┘ (portico.dev/v1alpha1, once its CRD is installed: looked for every few seconds)
//! ```
//!
//! The stores may lag the API server: a watch that breaks keeps its store as it was
//! until the relist completes (`Init` .. `InitDone` replaces it whole), so a lost
//! connection never empties the table, it only freezes it. The first table is
//! published only once every store has listed, so a restart never serves a half-empty
//! table.

mod kinds;
mod list;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use portico_dataplane::table::RoutingTable;
use tokio::sync::{Notify, watch};

use crate::compile::{CompileOptions, Diagnostic, compile};
use crate::snapshot::Snapshot;

pub use kinds::Stores;
pub use list::list_once;

/// What the last compile produced, for the status writer.
#[derive(Clone, Default)]
pub struct Compiled {
    pub snapshot: Arc<Snapshot>,
    pub diagnostics: Arc<Vec<Diagnostic>>,
}

/// How changes are batched into compiles.
#[derive(Clone, Debug)]
pub struct Coalesce {
    /// After the first change, wait this long for more before compiling. A burst of
    /// changes (a `kubectl apply` of many objects, a rollout moving endpoints) becomes one
    /// compile; a single change still goes live well under a second.
    pub window: Duration,
}

impl Default for Coalesce {
    fn default() -> Self {
        Coalesce {
            window: Duration::from_millis(50),
        }
    }
}

/// Watches the cluster and publishes a new table after every batch of changes. Runs
/// until the process stops; watch errors are retried with backoff, never returned.
pub async fn run(
    client: Client,
    mut opts: CompileOptions,
    coalesce: Coalesce,
    tables: watch::Sender<Arc<RoutingTable>>,
    compiled: watch::Sender<Compiled>,
) {
    let changed = Arc::new(Notify::new());
    let stores = Stores::start(
        client,
        opts.watch_namespace.as_deref(),
        opts.config_map.as_ref(),
        changed.clone(),
    )
    .await;
    tracing::info!("waiting for the first list of every watched kind");
    stores.wait_until_ready().await;
    tracing::info!("all watched kinds listed; publishing the first table");
    loop {
        let started = Instant::now();
        let snapshot = stores.snapshot();
        opts.generation += 1;
        opts.now = crate::compile::unix_now();
        let (table, diagnostics) = compile(&snapshot, &opts);
        crate::compile::record_diagnostics(&diagnostics);
        tracing::info!(
            generation = opts.generation,
            routes = table.route_count(),
            ingresses = snapshot.ingresses.len(),
            diagnostics = diagnostics.len(),
            compile_ms = started.elapsed().as_secs_f64() * 1000.0,
            "routing table compiled"
        );
        for d in &diagnostics {
            tracing::warn!(kind = d.kind, namespace = %d.namespace, name = %d.name, reason = d.reason, "{}", d.message);
        }
        tables.send_replace(Arc::new(table));
        compiled.send_replace(Compiled {
            snapshot: Arc::new(snapshot),
            diagnostics: Arc::new(diagnostics),
        });

        changed.notified().await;
        tokio::time::sleep(coalesce.window).await;
    }
}
