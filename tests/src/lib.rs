//! Harness for the end-to-end tests: boot the board's QEMU guest from `cargo xtask build` outputs, run
//! the real `ktap-host` binary against the guest's agent UART, drive workloads on the guest console.
//!
//! The tests need the environment `cargo xtask test` sets: `KTAP_ARTIFACTS` (the board's artifacts
//! directory), `KTAP_HOST_BIN` (the ktap-host binary) and `KTAP_BOARD`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ktap_host::board::Board;
use ktap_host::qemu::{Artifacts, Guest};

pub mod relay;
pub mod sshd;

/// What the tests run against.
pub struct TestEnv {
    /// The board under test.
    pub board: Board,
    /// Its build outputs.
    pub artifacts: Artifacts,
    /// The ktap-host binary.
    pub host_bin: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through `cargo xtask test`, which builds what they need")
    })
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

impl TestEnv {
    /// Read the environment `cargo xtask test` provides.
    pub fn get() -> TestEnv {
        let board_name = var("KTAP_BOARD");
        let board = Board::load(&workspace().join("boards"), &board_name).unwrap_or_else(|e| panic!("{e}"));
        let artifacts =
            Artifacts::load(Path::new(&var("KTAP_ARTIFACTS")), &board_name).unwrap_or_else(|e| panic!("{e}"));
        TestEnv { board, artifacts, host_bin: PathBuf::from(var("KTAP_HOST_BIN")) }
    }

    /// The environment for another built board (`target/ktap/<name>/artifacts.toml`), for tests
    /// that compare boards; `KTAP_HOST_BIN` as for [`TestEnv::get`].
    pub fn for_board(name: &str) -> TestEnv {
        let board = Board::load(&workspace().join("boards"), name).unwrap_or_else(|e| panic!("{e}"));
        let artifacts = Artifacts::load(&Artifacts::default_dir(name), name)
            .unwrap_or_else(|e| panic!("{e} (run `cargo xtask build --board {name}`)"));
        TestEnv { board, artifacts, host_bin: PathBuf::from(var("KTAP_HOST_BIN")) }
    }

    /// Boot a fresh guest (settled: see [`TestEnv::settle`]).
    pub fn boot(&self) -> Guest {
        let guest = Guest::boot(&self.board, &self.artifacts).unwrap_or_else(|e| panic!("boot failed: {e}"));
        self.settle();
        guest
    }

