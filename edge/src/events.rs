//! Subscription to the origins' change events.
//!
//! Until the first `hello` of a stream (and whenever a stream is lost) the
//! cache serves nothing fresh: what changed meanwhile is unknown. On every
//! new subscription the whole cache is flushed, then each `change` frame
//! invalidates its table.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use floe_shared::events::{EVENTS_PATH, Frame, PING_INTERVAL_SECS};
use pingora::lb::LoadBalancer;
use pingora::lb::selection::RoundRobin;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::auth::EdgeAuth;
use crate::cache::{TableCache, rules};
use crate::metrics::EdgeMetrics;

/// Why a subscription ended. Only ever logged: whatever the reason, the
/// subscriber does the same (cache bypassed, resubscribe after a pause).
#[derive(Debug, thiserror::Error)]
enum StreamLost {
    #[error("no origin")]
    NoOrigin,
    #[error("cannot sign a service token")]
    NoServiceToken,
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("{0}: {1}")]
    Refused(String, reqwest::StatusCode),
    #[error("stream ended")]
    Ended,
    #[error("stream silent")]
    Silent,
    #[error("bad frame: {0}")]
    BadFrame(#[source] serde_json::Error),
}

/// The background task that keeps a subscription open.
pub struct Subscriber {
    lb: Arc<LoadBalancer<RoundRobin>>,
    cache: Arc<TableCache>,
    metrics: EdgeMetrics,
    reconnect: Duration,
    auth: Option<Arc<EdgeAuth>>,
}

impl Subscriber {
    /// A subscriber over the origins of `lb`.
    pub fn new(
        lb: Arc<LoadBalancer<RoundRobin>>,
        cache: Arc<TableCache>,
        metrics: EdgeMetrics,
        reconnect: Duration,
        auth: Option<Arc<EdgeAuth>>,
    ) -> Self {
        Self {
            lb,
            cache,
            metrics,
            reconnect,
            auth,
        }
    }

    /// Subscribes to one origin and applies its frames until the stream ends.
    async fn session(&self, client: &reqwest::Client) -> Result<(), StreamLost> {
        let backend = self.lb.select(b"", 256).ok_or(StreamLost::NoOrigin)?;
        let url = format!("http://{}{EVENTS_PATH}", backend.addr);
        let mut request = client.get(&url);
        if let Some(auth) = &self.auth {
            let token = auth.service_token().ok_or(StreamLost::NoServiceToken)?;
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await?;
        if !response.status().is_success() {
            return Err(StreamLost::Refused(url, response.status()));
        }
        let silence = Duration::from_secs(PING_INTERVAL_SECS * 3);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(silence, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => return Err(StreamLost::Ended),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(StreamLost::Silent),
            };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                match Frame::parse(&line[..line.len() - 1]) {
                    Ok(Frame::Hello { origin }) => {
                        self.cache.flush();
                        if let Some(auth) = &self.auth {
                            auth.forget_all();
                        }
                        self.cache.set_enabled(true);
                        self.metrics.stream(true);
                        tracing::info!(%origin, "subscribed to change events");
                    }
                    Ok(Frame::Change(event)) => {
                        if let Some(invalidation) = rules::invalidated_by(event) {
                            self.cache.invalidate(&invalidation);
                            self.metrics.invalidation("event");
                        }
                    }
                    Ok(Frame::Auth(event)) => {
                        if let Some(auth) = &self.auth {
                            auth.forget(&event.principal, event.api_key.as_deref());
                        }
                    }
                    Ok(Frame::Ping) => {}
                    Err(e) => return Err(StreamLost::BadFrame(e)),
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Subscriber {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "event subscriber cannot start; cache stays bounded by max age");
                return;
            }
        };
        loop {
            tokio::select! {
                result = self.session(&client) => {
                    self.cache.set_enabled(false);
                    self.metrics.stream(false);
                    if let Err(reason) = result {
                        tracing::warn!(%reason, "change event stream lost; cache bypassed until resubscribed");
                    }
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.reconnect) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
