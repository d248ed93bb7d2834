//! The `floe-origin` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, DelegationConfig, Overrides, ProcessEnv, S3Config, VendedMode};
use crate::events::EventBus;
use crate::management::{self, CreateWarehouseRequest};
use crate::principals;
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
    /// Manage OAuth2 clients (principals) and their roles.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Validate the configuration (YAML file and FLOE_ variables), connect to
    /// the database and check its migrations; print a verdict, exit non-zero
    /// when something would stop the origin.
    CheckConfig {
        /// Skip the database: check the file and variables only.
        #[arg(long)]
        offline: bool,
    },
    /// Write a new Ed25519 token signing key (PEM) and its public key (`.pub`).
    Keygen {
        /// Where to write the private key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where a role applies.
#[derive(Debug, clap::Args)]
pub struct Place {
    /// Warehouse name, or * for every warehouse.
    #[arg(long, default_value = "*")]
    pub warehouse: String,
    /// Namespace (levels separated by '.'); the whole warehouse when omitted.
    #[arg(long)]
    pub namespace: Option<String>,
}

impl Place {
    fn grant(self, role: floe_shared::auth::Role) -> floe_shared::auth::Grant {
        floe_shared::auth::Grant {
            warehouse: self.warehouse,
            namespace: self
                .namespace
                .map(|n| n.split('.').map(str::to_string).collect())
                .unwrap_or_default(),
            role,
        }
    }
}

/// `floe-origin client …`
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client and print its secret (shown only this once).
    Create {
        /// Client id.
        #[arg(long)]
        name: String,
        /// Role granted: reader, writer or admin.
        #[arg(long)]
        role: floe_shared::auth::Role,
        /// Where the role applies.
        #[command(flatten)]
        place: Place,
        /// Map this subject of the OpenID Connect issuer to the client.
        #[arg(long)]
        oidc_subject: Option<String>,
        /// No client secret (an OpenID Connect-only principal).
        #[arg(long)]
        no_secret: bool,
    },
    /// List clients and their roles.
    List,
    /// Refuse the client and every token it holds.
    Disable {
        /// Client id.
        id: String,
    },
    /// Accept the client again (its old tokens stay revoked).
    Enable {
        /// Client id.
        id: String,
    },
    /// Print a new secret; the old secret and its tokens stop working.
    Rotate {
        /// Client id.
        id: String,
    },
    /// Revoke every token issued to the client so far.
    RevokeTokens {
        /// Client id.
        id: String,
    },
    /// Grant a role (replaces the role on the same place).
    Grant {
        /// Client id.
        id: String,
        /// reader, writer or admin.
        #[arg(long)]
        role: floe_shared::auth::Role,
        /// Where.
        #[command(flatten)]
        place: Place,
    },
    /// Remove the role on a place.
    RevokeGrant {
        /// Client id.
        id: String,
        /// Where.
        #[command(flatten)]
        place: Place,
    },
}

/// `floe-origin api-key …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key acting as a client; the key is printed only this once.
    Create {
        /// Client id the key acts as.
        #[arg(long)]
        client: String,
        /// A label.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys.
    List,
    /// Print a new key for the same id; the old key stops working.
    Rotate {
        /// Key id.
        id: String,
    },
    /// Revoke a key.
    Revoke {
        /// Key id.
        id: String,
    },
}

