//! File mode: the objects of a multi-document YAML file instead of the Kubernetes API.
//!
//! The file holds what one would `kubectl apply`: Ingresses, IngressClasses, Services,
//! EndpointSlices (standing in for the pods the EndpointSlice controller would find),
//! Secrets and Routes (`portico.dev/v1alpha1`, checked against the CRD's rules as the
//! API server would), as `---` separated documents or as the `items` of a `kind: List`. Other kinds
//! (a Namespace, a Deployment) are skipped with a warning, so a manifest written for a
//! cluster works as it is.
//!
//! ```text
//!  file ──parse()──▶ Snapshot ──compile()──▶ RoutingTable ──▶ watch channel ──▶ proxy
//!   ▲                                            │ not valid: logged, last good table stays
//!   └── parent directory changed, then 100 ms of quiet ──▶ read again
//! ```
//!
//! The parent directory is watched rather than the file because editors and config
//! tools replace a file by renaming a new one over it, and a mounted ConfigMap swaps a
//! symlink: either way the file watched would be gone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use portico_dataplane::table::RoutingTable;
use prometheus::IntCounter;
use tokio::sync::{mpsc, watch};

mod de;
mod parse;

pub use parse::parse;

use crate::compile::{CompileOptions, compile, record_diagnostics};
use crate::snapshot::Snapshot;

/// How long the file must stay quiet after a change before it is read: long enough for
/// an editor's write-then-rename or a truncate-then-write to finish, short enough that
/// an edit is live well within a second.
const SETTLE: Duration = Duration::from_millis(100);

/// The longest a reload waits for quiet, so a busy directory (a log file written next to
/// the configuration) cannot hold edits back.
const MAX_SETTLE: Duration = Duration::from_millis(500);

static RELOAD_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    let counter = IntCounter::new(
        "portico_config_reload_errors_total",
        "Edits of the --from-file configuration that were refused; the last good table kept serving.",
    )
    .expect("static metric definition is valid");
    // Fails only when registered twice in one process; the counter still counts.
    let _ = prometheus::default_registry().register(Box::new(counter.clone()));
    counter
});

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {} for changes: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error(transparent)]
    Invalid(Box<InvalidDocument>),
}

/// A document of the file that is not a valid object, and exactly where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDocument {
    /// Set by [`run`]; [`parse`] reads a string and does not know the file.
    pub file: Option<PathBuf>,
    /// Position among the file's non-empty documents, from 1.
    pub document: usize,
    /// `Kind namespace/name`, when the document got far enough to tell.
    pub object: Option<String>,
    /// Line in the whole file, from 1.
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// The offending field, like `spec.rules[0].http.paths[0].backend.service.port`.
    pub field: Option<String>,
    pub message: String,
}

impl std::error::Error for InvalidDocument {}

/// `file:line:column: document N (Kind ns/name): field: message`, the shape editors and
/// terminals turn into a link to the spot.
impl fmt::Display for InvalidDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}:{}: ", file.display(), self.column.unwrap_or(1))?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}, column {}: ", self.column.unwrap_or(1))?,
            (None, None) => {}
        }
        write!(f, "document {}", self.document)?;
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl FileError {
    fn in_file(self, path: &Path) -> Self {
        match self {
            FileError::Invalid(mut doc) => {
                doc.file = Some(path.to_path_buf());
                FileError::Invalid(doc)
            }
            other => other,
        }
    }
}

/// Serves the file: publishes its table on `tables`, then follows edits until every
/// receiver of `tables` is gone.
///
/// Each published table has a generation above `opts.generation` and above the table
/// already in the channel. An edit that does not parse is logged with exactly what is
/// wrong, counted in `portico_config_reload_errors_total`, and changes nothing: the last
/// good table keeps serving. Only the first load's failure is returned, so a process
/// started on a broken file exits instead of serving nothing.
pub async fn run(
    path: PathBuf,
    opts: CompileOptions,
    tables: watch::Sender<Arc<RoutingTable>>,
) -> Result<(), FileError> {
    LazyLock::force(&RELOAD_ERRORS);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    // Watching starts before the first read, so an edit made in between is not missed.
    let _watcher = watch_directories(&path, events_tx)?;
    let text = read(&path).await?;
    let snapshot = parse(&text).map_err(|e| e.in_file(&path))?;
    publish(&tables, &snapshot, &opts);
    // The table is built; the parsed objects (as large as the table itself) are not
    // needed again.
    drop(snapshot);
    let mut file = Followed {
        path,
        good: text,
        refused: None,
    };
    tracing::info!(file = %file.path.display(), "serving the routing table from the file and following its edits");

    loop {
        tokio::select! {
            () = tables.closed() => return Ok(()),
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                if !is_change(&event) {
                    continue;
                }
                settle(&mut events).await;
                file.reload(&tables, &opts).await;
            }
        }
    }
}

