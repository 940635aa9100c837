//! nginx's `return <code> <url>`: a redirect to one fixed URL whatever the request
//! (ingress-nginx's `permanent-redirect` and `temporal-redirect`).

use http::StatusCode;
use http::header::{HeaderMap, HeaderValue, LOCATION};

use super::{Answer, Filter, Phases, RequestHead};

/// Answers every request with `status` and `Location: location`, unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnRedirect {
    pub status: StatusCode,
    pub location: HeaderValue,
}

impl Filter for ReturnRedirect {
    fn request(&self, _req: &RequestHead<'_>) -> Option<Answer> {
        let mut headers = HeaderMap::new();
        headers.insert(LOCATION, self.location.clone());
        Some(Answer::Status {
            status: self.status,
            headers,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }
}
