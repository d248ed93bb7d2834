//! `floe`: the all-in-one binary for a laptop. `cargo run --release` serves
//! the catalog on 127.0.0.1:8181 with SQLite and a local warehouse under
//! `./data`; every `floe-origin` flag and subcommand works here too.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    floe_origin::cli::main(floe_origin::cli::Cli::parse()).await
}
