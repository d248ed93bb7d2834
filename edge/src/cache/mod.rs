//! The table-load cache: what it holds, and the rules of what goes in and
//! comes out. The proxy's phases ([`crate::proxy`]) call it; nothing here
//! knows Pingora's phases.
//!
//! Read it in the order a load travels:
//!
//! - [`rules`]: the cacheability rules in one place, pure functions: what a
//!   request means to the cache (a load, a write and what it invalidates),
//!   whether a load bypasses the cache, how fresh an entry is, whether a
//!   response may be stored (`private`, `no-store`, status, `ETag`), what a
//!   change event invalidates.
//! - [`key`]: the table a route names (from the route grammar) and the key
//!   of one response variant of it.
//! - [`store`]: the entries, bounded by bytes (TinyUFO), each with the heads
//!   its hits are answered with; the counters behind the byte and eviction
//!   metrics.
//! - [`generations`]: invalidation by generation, in a fixed array of
//!   counters, so a write never has to find entries.
//! - [`fill`]: a miss becoming an entry: coalescing of concurrent misses
//!   into one origin request, and capture of its response.

pub mod fill;
pub mod generations;
pub mod key;
pub mod rules;
pub mod store;

pub(crate) use fill::{Fill, Found, Progress};
pub use fill::{Flight, FlightGuard};
pub use generations::{DEFAULT_GENERATION_SLOTS, Generations};
pub use key::{TableRef, variant_key};
pub use rules::{Invalidation, Kind, classify};
pub use store::{CacheCounters, Entry, Lookup, TableCache};

/// Header that tells how the edge answered a table load (`hit`, `miss`,
/// `stale`).
pub const CACHE_HEADER: &str = "x-floe-cache";
