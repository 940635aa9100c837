//! A rule's traffic split over several backends by weight (a canary, blue/green).
//!
//! A smooth weighted round-robin schedule (nginx's), built with the table: a 90/10
//! split is exactly 90/10 over every 100 consecutive requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::backend::{Backend, mix};
use crate::filter::HeaderModifier;

/// Several backends sharing a rule's traffic by weight.
#[derive(Debug)]
pub struct WeightedBackends {
    backends: Vec<(Arc<Backend>, u32)>,
    /// Indexes into `backends`, in smooth weighted round-robin order over one cycle.
    schedule: Vec<u16>,
    total: u64,
    next: AtomicUsize,
    /// Header changes for the requests sent to one backend (Gateway API's
    /// `backendRefs[].filters`), in the order of `backends`; `None` when no backend has
    /// any, so a split without them pays one check.
    request_headers: Option<Box<[HeaderModifier]>>,
}

/// Longest schedule kept; larger weight sums (after dividing by their common divisor)
/// choose by a hashed counter instead, exact on average.
const MAX_SCHEDULE: u64 = 10_000;

impl WeightedBackends {
    /// `backends` with their weights; zero weights get no traffic. `None` when no
    /// weight is above zero.
    pub fn new(backends: Vec<(Arc<Backend>, u32)>) -> Option<WeightedBackends> {
        let divisor = backends.iter().map(|(_, w)| u64::from(*w)).fold(0, gcd);
        if divisor == 0 || backends.len() > usize::from(u16::MAX) {
            return None;
        }
        let total: u64 = backends.iter().map(|(_, w)| u64::from(*w) / divisor).sum();
        let mut schedule = Vec::new();
        if total <= MAX_SCHEDULE {
            let weights: Vec<i64> = backends.iter().map(|(_, w)| (u64::from(*w) / divisor) as i64).collect();
            let mut current = vec![0i64; weights.len()];
            for _ in 0..total {
                for (c, w) in current.iter_mut().zip(&weights) {
                    *c += w;
                }
                let best = (0..current.len())
                    .max_by_key(|i| (current[*i], std::cmp::Reverse(*i)))
                    .unwrap_or(0);
                current[best] -= total as i64;
                schedule.push(best as u16);
            }
        }
        Some(WeightedBackends {
            backends,
            schedule,
            total: total * divisor,
            next: AtomicUsize::new(0),
            request_headers: None,
        })
    }

    /// Gives each backend, in the order [`WeightedBackends::new`] got them, the header
    /// changes of the requests sent to it; all empty is none.
    pub fn with_request_headers(mut self, modifiers: Vec<HeaderModifier>) -> WeightedBackends {
        debug_assert_eq!(modifiers.len(), self.backends.len());
        self.request_headers = (modifiers.len() == self.backends.len() && modifiers.iter().any(|m| !m.is_empty()))
            .then(|| modifiers.into_boxed_slice());
        self
    }

    /// The backend for one request and the header changes of requests sent to it: the
    /// one holding the endpoint an affinity cookie names, if any still does, else
    /// [`WeightedBackends::choose`]'s.
    pub fn pick(&self, affinity: Option<u64>, key: Option<u64>) -> (&Arc<Backend>, Option<&HeaderModifier>) {
        let index = affinity
            .and_then(|token| self.backends.iter().position(|(b, _)| b.hashes.contains(&token)))
            .unwrap_or_else(|| self.choose_index(key));
        let headers = self
            .request_headers
            .as_ref()
            .map(|all| &all[index])
            .filter(|m| !m.is_empty());
        (&self.backends[index].0, headers)
    }

    /// Each backend's header changes, for `explain`; `None` when there are none.
    pub fn request_headers(&self) -> Option<&[HeaderModifier]> {
        self.request_headers.as_deref()
    }

    /// The backend for one request. With a consistent-hash key the same key always gets
    /// the same backend; otherwise the schedule turns.
    pub fn choose(&self, key: Option<u64>) -> &Arc<Backend> {
        &self.backends[self.choose_index(key)].0
    }

    fn choose_index(&self, key: Option<u64>) -> usize {
        match key {
            None if !self.schedule.is_empty() => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                usize::from(self.schedule[n % self.schedule.len()])
            }
            _ => {
                let r = key.unwrap_or_else(|| mix(self.next.fetch_add(1, Ordering::Relaxed) as u64)) % self.total;
                let mut acc = 0u64;
                self.backends
                    .iter()
                    .position(|(_, w)| {
                        acc += u64::from(*w);
                        r < acc
                    })
                    .unwrap_or(0)
            }
        }
    }

    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.backends.iter().map(|(b, _)| b)
    }

    /// Each backend with its weight as written, for `explain`.
    pub fn weighted(&self) -> impl Iterator<Item = (&Arc<Backend>, u32)> {
        self.backends.iter().map(|(b, w)| (b, *w))
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::UpstreamProtocol;

    fn backend(name: &str) -> Arc<Backend> {
        Arc::new(Backend::new(name, UpstreamProtocol::Http1, vec![]))
    }

    /// A 90/10 split is exactly 90/10 over every 100 consecutive requests.
    #[test]
    fn weighted_split_is_exact_per_cycle() {
        let w = WeightedBackends::new(vec![(backend("a"), 90), (backend("b"), 10)]).unwrap();
        for _ in 0..3 {
            let a = (0..100).filter(|_| w.choose(None).name == "a").count();
            assert_eq!(a, 90);
        }
    }

    /// Zero weights get nothing; all zero is no split at all.
    #[test]
    fn zero_weight_gets_nothing() {
        let w = WeightedBackends::new(vec![(backend("a"), 0), (backend("b"), 3)]).unwrap();
        assert!((0..50).all(|_| w.choose(None).name == "b"));
        assert!((0..50).all(|i| w.choose(Some(mix(i))).name == "b"));
        assert!(WeightedBackends::new(vec![(backend("a"), 0)]).is_none());
    }

    /// Gateway API `HTTPBackendRef.filters`: "Filters defined at this level should be
    /// executed if and only if the request is being forwarded to the backend defined
    /// here": each pick carries the chosen backend's changes, and only its.
    #[test]
    fn picked_backend_carries_its_own_header_changes() {
        let set = |v: &'static str| HeaderModifier {
            set: vec![(
                http::HeaderName::from_static("backend"),
                http::HeaderValue::from_static(v),
            )],
            ..HeaderModifier::default()
        };
        let w = WeightedBackends::new(vec![(backend("a"), 1), (backend("b"), 1), (backend("c"), 1)])
            .unwrap()
            .with_request_headers(vec![set("a"), set("b"), HeaderModifier::default()]);
        for _ in 0..30 {
            let (chosen, headers) = w.pick(None, None);
            match chosen.name.as_str() {
                "c" => assert!(headers.is_none()),
                name => assert_eq!(headers.unwrap().set[0].1, name),
            }
        }
        let plain = WeightedBackends::new(vec![(backend("a"), 1)])
            .unwrap()
            .with_request_headers(vec![HeaderModifier::default()]);
        assert!(plain.request_headers().is_none() && plain.pick(None, None).1.is_none());
    }
}
