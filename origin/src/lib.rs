//! Floe origin: the Iceberg REST catalog tier.
//!
//! A request's path reads in three places: [`http`] (extract and forward),
//! [`catalog`] (validate and decide), [`store`] (one statement per write).
#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod config;
pub mod delegation;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod management;
pub mod metrics;
pub mod planning;
pub mod principals;
pub mod server;
pub mod storage;
pub mod store;
pub mod warehouse;
pub mod wire;