/// `floe-origin warehouse …`
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// Credentials for `vended-credentials`: none, static or assume-role.
        #[arg(long, default_value = "none", value_parser = parse_vended)]
        vended_credentials: VendedMode,
        /// `static`: the key id handed to clients.
        #[arg(long)]
        client_access_key_id: Option<String>,
        /// `static`: its secret (or FLOE_CLIENT_SECRET_ACCESS_KEY).
        #[arg(long, env = "FLOE_CLIENT_SECRET_ACCESS_KEY", hide_env_values = true)]
        client_secret_access_key: Option<String>,
        /// `assume-role`: the role to assume.
        #[arg(long)]
        sts_role_arn: Option<String>,
        /// `assume-role`: the role's external id.
        #[arg(long)]
        sts_external_id: Option<String>,
        /// `assume-role`: STS endpoint (default: the region's).
        #[arg(long)]
        sts_endpoint: Option<String>,
        /// `assume-role`: lifetime of vended credentials, seconds.
        #[arg(long, default_value_t = 3600)]
        sts_duration_seconds: u32,
        /// Offer remote signing of S3 requests.
        #[arg(long)]
        remote_signing: bool,
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
    // Needs no configuration: the configuration may name the key it writes.
    if let Some(Command::Keygen { out }) = &cli.command {
        let public = floe_shared::auth::generate_key_files(out).map_err(anyhow::Error::msg)?;
        println!(
            "signing key: {}\npublic key: {}",
            out.display(),
            public.display()
        );
        return Ok(());
    }
    if let Some(Command::CheckConfig { offline }) = &cli.command {
        let config = load_config(&cli).map_err(|e| anyhow::anyhow!("configuration: {e:#}"))?;
        return check_config(&config, *offline).await;
    }
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
        Command::Keygen { .. } | Command::CheckConfig { .. } => Ok(()),
        Command::Client(cmd) => {
            let store = Store::connect(&config.database).await?;
            store.migrate().await?;
            let events = EventBus::start(store.clone(), &config.database.url);
            client_command(&store, &events, cmd).await
        }
        Command::ApiKey(cmd) => {
            let store = Store::connect(&config.database).await?;
            store.migrate().await?;
            let events = EventBus::start(store.clone(), &config.database.url);
            api_key_command(&store, &events, cmd).await
        }
    }
}

/// `check-config` once the file and variables have loaded and validated:
/// the exposure rule, then (unless `offline`) the database and its
/// migrations. Prints each verdict; errors when the origin would not start
/// or would serve a database it does not understand.
pub async fn check_config(config: &Config, offline: bool) -> anyhow::Result<()> {
    config.check_exposure()?;
    println!(
        "origin configuration: ok (listen {}, warehouse {} at {})",
        config.server.listen, config.warehouse.name, config.warehouse.location
    );
    if offline {
        println!("database: not checked (--offline)");
        return Ok(());
    }
    let url = crate::store::redact_url(&config.database.url);
    if let Some(path) = crate::config::sqlite_file(&config.database.url)
        && !path.exists()
    {
        if config.database.migrate_on_start {
            println!(
                "database: {url}: the file does not exist yet; the origin creates it and applies \
                 every migration at start-up"
            );
            return Ok(());
        }
        anyhow::bail!(
            "database: {url}: the file does not exist and database.migrate_on_start is false: \
             run `floe-origin migrate` first"
        );
    }
    let store = Store::connect(&config.database)
        .await
        .map_err(|e| anyhow::anyhow!("database: {e:#}"))?;
    let state = store.migration_state().await?;
    if !state.failed.is_empty() {
        anyhow::bail!(
            "database: {url}: migration(s) {:?} failed part-way; repair the database before \
             starting",
            state.failed
        );
    }
    if !state.unknown.is_empty() {
        anyhow::bail!(
            "database: {url}: applied migration(s) {:?} are unknown to this floe-origin: the \
             database was migrated by a newer version",
            state.unknown
        );
    }
    if state.pending.is_empty() {
        println!(
            "database: ok ({url}, all {} migrations applied)",
            state.known
        );
    } else if config.database.migrate_on_start {
        println!(
            "database: ok ({url}); {} of {} migrations pending, applied at start-up \
             (database.migrate_on_start)",
            state.pending.len(),
            state.known
        );
    } else {
        anyhow::bail!(
            "database: {url}: {} of {} migrations pending and database.migrate_on_start is \
             false: run `floe-origin migrate`",
            state.pending.len(),
            state.known
        );
    }
    Ok(())
}

