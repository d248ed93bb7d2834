//! `floe`: both tiers in one process for a laptop. `cargo run --release`
//! serves clients on 127.0.0.1:8181 through the edge, in front of an origin
//! on SQLite with a local warehouse under `./data`. The `migrate` and
//! `warehouse` subcommands work as with `floe-origin`; `check-config`
//! checks both tiers' configuration and the origin's database.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use floe_edge::config::EdgeConfig;
use floe_origin::cli::{Cli as OriginCli, Command};
use floe_shared::config::ProcessEnv;

/// Floe: the Iceberg REST catalog, edge and origin in one process.
#[derive(Debug, Parser)]
#[command(name = "floe", version, about)]
struct Cli {
    /// Origin YAML configuration (see conf/origin.yaml).
    #[arg(long, global = true, env = "FLOE_CONFIG")]
    config: Option<PathBuf>,
    /// Edge YAML configuration (see conf/edge.yaml).
    #[arg(long, global = true, env = "FLOE_EDGE_CONFIG")]
    edge_config: Option<PathBuf>,
    /// Address clients connect to (the edge).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Address of the origin behind the edge.
    #[arg(long, global = true, default_value = "127.0.0.1:8182")]
    origin_listen: SocketAddr,
    /// Address of the edge's Prometheus endpoint ("" to disable).
    #[arg(long, global = true)]
    edge_metrics_listen: Option<String>,
    /// Catalog database URL.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Location of the default warehouse.
    #[arg(long, global = true)]
    warehouse: Option<String>,
    /// What to do; serve both tiers when omitted.
    #[command(subcommand)]
    command: Option<Command>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let origin_cli = OriginCli {
        config: cli.config.clone(),
        listen: Some(cli.origin_listen),
        database_url: cli.database_url.clone(),
        warehouse: cli.warehouse.clone(),
        command: cli.command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(Command::CheckConfig { offline }) = origin_cli.command {
        // Both tiers' files and variables, then the origin's database.
        let mut edge_config = EdgeConfig::load(cli.edge_config.as_deref(), &ProcessEnv)
            .map_err(|e| anyhow::anyhow!("edge configuration: {e:#}"))?;
        if let Some(listen) = cli.listen {
            edge_config.listen = vec![listen];
        }
        if let Some(metrics) = cli.edge_metrics_listen {
            edge_config.metrics_listen = metrics;
        }
        edge_config.origins = vec![cli.origin_listen.to_string()];
        edge_config
            .check()
            .map_err(|e| anyhow::anyhow!("edge configuration: {e:#}"))?;
        println!("{}", edge_config.summary());
        let origin_config = floe_origin::cli::load_config(&origin_cli)
            .map_err(|e| anyhow::anyhow!("origin configuration: {e:#}"))?;
        return runtime.block_on(floe_origin::cli::check_config(&origin_config, offline));
    }
    if !matches!(origin_cli.command, None | Some(Command::Serve)) {
        return runtime.block_on(floe_origin::cli::main(origin_cli));
    }

    let origin_config = floe_origin::cli::load_config(&origin_cli)?;
    floe_origin::cli::init_tracing(&origin_config);
    let mut edge_config = EdgeConfig::load(cli.edge_config.as_deref(), &ProcessEnv)?;
    if let Some(listen) = cli.listen {
        edge_config.listen = vec![listen];
    }
    if let Some(metrics) = cli.edge_metrics_listen {
        edge_config.metrics_listen = metrics;
    }
    // Before anything listens: no tier on a network address without
    // authentication, unless the configuration says so explicitly.
    origin_config.check_exposure()?;
    edge_config.check_exposure()?;

    // The origin first, on a runtime of its own; the edge once it is ready.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let failed = ready_tx.clone();
    let origin = std::thread::spawn(move || {
        let result = runtime.block_on(floe_origin::server::run_until(
            origin_config,
            async {
                let _ = stop_rx.await;
            },
            |addr| {
                let _ = ready_tx.send(Ok(addr));
            },
        ));
        if let Err(e) = &result {
            let _ = failed.send(Err(anyhow::anyhow!("origin failed: {e}")));
        }
        result
    });
    let origin_addr = ready_rx.recv()??;
    edge_config.origins = vec![origin_addr.to_string()];
    tracing::info!(listen = ?edge_config.listen, origin = %origin_addr, "floe edge serving clients");
    let (server, _parts) = floe_edge::server::build(edge_config, None)?;
    // Returns after SIGTERM (graceful) or SIGINT; then the origin drains.
    server.run(pingora::server::RunArgs::default());
    tracing::info!("edge stopped; draining the origin");
    let _ = stop_tx.send(());
    match origin.join() {
        Ok(result) => result,
        Err(_) => anyhow::bail!("origin thread panicked"),
    }
}
