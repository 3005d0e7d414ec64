//! The SSH transport: the system `ssh` runs the agent on the board with its stdio as the byte stream,
//! so `~/.ssh/config`, keys, agents and jump hosts all work as they do for the user's own `ssh`.
//! Also builds the matching `scp` for `deploy`.

use std::fmt;
use std::io;
use std::process::Command;
use std::str::FromStr;

use super::ChildLink;

/// Where the board's agent and module live after `ktap-host deploy` over SSH (tmpfs on most
/// routers, and writable where `/usr` is a read-only squashfs).
pub const REMOTE_DIR: &str = "/tmp/ktap";

/// The remote command `push --ssh` runs by default: the deployed agent, else one on the `PATH`.
pub fn default_agent_command() -> String {
    format!("PATH=\"$PATH:{REMOTE_DIR}\" exec ktap-agent -")
}

/// `[user@]host[:port]` (an IPv6 address in brackets when a port follows: `[::1]:2222`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Login name, if given (else ssh's own default from `~/.ssh/config` or the local user).
    pub user: Option<String>,
    /// Host name, alias from `~/.ssh/config`, or address.
    pub host: String,
    /// TCP port, if given.
    pub port: Option<u16>,
}

impl FromStr for SshTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
            Some(_) => return Err(format!("`{s}`: empty user name before `@`")),
            None => (None, s),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) =
                inner.split_once(']').ok_or_else(|| format!("`{s}`: `[` without a closing `]`"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| format!("`{s}`: expected `:PORT` after `]`"))?),
                ),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                _ => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{s}`: no host name (expected [user@]host[:port])"));
        }
        let port = port
            .map(|p| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{s}`: bad port `{p}`")))
            .transpose()?;
        Ok(SshTarget { user, host: host.to_owned(), port })
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        match self.port {
            Some(p) if self.host.contains(':') => write!(f, "[{}]:{p}", self.host),
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl SshTarget {
    /// `user@host` or `host`, as ssh and scp take it (IPv6 unbracketed for ssh).
    fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// `ssh [-p PORT] [-o OPT]... -T DEST -- REMOTE_CMD`: no pty, so the stream is 8-bit clean.
    pub fn ssh(&self, options: &[String], remote_cmd: &str) -> Command {
        let mut c = Command::new(ssh_program("KTAP_SSH", "ssh"));
        if let Some(p) = self.port {
            c.arg("-p").arg(p.to_string());
        }
        for o in options {
            c.arg("-o").arg(o);
        }
        c.arg("-T").arg(self.destination()).arg("--").arg(remote_cmd);
        c
    }

    /// `scp -O -q [-P PORT] [-o OPT]... FILES... DEST:'DIR'/`. `-O`: the original scp protocol, which
    /// needs only a shell on the board (dropbear and busybox boards have no sftp-server); it hands the
    /// path to that shell, hence the quoting.
    pub fn scp(&self, options: &[String], files: &[&std::path::Path], dir: &str) -> Command {
        let mut c = Command::new(ssh_program("KTAP_SCP", "scp"));
        c.args(["-O", "-q"]);
        if let Some(p) = self.port {
            c.arg("-P").arg(p.to_string());
        }
        for o in options {
            c.arg("-o").arg(o);
        }
        c.args(files);
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let dir = sh_quote(dir);
        let dest = match &self.user {
            Some(u) => format!("{u}@{host}:{dir}/"),
            None => format!("{host}:{dir}/"),
        };
        c.arg(dest);
        c
    }

    /// Run `remote_cmd` on the board through ssh and return its stdio as a link.
    pub fn open(&self, options: &[String], remote_cmd: &str) -> io::Result<ChildLink> {
        ChildLink::spawn(self.ssh(options, remote_cmd))
    }
}

/// `s` quoted for a POSIX shell (the board's login shell runs every remote command).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The ssh or scp binary: an environment override (a wrapper script, another build), else the one on
/// the `PATH`.
fn ssh_program(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SshTarget {
        s.parse().unwrap()
    }

    #[test]
    fn targets_parse_and_print_back() {
        assert_eq!(t("board"), SshTarget { user: None, host: "board".into(), port: None });
        assert_eq!(
            t("root@10.0.0.1:2222"),
            SshTarget { user: Some("root".into()), host: "10.0.0.1".into(), port: Some(2222) }
        );
        assert_eq!(t("[::1]:22").host, "::1");
        assert_eq!(t("::1").host, "::1");
        for s in ["board", "root@10.0.0.1:2222", "u@[::1]:22", "u@router"] {
            assert_eq!(t(s).to_string(), s);
        }
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        for (s, needle) in [
            ("@host", "empty user"),
            ("root@", "no host"),
            ("host:0", "bad port"),
            ("host:x", "bad port"),
            ("[::1", "closing"),
            ("[::1]22", "expected `:PORT`"),
        ] {
            let e = s.parse::<SshTarget>().unwrap_err();
            assert!(e.contains(needle) && e.contains(s), "{s}: {e}");
        }
    }

    #[test]
    fn ssh_command_line_has_no_pty_and_the_options() {
        let c = t("root@b:2200").ssh(&["BatchMode=yes".into()], "ktap-agent -");
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-p", "2200", "-o", "BatchMode=yes", "-T", "root@b", "--", "ktap-agent -"]);
        let c = t("[::1]:2200").scp(&[], &[std::path::Path::new("a")], "/tmp/ktap");
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-O", "-q", "-P", "2200", "a", "[::1]:'/tmp/ktap'/"]);
        assert_eq!(sh_quote("a b'c"), r"'a b'\''c'");
    }
}
