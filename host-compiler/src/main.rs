//! `ktap-host`: compile ktap scripts, push them to a board, format what comes back.
//!
//! Exit codes: 0 success, 1 an error (printed on stderr with its causes), 2 a usage error (clap).

mod cmd;

use std::process::ExitCode;

use clap::Parser;

/// Dynamic tracing for embedded Linux: ktap scripts compiled on the host, run in the board's kernel.
#[derive(Debug, Parser)]
#[command(name = "ktap-host", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message before it
/// already contains (library errors often include their source's text).
fn chain(e: &anyhow::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.last().is_some_and(|prev| prev.contains(&text)) {
            continue;
        }
        out.push(text);
    }
    out.join(": ")
}