    /// On a board with a kprobe hazard, wait until the tasks that exited lately (init's commands, a
    /// `grep` just run) have been freed: their RCU callbacks are what races with a kprobe hit there.
    pub fn settle(&self) {
        if self.board.kernel.kprobe_hazard.is_some() {
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// A `ktap-host` command with the board preset.
    pub fn host(&self) -> Command {
        let mut c = Command::new(&self.host_bin);
        c.env("KTAP_BOARD", &self.board.name);
        c
    }

    /// `ktap-host push` to `port` (a booted guest's agent pty) with the board's vmlinux; append the
    /// script or `--image` and any other options. On a board whose kernel crashes under kprobes when
    /// a task exits (`kernel.kprobe_hazard`) it opts in: every test there traces kprobes only while
    /// the guest runs [`KprobeCase`] workloads and [`read_file`], which never fork or exit.
    pub fn push(&self, port: &Path) -> Command {
        let mut c = self.host();
        c.arg("push").arg("--port").arg(port).arg("--vmlinux").arg(&self.artifacts.vmlinux);
        c.args(self.kprobe_opt_in());
        c
    }

    /// `--allow-kprobe-hazard` on a board whose kernel has a kprobe hazard, else nothing: for push
    /// commands built by hand, which must then run only [`KprobeCase`] workloads while armed.
    pub fn kprobe_opt_in(&self) -> &'static [&'static str] {
        if self.board.kernel.kprobe_hazard.is_some() { &["--allow-kprobe-hazard"] } else { &[] }
    }

    /// Push `script` (with the board's kprobe opt-in) to a fresh guest, wait until it is tracing, run
    /// `workload` on the console, stop with Ctrl-C, check the kernel log is clean, shut down; returns
    /// stdout. On a board with a kprobe hazard the workload must not fork while kprobes are armed.
    pub fn trace(&self, script: &Path, workload: &str, timeout: Duration) -> String {
        let mut guest = self.boot();
        // `push` already opts in on a board with a kprobe hazard (twice is a usage error)
        let mut c = self.push(guest.agent_port());
        c.arg(script);
        let mut run = HostRun::spawn(c);
        run.wait_armed(timeout);
        guest.console.run_ok(workload, timeout).unwrap();
        run.signal("INT");
        let (status, out, err) = run.finish(timeout);
        assert!(status.success(), "push failed: {status}\n{out}\n{err}");
        let dmesg = guest.console.run_ok("dmesg", timeout).unwrap();
        let bad = kernel_complaints(&dmesg);
        assert!(bad.is_empty(), "kernel complained:\n{}", bad.join("\n"));
        guest.shutdown();
        out
    }

    /// Push the board's exact-count kprobe case ([`TestEnv::kprobe_case`] of `count`) through `push`
    /// (a `push` command with its link set), run its workload on `guest`'s console, stop with Ctrl-C
    /// and check the count; returns stderr.
    pub fn count_exactly(&self, guest: &mut Guest, mut push: Command, count: u32) -> String {
        let timeout = Duration::from_secs(300);
        let case = self.kprobe_case(count);
        push.arg(&case.script);
        let mut run = HostRun::spawn(push);
        run.wait_armed(timeout);
        guest.console.run_ok(&case.workload, timeout).unwrap_or_else(|e| panic!("{e}"));
        run.signal("INT");
        let (status, out, err) = run.finish(timeout);
        assert!(status.success(), "push failed: {status}\n{out}\n{err}");
        assert_eq!(case.counted(&out), Some(case.count), "stdout:\n{out}\nstderr:\n{err}");
        err
    }

    /// The board's exact-count kprobe test: a script, a guest workload that makes `count` hits keyed
    /// `key`. Normally `dd` reading `/dev/zero` byte by byte (vfs_read per `dd`); on a board with a
    /// kprobe hazard, the guest shell's own builtins opening `/dev/null` (`do_filp_open` per `sh`),
    /// which never fork or exit.
    pub fn kprobe_case(&self, count: u32) -> KprobeCase {
        if self.board.kernel.kprobe_hazard.is_some() {
            KprobeCase {
                script: write_script("count_opens", COUNT_OPENS),
                workload: format!("i=0; while [ $i -lt {count} ]; do : </dev/null; i=$((i+1)); done"),
                key: "sh",
                function: "do_filp_open",
                count: count.into(),
            }
        } else {
            KprobeCase {
                script: workspace().join("tests/scripts/count_reads.kp"),
                workload: format!("dd if=/dev/zero of=/dev/null bs=1 count={count}"),
                key: "dd",
                function: "vfs_read",
                count: count.into(),
            }
        }
    }
}

/// Opens per process name, for boards where the kprobe workload must not fork.
const COUNT_OPENS: &str = "# opens per process name\nvar opens = {}\nkprobe:do_filp_open { opens[execname] += 1 }\ntrace_end { print(opens) }\n";

/// A kprobe script, a workload for the guest console, and the exact count it must report.
pub struct KprobeCase {
    /// The script to push.
    pub script: PathBuf,
    /// The guest shell command.
    pub workload: String,
    /// The table key (process name) whose count is checked.
    pub key: &'static str,
    /// The probed kernel function (as `/sys/kernel/debug/kprobes/list` names it).
    pub function: &'static str,
    /// The expected count.
    pub count: u64,
}

impl KprobeCase {
    /// The count the pushed script printed for [`KprobeCase::key`].
    pub fn counted(&self, out: &str) -> Option<u64> {
        count_for(out, self.key)
    }
}

/// A guest shell command printing `path` with builtins only (no `cat`: safe while kprobes are armed
/// on a kernel with a kprobe hazard).
pub fn read_file(path: &str) -> String {
    format!("while IFS= read -r l; do echo \"$l\"; done < {path}")
}

/// Write a script for this test process under `target/e2e-tmp`; returns its path.
pub fn write_script(name: &str, src: &str) -> PathBuf {
    let dir = workspace().join("target/e2e-tmp");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let path = dir.join(format!("{}-{name}.kp", std::process::id()));
    std::fs::write(&path, src).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// How `ktap-host push` begins the line it prints once the program is armed.
pub const ARMED_LINE: &str = "ktap: tracing ";

#[derive(Default)]
struct Output {
    stdout: String,
    stderr: String,
}

/// A running `ktap-host` whose output is collected as it arrives.
pub struct HostRun {
    child: Child,
    out: Arc<(Mutex<Output>, Condvar)>,
    /// The threads reading stdout and stderr; they end at the pipes' EOF.
    pumps: Vec<std::thread::JoinHandle<()>>,
}

fn pump(
    stream: impl Read + Send + 'static,
    out: Arc<(Mutex<Output>, Condvar)>,
    is_err: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let (lock, cv) = &*out;
            // a test that failed while holding the lock poisoned it; its message matters, not ours
            let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
            let s = if is_err { &mut g.stderr } else { &mut g.stdout };
            s.push_str(&line);
            s.push('\n');
            cv.notify_all();
        }
    })
}

