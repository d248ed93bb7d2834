//! The edge's answer to `GET /management/v1/cluster` (see
//! [`floe_shared::cluster`]): itself, and each origin it balances over with
//! that origin's own report.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use floe_shared::cluster::{CacheStatus, ClusterStatus, EdgeStatus, OriginStatus, StreamStatus};
use floe_shared::route::Resource;
use pingora::lb::LoadBalancer;
use pingora::lb::selection::RoundRobin;

use crate::cache::TableCache;
use crate::metrics::EdgeMetrics;

/// How long an origin may take to give its own report.
const ORIGIN_WAIT: Duration = Duration::from_secs(2);

/// What the edge needs to report on itself and its origins.
pub struct Reporter {
    lb: Arc<LoadBalancer<RoundRobin>>,
    cache: Arc<TableCache>,
    metrics: EdgeMetrics,
    started: Instant,
    client: reqwest::Client,
}

impl Reporter {
    /// A reporter for the edge serving from `cache` over `lb`.
    pub fn new(
        lb: Arc<LoadBalancer<RoundRobin>>,
        cache: Arc<TableCache>,
        metrics: EdgeMetrics,
    ) -> Self {
        Self {
            lb,
            cache,
            metrics,
            started: Instant::now(),
            client: reqwest::Client::builder()
                .timeout(ORIGIN_WAIT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The report; each origin's own part is asked with `authorization`, the
    /// caller's credential, so the origin authorizes the caller again.
    pub async fn report(&self, authorization: Option<&str>) -> ClusterStatus {
        let (hits, not_modified, misses) = self.metrics.cache_counts();
        let (up, reconnects) = self.metrics.stream_state();
        let counter = |value: i64| u64::try_from(value).unwrap_or(0);
        let edge = EdgeStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
            event_stream: StreamStatus { up, reconnects },
            cache: CacheStatus {
                enabled: self.cache.enabled(),
                entries: counter(self.cache.counters.entries.load(Ordering::Relaxed)),
                bytes: counter(self.cache.counters.bytes.load(Ordering::Relaxed)),
                hits,
                not_modified,
                misses,
                hit_ratio: CacheStatus::ratio(hits, not_modified, misses),
            },
        };
        let mut asked = Vec::new();
        let mut backends: Vec<_> = self.lb.backends().get_backend().iter().cloned().collect();
        backends.sort_by_key(|b| b.addr.to_string());
        for backend in backends {
            let address = backend.addr.to_string();
            let healthy = self.lb.backends().ready(&backend);
            let mut request = self
                .client
                .get(format!("http://{address}{}", Resource::Cluster.pattern()));
            if let Some(authorization) = authorization {
                request = request.header(http::header::AUTHORIZATION, authorization);
            }
            let own = tokio::spawn(origin_report(request));
            asked.push((address, healthy, own));
        }
        let mut origins = Vec::with_capacity(asked.len());
        for (address, healthy, own) in asked {
            let mut status = match own.await {
                Ok(Ok(status)) => status,
                Ok(Err(error)) => OriginStatus {
                    error: Some(error.to_string()),
                    ..OriginStatus::default()
                },
                Err(error) => OriginStatus {
                    error: Some(error.to_string()),
                    ..OriginStatus::default()
                },
            };
            status.address = Some(address);
            status.healthy = Some(healthy);
            origins.push(status);
        }
        ClusterStatus {
            edges: vec![edge],
            origins,
        }
    }
}

/// Why the edge has no report of an origin's own.
#[derive(Debug, thiserror::Error)]
enum Unreported {
    #[error("no answer within {} s", ORIGIN_WAIT.as_secs())]
    Timeout,
    #[error("unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("answered {0}")]
    Refused(reqwest::StatusCode),
    #[error("unreadable report: {0}")]
    Unreadable(#[source] reqwest::Error),
    #[error("an empty report")]
    Empty,
}

/// One origin's report of itself, or why there is none.
async fn origin_report(request: reqwest::RequestBuilder) -> Result<OriginStatus, Unreported> {
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            Unreported::Timeout
        } else {
            Unreported::Unreachable(e)
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Unreported::Refused(status));
    }
    let report: ClusterStatus = response.json().await.map_err(Unreported::Unreadable)?;
    report.origins.into_iter().next().ok_or(Unreported::Empty)
}
