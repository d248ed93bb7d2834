//! Assembling the edge: proxy, health checks, event subscription, metrics.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use floe_shared::pool::BufferPool;
use pingora::apps::HttpServerOptions;
use pingora::apps::http_app::ServeHttp;
use pingora::lb::LoadBalancer;
use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::http::ServerSession;
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::auth::EdgeAuth;
use crate::cache::TableCache;
use crate::config::EdgeConfig;
use crate::events::Subscriber;
use crate::metrics::EdgeMetrics;
use crate::proxy::EdgeProxy;

/// What a built edge exposes besides its server.
pub struct EdgeParts {
    /// The table cache.
    pub cache: Arc<TableCache>,
    /// The metrics.
    pub metrics: EdgeMetrics,
    /// Byte buffers for token issuance (`floe_pool_*{pool="token"}`).
    pub tokens: BufferPool,
    /// Authentication, when enabled.
    pub auth: Option<Arc<EdgeAuth>>,
}

/// Re-reads the external issuer's JWKS in the background.
struct JwksRefresh {
    verifier: Arc<floe_shared::auth::oidc::OidcVerifier>,
    config: floe_shared::auth::OidcConfig,
}

#[async_trait]
impl pingora::services::background::BackgroundService for JwksRefresh {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            _ = floe_shared::auth::oidc::refresh_loop(self.verifier.clone(), self.config.clone()) => {}
            _ = shutdown.changed() => {}
        }
    }
}

struct MetricsApp {
    metrics: EdgeMetrics,
    cache: Arc<TableCache>,
    lb: Arc<LoadBalancer<RoundRobin>>,
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let (status, content_type, body) = match path.as_str() {
            "/metrics" => (
                200,
                "text/plain; version=0.0.4",
                self.metrics.render(&self.cache, &self.lb),
            ),
            "/health" => (200, "text/plain", b"ok".to_vec()),
            _ => (404, "text/plain", b"not found".to_vec()),
        };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}

/// Builds the Pingora server of an edge (not started).
pub fn build(config: EdgeConfig, opt: Option<Opt>) -> anyhow::Result<(Server, EdgeParts)> {
    config.validate()?;
    config.check_exposure()?;
    let conf = ServerConf {
        threads: config.server.threads,
        pid_file: config.server.pid_file.clone(),
        upgrade_sock: config.server.upgrade_sock.clone(),
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: config.server.upstream_keepalive_pool_size,
        work_stealing: config.server.work_stealing,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut lb =
        LoadBalancer::<RoundRobin>::try_from_iter(config.origins.iter().map(String::as_str))?;
    let mut check = HttpHealthCheck::new("floe-origin", false);
    check.req.set_uri(
        config
            .health_check
            .path
            .parse()
            .map_err(|e| anyhow::anyhow!("health_check.path: {e}"))?,
    );
    lb.set_health_check(Box::new(check));
    lb.health_check_frequency = Some(Duration::from_millis(config.health_check.interval_ms));
    let health = background_service("origin health checks", lb);
    let lb = health.task();
    server.add_service(health);

    let cache = Arc::new(TableCache::with_generation_slots(
        config.cache.max_bytes,
        config.cache.max_entry_bytes,
        Duration::from_secs(config.cache.max_age_seconds),
        Duration::from_secs(config.cache.stale_if_error_seconds),
        config.cache.generation_slots,
    ));
    let metrics = EdgeMetrics::new()?;
    let tokens = BufferPool::new("token", config.pools.tokens.clone(), &metrics.pools);
    let config = Arc::new(config);

    let auth = if config.auth.enabled {
        let oidc = if config.auth.oidc.issuer.is_empty() {
            None
        } else {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(floe_shared::auth::oidc::load(&config.auth.oidc))
                .map_err(anyhow::Error::msg)?
        };
        if let Some(verifier) = &oidc {
            server.add_service(background_service(
                "JWKS refresh",
                JwksRefresh {
                    verifier: verifier.clone(),
                    config: config.auth.oidc.clone(),
                },
            ));
        }
        Some(Arc::new(EdgeAuth::new(
            &config.auth,
            oidc,
            lb.clone(),
            tokens.clone(),
            metrics.clone(),
        )?))
    } else {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED: anyone who reaches this edge can read and change every table. \
             Set auth.enabled: true (see conf/production/) before exposing it to a network."
        );
        None
    };

    if config.events.enabled {
        // Nothing is known until the first subscription says hello.
        cache.set_enabled(false);
        server.add_service(background_service(
            "change events",
            Subscriber::new(
                lb.clone(),
                cache.clone(),
                metrics.clone(),
                Duration::from_millis(config.events.reconnect_ms),
                auth.clone(),
            ),
        ));
    }

    let proxy = EdgeProxy::new(
        lb.clone(),
        cache.clone(),
        metrics.clone(),
        config.clone(),
        auth.clone(),
    );
    let mut service =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, proxy, "floe edge");
    if config.h2c
        && let Some(app) = service.app_logic_mut()
    {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        app.server_options = Some(options);
    }
    let buffers = L4BufferSettings::default().write(config.server.write_buffer_bytes);
    for addr in &config.listen {
        service.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(buffers));
    }
    for addr in &config.tls.listen {
        let mut tls = pingora::listeners::tls::TlsSettings::intermediate(
            &config.tls.cert_path,
            &config.tls.key_path,
        )
        .map_err(|e| anyhow::anyhow!("tls: {e}"))?;
        tls.enable_h2();
        service.add_listener(
            ListenerConfig::tcp(addr.as_str())
                .tls(tls)
                .l4_buffer(buffers),
        );
    }
    server.add_service(service);

    if !config.metrics_listen.is_empty() {
        let mut metrics_service = Service::new(
            "edge metrics".to_string(),
            pingora::apps::http_app::HttpServer::new_app(MetricsApp {
                metrics: metrics.clone(),
                cache: cache.clone(),
                lb,
            }),
        );
        metrics_service.add_tcp(&config.metrics_listen);
        server.add_service(metrics_service);
    }
    Ok((
        server,
        EdgeParts {
            cache,
            metrics,
            tokens,
            auth,
        },
    ))
}
