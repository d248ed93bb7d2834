//! The origin's HTTP surface: everything between a request's bytes and a
//! call into the [`crate::catalog`], and back.
//!
//! Read it in the order a request travels. [`app`] (in `routes/`) builds the
//! router from the route grammar and puts the layers in front of every
//! handler, outermost first: `layers` (the whole body read, the request
//! counted and timed, a 503 while the database is down), `auth` (who is
//! calling and whether they may), `idempotency` (a keyed mutation runs at
//! most once). Then a handler in `routes/` by concern reads what it needs
//! through `extract` (names, bodies, query parameters, paging, what the
//! caller may see) and shapes its answer through `respond` (JSON, ETags,
//! cache headers). [`AppState`] (`state`) is what all of them share.
//!
//! Dependencies point one way: `routes` imports the rest, and nothing here
//! imports from `routes`.

mod auth;
pub(crate) mod extract;
mod idempotency;
mod layers;
mod respond;
mod routes;
mod state;

pub use auth::OriginAuth;
pub use routes::app;
pub use state::{AppParts, AppState};
