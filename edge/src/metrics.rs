//! Prometheus metrics of the edge, in a registry of its own.
//!
//! Every label value comes from a closed set, never from a request as sent:
//! methods outside the standard ones are counted as `OTHER`, routes are the
//! patterns [`crate::cache::classify`] names. A client choosing methods or
//! paths cannot add series.

use std::sync::Arc;

use floe_shared::metrics::RequestMetrics;
use pingora::lb::LoadBalancer;
use pingora::lb::selection::RoundRobin;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::cache::TableCache;

/// The edge's metrics.
#[derive(Clone)]
pub struct EdgeMetrics {
    registry: Registry,
    http: RequestMetrics,
    upstream: HistogramVec,
    cache: IntCounterVec,
    evictions: IntCounter,
    cache_bytes: IntGauge,
    generation_slots: IntGauge,
    generation_slots_used: IntGauge,
    invalidations: IntCounterVec,
    stream_up: IntGauge,
    reconnects: IntCounter,
    origin_healthy: IntGaugeVec,
    auth: IntCounterVec,
    /// Children of the vectors above that every cache hit counts, resolved once.
    hot: Hot,
    /// Buffer pool metric families (token pool).
    pub pools: floe_shared::pool::PoolMetrics,
}

#[derive(Clone)]
struct Hot {
    cache_hit: IntCounter,
    cache_not_modified: IntCounter,
    auth_ok: IntCounter,
}

const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl EdgeMetrics {
    /// Counts an authentication outcome.
    pub fn auth(&self, stage: &str, result: &str) {
        if stage == "request" && result == "ok" {
            self.hot.auth_ok.inc();
        } else {
            self.auth.with_label_values(&[stage, result]).inc();
        }
    }

    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<HistogramVec> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let origin_healthy = IntGaugeVec::new(
            Opts::new(
                "floe_edge_origin_healthy",
                "1 when the origin passes its health check",
            ),
            &["origin"],
        )?;
        registry.register(Box::new(origin_healthy.clone()))?;
        let auth = counter_vec(
            "floe_edge_auth_total",
            "Authentication outcomes: stage request (verification) or token (issuance)",
            &["stage", "result"],
        )?;
        let cache = counter_vec(
            "floe_edge_cache_requests_total",
            "Table loads by cache result (hit, not_modified, miss, coalesced, stale, bypass)",
            &["result"],
        )?;
        let hot = Hot {
            cache_hit: cache.get_metric_with_label_values(&["hit"])?,
            cache_not_modified: cache.get_metric_with_label_values(&["not_modified"])?,
            auth_ok: auth.get_metric_with_label_values(&["request", "ok"])?,
        };
        Ok(Self {
            auth,
            hot,
            http: RequestMetrics::register(&registry, "floe_edge", BUCKETS)?,
            upstream: histogram(
                "floe_edge_upstream_duration_seconds",
                "Time to the origin's response header",
                &["route"],
            )?,
            cache,
            evictions: counter(
                "floe_edge_cache_evictions_total",
                "Entries evicted by the cache policy",
            )?,
            cache_bytes: gauge(
                "floe_edge_cache_bytes",
                "Approximate bytes held by cached entries (bodies, keys, heads)",
            )?,
            generation_slots: gauge(
                "floe_edge_cache_generation_slots",
                "Counters invalidations are tracked in (fixed: names never add any)",
            )?,
            generation_slots_used: gauge(
                "floe_edge_cache_generation_slots_used",
                "Generation counters bumped at least once",
            )?,
            invalidations: counter_vec(
                "floe_edge_invalidations_total",
                "Cache invalidations by source (local write, origin event)",
                &["source"],
            )?,
            stream_up: gauge(
                "floe_edge_event_stream_up",
                "1 while subscribed to an origin's change events",
            )?,
            reconnects: counter(
                "floe_edge_event_stream_reconnects_total",
                "Event stream losses",
            )?,
            origin_healthy,
            pools: floe_shared::pool::PoolMetrics::register(&registry)?,
            registry,
        })
    }

    /// One finished request (see [`RequestMetrics::record`]).
    pub fn request(&self, method: &str, route: &str, status: &str, seconds: f64) {
        self.http.record(method, route, status, seconds);
    }

    /// Time to an origin's response header.
    pub fn upstream(&self, route: &str, seconds: f64) {
        self.upstream.with_label_values(&[route]).observe(seconds);
    }

    /// A table load's cache result.
    pub fn cache(&self, result: &str) {
        self.cache.with_label_values(&[result]).inc();
    }

    /// A fresh hit (the hot path: no label lookup).
    pub fn cache_hit(&self) {
        self.hot.cache_hit.inc();
    }

    /// A 304 from the cache.
    pub fn cache_not_modified(&self) {
        self.hot.cache_not_modified.inc();
    }

    /// Loads answered from the cache with a body, with 304, and not at all.
    pub fn cache_counts(&self) -> (u64, u64, u64) {
        (
            self.hot.cache_hit.get(),
            self.hot.cache_not_modified.get(),
            self.cache.with_label_values(&["miss"]).get(),
        )
    }

    /// Whether the event stream is up, and how often it was lost.
    pub fn stream_state(&self) -> (bool, u64) {
        (self.stream_up.get() == 1, self.reconnects.get())
    }

    /// An invalidation.
    pub fn invalidation(&self, source: &str) {
        self.invalidations.with_label_values(&[source]).inc();
    }

    /// Event stream state.
    pub fn stream(&self, up: bool) {
        self.stream_up.set(i64::from(up));
        if !up {
            self.reconnects.inc();
        }
    }

    /// Text exposition, with gauges read now.
    pub fn render(&self, cache: &TableCache, lb: &Arc<LoadBalancer<RoundRobin>>) -> Vec<u8> {
        let evicted = cache
            .counters
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed);
        self.evictions
            .inc_by(evicted.saturating_sub(self.evictions.get()));
        self.cache_bytes.set(
            cache
                .counters
                .bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        self.generation_slots
            .set(i64::try_from(cache.generation_slots()).unwrap_or(i64::MAX));
        self.generation_slots_used
            .set(i64::try_from(cache.generation_slots_used()).unwrap_or(i64::MAX));
        for backend in lb.backends().get_backend().iter() {
            let healthy = lb.backends().ready(backend);
            self.origin_healthy
                .with_label_values(&[backend.addr.to_string().as_str()])
                .set(i64::from(healthy));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}
