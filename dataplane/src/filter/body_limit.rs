//! The request body limit (`proxy-body-size`, `--max-body-size`): a declared length
//! over it is refused before anything is sent; a body that grows over it while it
//! streams is cut by the request body itself (`body.rs`).

use http::header::CONTENT_LENGTH;

use super::{Answer, Filter, Phases, RequestHead};

#[derive(Debug)]
pub struct BodyLimit(pub u64);

impl Filter for BodyLimit {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        let declared: u64 = req.headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()?;
        (declared > self.0).then_some(Answer::PayloadTooLarge(self.0))
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }
}
