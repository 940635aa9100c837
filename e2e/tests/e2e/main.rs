//! Portico against a real kube-apiserver and etcd: one test binary, so every test
//! shares one cluster (see the harness in `e2e/src/lib.rs`). Run with `e2e/run.sh`,
//! or `cargo test -p portico-e2e -- --test-threads=1 --nocapture` (as root).

mod apiserver;
mod churn;
mod endpoints;
mod explain;
mod gateway;
mod gateway_churn;
mod lease;
mod migrate;
mod node;
mod perf;
mod rbac;
mod route;
mod routing;
mod status;
mod takeover;
mod tls;
