//! Listener isolation: a request goes to the routes of one listener only, the most
//! specific one on its port whose hostname matches it (Gateway API, GatewaySpec.listeners,
//! "Listeners that are distinct only by Hostname": exact before wildcard, a longer
//! wildcard before a shorter one, both before no hostname; "if Listeners are defined for
//! foo.example.com and *.example.com, a request to foo.example.com SHOULD only be routed
//! using routes attached to the foo.example.com Listener").
//!
//! A listener port's table already picks one host block per request, the most specific
//! one, and never falls back to a wider block. So isolation is decided here, at compile
//! time, and costs nothing per request:
//!
//! ```text
//!  listeners on one port:   ""  ⊃  *.example.com  ⊃  *.foo.example.com  ⊃  abc.foo.example.com
//!  route host H via L:      left out when a more specific listener M than L covers H
//!  listener hostname hM:    its own host block (empty if need be) when a wider listener
//!                           shares the port, so requests under hM never reach the wider
//!                           listener's routes
//! ```

use portico_dataplane::table::HostMatch;

use super::GatewayState;

/// Whether `name` is a DNS name strictly under `suffix` (`a.example.com`, `a.b.example.com`
/// under `example.com`).
pub(super) fn under(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix)
        .is_some_and(|p| p.ends_with('.') && p.len() > 1)
}

/// Whether every request host `inner` matches, `outer` matches too (a Gateway wildcard
/// covers any number of labels).
pub fn covers(outer: &HostMatch, inner: &HostMatch) -> bool {
    match (outer, inner) {
        (HostMatch::Any, _) => true,
        (_, HostMatch::Any) => false,
        (HostMatch::Exact(o), HostMatch::Exact(i)) => o == i,
        (HostMatch::Exact(_), HostMatch::Wildcard(_)) => false,
        (HostMatch::Wildcard(o), HostMatch::Exact(i)) => under(i, o),
        (HostMatch::Wildcard(o), HostMatch::Wildcard(i)) => o == i || under(i, o),
    }
}

/// A listener's hostname as a host match: none matches every host.
fn hostname<'g>(gateway: &'g GatewayState<'_>, index: usize) -> &'g HostMatch {
    gateway.listeners[index].hostname.as_ref().unwrap_or(&HostMatch::Any)
}

/// Whether listeners `wide` and `narrow` serve the same internal port, both usable, and
/// `narrow`'s hostname is strictly inside `wide`'s.
fn wider(gateway: &GatewayState<'_>, wide: usize, narrow: usize) -> bool {
    let (w, n) = (&gateway.listeners[wide], &gateway.listeners[narrow]);
    let (wh, nh) = (hostname(gateway, wide), hostname(gateway, narrow));
    wide != narrow
        && w.usable()
        && n.usable()
        && w.internal_port.is_some()
        && w.internal_port == n.internal_port
        && wh != nh
        && covers(wh, nh)
}

/// The hosts a route attached to listener `index` serves there: those of `hosts` no more
/// specific listener on the same port covers (that listener's routes alone serve them).
pub(super) fn isolate(
    gateway: &GatewayState<'_>,
    index: usize,
    hosts: Vec<(HostMatch, String)>,
) -> Vec<(HostMatch, String)> {
    let narrower: Vec<&HostMatch> = (0..gateway.listeners.len())
        .filter(|&n| wider(gateway, index, n))
        .map(|n| hostname(gateway, n))
        .collect();
    hosts
        .into_iter()
        .filter(|(h, _)| !narrower.iter().any(|n| covers(n, h)))
        .collect()
}

/// Whether listener `index`'s hostname needs a host block of its own, routes or not: a
/// wider listener shares its port, whose routes must not serve the hosts it covers.
pub fn reserves_hostname(gateway: &GatewayState<'_>, index: usize) -> bool {
    (0..gateway.listeners.len()).any(|wide| wider(gateway, wide, index))
}
