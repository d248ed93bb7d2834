//! `floe-origin`: run `floe-origin --help`.
#![forbid(unsafe_code)]

use clap::Parser;

// The load harness's profile of the origin showed a fifth of its time in
// glibc malloc/free (`malloc_consolidate` among the top symbols).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    floe_origin::cli::main(floe_origin::cli::Cli::parse()).await
}
