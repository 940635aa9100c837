//! Least request: power of two choices. Two usable endpoints at random, the one with
//! fewer requests in flight. The counts live in the backend's state, so they carry
//! over when an EndpointSlice change swaps the table: a busy endpoint stays busy.

use super::{Policy, RequestKey};
use crate::table::{Backend, mix};

pub struct LeastRequest;

impl Policy for LeastRequest {
    fn pick(&self, backend: &Backend, _: RequestKey, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..backend.endpoints.len()).filter(|i| usable(*i)).collect();
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let state = backend.state();
                let r = mix(state.turn() as u64 ^ (state as *const _ as u64));
                let a = candidates[(r % n as u64) as usize];
                let b = candidates[((r >> 32) % (n as u64 - 1)) as usize];
                // Two distinct endpoints: b is drawn from the others.
                let b = if b == a { candidates[n - 1] } else { b };
                Some(if state.in_flight(b) < state.in_flight(a) { b } else { a })
            }
        }
    }
}