impl HostRun {
    /// Start `cmd` with piped output.
    pub fn spawn(mut cmd: Command) -> HostRun {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let out: Arc<(Mutex<Output>, Condvar)> = Arc::default();
        let pumps = vec![
            pump(child.stdout.take().unwrap(), Arc::clone(&out), false),
            pump(child.stderr.take().unwrap(), Arc::clone(&out), true),
        ];
        HostRun { child, out, pumps }
    }

    /// Wait until stderr contains `needle`; panics with everything printed so far on timeout.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) {
        self.wait_stderr_for(&format!("`{needle}`"), timeout, |err| err.contains(needle));
    }

    /// Wait until `push` has armed the program: its line [`ARMED_LINE`], which it prints only after
    /// the agent answered `Started`, i.e. after the kernel registered every probe. Matching a bare
    /// word is not enough: the kprobe-hazard warning printed before the upload says "while tracing".
    pub fn wait_armed(&mut self, timeout: Duration) {
        self.wait_stderr_for(&format!("a line starting `{ARMED_LINE}`"), timeout, |err| {
            err.lines().any(|l| l.starts_with(ARMED_LINE))
        });
    }

    fn wait_stderr_for(&mut self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited {
                // The process may print the line and exit before the pumps have read it (a program
                // that stops by itself a few ticks after arming, on a loaded machine): everything it
                // printed is only known at the pipes' EOF.
                self.drain_pumps(deadline);
            }
            let (lock, cv) = &*self.out;
            let g = lock.lock().unwrap_or_else(|p| p.into_inner());
            if done(&g.stderr) {
                return;
            }
            let now = Instant::now();
            if now >= deadline || exited {
                let text = format!(
                    "ktap-host did not print {what} within {timeout:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    if exited { " (it exited)" } else { "" },
                    g.stdout,
                    g.stderr
                );
                // released first: a panic holding it poisons the lock and the output pumps panic too,
                // burying this message under their backtraces
                drop(g);
                panic!("{text}");
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            drop(cv.wait_timeout(g, wait)); // re-checked from the top, under the lock
        }
    }

    /// Wait until both pumps reached their pipe's EOF, at most until `deadline` (a grandchild holding a
    /// pipe open would keep a pump waiting).
    fn drain_pumps(&mut self, deadline: Instant) {
        for pump in std::mem::take(&mut self.pumps) {
            while !pump.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Send a signal to the process (SIGINT = Ctrl-C, SIGKILL = unplug).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status();
        assert!(status.map(|s| s.success()).unwrap_or(false), "kill -{sig} failed");
    }

    /// Wait for exit; returns the status, stdout and stderr.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let g = self.out.0.lock().unwrap_or_else(|p| p.into_inner());
                let text = format!(
                    "ktap-host did not exit within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    g.stdout, g.stderr
                );
                drop(g); // as in `wait_stderr_for`: no poisoned lock under the message
                panic!("{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Everything it printed, up to the pipes' EOF: on a loaded machine a fixed grace period lost
        // the last lines (the final table, the summary). The wait is bounded by what is left of the
        // timeout.
        self.drain_pumps(deadline);
        let g = self.out.0.lock().unwrap_or_else(|p| p.into_inner());
        (status, g.stdout.clone(), g.stderr.clone())
    }
}

