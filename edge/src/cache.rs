//! The table-load cache: bounded by bytes, scan resistant (TinyUFO), with
//! generation-based invalidation and coalescing of concurrent misses.
//!
//! Invalidation never has to find entries: every entry remembers the
//! generations (global, warehouse, table) current when its request started,
//! and an invalidation bumps a generation. A lookup whose entry carries an
//! old generation is a miss, and a response whose request started before an
//! invalidation is not stored. So a write invalidates every variant of a
//! table (snapshot modes, delegation) at once, and a load racing a commit
//! cannot put the old metadata back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::http::ResponseHeader;
use tinyufo::TinyUfo;

use crate::proxy::CACHE_HEADER;
use tokio::sync::watch;

/// Generations an entry was filled under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generations {
    global: u64,
    warehouse: u64,
    table: u64,
}

/// Which table a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Warehouse prefix as the client sent it; empty for unprefixed routes.
    pub warehouse: String,
    /// Namespace levels joined by 0x1F.
    pub namespace: String,
    /// Table name.
    pub table: String,
}

impl TableRef {
    fn write_id(&self, out: &mut String) {
        out.push_str(&self.warehouse);
        out.push('\u{1e}');
        out.push_str(&self.namespace);
        out.push('\u{1e}');
        out.push_str(&self.table);
    }

    /// The same table reached without a prefix (the default warehouse).
    fn unprefixed(&self) -> TableRef {
        TableRef {
            warehouse: String::new(),
            ..self.clone()
        }
    }
}

/// A cached response.
#[derive(Debug)]
pub struct Entry {
    /// Full cache key (TinyUFO keeps only a hash; a collision must not serve the wrong table).
    pub key: String,
    /// Generations at fill time.
    pub generations: Generations,
    /// `ETag` of the response.
    pub etag: String,
    /// `Content-Type` of the response.
    pub content_type: String,
    /// The body, shared with every response that serves it.
    pub body: Bytes,
    /// When it was stored.
    pub stored: Instant,
    /// The head of a fresh hit, built once: serving clones it.
    pub hit_head: ResponseHeader,
    /// The head of a 304 from a fresh hit.
    pub not_modified_head: ResponseHeader,
}

impl Entry {
    /// An entry of `body`, with the head its hits are answered with.
    pub fn new(
        key: String,
        generations: Generations,
        etag: String,
        content_type: String,
        body: Bytes,
    ) -> pingora::Result<Self> {
        let mut hit_head = ResponseHeader::build(200, Some(4))?;
        hit_head.insert_header(http::header::CONTENT_TYPE, content_type.as_str())?;
        hit_head.insert_header(http::header::ETAG, etag.as_str())?;
        hit_head.insert_header(CACHE_HEADER, "hit")?;
        hit_head.set_content_length(body.len())?;
        let mut not_modified_head = ResponseHeader::build(304, Some(2))?;
        not_modified_head.insert_header(http::header::ETAG, etag.as_str())?;
        not_modified_head.insert_header(CACHE_HEADER, "hit")?;
        Ok(Self {
            key,
            generations,
            etag,
            content_type,
            body,
            stored: Instant::now(),
            hit_head,
            not_modified_head,
        })
    }
}

/// Result of a lookup.
pub enum Lookup {
    /// Valid and younger than the maximum age.
    Fresh(Arc<Entry>),
    /// Not servable now, but may be served if no origin answers.
    Stale(Arc<Entry>),
    /// Nothing usable.
    Miss,
}

/// The role of a request for a missing key.
pub enum Flight {
    /// Go to the origin; dropping the guard wakes the followers.
    Leader(FlightGuard),
    /// Another request is fetching; wait on this, then look again.
    Follower(watch::Receiver<()>),
}

/// Held by the request that fills a key.
pub struct FlightGuard {
    key: String,
    flights: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
    _tx: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.flights.lock() {
            flights.remove(&self.key);
        }
        // Dropping the sender wakes every follower.
    }
}

/// Counters the cache keeps for metrics.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Entries evicted by the admission/eviction policy.
    pub evictions: AtomicU64,
    /// Approximate bytes held.
    pub bytes: AtomicI64,
}

/// The cache.
pub struct TableCache {
    store: TinyUfo<String, Arc<Entry>>,
    global: AtomicU64,
    warehouses: RwLock<HashMap<String, u64>>,
    tables: RwLock<HashMap<TableRef, u64>>,
    flights: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
    enabled: AtomicBool,
    max_age: Duration,
    stale_for: Duration,
    max_entry_bytes: usize,
    /// Metrics.
    pub counters: CacheCounters,
}

