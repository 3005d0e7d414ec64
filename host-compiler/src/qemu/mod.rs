//! Booting a QEMU board: the embedded default when no real board is attached.
//!
//! The board file says how to emulate it; `cargo xtask build` leaves the kernel, the initramfs (busybox,
//! `ktap.ko`, `ktap-agent`, an init that loads the module and starts the agent on the board's agent UART)
//! and the matching vmlinux in an artifacts directory described by `artifacts.toml`. The guest's console
//! is QEMU's stdio (driven by [`Console`]); the agent UART is a host pty, opened like any serial port,
//! so the QEMU board exercises the same code path as a USB-serial cable to a real board.

mod console;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use console::Console;

use crate::board::{Board, QemuSpec};

/// Printed by the guest's init once the module is loaded and the agent runs.
pub const READY_MARKER: &str = "KTAP-READY";
/// Printed by the guest's init when it cannot set up; followed by the reason.
pub const FAILED_MARKER: &str = "KTAP-INIT-FAILED";

/// Errors booting or driving a QEMU guest.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The artifacts description could not be read.
    #[error("cannot read {path}: {message} (run `cargo xtask build --board {board}` first)")]
    Artifacts {
        /// The artifacts.toml path.
        path: PathBuf,
        /// What went wrong.
        message: String,
        /// The board.
        board: String,
    },
    /// The board has no `[qemu]` section.
    #[error("board `{0}` is real hardware (no [qemu] section): give --port or --ssh")]
    NotEmulated(String),
    /// QEMU could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The QEMU binary.
        binary: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU did not report the agent pty.
    #[error("QEMU did not report the agent's pty within {secs} s; it printed:\n{stderr}")]
    NoPty {
        /// How long we waited.
        secs: u64,
        /// What QEMU printed.
        stderr: String,
    },
    /// The guest's init reported a failure.
    #[error("the guest failed to start ktap: {reason}\n--- console tail ---\n{tail}")]
    InitFailed {
        /// The reason init printed.
        reason: String,
        /// The console's last lines.
        tail: String,
    },
    /// Waiting for console output timed out.
    #[error(
        "timed out after {secs} s waiting for `{waiting_for}` on the guest console\n--- console tail ---\n{tail}"
    )]
    Timeout {
        /// What we waited for.
        waiting_for: String,
        /// The timeout.
        secs: u64,
        /// The console's last lines.
        tail: String,
    },
    /// QEMU exited while we waited for console output.
    #[error(
        "the guest console closed (QEMU exited) while waiting for `{waiting_for}`\n--- console tail ---\n{tail}"
    )]
    ConsoleClosed {
        /// What we waited for.
        waiting_for: String,
        /// The console's last lines.
        tail: String,
    },
    /// Writing to the console failed.
    #[error("cannot write to the guest console: {0}")]
    ConsoleWrite(#[source] std::io::Error),
    /// A guest command exited non-zero.
    #[error("guest command `{cmd}` exited with status {status}:\n{output}")]
    CommandFailed {
        /// The command.
        cmd: String,
        /// Its exit status.
        status: i32,
        /// Its output.
        output: String,
    },
}

/// What `cargo xtask build` produced for a QEMU board (`target/ktap/<board>/artifacts.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifacts {
    /// The board these were built for.
    pub board: String,
    /// Kernel release (`uname -r` in the guest).
    pub kernel_release: String,
    /// Debian package version of the kernel.
    pub kernel_package_version: String,
    /// Bootable kernel image.
    pub kernel: PathBuf,
    /// Initramfs with busybox, module and agent.
    pub initramfs: PathBuf,
    /// The vmlinux with symbols (and DWARF) matching `kernel`.
    pub vmlinux: PathBuf,
    /// The module, as also packed in the initramfs.
    pub module: PathBuf,
    /// The agent, as also packed in the initramfs.
    pub agent: PathBuf,
}

impl Artifacts {
    /// The default artifacts directory for a board: `target/ktap/<board>` of this workspace.
    pub fn default_dir(board: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ktap").join(board)
    }

    /// Read `<dir>/artifacts.toml`.
    pub fn load(dir: &Path, board: &str) -> Result<Artifacts, QemuError> {
        let path = dir.join("artifacts.toml");
        let err =
            |message: String| QemuError::Artifacts { path: path.clone(), message, board: board.to_owned() };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let a: Artifacts = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        for p in [&a.kernel, &a.initramfs, &a.vmlinux] {
            if !p.exists() {
                return Err(err(format!("{} does not exist", p.display())));
            }
        }
        Ok(a)
    }
}

