//! What both Floe tiers must agree on: the wire error shape, ETags, identifiers
//! and the one function every response body is serialized through.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod etag;
pub mod events;
pub mod expiring;
#[doc(hidden)]
pub mod fuzzing;
pub mod json;
pub mod metrics;
pub mod pool;
pub mod route;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod token;
pub mod wire;

pub use error::{ErrorModel, IcebergErrorResponse};
