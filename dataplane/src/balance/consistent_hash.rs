//! Consistent hashing: rendezvous (highest random weight) hashing on a header, a cookie
//! or the client address. A key stays on its endpoint while endpoints come and go
//! elsewhere; only the keys of a removed endpoint move. It costs one hash per endpoint
//! per request, fine for the hundreds of endpoints a Service has. A request without the
//! key is balanced round robin.

use super::round_robin::RoundRobin;
use super::{Policy, RequestKey};
use crate::table::{Backend, mix};

pub struct ConsistentHash;

impl Policy for ConsistentHash {
    fn pick(&self, backend: &Backend, key: RequestKey, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let Some(h) = key.hash else {
            return RoundRobin.pick(backend, key, usable);
        };
        (0..backend.endpoints.len())
            .filter(|i| usable(*i))
            .max_by_key(|i| mix(h ^ backend.hashes[*i]))
    }
}
