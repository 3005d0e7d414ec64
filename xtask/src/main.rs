//! `cargo xtask`: the project's automation. `setup` installs what the other commands need (idempotent),
//! `build` cross-builds the agent, the kernel module and the QEMU initramfs for a board, `demo` runs the
//! main job end to end and `test` runs the whole suite (what `.ci/run` calls).

mod build_agent;
mod paths;
mod setup;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ktap-rs project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install host packages, cross toolchains and the board's kernel into the cache (idempotent).
    Setup(setup::Args),
    /// Cross-build only the static target agent for a board (temporary; `build` does it all).
    BuildAgent(build_agent::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup(args) => setup::run(&args).map(|_| ()),
        Cmd::BuildAgent(args) => build_agent::run(&args).map(|_| ()),
    }
}
