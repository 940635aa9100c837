//! Internal ports: where the proxy listens for each (Gateway, listener port).
//!
//! Service mode: a deterministic probe inside `--gateway-port-range`, Gateways oldest
//! first, so an older Gateway never moves when a newer one arrives. Direct mode: the
//! listener port itself; a port an older Gateway holds makes the newer listener
//! `Accepted=False PortUnavailable`.

use std::collections::BTreeSet;

use super::{GatewayState, namespace_of};
use crate::compile::{CompileOptions, GatewayPorts, fnv1a64};
use crate::snapshot::Snapshot;

pub(super) fn allocate(gateways: &mut [GatewayState<'_>], opts: &CompileOptions) {
    let direct = opts.gateway_service.is_none();
    let (low, high) = opts.gateway_port_range;
    let span = u64::from(high.saturating_sub(low)) + 1;
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    for gw in gateways {
        let ports: BTreeSet<u16> = gw
            .listeners
            .iter()
            .filter(|l| l.protocol.is_some())
            .filter_map(|l| u16::try_from(l.listener.port).ok().filter(|p| *p != 0))
            .collect();
        for port in ports {
            let internal = if direct {
                taken.insert(port).then_some(port)
            } else {
                let start = fnv1a64(format!("{}/{}/{port}", gw.namespace, gw.name).as_bytes()) % span;
                (0..span)
                    .map(|i| low + ((start + i) % span) as u16)
                    .find(|p| !taken.contains(p))
                    .inspect(|p| {
                        taken.insert(*p);
                    })
            };
            for l in gw.listeners.iter_mut().filter(|l| l.listener.port == i32::from(port)) {
                l.internal_port = internal;
                if internal.is_none() && l.accepted.is_ok() {
                    l.accepted = Err((
                        "PortUnavailable",
                        format!("port {port} is already served by an older Gateway"),
                    ));
                }
            }
        }
    }
}

/// Per Gateway of Portico's classes with at least one listener Portico serves: its
/// listener ports and their internal ports, for the Service writer.
pub fn gateway_ports(snapshot: &Snapshot, opts: &CompileOptions) -> Vec<GatewayPorts> {
    let mut certificates = crate::compile::tls::Certificates::new(&snapshot.secrets, opts.now);
    let analysis = super::Analysis::new(snapshot, opts, &mut certificates);
    analysis
        .gateways
        .iter()
        .filter_map(|gw| {
            let mut ports: Vec<(u16, u16)> = gw
                .listeners
                .iter()
                .filter_map(|l| Some((u16::try_from(l.listener.port).ok()?, l.internal_port?)))
                .collect();
            ports.sort_unstable();
            ports.dedup();
            // A Gateway without one servable port gets no Service: the API server
            // refuses a Service without ports (and would stop the others' writes).
            (!ports.is_empty()).then(|| GatewayPorts {
                namespace: namespace_of(&gw.gateway.metadata).to_string(),
                name: gw.name.to_string(),
                ports,
            })
        })
        .collect()
}
