//! Gateway listener ports: bound when a table names them, closed when a table no
//! longer does.
//!
//! ```text
//!  table swap ─▶ sync ─┬─ port gone, or its protocol changed ─▶ stop accepting
//!                      │    (connections already accepted finish, as in a drain)
//!                      └─ port new ─▶ bind one socket per serving thread on the
//!                           HTTP address's IP ─▶ accept; a port that cannot be bound
//!                           is logged and tried again at the next swap
//! ```
//!
//! A connection accepted here carries its port in [`ConnInfo`](crate::proxy::ConnInfo)
//! and is routed by that listener's table alone; an HTTPS port's handshakes choose
//! among that listener's certificates alone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{Drain, Placement, accept_on, bind_each, sni};
use crate::proxy::Proxy;
use crate::table::{ListenerProtocol, RoutingTable};
use crate::tls::Certificate;

/// What every listener port's connections are served with.
pub(super) struct Shared {
    pub proxy: Arc<Proxy>,
    pub drain: Drain,
    pub placement: Arc<Placement>,
    /// For HTTPS handshakes neither the listener nor the table has a certificate for.
    pub fallback: Arc<Certificate>,
}

/// The Gateway listener ports bound now.
pub(super) struct Ports {
    shared: Shared,
    /// The Ingress ports (HTTP, HTTPS): the IP listener ports bind on, and ports they
    /// must never take.
    ingress: Vec<SocketAddr>,
    bound: BTreeMap<u16, Bound>,
}

struct Bound {
    protocol: ListenerProtocol,
    /// One accept loop per serving thread.
    accepting: Vec<JoinHandle<()>>,
}

impl Ports {
    pub fn new(shared: Shared, ingress: Vec<SocketAddr>) -> Ports {
        Ports {
            shared,
            ingress,
            bound: BTreeMap::new(),
        }
    }

    /// Makes the bound ports those of `table`'s listeners: stops accepting on the
    /// ports it no longer has (or has with another protocol), binds those it has and
    /// are not bound yet.
    pub fn sync(&mut self, table: &RoutingTable) {
        self.bound.retain(|&port, bound| {
            let keep = table.listener(port).is_some_and(|l| l.protocol == bound.protocol);
            if !keep {
                for task in &bound.accepting {
                    task.abort();
                }
                tracing::info!(port, "gateway listener closed");
            }
            keep
        });
        for listener in table.listeners() {
            let (port, protocol) = (listener.port, listener.protocol);
            if self.bound.contains_key(&port) {
                continue;
            }
            match self.bind(port, protocol) {
                Ok(accepting) => {
                    tracing::info!(port, ?protocol, "gateway listener bound");
                    self.bound.insert(port, Bound { protocol, accepting });
                }
                Err(e) => {
                    tracing::error!(port, error = %e, "cannot bind a gateway listener; trying again at the next table")
                }
            }
        }
    }

    fn bind(&self, port: u16, protocol: ListenerProtocol) -> std::io::Result<Vec<JoinHandle<()>>> {
        let Some(ip) = self.ingress.first().map(|a| a.ip()) else {
            return Err(std::io::Error::other("the HTTP listener has no address"));
        };
        if port == 0 {
            return Err(std::io::Error::other("port 0 is not a listener port"));
        }
        if self.ingress.iter().any(|a| a.port() == port) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("port {port} is an Ingress listener's"),
            ));
        }
        let Shared {
            proxy,
            drain,
            placement,
            fallback,
        } = &self.shared;
        let tls = match protocol {
            ListenerProtocol::Http => None,
            ListenerProtocol::Https => Some(TlsAcceptor::from(
                sni::server_config(proxy.live_table(), Some(port), fallback.clone()).map_err(std::io::Error::other)?,
            )),
        };
        let sockets = bind_each(SocketAddr::new(ip, port), "gateway", placement.handles.len())?;
        Ok(accept_on(sockets, tls, Some(port), proxy, drain, placement))
    }

    /// Stops accepting on every port, and returns once every accept loop is gone.
    pub async fn close(mut self) {
        let bound = std::mem::take(&mut self.bound);
        for task in bound.values().flat_map(|b| &b.accepting) {
            task.abort();
        }
        for task in bound.into_values().flat_map(|b| b.accepting) {
            let _ = task.await;
        }
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
        for task in self.bound.values().flat_map(|b| &b.accepting) {
            task.abort();
        }
    }
}