impl TableCache {
    /// A cache of at most `max_bytes` of bodies.
    pub fn new(
        max_bytes: usize,
        max_entry_bytes: usize,
        max_age: Duration,
        stale_for: Duration,
    ) -> Self {
        let kib = (max_bytes / 1024).max(1);
        Self {
            // Weights are KiB; assume entries of ~16 KiB for the sketch size.
            store: TinyUfo::new(kib, (kib / 16).max(64)),
            global: AtomicU64::new(0),
            warehouses: RwLock::new(HashMap::new()),
            tables: RwLock::new(HashMap::new()),
            flights: Arc::new(Mutex::new(HashMap::new())),
            enabled: AtomicBool::new(true),
            max_age,
            stale_for,
            max_entry_bytes,
            counters: CacheCounters::default(),
        }
    }

    /// The cache key of one response variant of a table.
    pub fn key(table: &TableRef, variant: &str) -> String {
        let mut key = String::with_capacity(
            table.warehouse.len() + table.namespace.len() + table.table.len() + variant.len() + 3,
        );
        table.write_id(&mut key);
        key.push('\u{1d}');
        key.push_str(variant);
        key
    }

    /// Current generations for `table`.
    pub fn generations(&self, table: &TableRef) -> Generations {
        Generations {
            global: self.global.load(Ordering::Acquire),
            warehouse: self
                .warehouses
                .read()
                .ok()
                .and_then(|m| m.get(&table.warehouse).copied())
                .unwrap_or(0),
            table: self
                .tables
                .read()
                .ok()
                .and_then(|m| m.get(table).copied())
                .unwrap_or(0),
        }
    }

    /// Looks up `key` of `table`.
    // TinyUFO takes `&K`: a `&str` would cost the hit path a copy of the key.
    #[allow(clippy::ptr_arg)]
    pub fn lookup(&self, key: &String, table: &TableRef) -> Lookup {
        let Some(entry) = self.store.get(key) else {
            return Lookup::Miss;
        };
        if entry.key != *key {
            return Lookup::Miss;
        }
        let age = entry.stored.elapsed();
        if entry.generations != self.generations(table) {
            return Lookup::Miss;
        }
        if !self.enabled.load(Ordering::Acquire) || age > self.max_age {
            return if age <= self.stale_for {
                Lookup::Stale(entry)
            } else {
                Lookup::Miss
            };
        }
        Lookup::Fresh(entry)
    }

    /// Whether a body of `len` bytes may be cached.
    pub fn admits(&self, len: usize) -> bool {
        self.enabled.load(Ordering::Acquire) && len <= self.max_entry_bytes
    }

    /// Stores a response whose request started under `generations`; refused
    /// when an invalidation happened since.
    pub fn store(&self, table: &TableRef, entry: Entry) -> bool {
        if !self.admits(entry.body.len()) || entry.generations != self.generations(table) {
            return false;
        }
        let weight = entry.body.len().div_ceil(1024).clamp(1, u16::MAX as usize) as u16;
        let key = entry.key.clone();
        let evicted = self.store.force_put(key, Arc::new(entry), weight);
        self.counters
            .bytes
            .fetch_add(i64::from(weight) * 1024, Ordering::Relaxed);
        for kv in evicted {
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_sub(i64::from(kv.weight) * 1024, Ordering::Relaxed);
        }
        true
    }

    /// Invalidates every variant of a table (with and without its prefix).
    pub fn invalidate_table(&self, table: &TableRef) {
        if let Ok(mut tables) = self.tables.write() {
            for t in [table.clone(), table.unprefixed()] {
                *tables.entry(t).or_insert(0) += 1;
            }
        }
    }

    /// Invalidates every table of a warehouse (and the unprefixed routes).
    pub fn invalidate_warehouse(&self, warehouse: &str) {
        if let Ok(mut warehouses) = self.warehouses.write() {
            for w in [warehouse, ""] {
                *warehouses.entry(w.to_string()).or_insert(0) += 1;
            }
        }
    }

    /// Invalidates everything.
    pub fn flush(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
    }

