//! `floe-origin`: run `floe-origin --help`.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    floe_origin::cli::main(floe_origin::cli::Cli::parse()).await
}
