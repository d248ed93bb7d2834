//! Floe edge: the endpoint clients hit, on Cloudflare's Pingora.
//!
//! [`proxy`] holds the request path (Pingora's phases: forwarding, retries,
//! answers), [`cache`] the table-load cache and its rules, [`auth`] the
//! edge's authentication, [`events`] the subscription to the origins'
//! change events, [`server`] the assembly.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod console;
pub mod events;
pub mod metrics;
pub mod proxy;
pub mod server;
