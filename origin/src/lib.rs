//! Floe origin: the Iceberg REST catalog tier.
//!
//! A request's path reads in three files: [`routes`] (extract and forward),
//! [`catalog`] (validate and decide), [`store`] (one statement per write).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod delegation;
pub mod error;
pub mod events;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod idempotency;
pub mod management;
pub mod metrics;
pub mod planning;
pub mod principals;
pub mod routes;
pub mod server;
pub mod storage;
pub mod store;
pub mod warehouse;
pub mod wire;

pub use catalog::view_update; // moved: crate::catalog::view_update
pub use catalog::views; // moved: crate::catalog::views
