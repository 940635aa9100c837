//! ingress-nginx's `limit-rps` and `limit-rpm`: nginx's `limit_req` with `nodelay`,
//! one zone per Ingress and rate, keyed by the client's address.
//!
//! nginx's leaky bucket, in thousandths of a request: each client's `excess` drains at
//! the zone's rate and each request adds 1000; a request that would take it over the
//! burst is refused (503 by default, ingress-nginx's `limit-req-status-code`) and
//! leaves the state unchanged. Clients in `limit-whitelist` are never counted.
//!
//! A zone outlives table swaps: it is found by name in a registry that holds it only
//! while some table uses it, so a configuration change elsewhere does not hand every
//! client a fresh burst. Its memory is bounded: at most [`MAX_CLIENTS`] addresses;
//! when full, drained entries go first, then arbitrary ones (nginx evicts its
//! least-recently-used states the same way when its zone is full).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Instant;

use http::StatusCode;
use http::header::HeaderMap;

use super::{Answer, Cidr, Filter, Phases, RequestHead};

/// Clients one zone remembers: about what nginx's 5 MB zone holds (64-byte states).
pub const MAX_CLIENTS: usize = 65_536;
const SHARDS: usize = 16;
/// Rates one route applies (ingress-nginx has two: per second and per minute); any
/// beyond are ignored.
pub const MAX_RATES: usize = 4;

/// One rate: its zone's name, requests per minute (an `r/s` rate is 60 times that),
/// and the burst in requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rate {
    pub zone: String,
    pub per_minute: u64,
    pub burst: u64,
}

/// The limits of a route, and who escapes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitSpec {
    pub rates: Vec<Rate>,
    pub whitelist: Vec<Cidr>,
    pub status: StatusCode,
}

/// The filter: the spec's zones, shared with every route (and table) that names them.
#[derive(Debug)]
pub struct RateLimit {
    zones: Vec<Arc<Zone>>,
    whitelist: Vec<Cidr>,
    status: StatusCode,
}

impl RateLimit {
    pub fn new(spec: &RateLimitSpec) -> RateLimit {
        RateLimit {
            zones: spec.rates.iter().take(MAX_RATES).map(Zone::shared).collect(),
            whitelist: spec.whitelist.clone(),
            status: spec.status,
        }
    }

    /// Counts a request from `client` at `now`; `false` when a zone refuses it.
    pub fn admit(&self, client: IpAddr, now: Instant) -> bool {
        if self.whitelist.iter().any(|c| c.contains(client)) {
            return true;
        }
        let client = client.to_canonical();
        // As nginx's limit_req: a request one zone refuses is counted by none.
        let mut counts = [0u64; MAX_RATES];
        for (z, slot) in self.zones.iter().zip(counts.iter_mut()) {
            match z.peek(client, now) {
                Some(excess) => *slot = excess,
                None => return false,
            }
        }
        for (z, excess) in self.zones.iter().zip(counts) {
            z.record(client, now, excess);
        }
        true
    }
}