fn parse_vended(value: &str) -> Result<VendedMode, String> {
    VendedMode::parse(value).ok_or_else(|| format!("{value}: expected none, static or assume-role"))
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
            vended_credentials,
            client_access_key_id,
            client_secret_access_key,
            sts_role_arn,
            sts_external_id,
            sts_endpoint,
            sts_duration_seconds,
            remote_signing,
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
                        delegation: DelegationConfig {
                            vended: vended_credentials,
                            client_access_key_id,
                            client_secret_access_key,
                            role_arn: sts_role_arn,
                            external_id: sts_external_id,
                            sts_endpoint,
                            duration_seconds: sts_duration_seconds,
                            remote_signing,
                        },
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

fn print_client(client: &principals::ClientView) {
    let grants: Vec<String> = client
        .grants
        .iter()
        .map(|g| {
            let place = if g.namespace.is_empty() {
                g.warehouse.clone()
            } else {
                format!("{}/{}", g.warehouse, g.namespace.join("."))
            };
            format!("{}@{place}", g.role.as_str())
        })
        .collect();
    println!(
        "{}\t{}\t{}",
        client.client_id,
        if client.disabled {
            "disabled"
        } else {
            "enabled"
        },
        grants.join(",")
    );
}

fn print_secret(secret: &principals::ClientSecret) {
    println!("client_id: {}", secret.client_id);
    if let Some(s) = &secret.client_secret {
        println!("client_secret: {s}");
        println!(
            "(the secret is shown only now; PyIceberg: credential={}:<secret>)",
            secret.client_id
        );
    }
}

async fn client_command(
    store: &Store,
    events: &EventBus,
    cmd: ClientCommand,
) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Create {
            name,
            role,
            place,
            oidc_subject,
            no_secret,
        } => {
            let created = principals::create_client(
                store,
                events,
                principals::CreateClientRequest {
                    name,
                    grants: vec![place.grant(role)],
                    oidc_subject,
                    with_secret: !no_secret,
                },
            )
            .await?;
            print_secret(&created);
        }
        ClientCommand::List => {
            for client in principals::list_clients(store).await?.clients {
                print_client(&client);
            }
        }
        ClientCommand::Disable { id } => {
            print_client(&principals::set_disabled(store, events, &id, true).await?);
        }
        ClientCommand::Enable { id } => {
            print_client(&principals::set_disabled(store, events, &id, false).await?);
        }
        ClientCommand::Rotate { id } => {
            print_secret(&principals::rotate_secret(store, events, &id).await?);
        }
        ClientCommand::RevokeTokens { id } => {
            print_client(&principals::revoke_tokens(store, events, &id).await?);
        }
        ClientCommand::Grant { id, role, place } => {
            print_client(&principals::grant(store, events, &id, place.grant(role)).await?);
        }
        ClientCommand::RevokeGrant { id, place } => print_client(
            &principals::revoke_grant(
                store,
                events,
                &id,
                place.grant(floe_shared::auth::Role::Reader),
            )
            .await?,
        ),
    }
    Ok(())
}

async fn api_key_command(
    store: &Store,
    events: &EventBus,
    cmd: ApiKeyCommand,
) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create { client, name } => {
            let key = principals::create_api_key(
                store,
                events,
                &client,
                principals::CreateApiKeyRequest { name },
            )
            .await?;
            println!(
                "key_id: {}\napi_key: {}\n(the key is shown only now)",
                key.key_id, key.api_key
            );
        }
        ApiKeyCommand::List => {
            for key in principals::list_api_keys(store).await?.api_keys {
                println!(
                    "{}\t{}\t{}\t{}",
                    key.key_id,
                    key.client_id,
                    if key.revoked { "revoked" } else { "active" },
                    key.name
                );
            }
        }
        ApiKeyCommand::Rotate { id } => {
            let key = principals::rotate_api_key(store, events, &id).await?;
            println!(
                "key_id: {}\napi_key: {}\n(the key is shown only now)",
                key.key_id, key.api_key
            );
        }
        ApiKeyCommand::Revoke { id } => {
            principals::revoke_api_key(store, events, &id).await?;
            println!("revoked API key {id}");
        }
    }
    Ok(())
}