    /// Turns fresh serving on or off (off while the event stream is down).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
    }

    /// Whether entries are served fresh.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Joins the request already filling `key`, or becomes the one that does.
    pub fn flight(&self, key: &str) -> Flight {
        let Ok(mut flights) = self.flights.lock() else {
            let (tx, _) = watch::channel(());
            return Flight::Leader(FlightGuard {
                key: key.to_string(),
                flights: self.flights.clone(),
                _tx: tx,
            });
        };
        if let Some(rx) = flights.get(key) {
            return Flight::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        flights.insert(key.to_string(), rx);
        Flight::Leader(FlightGuard {
            key: key.to_string(),
            flights: self.flights.clone(),
            _tx: tx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(w: &str, t: &str) -> TableRef {
        TableRef {
            warehouse: w.into(),
            namespace: "ns".into(),
            table: t.into(),
        }
    }

    fn cache() -> TableCache {
        TableCache::new(
            1 << 20,
            1 << 19,
            Duration::from_secs(60),
            Duration::from_secs(300),
        )
    }

    fn entry(cache: &TableCache, t: &TableRef, variant: &str, body: &'static [u8]) -> Entry {
        Entry::new(
            TableCache::key(t, variant),
            cache.generations(t),
            "\"e\"".into(),
            "application/json".into(),
            Bytes::from_static(body),
        )
        .expect("valid head")
    }

    #[test]
    fn stored_entries_are_served_until_invalidated() {
        let c = cache();
        let t = table("w", "t");
        assert!(c.store(&t, entry(&c, &t, "all", b"{}")));
        assert!(c.store(&t, entry(&c, &t, "refs", b"{}")));
        assert!(matches!(
            c.lookup(&TableCache::key(&t, "all"), &t),
            Lookup::Fresh(_)
        ));
        c.invalidate_table(&t);
        assert!(matches!(
            c.lookup(&TableCache::key(&t, "all"), &t),
            Lookup::Miss
        ));
        assert!(
            matches!(c.lookup(&TableCache::key(&t, "refs"), &t), Lookup::Miss),
            "every variant"
        );
    }

    #[test]
    fn invalidating_a_prefixed_table_covers_the_unprefixed_route() {
        let c = cache();
        let bare = table("", "t");
        assert!(c.store(&bare, entry(&c, &bare, "all", b"{}")));
        c.invalidate_table(&table("default", "t"));
        assert!(matches!(
            c.lookup(&TableCache::key(&bare, "all"), &bare),
            Lookup::Miss
        ));
        let other = table("w", "u");
        assert!(c.store(&other, entry(&c, &other, "all", b"{}")));
        c.invalidate_warehouse("w");
        assert!(matches!(
            c.lookup(&TableCache::key(&other, "all"), &other),
            Lookup::Miss
        ));
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_stored() {
        let c = cache();
        let t = table("w", "t");
        let stale_fill = entry(&c, &t, "all", b"old");
        c.invalidate_table(&t);
        assert!(!c.store(&t, stale_fill));
        assert!(matches!(
            c.lookup(&TableCache::key(&t, "all"), &t),
            Lookup::Miss
        ));
    }

    #[test]
    fn disabled_cache_serves_only_stale_on_request() {
        let c = cache();
        let t = table("w", "t");
        assert!(c.store(&t, entry(&c, &t, "all", b"{}")));
        c.set_enabled(false);
        assert!(matches!(
            c.lookup(&TableCache::key(&t, "all"), &t),
            Lookup::Stale(_)
        ));
        c.set_enabled(true);
        c.flush();
        assert!(matches!(
            c.lookup(&TableCache::key(&t, "all"), &t),
            Lookup::Miss
        ));
    }

    #[test]
    fn oversized_bodies_are_not_admitted() {
        let c = TableCache::new(1 << 20, 4, Duration::from_secs(60), Duration::ZERO);
        let t = table("w", "t");
        assert!(!c.store(&t, entry(&c, &t, "all", b"too large")));
    }

    #[tokio::test]
    async fn one_leader_per_key_and_followers_wake() {
        let c = cache();
        let leader = match c.flight("k") {
            Flight::Leader(g) => g,
            Flight::Follower(_) => panic!("first is the leader"),
        };
        let mut follower = match c.flight("k") {
            Flight::Follower(rx) => rx,
            Flight::Leader(_) => panic!("second follows"),
        };
        drop(leader);
        assert!(
            follower.changed().await.is_err(),
            "woken when the leader finishes"
        );
        assert!(
            matches!(c.flight("k"), Flight::Leader(_)),
            "next miss leads again"
        );
    }
}
