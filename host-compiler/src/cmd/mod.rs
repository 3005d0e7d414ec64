//! Subcommands, one file each: a clap `Args` struct whose doc comments are the help, and `run()`.
//! Option groups shared by several subcommands live here and are flattened in.

pub mod asm;
pub mod boards;
pub mod check;
pub mod compile;
pub mod deploy;
pub mod disasm;
pub mod push;
pub mod sim;
pub mod symbols;
pub mod verify;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use ktap_host::board::Board;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a script for errors without writing anything.
    Check(check::Cmd),
    /// Compile a script to an image and its sidecar (IMAGE.json).
    Compile(compile::Cmd),
    /// List the instructions of a compiled image.
    Disasm(disasm::Cmd),
    /// Assemble a listing (what disasm prints) into an image.
    Asm(asm::Cmd),
    /// Check an image with the module's own verifier (exit status 1 on rejection).
    Verify(verify::Cmd),
    /// Push a script to a board and print what it reports until stopped.
    Push(push::Cmd),
    /// Install the agent and the module on a board over SSH and load the module.
    Deploy(deploy::Cmd),
    /// Run a script or image on the host against an events file (JSON lines), printing what push would.
    Sim(sim::Cmd),
    /// List the boards ktap-host knows.
    Boards(boards::Cmd),
    /// Look up kernel functions, types, symbols and tracepoints in a vmlinux (or a System.map).
    Symbols(symbols::Cmd),
}

impl Command {
    /// Run the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Check(c) => c.run(),
            Command::Compile(c) => c.run(),
            Command::Disasm(c) => c.run(),
            Command::Asm(c) => c.run(),
            Command::Verify(c) => c.run(),
            Command::Push(c) => c.run(),
            Command::Deploy(c) => c.run(),
            Command::Sim(c) => c.run(),
            Command::Boards(c) => c.run(),
            Command::Symbols(c) => c.run(),
        }
    }
}

/// Write a command's output to stdout. A reader that went away (`ktap-host disasm X | head`) ends
/// the output quietly, as it does for any Unix filter; `print!` would panic there, because Rust
/// ignores SIGPIPE and the write fails with EPIPE instead.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

/// The `boards/` directory of the workspace this binary was built from, so any cwd works.
pub fn default_boards_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../boards"))
}

/// Where board files are.
#[derive(Debug, Clone, Args)]
pub struct BoardsDir {
    /// Directory of board files (`<name>.toml`) [default: the workspace's `boards/`]
    #[arg(long, env = "KTAP_BOARDS_DIR", value_name = "DIR")]
    pub boards_dir: Option<PathBuf>,
}

impl BoardsDir {
    /// The directory given, or the default.
    pub fn path(&self) -> PathBuf {
        self.boards_dir.clone().unwrap_or_else(default_boards_dir)
    }
}

/// Which board to work with.
#[derive(Debug, Clone, Args)]
pub struct BoardOpts {
    /// Board name (a file in the boards directory; `ktap-host boards` lists them)
    #[arg(long, env = "KTAP_BOARD", default_value = "qemu-armv7", value_name = "NAME")]
    pub board: String,
    #[command(flatten)]
    pub dir: BoardsDir,
}

impl BoardOpts {
    /// Load and validate the board file.
    pub fn load(&self) -> anyhow::Result<Board> {
        let dir = self.dir.path();
        Board::load(&dir, &self.board)
            .with_context(|| format!("loading board `{}` from {}", self.board, dir.display()))
    }
}
