pub mod compile;
pub mod snapshot;
