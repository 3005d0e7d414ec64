//! `ktap-host deploy`: install the agent and the module on a board and load the module.
//!
//! Two ways, chosen by the transport:
//! - `--ssh` (default `--via scp`): `scp` into `--dest`, then `insmod` over ssh.
//! - `--port` (a serial line, also a QEMU guest's pty), or `--ssh ... --via agent` (a board with ssh
//!   but no scp): through the protocol itself, to the agent already running there. Each file is
//!   packed, sent in acknowledged CRC-checked frames, unpacked into a temporary file on the board and
//!   renamed into place only when its length and CRC match; then the agent replaces the loaded
//!   module with the new file (`finit_module`).
//!
//! Without --port or --ssh, the board file's `[link]` is used. Either way the files land where
//! `push --ssh` and `push --console` look by default ([`REMOTE_DIR`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ktap_host::link::SshTarget;
use ktap_host::link::ssh::{REMOTE_DIR, sh_quote};
use ktap_host::qemu::Artifacts;
use ktap_host::session::{Installed, Session, Timeouts};

use super::BoardOpts;
use super::push::LinkOpts;

/// Install ktap-agent and ktap.ko on a board (over SSH with scp, or through the agent's own
/// protocol over a serial line) and load the module.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    board: BoardOpts,
    #[command(flatten)]
    link: LinkOpts,
    /// With --ssh: copy the files with `scp`, or send them through the protocol to the agent that
    /// ssh runs (for a board with ssh but no scp). A serial --port always uses the protocol
    #[arg(long, value_enum, default_value_t = Via::Scp)]
    via: Via,
    /// Where `cargo xtask build --board B` left the agent and module [default: target/ktap/BOARD]
    #[arg(long, env = "KTAP_ARTIFACTS", value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Directory on the board to install into (created if missing)
    #[arg(long, default_value = REMOTE_DIR, value_name = "DIR")]
    dest: String,
    /// Copy the files only; do not (re)load the module
    #[arg(long)]
    no_load: bool,
}

/// How files travel over ssh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    /// `scp`, then `insmod` through ssh.
    Scp,
    /// The protocol, to the agent.
    Agent,
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
        for f in [&a.agent, &a.module] {
            if !f.is_file() {
                bail!("{} does not exist: run `cargo xtask build --board {}`", f.display(), board.name);
            }
        }
        let link = self.link.resolve(&board)?;
        match (&link.ssh, self.via) {
            (Some(target), Via::Scp) => self.over_scp(target, &link.ssh_options, &a.agent, &a.module),
            (Some(_), Via::Agent) | (None, _) if link.port.is_some() || link.ssh.is_some() => {
                self.over_protocol(&board, &a.agent, &a.module)
            }
            _ => bail!(
                "deploy needs a way to the board: --port (its serial line or a QEMU guest's pty), --ssh, or a [link] in boards/{}.toml",
                board.name
            ),
        }
    }

    fn over_scp(
        &self,
        ssh: &SshTarget,
        options: &[String],
        agent: &Path,
        module: &Path,
    ) -> anyhow::Result<()> {
        let files: [&Path; 2] = [agent, module];
        let dest = sh_quote(&self.dest);
        run(ssh.ssh(options, &format!("mkdir -p {dest}")), &format!("creating {} on {ssh}", self.dest))?;
        run(ssh.scp(options, &files, &self.dest), &format!("copying to {ssh}:{}", self.dest))?;
        let remote_agent = format!("{dest}/ktap-agent");
        let check = format!("chmod 755 {remote_agent} && ls -l {dest}");
        let listing = run(ssh.ssh(options, &check), "checking the copied files")?;
        eprintln!("ktap: installed in {ssh}:{}\n{}", self.dest, listing.trim_end());
        if self.no_load {
            return Ok(());
        }
        // a loaded older module is replaced; `insmod` says why it refuses (e.g. vermagic)
        let load = format!(
            "if grep -q '^ktap ' /proc/modules; then rmmod ktap || exit 1; fi; insmod {dest}/ktap.ko && {remote_agent} --version"
        );
        let version = run(ssh.ssh(options, &load), "loading ktap.ko on the board")?;
        eprintln!("ktap: module loaded; {}", version.trim());
        Ok(())
    }

    fn over_protocol(
        &self,
        board: &ktap_host::board::Board,
        agent: &Path,
        module: &Path,
    ) -> anyhow::Result<()> {
        if !self.dest.starts_with('/') {
            bail!("--dest must be an absolute path on the board, not `{}`", self.dest);
        }
        let Some(link) = self.link.open(board)? else { bail!("no link to the board") };
        let mut session = Session::connect(link, Timeouts::default())?;
        eprintln!("ktap: {}", session.connected_to());
        let dest = self.dest.trim_end_matches('/');
        let module_path = format!("{dest}/ktap.ko");
        for (file, path, mode) in
            [(agent, format!("{dest}/ktap-agent"), 0o755), (module, module_path.clone(), 0o644)]
        {
            let content = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            // a line per quarter: at 115200 baud a file takes seconds
            let mut shown = 0u64;
            let mut progress = |done: u64, total: u64| {
                let quarter = done * 4 / total.max(1);
                if quarter > shown && done < total {
                    shown = quarter;
                    eprintln!("ktap: {path}: {} %", done * 100 / total.max(1));
                }
            };
            let r: Installed = session.install_file(&path, &content, mode, &mut progress)?;
            eprintln!(
                "ktap: installed {path}: {} bytes, {} sent packed ({:.0} %) in {:.1} s{}",
                r.len,
                r.packed,
                r.packed as f64 * 100.0 / r.len.max(1) as f64,
                r.elapsed.as_secs_f64(),
                if r.resent > 0 { format!(", {} chunks resent", r.resent) } else { String::new() }
            );
        }
        if !self.no_load {
            session.load_module(&module_path)?;
            eprintln!("ktap: module loaded from {module_path} on {}", session.port());
        }
        session.bye()?;
        Ok(())
    }
}
