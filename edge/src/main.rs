//! `floe-edge`: run `floe-edge --help`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;
use floe_edge::config::EdgeConfig;
use floe_shared::config::ProcessEnv;

/// Floe edge: cached, load-balanced front of the catalog origins.
#[derive(Debug, Parser)]
#[command(name = "floe-edge", version, about)]
struct Cli {
    /// YAML configuration (see conf/edge.yaml).
    #[arg(long, env = "FLOE_EDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Address clients connect to (replaces `listen`).
    #[arg(long)]
    listen: Option<String>,
    /// Origin address; repeat for several (replaces `origins`).
    #[arg(long = "origin")]
    origins: Vec<String>,
    /// Take over the listening sockets of a running edge (graceful upgrade).
    #[arg(long)]
    upgrade: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = EdgeConfig::load(cli.config.as_deref(), &ProcessEnv)?;
    if let Some(listen) = cli.listen {
        config.listen = vec![listen];
    }
    if !cli.origins.is_empty() {
        config.origins = cli.origins;
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
