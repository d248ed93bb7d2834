//! The `floe-origin` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides, ProcessEnv, S3Config};
use crate::management::{self, CreateWarehouseRequest};
use crate::store::Store;

/// Floe origin: the Iceberg REST catalog.
#[derive(Debug, Parser)]
#[command(name = "floe-origin", version, about)]
pub struct Cli {
    /// YAML configuration file (see conf/origin.yaml).
    #[arg(long, global = true, env = "FLOE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (server.listen).
    #[arg(long, global = true)]
    pub listen: Option<SocketAddr>,
    /// Catalog database URL (database.url).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Location of the default warehouse (warehouse.location).
    #[arg(long, global = true)]
    pub warehouse: Option<String>,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST catalog (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage warehouses.
    #[command(subcommand)]
    Warehouse(WarehouseCommand),
}

/// `floe-origin warehouse …`
#[derive(Debug, Subcommand)]
pub enum WarehouseCommand {
    /// Create a warehouse.
    Create {
        /// Name, also the URL prefix.
        #[arg(long)]
        name: String,
        /// Storage root: a path, file:///path or s3://bucket/path.
        #[arg(long)]
        location: String,
        /// S3 endpoint for S3-compatible servers.
        #[arg(long)]
        s3_endpoint: Option<String>,
        /// S3 region.
        #[arg(long)]
        s3_region: Option<String>,
        /// Use path-style S3 addressing.
        #[arg(long)]
        s3_path_style_access: bool,
        /// Static S3 access key id.
        #[arg(long)]
        s3_access_key_id: Option<String>,
        /// Static S3 secret key (or FLOE_S3_SECRET_ACCESS_KEY).
        #[arg(long, env = "FLOE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
        s3_secret_access_key: Option<String>,
    },
    /// List warehouses.
    List,
    /// Delete an empty warehouse.
    Delete {
        /// Warehouse name.
        name: String,
    },
}

/// Loads configuration the way every subcommand does.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), &ProcessEnv)?;
    config.apply(&Overrides {
        listen: cli.listen,
        database_url: cli.database_url.clone(),
        warehouse: cli.warehouse.clone(),
    });
    config.validate()?;
    Ok(config)
}

/// Installs the tracing subscriber configured by `log.*` (or `RUST_LOG`).
pub fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs the command line.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli)?;
    init_tracing(&config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::server::run(config).await,
        Command::Migrate => {
            let store = Store::connect(&config.database).await?;
            store.migrate().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Warehouse(cmd) => {
            let store = Store::connect(&config.database).await?;
            store.migrate().await?;
            warehouse_command(&store, cmd).await
        }
    }
}

async fn warehouse_command(store: &Store, cmd: WarehouseCommand) -> anyhow::Result<()> {
    match cmd {
        WarehouseCommand::Create {
            name,
            location,
            s3_endpoint,
            s3_region,
            s3_path_style_access,
            s3_access_key_id,
            s3_secret_access_key,
        } => {
            let created = management::create_warehouse(
                store,
                CreateWarehouseRequest {
                    name,
                    location,
                    s3: S3Config {
                        endpoint: s3_endpoint,
                        region: s3_region,
                        path_style_access: s3_path_style_access,
                        access_key_id: s3_access_key_id,
                        secret_access_key: s3_secret_access_key,
                    },
                },
            )
            .await?;
            println!("created warehouse {} at {}", created.name, created.location);
        }
        WarehouseCommand::List => {
            for w in management::list_warehouses(store).await?.warehouses {
                println!("{}\t{}", w.name, w.location);
            }
        }
        WarehouseCommand::Delete { name } => {
            management::delete_warehouse(store, &name).await?;
            println!("deleted warehouse {name}");
        }
    }
    Ok(())
}