/// xorshift64*: small, seeded, the same sequence everywhere (mutants, line noise).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `p` times in a thousand.
    pub fn per_mille(&mut self, p: u32) -> bool {
        p > 0 && (self.next() % 1000) < u64::from(p)
    }
}

/// A script of `tests/scripts/`.
pub fn script(name: &str) -> PathBuf {
    workspace().join("tests/scripts").join(name)
}

/// A fresh scratch directory under `target/e2e-tmp`, unique to this test process and `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = workspace().join("target/e2e-tmp").join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The count a `print(table)` line reports for `key` (the last number on the line starting with it).
pub fn count_for(out: &str, key: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
}

/// The probes the guest kernel has registered (`/sys/kernel/debug/kprobes/list`).
pub fn kprobes(guest: &mut Guest) -> String {
    guest
        .console
        .run_ok(&read_file("/sys/kernel/debug/kprobes/list"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Lines of `dmesg` that mean the kernel is unhappy. A `WARN()` splat reads `WARNING: CPU: n PID: ...`;
/// other lines that merely start with "WARNING:" are messages (pseries says "WARNING: nvram corruption
/// detected: 0-length partition" on every boot with QEMU's blank NVRAM).
pub fn kernel_complaints(dmesg: &str) -> Vec<String> {
    const BAD: [&str; 7] = [
        "Oops",
        "BUG:",
        "WARNING: CPU:",
        "Unable to handle",
        "Internal error",
        "Kernel panic",
        "general protection",
    ];
    dmesg.lines().filter(|l| BAD.iter().any(|b| l.contains(b))).map(str::to_owned).collect()
}

/// The workload of the open-by-name tests: the shell opens three files by name, the first three
/// times, the second twice, the third (missing) once. Redirections of builtins open the files in
/// the shell itself (no fork: safe on boards with a kprobe hazard); `read`, not `:`, because a
/// failed redirection of a special builtin aborts the whole command line in an interactive shell.
pub struct ThreeOpens {
    /// The three paths, opened 3, 2 and 1 times; nothing else on the board opens them.
    pub names: [String; 3],
}

impl ThreeOpens {
    /// Paths under `/tmp` named after `tag` (each test its own).
    pub fn new(tag: &str) -> ThreeOpens {
        ThreeOpens { names: ["a", "bb", "missing"].map(|n| format!("/tmp/ktap-{tag}-{n}")) }
    }

    /// The shell command that opens them.
    pub fn workload(&self) -> String {
        let [a, b, missing] = &self.names;
        format!(
            "echo a > {a}; echo b > {b}; for f in {a} {a} {b} {missing}; do read x < $f; done 2>/dev/null; true"
        )
    }

    /// Assert that `out` has the line `line(path)` exactly 3, 2 and 1 times for the three paths.
    pub fn assert_counted(&self, out: &str, board: &str, line: impl Fn(&str) -> String) {
        for (name, want) in self.names.iter().zip([3, 2, 1]) {
            let l = line(name);
            let n = out.lines().filter(|x| *x == l).count();
            assert_eq!(n, want, "{board}: `{l}` seen {n} times, not {want}:\n{out}");
        }
    }
}