impl Filter for RateLimit {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        (!self.admit(req.client, Instant::now())).then(|| Answer::Status {
            status: self.status,
            headers: HeaderMap::new(),
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Thousandths of a request over the rate.
    excess: u64,
    last: Instant,
}

#[derive(Debug)]
pub struct Zone {
    /// Thousandths of a request drained per millisecond, times 60 (per-minute units).
    per_minute: u64,
    /// Burst in thousandths of a request.
    burst: u64,
    shards: Box<[Mutex<HashMap<IpAddr, Slot>>]>,
}

type Registry = Mutex<HashMap<(String, u64, u64), Weak<Zone>>>;
static ZONES: LazyLock<Registry> = LazyLock::new(Default::default);

impl Zone {
    /// The live zone for `rate`, or a new one.
    fn shared(rate: &Rate) -> Arc<Zone> {
        let key = (rate.zone.clone(), rate.per_minute, rate.burst);
        let mut zones = ZONES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(z) = zones.get(&key).and_then(Weak::upgrade) {
            return z;
        }
        zones.retain(|_, w| w.strong_count() > 0);
        let zone = Arc::new(Zone {
            per_minute: rate.per_minute,
            burst: rate.burst.saturating_mul(1000),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        });
        zones.insert(key, Arc::downgrade(&zone));
        zone
    }

    /// What is left of `slot`'s excess at `now`.
    fn drained(&self, slot: &Slot, now: Instant) -> u64 {
        let ms = u64::try_from(now.saturating_duration_since(slot.last).as_millis()).unwrap_or(u64::MAX);
        // per_minute requests a minute = per_minute * 1000 thousandths per 60_000 ms.
        slot.excess.saturating_sub(ms.saturating_mul(self.per_minute) / 60)
    }

    /// The client's excess once this request is counted, or `None` when that is over
    /// the burst.
    fn peek(&self, client: IpAddr, now: Instant) -> Option<u64> {
        let map = self.shards[shard_of(client)].lock().unwrap_or_else(|e| e.into_inner());
        let excess = match map.get(&client) {
            Some(slot) => self.drained(slot, now) + 1000,
            None => 0,
        };
        (excess <= self.burst).then_some(excess)
    }

    fn record(&self, client: IpAddr, now: Instant, excess: u64) {
        let mut map = self.shards[shard_of(client)].lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&client) && map.len() >= MAX_CLIENTS / SHARDS {
            map.retain(|_, s| self.drained(s, now) > 0);
            if map.len() >= MAX_CLIENTS / SHARDS
                && let Some(k) = map.keys().next().copied()
            {
                map.remove(&k);
            }
        }
        map.insert(client, Slot { excess, last: now });
    }
}

fn shard_of(ip: IpAddr) -> usize {
    let h = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            (n as u64) ^ ((n >> 64) as u64)
        }
    };
    // Fibonacci hashing: the top bits of a multiply spread neighbouring addresses.
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(zone: &str, per_second: u64, multiplier: u64) -> RateLimit {
        RateLimit::new(&RateLimitSpec {
            rates: vec![Rate {
                zone: zone.to_string(),
                per_minute: per_second * 60,
                burst: per_second * multiplier,
            }],
            whitelist: vec!["192.0.2.0/24".parse().unwrap()],
            status: StatusCode::SERVICE_UNAVAILABLE,
        })
    }

    /// nginx's `limit_req rate=1r/s burst=5 nodelay`: 6 requests at once pass (the
    /// first, then 5 of burst), the 7th is refused; one second later one more passes.
    #[test]
    fn burst_then_rate() {
        let l = limit("t/burst", 1, 5);
        let (a, t0) = ("203.0.113.1".parse().unwrap(), Instant::now());
        let passed = (0..10).filter(|_| l.admit(a, t0)).count();
        assert_eq!(passed, 6);
        assert!(!l.admit(a, t0 + Duration::from_millis(500)));
        assert!(l.admit(a, t0 + Duration::from_millis(1000)));
        assert!(!l.admit(a, t0 + Duration::from_millis(1000)));
        // Another client has its own bucket; a whitelisted one is never counted.
        assert!(l.admit("203.0.113.2".parse().unwrap(), t0));
        let w = "192.0.2.7".parse().unwrap();
        assert!((0..100).all(|_| l.admit(w, t0)));
    }

    /// A zone is shared by name while a table holds it, so rebuilding the filter
    /// (a table swap) keeps every client's state.
    #[test]
    fn zones_survive_rebuilds() {
        let a = "203.0.113.9".parse().unwrap();
        let t0 = Instant::now();
        let first = limit("t/shared", 1, 1);
        assert!(first.admit(a, t0) && first.admit(a, t0));
        let second = limit("t/shared", 1, 1);
        assert!(!second.admit(a, t0));
        drop((first, second));
        assert!(
            limit("t/shared", 1, 1).admit(a, t0),
            "a zone no table holds is forgotten"
        );
    }

    /// The zone never holds more than MAX_CLIENTS addresses.
    #[test]
    fn memory_is_bounded() {
        let l = limit("t/bounded", 1, 5);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 5000) {
            l.admit(IpAddr::from((0xc612_0000u32 + i).to_be_bytes()), t0);
        }
        let held: usize = l.zones[0].shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= MAX_CLIENTS, "{held}");
    }
}
