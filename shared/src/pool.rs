//! Pools of reusable byte buffers: JSON serialization and token bytes.
//!
//! A pool keeps idle `Vec<u8>` buffers in size classes (powers of two from
//! `min_buffer_bytes` up to `max_buffer_bytes`), split into shards, one per
//! core (at most [`MAX_SHARDS`]). A thread borrows from and returns to its own
//! shard, so under contention threads touch different cache lines; a thread
//! whose shard is empty takes from another before it allocates. Each class of
//! a shard is a bounded lock-free queue and each shard keeps its own counters
//! and idle-byte account: no lock, and no shared atomic, on the fast path.
//!
//! A borrow returns a [`PooledBuf`] guard that gives the buffer back when
//! dropped, so a pooled buffer cannot leak; turned into [`Bytes`] it goes to
//! the HTTP layer without a copy and comes back once the body is written.
//!
//! The pool never blocks and never fails: an empty pool means a fresh
//! allocation (a miss); a buffer that is too large, or that would push its
//! shard over its share of `max_idle_bytes`, is dropped (a discard).

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

/// Upper bound of shards per pool.
pub const MAX_SHARDS: usize = 8;

/// Sizing of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolConfig {
    /// Capacity of the smallest size class, in bytes.
    pub min_buffer_bytes: usize,
    /// Largest buffer kept; larger ones are dropped when returned.
    pub max_buffer_bytes: usize,
    /// Upper bound of the bytes held by idle buffers (split evenly across shards).
    pub max_idle_bytes: usize,
    /// Idle buffers kept per size class and shard.
    pub buffers_per_class: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min_buffer_bytes: 4 * 1024,
            max_buffer_bytes: 8 * 1024 * 1024,
            max_idle_bytes: 10 * 1024 * 1024,
            buffers_per_class: 32,
        }
    }
}

impl PoolConfig {
    /// Small buffers for token bytes (random bytes, encoding, signing scratch).
    pub fn tokens() -> Self {
        Self {
            min_buffer_bytes: 512,
            max_buffer_bytes: 16 * 1024,
            max_idle_bytes: 1024 * 1024,
            buffers_per_class: 128,
        }
    }

    /// Checks that the sizes make sense.
    pub fn validate(&self) -> Result<(), PoolConfigError> {
        if self.min_buffer_bytes == 0 {
            return Err(PoolConfigError::ZeroMinimum);
        }
        if self.max_buffer_bytes < self.min_buffer_bytes {
            return Err(PoolConfigError::MaximumBelowMinimum);
        }
        if self.buffers_per_class == 0 {
            return Err(PoolConfigError::NoBuffers);
        }
        Ok(())
    }
}

/// Why a pool's sizes were refused (the text names the key, without its section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolConfigError {
    /// `min_buffer_bytes` is 0.
    #[error("min_buffer_bytes must be positive")]
    ZeroMinimum,
    /// `max_buffer_bytes` is below `min_buffer_bytes`.
    #[error("max_buffer_bytes must be at least min_buffer_bytes")]
    MaximumBelowMinimum,
    /// `buffers_per_class` is 0.
    #[error("buffers_per_class must be positive")]
    NoBuffers,
}

/// Counters of one shard, each on its own cache line with its queues.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    returns: AtomicU64,
    oversized: AtomicU64,
    undersized: AtomicU64,
    full: AtomicU64,
}

#[derive(Debug)]
struct Shard {
    classes: Vec<ArrayQueue<Vec<u8>>>,
    idle_bytes: AtomicUsize,
    counters: Counters,
}

#[derive(Debug)]
struct Inner {
    name: String,
    config: PoolConfig,
    class_sizes: Vec<usize>,
    shard_idle_cap: usize,
    shards: Vec<CachePadded<Shard>>,
}

/// A pool of byte buffers. Cheap to clone; clones share the buffers.
#[derive(Clone, Debug)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

/// A snapshot of a pool's counters, summed over its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Borrows served from an idle buffer.
    pub hits: u64,
    /// Borrows that allocated.
    pub misses: u64,
    /// Buffers kept on return.
    pub returns: u64,
    /// Buffers dropped on return: larger than the largest class.
    pub discarded_oversized: u64,
    /// Buffers dropped on return: shrunk below the smallest class.
    pub discarded_undersized: u64,
    /// Buffers dropped on return: idle cap or class queue full.
    pub discarded_full: u64,
    /// Bytes held by idle buffers.
    pub idle_bytes: u64,
    /// Buffers borrowed now.
    pub in_use: u64,
}