/// The guest kernel's command line: console, our init, no reboot loop, and the board's extra words.
/// loglevel=4 keeps warnings (the unsigned-module taint) off the console; oopses still show.
pub fn kernel_cmdline(q: &QemuSpec) -> String {
    let mut line = format!("console={} rdinit=/init panic=-1 loglevel=4", q.console);
    for word in &q.kernel_cmdline {
        line.push(' ');
        line.push_str(word);
    }
    line
}

/// A booted guest. Dropping it kills QEMU.
pub struct Guest {
    child: Child,
    /// The guest console.
    pub console: Console,
    agent_port: PathBuf,
}

/// How long a TCG boot to the ready marker may take (2 cores, loaded CI machine).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long QEMU may take to announce the agent pty.
const PTY_TIMEOUT: Duration = Duration::from_secs(20);

impl Guest {
    /// Boot `board` from `artifacts` and wait until the module is loaded and the agent runs.
    pub fn boot(board: &Board, artifacts: &Artifacts) -> Result<Guest, QemuError> {
        let q = board.qemu.as_ref().ok_or_else(|| QemuError::NotEmulated(board.name.clone()))?;
        let mut cmd = Command::new(&q.binary);
        cmd.args(["-M", &q.machine, "-cpu", &q.cpu])
            .args(["-smp", &q.smp.to_string(), "-m", &q.memory_mb.to_string()])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .args(&q.args)
            .arg("-kernel")
            .arg(&artifacts.kernel)
            .arg("-initrd")
            .arg(&artifacts.initramfs)
            .args(["-append", &kernel_cmdline(q)])
            .args(["-serial", "stdio", "-serial", "pty"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // QEMU's own errors (bad machine, missing firmware) go straight to the user
            .stderr(Stdio::inherit());
        let mut child =
            cmd.spawn().map_err(|source| QemuError::Spawn { binary: q.binary.clone(), source })?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => unreachable!("stdin and stdout were configured as pipes"),
        };
        let mut console = Console::new(stdin, stdout);
        // QEMU announces `-serial pty` on stdout (the console stream), before the guest prints anything.
        let agent_port = match console.expect("(label serial1)", PTY_TIMEOUT) {
            Ok(text) => match text.split("redirected to ").nth(1).and_then(|r| r.split_whitespace().next()) {
                Some(p) => PathBuf::from(p),
                None => {
                    let _ = child.kill();
                    return Err(QemuError::NoPty { secs: PTY_TIMEOUT.as_secs(), stderr: text });
                }
            },
            Err(e) => {
                let _ = child.kill();
                return Err(e);
            }
        };
        let mut guest = Guest { child, console, agent_port };
        guest.wait_ready()?;
        Ok(guest)
    }

    fn wait_ready(&mut self) -> Result<(), QemuError> {
        let text = self.console.expect(READY_MARKER, BOOT_TIMEOUT)?;
        if let Some(i) = text.find(FAILED_MARKER) {
            let reason = text[i + FAILED_MARKER.len()..].lines().next().unwrap_or("").trim_start_matches(':');
            return Err(QemuError::InitFailed {
                reason: reason.trim().to_owned(),
                tail: self.console.tail(30),
            });
        }
        Ok(())
    }

    /// The host pty connected to the guest's agent UART.
    pub fn agent_port(&self) -> &Path {
        &self.agent_port
    }

    /// Power the guest off and wait for QEMU to exit.
    pub fn shutdown(mut self) {
        let _ = self.console.send_line("poweroff -f");
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_cmdline_appends_the_boards_words() {
        let boards = Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards");
        let board = Board::load(&boards, "qemu-aarch64").unwrap();
        let mut qemu = board.qemu.unwrap();
        assert_eq!(kernel_cmdline(&qemu), "console=ttyAMA0 rdinit=/init panic=-1 loglevel=4");
        qemu.kernel_cmdline = vec!["nokaslr".into(), "quiet".into()];
        assert_eq!(kernel_cmdline(&qemu), "console=ttyAMA0 rdinit=/init panic=-1 loglevel=4 nokaslr quiet");
        let board = Board::load(&boards, "qemu-armv7").unwrap();
        assert!(kernel_cmdline(board.qemu.as_ref().unwrap()).ends_with("loglevel=4"));
    }
}
