//! Prometheus metrics of the origin, in a registry of its own.
//!
//! Label values come from closed sets: routes are axum's matched patterns
//! (or `unmatched`), methods outside the ones HTTP defines are `OTHER`. A
//! client choosing methods or paths cannot add series.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use floe_shared::metrics::RequestMetrics;
use floe_shared::pool::PoolMetrics;

use crate::store::Store;

/// The origin's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    http: RequestMetrics,
    commits: IntCounterVec,
    commit_retries: IntCounter,
    commit_groups: Histogram,
    pool: IntGaugeVec,
    pool_max: IntGauge,
    buffer_pools: PoolMetrics,
}

fn must<T>(result: prometheus::Result<T>) -> T {
    // Metric definitions are static; a failure here is a programming error
    // caught by the first test that builds the app.
    match result {
        Ok(v) => v,
        Err(e) => panic!("invalid metric definition: {e}"),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let http = must(RequestMetrics::register(
            &registry,
            "floe_origin",
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        ));
        let commits = must(IntCounterVec::new(
            Opts::new(
                "floe_origin_commits_total",
                "Table commits by outcome (committed, conflict, rejected, error)",
            ),
            &["outcome"],
        ));
        let commit_retries = must(IntCounter::new(
            "floe_origin_commit_retries_total",
            "Server-side commit retries after losing a compare-and-set race",
        ));
        let commit_groups = must(Histogram::with_opts(
            HistogramOpts::new(
                "floe_origin_commit_group_size",
                "Commits to one table applied together as one new version (group commit)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        ));
        let pool = must(IntGaugeVec::new(
            Opts::new(
                "floe_origin_db_pool_connections",
                "Database pool connections by state",
            ),
            &["state"],
        ));
        let pool_max = must(IntGauge::new(
            "floe_origin_db_pool_max_connections",
            "Connections the database pool may open (database.max_connections)",
        ));
        for collector in [
            Box::new(commits.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(commit_retries.clone()),
            Box::new(commit_groups.clone()),
            Box::new(pool.clone()),
            Box::new(pool_max.clone()),
        ] {
            must(registry.register(collector));
        }
        let buffer_pools = must(PoolMetrics::register(&registry));
        Self {
            buffer_pools,
            registry,
            http,
            commits,
            commit_retries,
            commit_groups,
            pool,
            pool_max,
        }
    }

    /// Records one finished request (see [`RequestMetrics::record`]).
    pub fn request(&self, method: &str, route: &str, status: &str, seconds: f64) {
        self.http.record(method, route, status, seconds);
    }

    /// Metric families of the buffer pools.
    pub fn buffer_pools(&self) -> &PoolMetrics {
        &self.buffer_pools
    }

    /// Counts a commit outcome.
    pub fn commit(&self, outcome: &str) {
        self.commits.with_label_values(&[outcome]).inc();
    }

    /// Records the size of a group of commits applied together.
    pub fn commit_group(&self, members: usize) {
        #[allow(clippy::cast_precision_loss, reason = "group sizes are small")]
        self.commit_groups.observe(members as f64);
    }

    /// Counts a server-side commit retry.
    pub fn commit_retry(&self) {
        self.commit_retries.inc();
    }

    /// Sets the database pool gauges: `size` connections open, `idle` of
    /// them idle, at most `max`.
    fn pool_state(&self, size: u32, idle: usize, max: u32) {
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        self.pool.with_label_values(&["open"]).set(i64::from(size));
        self.pool.with_label_values(&["idle"]).set(idle);
        self.pool
            .with_label_values(&["in_use"])
            .set(i64::from(size).saturating_sub(idle).max(0));
        self.pool_max.set(i64::from(max));
    }

    /// The text exposition, with pool gauges read now.
    pub fn render(&self, store: &Store) -> String {
        let (size, idle) = store.pool_stats();
        self.pool_state(size, idle, store.pool_max_connections());
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(metrics: &Metrics, name: &str, state: Option<&str>) -> f64 {
        let families = metrics.registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} not registered"));
        family
            .get_metric()
            .iter()
            .find(|m| match state {
                Some(state) => m
                    .get_label()
                    .iter()
                    .any(|l| l.name() == "state" && l.value() == state),
                None => true,
            })
            .map_or_else(
                || panic!("{name} {state:?} has no sample"),
                |m| m.get_gauge().get_value(),
            )
    }

    #[test]
    fn pool_gauges_report_use_against_the_maximum() {
        let metrics = Metrics::new();
        metrics.pool_state(7, 2, 32);
        assert_eq!(
            gauge(&metrics, "floe_origin_db_pool_connections", Some("open")),
            7.0
        );
        assert_eq!(
            gauge(&metrics, "floe_origin_db_pool_connections", Some("idle")),
            2.0
        );
        assert_eq!(
            gauge(&metrics, "floe_origin_db_pool_connections", Some("in_use")),
            5.0
        );
        assert_eq!(
            gauge(&metrics, "floe_origin_db_pool_max_connections", None),
            32.0
        );
        // A pool read between its size and idle counts never reports negative use.
        metrics.pool_state(1, 3, 32);
        assert_eq!(
            gauge(&metrics, "floe_origin_db_pool_connections", Some("in_use")),
            0.0
        );
    }
}