thread_local! {
    static SHARD_SEED: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT_SHARD_SEED: AtomicUsize = AtomicUsize::new(0);

/// This thread's shard index among `n`: threads are dealt out round-robin.
fn shard_index(n: usize) -> usize {
    SHARD_SEED.with(|seed| {
        let mut s = seed.get();
        if s == usize::MAX {
            s = NEXT_SHARD_SEED.fetch_add(1, Ordering::Relaxed);
            seed.set(s);
        }
        s % n
    })
}

impl BufferPool {
    /// A pool named `name` (the `pool` label of its metrics), reported by `metrics`.
    pub fn new(name: &str, config: PoolConfig, metrics: &PoolMetrics) -> Self {
        let mut class_sizes = Vec::new();
        let mut size = config.min_buffer_bytes.max(1);
        while size <= config.max_buffer_bytes {
            class_sizes.push(size);
            size = size.saturating_mul(2);
        }
        if class_sizes.is_empty() {
            class_sizes.push(config.max_buffer_bytes.max(1));
        }
        let shard_count = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .clamp(1, MAX_SHARDS);
        let shards = (0..shard_count)
            .map(|_| {
                CachePadded::new(Shard {
                    classes: class_sizes
                        .iter()
                        .map(|_| ArrayQueue::new(config.buffers_per_class.max(1)))
                        .collect(),
                    idle_bytes: AtomicUsize::new(0),
                    counters: Counters::default(),
                })
            })
            .collect();
        let inner = Arc::new(Inner {
            name: name.to_string(),
            shard_idle_cap: config.max_idle_bytes / shard_count,
            config,
            class_sizes,
            shards,
        });
        metrics.track(&inner);
        Self { inner }
    }

    /// A buffer with at least `min_capacity` bytes of capacity, empty.
    pub fn borrow(&self, min_capacity: usize) -> PooledBuf {
        let inner = &self.inner;
        let home = shard_index(inner.shards.len());
        let first = inner
            .class_sizes
            .iter()
            .position(|&size| size >= min_capacity);
        if let Some(first) = first {
            // Own shard first, then the others, before allocating.
            for offset in 0..inner.shards.len() {
                let shard = &inner.shards[(home + offset) % inner.shards.len()];
                for class in &shard.classes[first..] {
                    if let Some(buf) = class.pop() {
                        shard
                            .idle_bytes
                            .fetch_sub(buf.capacity(), Ordering::Relaxed);
                        inner.shards[home]
                            .counters
                            .hits
                            .fetch_add(1, Ordering::Relaxed);
                        return PooledBuf {
                            buf,
                            pool: Some(self.inner.clone()),
                        };
                    }
                }
            }
        }
        inner.shards[home]
            .counters
            .misses
            .fetch_add(1, Ordering::Relaxed);
        let capacity = first.map_or(min_capacity, |i| inner.class_sizes[i]);
        PooledBuf {
            buf: Vec::with_capacity(capacity),
            pool: Some(self.inner.clone()),
        }
    }

    /// Serializes `value` as JSON into a pooled buffer of at least `size_hint` bytes.
    pub fn json<T: Serialize + ?Sized>(
        &self,
        value: &T,
        size_hint: usize,
    ) -> Result<PooledBuf, serde_json::Error> {
        let mut buf = self.borrow(size_hint);
        serde_json::to_writer(&mut *buf, value)?;
        Ok(buf)
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }
}

impl Inner {
    fn stats(&self) -> PoolStats {
        let mut s = PoolStats::default();
        for shard in &self.shards {
            let c = &shard.counters;
            s.hits += c.hits.load(Ordering::Relaxed);
            s.misses += c.misses.load(Ordering::Relaxed);
            s.returns += c.returns.load(Ordering::Relaxed);
            s.discarded_oversized += c.oversized.load(Ordering::Relaxed);
            s.discarded_undersized += c.undersized.load(Ordering::Relaxed);
            s.discarded_full += c.full.load(Ordering::Relaxed);
            s.idle_bytes += shard.idle_bytes.load(Ordering::Relaxed) as u64;
        }
        let back = s.returns + s.discarded_oversized + s.discarded_undersized + s.discarded_full;
        s.in_use = (s.hits + s.misses).saturating_sub(back);
        s
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let shard = &self.shards[shard_index(self.shards.len())];
        let counters = &shard.counters;
        let capacity = buf.capacity();
        if capacity > self.config.max_buffer_bytes {
            counters.oversized.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The largest class this buffer can serve in full.
        let Some(class) = self.class_sizes.iter().rposition(|&size| size <= capacity) else {
            counters.undersized.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Reserve idle bytes first, so concurrent returns never overshoot the cap.
        let reserved =
            shard
                .idle_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |idle| {
                    let next = idle.checked_add(capacity)?;
                    (next <= self.shard_idle_cap).then_some(next)
                });
        if reserved.is_err() {
            counters.full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        buf.clear();
        match shard.classes[class].push(buf) {
            Ok(()) => {
                counters.returns.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                shard.idle_bytes.fetch_sub(capacity, Ordering::Relaxed);
                counters.full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The Prometheus face of every pool of a process: registered once, it
/// reads the pools' shard counters at scrape time (label `pool`).
#[derive(Clone, Debug)]
pub struct PoolMetrics {
    pools: Arc<Mutex<Vec<Weak<Inner>>>>,
    /// Shared: handles are cloned into request state, and a `Desc` is a
    /// dozen allocations.
    descs: Arc<[Desc]>,
}

const FAMILIES: &[(&str, &str)] = &[
    ("floe_pool_hits_total", "Borrows served by an idle buffer"),
    (
        "floe_pool_misses_total",
        "Borrows that allocated a new buffer",
    ),
    (
        "floe_pool_returns_total",
        "Buffers kept for reuse on return",
    ),
    (
        "floe_pool_discards_total",
        "Buffers dropped on return, by reason (oversized, undersized, full)",
    ),
    ("floe_pool_idle_bytes", "Bytes held by idle buffers"),
    (
        "floe_pool_buffers_in_use",
        "Buffers borrowed and not yet returned",
    ),
];

impl PoolMetrics {
    /// Creates the collector and registers it in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help)| {
                let labels = if name.contains("discards") {
                    vec!["pool".to_string(), "reason".to_string()]
                } else {
                    vec!["pool".to_string()]
                };
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    labels,
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        let metrics = Self {
            pools: Arc::new(Mutex::new(Vec::new())),
            descs: descs.into(),
        };
        registry.register(Box::new(metrics.clone()))?;
        Ok(metrics)
    }

    /// A collector no registry exposes (tests, tools).
    pub fn unregistered() -> Self {
        Self {
            pools: Arc::new(Mutex::new(Vec::new())),
            descs: Arc::new([]),
        }
    }

    fn track(&self, pool: &Arc<Inner>) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|p| p.strong_count() > 0);
            pools.push(Arc::downgrade(pool));
        }
    }

    fn families(&self) -> prometheus::Result<Vec<MetricFamily>> {
        let counter = |i: usize, labels: &[&str]| {
            IntCounterVec::new(Opts::new(FAMILIES[i].0, FAMILIES[i].1), labels)
        };
        let gauge = |i: usize| IntGaugeVec::new(Opts::new(FAMILIES[i].0, FAMILIES[i].1), &["pool"]);
        let (hits, misses, returns) = (
            counter(0, &["pool"])?,
            counter(1, &["pool"])?,
            counter(2, &["pool"])?,
        );
        let discards = counter(3, &["pool", "reason"])?;
        let (idle, in_use) = (gauge(4)?, gauge(5)?);
        let pools: Vec<Arc<Inner>> = match self.pools.lock() {
            Ok(pools) => pools.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => Vec::new(),
        };
        for pool in pools {
            let s = pool.stats();
            let name = pool.name.as_str();
            hits.with_label_values(&[name]).inc_by(s.hits);
            misses.with_label_values(&[name]).inc_by(s.misses);
            returns.with_label_values(&[name]).inc_by(s.returns);
            for (reason, n) in [
                ("oversized", s.discarded_oversized),
                ("undersized", s.discarded_undersized),
                ("full", s.discarded_full),
            ] {
                discards.with_label_values(&[name, reason]).inc_by(n);
            }
            idle.with_label_values(&[name]).set(s.idle_bytes as i64);
            in_use.with_label_values(&[name]).set(s.in_use as i64);
        }
        let mut out = Vec::new();
        for c in [&hits, &misses, &returns, &discards] {
            out.extend(c.collect());
        }
        for g in [&idle, &in_use] {
            out.extend(g.collect());
        }
        Ok(out)
    }
}

impl Collector for PoolMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families().unwrap_or_default()
    }
}

/// A borrowed buffer; returns to its pool when dropped.
#[derive(Debug)]
pub struct PooledBuf {
    buf: Vec<u8>,
    pool: Option<Arc<Inner>>,
}

impl PooledBuf {
    /// A buffer that belongs to no pool (dropped normally).
    pub fn unpooled(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            pool: None,
        }
    }

    /// Hands the buffer to the HTTP layer without copying: the buffer goes
    /// back to the pool when the last `Bytes` clone is dropped.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl Deref for PooledBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn pool(config: PoolConfig) -> BufferPool {
        BufferPool::new("test", config, &PoolMetrics::unregistered())
    }

    #[test]
    fn a_returned_buffer_is_handed_out_again() {
        let p = pool(PoolConfig::default());
        let mut a = p.borrow(100);
        a.extend_from_slice(b"hello");
        let ptr = a.as_ptr();
        drop(a);
        let b = p.borrow(100);
        assert_eq!(b.as_ptr(), ptr, "same allocation reused");
        assert!(b.is_empty(), "handed out cleared");
        let s = p.stats();
        assert_eq!((s.hits, s.misses, s.returns, s.in_use), (1, 1, 1, 1));
    }

    #[test]
    fn size_classes_serve_requests_at_least_as_large() {
        let p = pool(PoolConfig::default());
        let big = p.borrow(100_000);
        assert!(big.capacity() >= 100_000);
        drop(big);
        // A small request may take the larger idle buffer.
        let small = p.borrow(10);
        assert!(small.capacity() >= 100_000);
        assert_eq!(p.stats().hits, 1);
        drop(small);
        // A request above every class is a miss of exactly that size.
        let huge = p.borrow(9 * 1024 * 1024);
        assert!(huge.capacity() >= 9 * 1024 * 1024);
        assert_eq!(p.stats().misses, 2);
    }

    #[test]
    fn oversized_buffers_are_dropped_not_kept() {
        let p = pool(PoolConfig::default());
        let mut b = p.borrow(16);
        b.reserve(9 * 1024 * 1024);
        drop(b);
        let s = p.stats();
        assert_eq!(s.discarded_oversized, 1);
        assert_eq!(s.returns, 0);
        assert_eq!(s.idle_bytes, 0);
    }

    #[test]
    fn idle_bytes_never_exceed_the_cap() {
        let shards = p_shards();
        let config = PoolConfig {
            max_idle_bytes: 40 * 1024 * shards,
            ..PoolConfig::default()
        };
        let p = pool(config);
        // One thread returns to one shard: its share is 40 KiB.
        let held: Vec<PooledBuf> = (0..20).map(|_| p.borrow(16 * 1024)).collect();
        drop(held);
        let s = p.stats();
        assert!(s.idle_bytes <= 40 * 1024, "{s:?}");
        assert_eq!(s.returns, 2, "two 16 KiB buffers fit under 40 KiB");
        assert_eq!(s.discarded_full, 18);
        assert_eq!(s.in_use, 0);
        // From many threads at once the total still stays under the cap.
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let held: Vec<PooledBuf> = (0..10).map(|_| p.borrow(16 * 1024)).collect();
                    drop(held);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(p.stats().idle_bytes <= (40 * 1024 * shards) as u64);
    }

    fn p_shards() -> usize {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .clamp(1, MAX_SHARDS)
    }

    #[test]
    fn a_full_class_discards() {
        let config = PoolConfig {
            buffers_per_class: 2,
            ..PoolConfig::default()
        };
        let p = pool(config);
        let held: Vec<PooledBuf> = (0..5).map(|_| p.borrow(10)).collect();
        drop(held);
        let s = p.stats();
        assert_eq!(
            (s.returns, s.discarded_full),
            (2, 3),
            "one thread, one shard"
        );
    }

    #[test]
    fn bytes_handoff_returns_the_buffer_after_the_body_is_dropped() {
        let p = pool(PoolConfig::default());
        let buf = p.json(&serde_json::json!({"a": [1, 2, 3]}), 0).unwrap();
        let ptr = buf.as_ptr();
        let bytes = buf.into_bytes();
        assert_eq!(bytes.as_ptr(), ptr, "no copy");
        assert_eq!(&bytes[..], br#"{"a":[1,2,3]}"#);
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(p.stats().in_use, 1, "a clone still holds it");
        drop(clone);
        let s = p.stats();
        assert_eq!((s.in_use, s.returns), (0, 1));
    }

    #[test]
    fn concurrent_borrowers_never_share_a_buffer() {
        let p = pool(PoolConfig::default());
        let threads = 8;
        let rounds = 2_000;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..rounds {
                        let mut a = p.borrow(64);
                        let mut b = p.borrow(64);
                        assert_ne!(a.as_ptr(), b.as_ptr());
                        // Each borrower writes its own mark and must read it back intact.
                        let mark = format!("{t}:{i}");
                        a.extend_from_slice(mark.as_bytes());
                        b.extend_from_slice(mark.as_bytes());
                        std::thread::yield_now();
                        assert_eq!(&a[..], mark.as_bytes());
                        assert_eq!(&b[..], mark.as_bytes());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = p.stats();
        assert_eq!(s.in_use, 0);
        assert_eq!(s.hits + s.misses, (threads * rounds * 2) as u64);
        assert_eq!(
            s.returns + s.discarded_full + s.discarded_oversized + s.discarded_undersized,
            s.hits + s.misses,
            "every borrow came back: {s:?}"
        );
        assert!(s.hits > s.misses, "reuse dominates: {s:?}");
        // Buffers out at the same time are distinct allocations.
        let held: Vec<PooledBuf> = (0..64).map(|_| p.borrow(64)).collect();
        let distinct: HashSet<*const u8> = held.iter().map(|b| b.as_ptr()).collect();
        assert_eq!(distinct.len(), 64, "no buffer handed to two borrowers");
        drop(held);
        assert_eq!(p.stats().in_use, 0);
    }

    /// The registry's metrics in the text exposition format.
    fn exposition(registry: &Registry) -> String {
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn metrics_match_what_happened() {
        let registry = Registry::new();
        let metrics = PoolMetrics::register(&registry).unwrap();
        let p = BufferPool::new("json", PoolConfig::default(), &metrics);
        drop(p.borrow(10));
        drop(p.borrow(10));
        let text = exposition(&registry);
        assert!(
            text.contains("floe_pool_hits_total{pool=\"json\"} 1"),
            "{text}"
        );
        assert!(text.contains("floe_pool_misses_total{pool=\"json\"} 1"));
        assert!(text.contains("floe_pool_returns_total{pool=\"json\"} 2"));
        assert!(text.contains("floe_pool_buffers_in_use{pool=\"json\"} 0"));
        assert!(text.contains("floe_pool_idle_bytes{pool=\"json\"} 4096"));
        assert!(text.contains("floe_pool_discards_total{pool=\"json\",reason=\"full\"} 0"));
        let held = p.borrow(10);
        let text = exposition(&registry);
        assert!(
            text.contains("floe_pool_buffers_in_use{pool=\"json\"} 1"),
            "{text}"
        );
        drop(held);
    }

    #[test]
    fn invalid_configs_are_refused() {
        assert!(PoolConfig::default().validate().is_ok());
        let with = |config: PoolConfig| config.validate();
        assert_eq!(
            with(PoolConfig {
                min_buffer_bytes: 0,
                ..PoolConfig::default()
            }),
            Err(PoolConfigError::ZeroMinimum)
        );
        assert_eq!(
            with(PoolConfig {
                max_buffer_bytes: 1,
                ..PoolConfig::default()
            }),
            Err(PoolConfigError::MaximumBelowMinimum)
        );
        assert_eq!(
            with(PoolConfig {
                buffers_per_class: 0,
                ..PoolConfig::default()
            }),
            Err(PoolConfigError::NoBuffers)
        );
    }
}