async fn read(path: &Path) -> Result<String, FileError> {
    tokio::fs::read_to_string(path).await.map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The file being followed and what became of its last versions.
struct Followed {
    path: PathBuf,
    /// The text of the table being served.
    good: String,
    /// What was last refused (the text, or the read error), so it is reported once and
    /// not again on every unrelated event in the directory. That also keeps a log file
    /// written next to the configuration from looping: error, log write, event, error.
    refused: Option<String>,
}

impl Followed {
    async fn reload(&mut self, tables: &watch::Sender<Arc<RoutingTable>>, opts: &CompileOptions) {
        let text = match read(&self.path).await {
            Ok(text) => text,
            Err(e) => return self.refuse(e.to_string(), &e),
        };
        // Directory events also come from other files and from saves that change nothing.
        if text == self.good {
            if self.refused.take().is_some() {
                tracing::info!(file = %self.path.display(), "the file is back to the configuration being served");
            }
            return;
        }
        if self.refused.as_ref() == Some(&text) {
            return;
        }
        match parse(&text) {
            Ok(snapshot) => {
                publish(tables, &snapshot, opts);
                self.good = text;
                self.refused = None;
            }
            Err(e) => {
                let e = e.in_file(&self.path);
                self.refuse(text, &e);
            }
        }
    }

    fn refuse(&mut self, what: String, error: &FileError) {
        if self.refused.as_ref() == Some(&what) {
            return;
        }
        self.refused = Some(what);
        RELOAD_ERRORS.inc();
        tracing::error!(
            file = %self.path.display(),
            error = %error,
            "edit refused; the last good routing table keeps serving"
        );
    }
}

fn publish(tables: &watch::Sender<Arc<RoutingTable>>, snapshot: &Snapshot, opts: &CompileOptions) {
    let generation = opts.generation.max(tables.borrow().generation) + 1;
    let (table, diagnostics) = compile(
        snapshot,
        &CompileOptions {
            generation,
            now: crate::compile::unix_now(),
            ..opts.clone()
        },
    );
    record_diagnostics(&diagnostics);
    for d in &diagnostics {
        if d.is_warning() {
            tracing::warn!(kind = d.kind, namespace = %d.namespace, name = %d.name, reason = d.reason, "{}", d.message);
        } else {
            tracing::info!(kind = d.kind, namespace = %d.namespace, name = %d.name, reason = d.reason, "{}", d.message);
        }
    }
    tracing::info!(
        generation,
        routes = table.route_count(),
        ingresses = snapshot.ingresses.len(),
        diagnostics = diagnostics.len(),
        "routing table loaded from the file"
    );
    tables.send_replace(Arc::new(table));
}

type WatchEvent = notify::Result<notify::Event>;

/// Watches the file's directory, and also the directory of its target when the file is
/// a symlink to somewhere else, since edits then happen there.
fn watch_directories(path: &Path, events: mpsc::UnboundedSender<WatchEvent>) -> Result<RecommendedWatcher, FileError> {
    let watch_error = |source| FileError::Watch {
        path: path.to_path_buf(),
        source,
    };
    // Only events that may concern the file: its own name, its symlink target's name,
    // and the `..data` links a ConfigMap volume swaps. Anything else written in the same
    // directory (a log file, say) must not cost a re-read per write.
    let mut names: Vec<std::ffi::OsString> = path.file_name().map(|n| n.to_os_string()).into_iter().collect();
    if let Ok(target) = std::fs::canonicalize(path)
        && let Some(n) = target.file_name()
    {
        names.push(n.to_os_string());
    }
    let concerns_file = move |event: &WatchEvent| match event {
        Ok(event) if !event.paths.is_empty() => event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| names.iter().any(|m| m == n) || n.as_encoded_bytes().starts_with(b".."))
        }),
        _ => true,
    };
    let mut watcher = notify::recommended_watcher(move |event| {
        if concerns_file(&event) {
            // The receiver is gone only once `run` has returned.
            let _ = events.send(event);
        }
    })
    .map_err(watch_error)?;
    let dir_of = |p: &Path| match p.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![dir_of(path)];
    if let (Ok(target), Ok(dir)) = (std::fs::canonicalize(path), std::fs::canonicalize(&dirs[0]))
        && dir_of(&target) != dir
    {
        dirs.push(dir_of(&target));
    }
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive).map_err(watch_error)?;
    }
    Ok(watcher)
}

/// Whether an event may have changed the file: anything but someone opening or
/// reading a file, which includes this module's own reads.
fn is_change(event: &WatchEvent) -> bool {
    match event {
        Ok(event) => match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        Err(e) => {
            tracing::warn!(error = %e, "file watch error; reloading to be safe");
            true
        }
    }
}

/// Waits until no change has arrived for [`SETTLE`], or [`MAX_SETTLE`] has passed.
async fn settle(events: &mut mpsc::UnboundedReceiver<WatchEvent>) {
    let deadline = tokio::time::Instant::now() + MAX_SETTLE;
    loop {
        let quiet = (tokio::time::Instant::now() + SETTLE).min(deadline);
        tokio::select! {
            event = events.recv() => match event {
                Some(event) if is_change(&event) => continue,
                Some(_) => {}
                None => return,
            },
            () = tokio::time::sleep_until(quiet) => return,
        }
    }
}
