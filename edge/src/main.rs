//! `floe-edge`: run `floe-edge --help`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use floe_edge::config::EdgeConfig;
use floe_shared::config::ProcessEnv;

/// Floe edge: cached, load-balanced front of the catalog origins.
#[derive(Debug, Parser)]
#[command(name = "floe-edge", version, about)]
struct Cli {
    /// YAML configuration (see conf/edge.yaml).
    #[arg(long, global = true, env = "FLOE_EDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Address clients connect to (replaces `listen`).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Origin address; repeat for several (replaces `origins`).
    #[arg(long = "origin", global = true)]
    origins: Vec<String>,
    /// Take over the listening sockets of a running edge (graceful upgrade).
    #[arg(long)]
    upgrade: bool,
    /// What to do; serve when omitted.
    #[command(subcommand)]
    command: Option<EdgeCommand>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum EdgeCommand {
    /// Validate the configuration (YAML file, FLOE_EDGE_ variables and
    /// flags); print a verdict, exit non-zero when the edge would not start.
    CheckConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = EdgeConfig::load(cli.config.as_deref(), &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("configuration: {e:#}"))?;
    if let Some(listen) = cli.listen {
        config.listen = vec![listen];
    }
    if !cli.origins.is_empty() {
        config.origins = cli.origins;
    }
    if let Some(EdgeCommand::CheckConfig) = cli.command {
        config
            .check()
            .map_err(|e| anyhow::anyhow!("configuration: {e:#}"))?;
        println!("{}", config.summary());
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let opt = pingora::server::configuration::Opt {
        upgrade: cli.upgrade,
        ..Default::default()
    };
    tracing::info!(listen = ?config.listen, origins = ?config.origins, "floe edge starting");
    let (server, _parts) = floe_edge::server::build(config, Some(opt))?;
    server.run_forever()
}
