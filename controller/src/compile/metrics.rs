//! The diagnostics gauge, shared by file mode and the Kubernetes watcher.

use std::sync::LazyLock;

use prometheus::{IntGaugeVec, Opts};

use super::diagnostics::{Diagnostic, reason};

static DIAGNOSTICS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let gauge = IntGaugeVec::new(
        Opts::new(
            "portico_diagnostics",
            "Problems found by the last compile of the routing table, by reason.",
        ),
        &["reason"],
    )
    .expect("static metric definition is valid");
    // Registration fails only if the same name is registered twice in one process;
    // the gauge still works then, it is just not exported a second time.
    let _ = prometheus::default_registry().register(Box::new(gauge.clone()));
    gauge
});

/// Publishes the diagnostics of the table just compiled: the current count per reason,
/// including zero for reasons with none, so an alert on a reason clears when it is fixed.
pub fn record_diagnostics(diagnostics: &[Diagnostic]) {
    for reason in reason::ALL {
        let count = diagnostics.iter().filter(|d| d.reason == *reason).count();
        DIAGNOSTICS
            .with_label_values(&[*reason])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
