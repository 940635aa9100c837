//! Round robin: the backend's shared rotation, which survives table swaps.

use super::{Policy, RequestKey};
use crate::table::Backend;

pub struct RoundRobin;

impl Policy for RoundRobin {
    fn pick(&self, backend: &Backend, _: RequestKey, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = backend.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = backend.state().turn();
        (0..n).map(|i| (start + i) % n).find(|i| usable(*i))
    }
}
