#![forbid(unsafe_code)]

pub mod compile;
pub mod crd;
pub mod file;
pub mod gateway_api;
pub mod k8s;
pub mod migrate;
pub mod model;
pub mod snapshot;
pub mod status;
