//! `cargo xtask`: the project's automation. `setup` installs what the other commands need (idempotent),
//! `build` cross-builds the agent, the kernel module and the QEMU initramfs for a board, `demo` runs the
//! main job end to end and `test` runs the whole suite (what `.ci/run` calls).

mod bench;
mod bench_link;
mod build;
mod build_agent;
mod build_module;
mod demo;
mod fuzz;
mod initramfs;
mod paths;
mod setup;
mod test;
mod tidy;
mod tools;

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
    /// Build everything a board needs: agent, kernel module, initramfs, host binary.
    Build(build::Args),
    /// The main job: build, boot the default QEMU board, push a sample script, print its output.
    Demo(demo::Args),
    /// The whole suite: lints, host tests, and end-to-end tests on a QEMU board.
    Test(test::Args),
    /// Sizes and push-to-first-event latency for docs/benchmarks.md.
    Bench(bench::Args),
    /// Seed and run the cargo-fuzz targets in fuzz/ (image decode, verify, run) for a while each.
    Fuzz(fuzz::Args),
    /// Cross-build only the static target agent for a board.
    BuildAgent(build_agent::Args),
    /// Cross-build only the kernel module (Rust VM object + C shim) for a board.
    BuildModule(build_module::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup(args) => setup::run(&args).map(|_| ()),
        Cmd::Build(args) => build::run(&args).map(|_| ()),
        Cmd::Demo(args) => demo::run(&args),
        Cmd::Test(args) => test::run(&args),
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Fuzz(args) => fuzz::run(&args),
        Cmd::BuildAgent(args) => build_agent::run(&args).map(|_| ()),
        Cmd::BuildModule(args) => build_module::run(&args).map(|_| ()),
    }
}
