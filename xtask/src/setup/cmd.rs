//! Running the host's tools (apt, dpkg, tar) with their output captured, so a failure is reported
//! with the command line and the tail of what it printed, and progress lines for the user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Print a progress line (`setup: [  12.3s] ...`) on stderr.
pub fn progress(msg: impl std::fmt::Display) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("setup: [{t:6.1}s] {msg}");
}

/// A command with a C locale (its output is parsed) and a non-interactive debconf.
pub fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LC_ALL", "C").env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // /proc/self belongs to the effective user of the process.
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The first `name` on `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// A command that runs as root: directly when we are root, else through `sudo` (and `env`, so the
/// environment survives sudo's reset). `None` when neither is possible.
pub fn privileged(program: &str) -> Option<Command> {
    if is_root() {
        return Some(command(program));
    }
    let sudo = which("sudo")?;
    let mut cmd = Command::new(sudo);
    cmd.args(["env", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", program]);
    Some(cmd)
}

/// How a command is shown in messages.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// The last `n` non-empty lines of a command's output, for error messages.
pub fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run to completion with output captured; whatever the exit status.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{}`", show(cmd)))
}

/// Run to completion; a non-zero exit is an error carrying the tail of stderr and stdout.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}\n{}",
            show(cmd),
            out.status,
            tail(&out.stderr, 15),
            tail(&out.stdout, 5)
        );
    }
    Ok(out)
}

/// Run to completion and return stdout as text.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

/// Run a long build (a kernel, busybox) at low priority (`nice -n 10`: the machine is shared) with
/// its output in `log`, printing a progress line every 30 s (time so far and the log's last line).
/// A non-zero exit is an error carrying the log's tail and its path.
pub fn run_logged(cmd: &Command, log: &Path, what: &str) -> Result<()> {
    let start = Instant::now();
    let mut niced = command("nice");
    niced.args(["-n", "10"]).arg(cmd.get_program()).args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        niced.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => niced.env(k, v),
            None => niced.env_remove(k),
        };
    }
    let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = file.try_clone().with_context(|| format!("cannot reopen {}", log.display()))?;
    let mut child = niced
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    let mut next = 30;
    let status = loop {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for `{}`", show(cmd)))? {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let t = start.elapsed().as_secs();
        if t >= next {
            next += 30;
            let last = std::fs::read(log).map(|b| tail(&b, 1)).unwrap_or_default();
            progress(format!("{what}: {}m{:02}s, at: {}", t / 60, t % 60, last.trim()));
        }
    };
    let bytes = std::fs::read(log).unwrap_or_default();
    if !status.success() {
        bail!("`{}` failed ({status}); log {}:\n{}", show(cmd), log.display(), tail(&bytes, 20));
    }
    let t = start.elapsed().as_secs_f64();
    progress(format!("{what}: done in {}m{:02.0}s", (t / 60.0) as u64, t % 60.0));
    Ok(())
}

/// The first file in `dir` whose name ends in `.ext` (what `apt-get download`/`source` left there);
/// `tool` names the command for the error.
pub fn find_with_extension(dir: &Path, ext: &str, tool: &str) -> Result<PathBuf> {
    std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == ext))
        .with_context(|| format!("{tool} left no .{ext} in {}", dir.display()))
}

/// Apparent size in bytes of a file or a whole tree (symlinks count as themselves, not followed).
pub fn disk_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| disk_size(&e.path())).sum()).unwrap_or(0)
}

/// Bytes as a short human string (`244.1 MiB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(243_711_104), "232.4 MiB");
        assert_eq!(human(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn tail_keeps_last_non_empty_lines() {
        assert_eq!(tail(b"a\n\nb\nc\n\n", 2), "b\nc");
        assert_eq!(tail(b"", 3), "");
    }
}
