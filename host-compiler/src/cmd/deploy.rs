//! `ktap-host deploy`: install the agent and the module on a board over SSH (`scp` into
//! [`REMOTE_DIR`], then `insmod`), where `push --ssh` finds them by default.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;
use ktap_host::link::SshTarget;
use ktap_host::link::ssh::{REMOTE_DIR, sh_quote};
use ktap_host::qemu::Artifacts;

use super::BoardOpts;

/// Install ktap-agent and ktap.ko on a board over SSH and load the module.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    board: BoardOpts,
    /// The board: [USER@]HOST[:PORT] for the system ssh and scp (~/.ssh/config applies)
    #[arg(long, env = "KTAP_SSH_TARGET", value_name = "[USER@]HOST[:PORT]")]
    ssh: SshTarget,
    /// An ssh and scp option, passed as `-o OPT`; repeatable
    #[arg(long = "ssh-option", value_name = "OPT")]
    ssh_options: Vec<String>,
    /// Where `cargo xtask build --board B` left the agent and module [default: target/ktap/BOARD]
    #[arg(long, env = "KTAP_ARTIFACTS", value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Directory on the board to install into
    #[arg(long, default_value = REMOTE_DIR, value_name = "DIR")]
    dest: String,
    /// Copy the files only; do not (re)load the module
    #[arg(long)]
    no_load: bool,
}

/// Run `cmd`; a failure names what was being done and shows the command's own error output.
fn run(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {:?} ({what})", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr).trim_end());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Cmd {
    /// Copy, then load.
    pub fn run(self) -> anyhow::Result<()> {
        let board = self.board.load()?;
        let dir = self.artifacts.clone().unwrap_or_else(|| Artifacts::default_dir(&board.name));
        let a = Artifacts::load(&dir, &board.name)?;
        let files: [&Path; 2] = [&a.agent, &a.module];
        for f in files {
            if !f.is_file() {
                bail!("{} does not exist: run `cargo xtask build --board {}`", f.display(), board.name);
            }
        }
        let dest = sh_quote(&self.dest);
        run(
            self.ssh.ssh(&self.ssh_options, &format!("mkdir -p {dest}")),
            &format!("creating {} on {}", self.dest, self.ssh),
        )?;
        run(
            self.ssh.scp(&self.ssh_options, &files, &self.dest),
            &format!("copying to {}:{}", self.ssh, self.dest),
        )?;
        let agent = format!("{dest}/ktap-agent");
        let check = format!("chmod 755 {agent} && ls -l {dest}");
        let listing = run(self.ssh.ssh(&self.ssh_options, &check), "checking the copied files")?;
        eprintln!("ktap: installed in {}:{}\n{}", self.ssh, self.dest, listing.trim_end());
        if self.no_load {
            return Ok(());
        }
        // a loaded older module is replaced; `insmod` says why it refuses (e.g. vermagic)
        let load = format!(
            "if grep -q '^ktap ' /proc/modules; then rmmod ktap || exit 1; fi; insmod {dest}/ktap.ko && {agent} --version"
        );
        let version = run(self.ssh.ssh(&self.ssh_options, &load), "loading ktap.ko on the board")?;
        eprintln!("ktap: module loaded; {}", version.trim());
        Ok(())
    }
}
