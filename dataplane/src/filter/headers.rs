//! Header changes (Gateway API's `RequestHeaderModifier` and `ResponseHeaderModifier`):
//! remove, then set, then add.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Filter, Phases, ResponseHead, UpstreamHead};

/// `set` replaces, `add` appends, `remove` deletes; applied in that order: remove, set, add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Every name it touches.
    pub fn names(&self) -> Vec<HeaderName> {
        let (set, add) = (self.set.iter().map(|(n, _)| n), self.add.iter().map(|(n, _)| n));
        self.remove.iter().chain(set).chain(add).cloned().collect()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[derive(Debug)]
pub struct RequestHeaders(pub HeaderModifier);

impl Filter for RequestHeaders {
    fn upstream_request(&self, req: &mut UpstreamHead<'_>) {
        self.0.apply(req.headers);
    }

    fn phases(&self) -> Phases {
        Phases::UPSTREAM_REQUEST
    }

    fn header_names(&self) -> Option<Vec<HeaderName>> {
        Some(self.0.names())
    }
}

#[derive(Debug)]
pub struct ResponseHeaders(pub HeaderModifier);

impl Filter for ResponseHeaders {
    fn response(&self, resp: &mut ResponseHead<'_>) {
        // What an endpoint answered, not the proxy's own answers (a redirect, a 502).
        if resp.from_upstream {
            self.0.apply(resp.headers);
        }
    }

    fn phases(&self) -> Phases {
        Phases::RESPONSE
    }

    fn header_names(&self) -> Option<Vec<HeaderName>> {
        Some(self.0.names())
    }
}
