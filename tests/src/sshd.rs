//! A throwaway `sshd` on loopback for the SSH transport tests: its own config, host key and client
//! key in a temporary directory, a free high port, killed when dropped. Needs `openssh-server`
//! (installed by `cargo xtask setup`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd and the options a client needs to log in to it.
pub struct Sshd {
    child: Child,
    /// `user@127.0.0.1:port`.
    pub target: String,
    /// `-o` options for ssh/scp: the throwaway identity, a private known_hosts, no prompts.
    pub client_options: Vec<String>,
    /// The temporary directory (keys, config, known_hosts).
    pub dir: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path));
}

impl Sshd {
    /// Start sshd in `dir` (created), accepting the current user with a fresh key.
    pub fn start(dir: &Path) -> Sshd {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| panic!("no sshd: run `cargo xtask setup` (it installs openssh-server)"));
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        keygen(&dir.join("host_key"));
        keygen(&dir.join("id"));
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let user = user.trim().to_owned();
        // sshd started by root insists on its privilege separation directory
        if Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false) {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel ERROR\n",
                d = dir.display()
            ),
        )
        .unwrap();
        // its log (-e: to stderr) goes to a file: the readiness probe below alone makes it complain
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {sshd}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on 127.0.0.1:{port} within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let client_options = vec![
            format!("IdentityFile={}/id", dir.display()),
            "IdentitiesOnly=yes".into(),
            format!("UserKnownHostsFile={}/known_hosts", dir.display()),
            "GlobalKnownHostsFile=/dev/null".into(),
            "StrictHostKeyChecking=accept-new".into(),
            "BatchMode=yes".into(),
            "LogLevel=ERROR".into(),
        ];
        Sshd { child, target: format!("{user}@127.0.0.1:{port}"), client_options, dir }
    }

    /// `--ssh TARGET --ssh-option OPT...` for ktap-host.
    pub fn host_args(&self) -> Vec<String> {
        let mut a = vec!["--ssh".to_owned(), self.target.clone()];
        for o in &self.client_options {
            a.push("--ssh-option".into());
            a.push(o.clone());
        }
        a
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
