//! Starting and stopping the origin.

use std::future::Future;
use std::time::Duration;

use floe_shared::json::JsonBodies;
use floe_shared::pool::BufferPool;
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::events::EventBus;
use crate::http::{AppParts, AppState, OriginAuth, app};
use crate::management::{CreateWarehouseRequest, ensure_warehouse};
use crate::metrics::Metrics;
use crate::store::Store;

/// Opens the database, applies migrations (when configured), ensures the
/// default warehouse and returns the application state.
pub async fn prepare(config: &Config) -> anyhow::Result<AppState> {
    let store = Store::connect(&config.database).await?;
    if config.database.migrate_on_start {
        store.migrate().await?;
    }
    store.watch_health();
    ensure_warehouse(
        &store,
        CreateWarehouseRequest {
            name: config.warehouse.name.clone(),
            location: config.warehouse.location.clone(),
            s3: config.warehouse.s3.clone(),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("default warehouse: {e}"))?;
    let metrics = Metrics::new();
    let bodies = JsonBodies::new(BufferPool::new(
        "json",
        config.pools.json.clone(),
        metrics.buffer_pools(),
    ));
    let events = EventBus::start(store.clone(), &config.database.url);
    let auth =
        OriginAuth::start(&config.auth, store.clone(), &events, &config.warehouse.name).await?;
    if !auth.enabled() {
        tracing::warn!(
            "AUTHENTICATION IS DISABLED: anyone who reaches this origin can read and change every table. \
             Set auth.enabled: true (see conf/production/) before exposing it to a network."
        );
    }
    Ok(AppState::new(AppParts {
        auth,
        catalog: Catalog::new(
            store,
            config.catalog.clone(),
            metrics.clone(),
            bodies.clone(),
            events,
        ),
        bodies,
        metrics,
        default_warehouse: config.warehouse.name.clone(),
        body_limit: config.server.body_limit_bytes,
        idempotency_lifetime: Duration::from_secs(config.catalog.idempotency_key_lifetime_seconds),
        started: std::time::Instant::now(),
    }))
}

/// Serves on `listener` until `shutdown` completes, then drains in-flight
/// requests for at most the configured grace period.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = state.catalog.store().clone();
    let events = state.catalog.events().clone();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown.await;
        // Event streams never end by themselves: close them so draining can finish.
        events.close();
        let _ = stopped_tx.send(());
    });
    let drained = async {
        let _ = stopped_rx.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result?,
        _ = drained => tracing::warn!("grace period over; closing remaining connections"),
    }
    store.close().await;
    Ok(())
}

/// Runs the origin from configuration until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    run_until(config, shutdown_signal(), |_| {}).await
}

/// Runs the origin until `shutdown` completes; `on_ready` is called once the
/// socket is bound and the database is ready.
pub async fn run_until(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    config.check_exposure()?;
    let state = prepare(&config).await?;
    let listener = TcpListener::bind(config.server.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(
        listen = %addr,
        warehouse = %config.warehouse.name,
        database = %crate::store::redact_url(&config.database.url),
        "floe origin serving the Iceberg REST catalog"
    );
    on_ready(addr);
    serve(
        listener,
        state,
        Duration::from_secs(config.server.shutdown_grace_seconds),
        shutdown,
    )
    .await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
