//! `ktap-host push`: connect to the board's agent, check the kernel, compile (or load) the program,
//! upload, run, and print the formatted records until Ctrl-C, `--duration` or the program ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ktap_host::board::Board;
use ktap_host::format::{Renderer, kernel_symbolizer};
use ktap_host::lang;
use ktap_host::lang::Resolver;
use ktap_host::link::{Link, SerialLink, SshTarget, console, ssh};
use ktap_host::qemu::{Artifacts, Guest};
use ktap_host::session::{
    AgentInfo, ImageContext, Output, RunOptions, Session, StopFlag, Timeouts, function_at,
};
use ktap_host::sidecar::Sidecar;
use ktap_host::textout::TextOut;
use ktap_host::vmlinux::symmap::SymbolMap;
use ktap_host::vmlinux::{Vmlinux, hex};
use ktap_protocol::image::{Image, ProbeKind};

use super::BoardOpts;

/// Push a ktap script to a board and print what it reports until stopped (Ctrl-C, --duration, or
/// the program's end).
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    board: BoardOpts,
    #[command(flatten)]
    link: LinkOpts,
    /// The unstripped vmlinux of the kernel the board runs (e.g. from linux-image-*-dbg); kernel
    /// symbols come from it, and its build-id must equal the running kernel's [default for a
    /// booted QEMU board: the one in its artifacts]
    #[arg(long, env = "KTAP_VMLINUX", value_name = "PATH")]
    vmlinux: Option<PathBuf>,
    /// Without the vmlinux: the kernel's System.map, or /proc/kallsyms saved from the board as root.
    /// The script is compiled from it (kprobes and tracepoints; `arg.NAME` and members need a
    /// vmlinux) and the image lists the symbols it uses, which the agent checks against the running
    /// kernel's /proc/kallsyms before arming anything. With a vmlinux given as well, the map is
    /// still what the script is compiled from, and the vmlinux's build-id must match the board's
    #[arg(long, alias = "kallsyms", value_name = "PATH")]
    system_map: Option<PathBuf>,
    /// Where `cargo xtask build` left a QEMU board's kernel, initramfs and vmlinux
    /// [default: target/ktap/BOARD of this workspace]
    #[arg(long, env = "KTAP_ARTIFACTS", value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// QEMU boards: run this shell command in the guest once tracing is armed, and stop when it exits
    #[arg(long, value_name = "CMD")]
    run: Option<String>,
    /// Print how long each phase took after the link opened (connect, compile, upload and arm, first
    /// event), and what the packed record stream cost on the link, to stderr
    #[arg(long)]
    timings: bool,
    /// Send the record stream as it is instead of DEFLATE-packed (the agent packs each batch by
    /// default: trace records repeat, and a serial line is slow); for comparing the two
    #[arg(long, hide_short_help = true)]
    no_pack: bool,
    /// Stop after this many seconds (fractions allowed) [default: until Ctrl-C]
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Push this compiled image (and its IMAGE.json sidecar, from `ktap-host compile`) instead of
    /// compiling SCRIPT
    #[arg(long, value_name = "IMAGE", conflicts_with = "script")]
    image: Option<PathBuf>,
    /// Run kprobes and kretprobes on a board whose kernel is known to crash under them (its board
    /// file names the hazard; e.g. MIPS Malta): only with a workload that never forks or exits
    #[arg(long)]
    allow_kprobe_hazard: bool,
    /// Testing aid: skip the host-side check of the image, so the board's own verifier can be
    /// exercised with corrupt images
    #[arg(long, hide_short_help = true)]
    no_host_verify: bool,
    /// The ktap script to run
    #[arg(required_unless_present = "image", value_name = "SCRIPT")]
    script: Option<PathBuf>,
}

/// How the board's agent is reached: the same protocol and code path over each once the byte stream
/// is open. Shared by `push` and `deploy`.
#[derive(Debug, Args)]
pub struct LinkOpts {
    /// Serial port of the board's agent: a USB-serial adapter (/dev/ttyUSB0) or a pty (/dev/pts/N).
    /// Without it or --ssh, a board with a [qemu] section is booted in QEMU
    #[arg(long, env = "KTAP_PORT", value_name = "PATH", conflicts_with = "ssh")]
    pub port: Option<String>,
    /// Line speed of --port [default: the board file's agent baud]
    #[arg(long, env = "KTAP_BAUD", value_name = "N")]
    pub baud: Option<u32>,
    /// --port is the board's login console, at a shell prompt: type the agent command there, speak
    /// the protocol, and leave the console usable again afterwards (logs nothing in)
    #[arg(long, requires = "port")]
    pub console: bool,
    /// Reach the board with the system ssh (so ~/.ssh/config, keys and jump hosts apply), running the
    /// agent over its stdin/stdout
    #[arg(long, env = "KTAP_SSH_TARGET", value_name = "[USER@]HOST[:PORT]")]
    pub ssh: Option<SshTarget>,
    /// An ssh (and scp) option, passed as `-o OPT`; repeatable (e.g. IdentityFile=~/.ssh/board)
    #[arg(long = "ssh-option", value_name = "OPT", requires = "ssh")]
    pub ssh_options: Vec<String>,
    /// The command that starts the agent on the board, run by --ssh or typed on --console [default:
    /// `ktap-agent -` (ssh) or `ktap-agent --console --baud N`, from where `deploy` puts it or the PATH]
    #[arg(long, value_name = "CMD")]
    pub agent_command: Option<String>,
}

impl LinkOpts {
    /// Whether a link to a real board was given, on the command line or in the board file's
    /// `[link]` (else a QEMU board is booted).
    pub fn given(&self, board: &Board) -> bool {
        self.port.is_some() || self.ssh.is_some() || board.link.is_some()
    }

    /// The transport to use: the command line's --port or --ssh if given, else the board file's
    /// `[link]`, whose settings the command line's --baud, --console, --ssh-option and
    /// --agent-command still override.
    pub fn resolve(&self, board: &Board) -> anyhow::Result<LinkOpts> {
        let mut opts = LinkOpts {
            port: self.port.clone(),
            baud: self.baud,
            console: self.console,
            ssh: self.ssh.clone(),
            ssh_options: self.ssh_options.clone(),
            agent_command: self.agent_command.clone(),
        };
        let Some(l) = board.link.as_ref().filter(|_| self.port.is_none() && self.ssh.is_none()) else {
            return Ok(opts);
        };
        opts.port = l.port.clone();
        opts.ssh = match &l.ssh {
            Some(t) => Some(t.parse().map_err(|e| anyhow::anyhow!("board {} [link] ssh: {e}", board.name))?),
            None => None,
        };
        opts.baud = self.baud.or(l.baud);
        opts.console = self.console || l.console;
        if self.ssh_options.is_empty() {
            opts.ssh_options = l.ssh_options.clone();
        }
        opts.agent_command = self.agent_command.clone().or_else(|| l.agent_command.clone());
        Ok(opts)
    }

    /// Open the link to a real board given on the command line or in the board file; `None` when
    /// there is neither.
    pub fn open(&self, board: &Board) -> anyhow::Result<Option<Box<dyn Link>>> {
        let opts = self.resolve(board)?;
        let from_board = if self.port.is_none() && self.ssh.is_none() {
            format!(" (the [link] of board {}; --port or --ssh overrides it)", board.name)
        } else {
            String::new()
        };
        let baud = opts.baud.unwrap_or(board.agent.baud);
        if let Some(target) = &opts.ssh {
            let cmd = opts.agent_command.clone().unwrap_or_else(ssh::default_agent_command);
            let link =
                target.open(&opts.ssh_options, &cmd).with_context(|| format!("ssh {target}{from_board}"))?;
            return Ok(Some(Box::new(link)));
        }
        let Some(port) = &opts.port else { return Ok(None) };
        let mut link =
            SerialLink::open(port, baud).with_context(|| format!("serial port {port}{from_board}"))?;
        if opts.console {
            let cmd = opts.agent_command.clone().unwrap_or_else(|| console::default_agent_command(baud));
            console::start_agent(&mut link, &cmd)
                .with_context(|| format!("starting the agent on the console {port}"))?;
        }
        Ok(Some(Box::new(link)))
    }
}

/// The program to upload: image bytes and the host-side names for its ids.
struct Program {
    image: Vec<u8>,
    sidecar: Sidecar,
    /// Where it came from, for messages.
    origin: PathBuf,
}

impl Cmd {
    /// Run the push flow.
    pub fn run(self) -> anyhow::Result<()> {
        let duration = match self.duration {
            Some(s) if !(s.is_finite() && s > 0.0) => {
                bail!("--duration must be a positive number of seconds")
            }
            Some(s) => Some(Duration::from_secs_f64(s)),
            None => None,
        };
        let board = self.board.load()?;
        // Read inputs before touching the board, so a typo fails fast.
        let given_vmlinux = self.vmlinux.as_deref().map(|p| Vmlinux::open_for(p, board.arch)).transpose()?;
        let mut map =
            self.system_map.as_deref().map(SymbolMap::open).transpose().map_err(anyhow::Error::msg)?;
        if let Some(m) = map.as_mut() {
            m.set_arch(board.arch);
        }
        let prebuilt = self.image.as_deref().map(load_image).transpose()?;
        let source = match &self.script {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read script {}", path.display()))?,
            ),
            None => None,
        };
        if self.run.is_some() && self.link.given(&board) {
            bail!(
                "--run types a command on a booted QEMU guest's console; with --port or --ssh, run your workload on the board yourself"
            );
        }

        // A QEMU board's artifacts (and so its vmlinux) are known before it boots.
        let artifacts = match self.link.given(&board) {
            true => None,
            false => Some(qemu_artifacts(&board, self.artifacts.as_deref())?),
        };
        // With a System.map, a QEMU board's own vmlinux is not used: the map is what was asked for.
        let mut vmlinux = match (given_vmlinux, &artifacts, &map) {
            (Some(v), ..) => Some(v),
            (None, Some(a), None) => Some(Vmlinux::open_for(&a.vmlinux, board.arch)?),
            (None, _, Some(_)) => None,
            (None, None, None) => {
                bail!("give --vmlinux (or --system-map): the board's kernel symbols come from its vmlinux")
            }
        };
        // Compile once before touching the board: script errors and a refused kprobe must not cost a
        // boot or a connection. The program uploaded is compiled again once connected, against the
        // kernel base the agent reports (KASLR).
        if let (None, Some(path), Some(src)) = (&prebuilt, &self.script, &source) {
            let first = compile(path, src, &board, kernel(&map, &vmlinux)?)?;
            check_kprobes(&first, &board, self.allow_kprobe_hazard, false)?;
        }
        if let Some(p) = &prebuilt {
            check_kprobes(p, &board, self.allow_kprobe_hazard, false)?;
        }

        let stop = StopFlag::new();
        install_ctrl_c(&stop)?;

        let (link, mut guest) = open_link(&board, &self.link, artifacts)?;
        // Timings start once the link is open: a QEMU boot is not part of the push.
        let t0 = Instant::now();
        let mut session = Session::connect(link, Timeouts::default())?;
        let agent = session.agent().clone();
        eprintln!("ktap: {}", session.connected_to());
        let t_connected = t0.elapsed();
        // The build-id check is mandatory whenever a vmlinux is used, even beside a System.map.
        if let Some(v) = vmlinux.as_mut() {
            session.check_build_id(v.path(), v.build_id())?;
            v.rebase(&agent.base_symbol, agent.base_addr)?;
        }
        if let Some(m) = map.as_mut() {
            m.rebase(&agent.base_symbol, agent.base_addr).map_err(anyhow::Error::msg)?;
        }

        let program = match (prebuilt, &self.script, source) {
            (Some(p), ..) => p,
            (None, Some(path), Some(src)) => compile(path, &src, &board, kernel(&map, &vmlinux)?)?,
            _ => bail!("give a SCRIPT or --image"),
        };
        if let Some(v) = &vmlinux {
            super::symbols::index::in_background(v);
        }
        check_program(&program, &agent, vmlinux.as_ref(), !self.no_host_verify)?;
        check_kprobes(&program, &board, self.allow_kprobe_hazard, true)?;
        let t_compiled = t0.elapsed();
        // Everything the output needs is ready before the program is armed: from then on the
        // board expects a ping every 250 ms.
        let renderer = match (program.sidecar.stacks.is_empty(), &vmlinux, &map) {
            (true, ..) => Renderer::new(&program.sidecar),
            // stacks print as symbol+offset (the table is built only for programs that have some)
            (false, Some(v), _) => Renderer::new(&program.sidecar).with_symbolizer(kernel_symbolizer(v)?),
            (false, None, Some(m)) => Renderer::new(&program.sidecar).with_symbolizer(m.symbolizer()),
            (false, None, None) => Renderer::new(&program.sidecar),
        };
        let mut out = CliOutput::new(renderer)?;

        let probes = session.upload(&program.image, Some(&program.sidecar))?;
        session.set_record_packing(!self.no_pack);
        session.start()?;
        let t_armed = t0.elapsed();
        out.status(&format!("tracing {} ({probes} probes); Ctrl-C to stop", program.origin.display()));
        let done = Arc::new(AtomicBool::new(false));
        let summary = std::thread::scope(|scope| {
            let until: Option<StopWhen<'_>> = match (&self.run, guest.as_mut()) {
                (Some(cmd), Some((g, _))) => {
                    let console = &mut g.console;
                    let finished = Arc::clone(&done);
                    scope.spawn(move || {
                        match console.run(cmd, RUN_TIMEOUT) {
                            Ok((output, status)) => {
                                for line in output.lines() {
                                    eprintln!("guest: {line}");
                                }
                                eprintln!("ktap: guest command exited with status {status}");
                            }
                            Err(e) => eprintln!("ktap: guest command failed: {e}"),
                        }
                        finished.store(true, Ordering::SeqCst);
                    });
                    let done = Arc::clone(&done);
                    Some(Box::new(move || done.load(Ordering::SeqCst)))
                }
                _ => None,
            };
            session.run(&mut out, RunOptions { duration, stop, until })
        })?;
        let first_event = out.finish()?;
        if let Some(problems) = summary.problems() {
            eprintln!("ktap: {problems}");
        }
        if self.timings {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            eprintln!(
                "ktap: timings: connected {:.0} ms, compiled {:.0} ms, armed {:.0} ms, first event {}",
                ms(t_connected),
                ms(t_compiled),
                ms(t_armed),
                first_event.map_or("none".to_owned(), |t| format!("{:.0} ms", ms(t.duration_since(t0))))
            );
            let (wire, records) = session.stream_bytes();
            eprintln!(
                "ktap: record stream: {wire} bytes over the link for {records} bytes of records ({:.1}x packed)",
                records as f64 / wire.max(1) as f64
            );
        }
        drop(session);
        if let Some((g, _)) = guest {
            g.shutdown();
        }
        Ok(())
    }
}

/// A QEMU guest booted for this push and the artifacts it was booted from.
type Booted = (Guest, Artifacts);

/// A condition polled by the run loop; true stops the program.
type StopWhen<'a> = Box<dyn FnMut() -> bool + 'a>;

/// How long a `--run` command may take in the guest.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// The build outputs of a QEMU board (from `--artifacts` or the workspace's default); an error for
/// real hardware, which needs `--port` or `--ssh`.
fn qemu_artifacts(board: &Board, dir: Option<&Path>) -> anyhow::Result<Artifacts> {
    if board.qemu.is_none() {
        bail!(
            "board `{}` is real hardware: give --port with its serial device, or --ssh (or a [link] in its board file)",
            board.name
        );
    }
    let dir = dir.map_or_else(|| Artifacts::default_dir(&board.name), Path::to_path_buf);
    Ok(Artifacts::load(&dir, &board.name)?)
}

/// The single place a link is chosen: `--port` (a serial port, maybe a shared console) or `--ssh`;
/// otherwise (`artifacts` given) the QEMU board is booted and its agent UART's pty opened like any
/// serial port. The guest is returned so it outlives the link.
fn open_link(
    board: &Board,
    opts: &LinkOpts,
    artifacts: Option<Artifacts>,
) -> anyhow::Result<(Box<dyn Link>, Option<Booted>)> {
    if let Some(link) = opts.open(board)? {
        return Ok((link, None));
    }
    let baud = opts.baud.unwrap_or(board.agent.baud);
    let Some(artifacts) = artifacts else {
        bail!(
            "board `{}` is real hardware: give --port with its serial device, or --ssh (or a [link] in its board file)",
            board.name
        );
    };
    eprintln!("ktap: booting {} in QEMU (kernel {})", board.name, artifacts.kernel_release);
    let started = Instant::now();
    let guest = Guest::boot(board, &artifacts)?;
    eprintln!(
        "ktap: guest up in {:.1} s, agent on {}",
        started.elapsed().as_secs_f64(),
        guest.agent_port().display()
    );
    let link = SerialLink::open(&guest.agent_port().to_string_lossy(), baud)?;
    Ok((Box::new(link), Some((guest, artifacts))))
}

/// Read a compiled image and its sidecar.
fn load_image(path: &Path) -> anyhow::Result<Program> {
    let image = std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
    let sc_path = Sidecar::path_for(path);
    let text = std::fs::read_to_string(&sc_path).with_context(|| {
        format!("cannot read the sidecar {} of image {}", sc_path.display(), path.display())
    })?;
    let sidecar: Sidecar =
        serde_json::from_str(&text).with_context(|| format!("sidecar {} is not valid", sc_path.display()))?;
    Ok(Program { image, sidecar, origin: path.to_owned() })
}

/// What the script is compiled against: the System.map if given (the image then lists its symbols
/// for the agent's kallsyms check, plus the vmlinux's build-id when one is given too), else the
/// vmlinux.
struct Kernel<'k> {
    resolver: &'k dyn Resolver,
    build_id: &'k [u8],
}

fn kernel<'k>(map: &'k Option<SymbolMap>, vmlinux: &'k Option<Vmlinux>) -> anyhow::Result<Kernel<'k>> {
    let build_id = vmlinux.as_ref().map_or(&[][..], |v| v.build_id());
    match (map, vmlinux) {
        (Some(m), _) => {
            if m.symbol_base().is_none() {
                bail!(
                    "{} has neither `_stext` nor `_text`: the agent could not check it against the running kernel",
                    m.path().display()
                );
            }
            Ok(Kernel { resolver: m, build_id })
        }
        (None, Some(v)) => Ok(Kernel { resolver: v, build_id }),
        (None, None) => bail!("compiling a script needs --vmlinux or --system-map"),
    }
}

/// Compile `src` against the kernel's symbols (kprobe addresses rebased to the running kernel).
/// Diagnostics go to stderr, rendered against the source.
fn compile(path: &Path, src: &str, board: &Board, kernel: Kernel<'_>) -> anyhow::Result<Program> {
    let name = path.display().to_string();
    let opts = lang::CompileOptions { arch: board.arch, build_id: kernel.build_id.to_vec() };
    match lang::compile(src, &name, &opts, kernel.resolver) {
        Ok(c) => Ok(Program { image: c.image, sidecar: c.sidecar, origin: path.to_owned() }),
        Err(diags) => {
            lang::emit_stderr(&diags, &name, src);
            let n = diags.len();
            bail!("{name}: {n} error{} in the script", if n == 1 { "" } else { "s" })
        }
    }
}

/// The host-side checks before an upload: the image's structure and the VM's verifier (the same code
/// the kernel runs), and that it was compiled for the running kernel (its build-id and KASLR slide).
fn check_program(
    p: &Program,
    agent: &AgentInfo,
    vmlinux: Option<&Vmlinux>,
    verify: bool,
) -> anyhow::Result<()> {
    if !verify {
        eprintln!("ktap: --no-host-verify: the image goes to the board unchecked");
        return Ok(());
    }
    let img = Image::parse(&p.image).with_context(|| format!("image {} is malformed", p.origin.display()))?;
    if let Err(e) = ktap_vm::verify(&img) {
        let ctx = ImageContext { image: Some(&p.image), sidecar: Some(&p.sidecar) };
        let func = function_at(ctx, e.offset()).map(|f| format!(" (in `{f}`)")).unwrap_or_default();
        bail!("image {} fails the host-side verifier: {e}{func}", p.origin.display());
    }
    // An image compiled from a System.map has no build-id (the agent checks its symbols instead);
    // any build-id an image carries must be the running kernel's.
    if (img.symbols.is_none() || !img.build_id.is_empty()) && img.build_id != agent.build_id.as_slice() {
        bail!(
            "image {} was compiled for kernel build-id {} but the running kernel ({}) has {}: recompile it against this kernel's vmlinux",
            p.origin.display(),
            if img.build_id.is_empty() { "(none)".to_owned() } else { hex(img.build_id) },
            agent.release,
            hex(&agent.build_id)
        );
    }
    check_slide(p, vmlinux)
}

/// An image compiled earlier against a vmlinux holds kprobe addresses for the KASLR slide it was
/// compiled with; on a kernel that runs at another slide they point into the wrong code, so it is
/// refused (a script is compiled on the spot for the running slide instead).
fn check_slide(p: &Program, vmlinux: Option<&Vmlinux>) -> anyhow::Result<()> {
    let (Some(assumed), Some(v)) = (p.sidecar.kernel_slide, vmlinux) else { return Ok(()) };
    if assumed != v.slide() {
        bail!(
            "image {} holds kernel addresses for a kernel slid by {assumed:#x}, but the board's kernel runs slid by {:#x} (KASLR): push the script instead, so it is compiled for the running kernel",
            p.origin.display(),
            v.slide()
        );
    }
    Ok(())
}

/// Refuse kprobes on a board whose kernel crashes under them, or, opted in, warn about them (with
/// `warn`: the final check, so the warning is printed once).
fn check_kprobes(p: &Program, board: &Board, allow: bool, warn: bool) -> anyhow::Result<()> {
    let mut kprobes = 0;
    if let Ok(img) = Image::parse(&p.image) {
        img.probes(|s| kprobes += usize::from(matches!(s.kind, ProbeKind::Kprobe | ProbeKind::Kretprobe)));
    }
    match board.kprobe_policy(kprobes, allow) {
        Ok(warning) => {
            if let Some(w) = warning.filter(|_| warn) {
                eprintln!("ktap: {w}");
            }
            Ok(())
        }
        Err(refusal) => bail!("{}: {refusal}", p.origin.display()),
    }
}

/// First Ctrl-C (or SIGTERM) stops the program cleanly; a second one exits at once.
fn install_ctrl_c(stop: &StopFlag) -> anyhow::Result<()> {
    let stop = stop.clone();
    ctrlc::set_handler(move || {
        if stop.is_set() {
            eprintln!("ktap: interrupted again, exiting without waiting for the board");
            std::process::exit(130);
        }
        stop.trigger();
    })
    .context("cannot install the Ctrl-C handler")
}

/// Text queued for stdout past which `push` grants the board no more credit: a reader that stopped
/// reading (a paused pager) holds the trace back on the board, where what does not fit is dropped
/// and counted, instead of in the host's memory or in a blocked write that would starve the pings.
const STDOUT_MARK: usize = 256 * 1024;

/// Formatted records to stdout, everything else to stderr; both written by threads of their own
/// ([`TextOut`]), so neither a paused pager nor a slow terminal ever stops the session's pings.
struct CliOutput<'s> {
    renderer: Renderer<'s>,
    stdout: TextOut,
    stderr: TextOut,
    /// When the first records arrived (for --timings).
    first_event: Option<Instant>,
}

impl<'s> CliOutput<'s> {
    fn new(renderer: Renderer<'s>) -> anyhow::Result<Self> {
        Ok(CliOutput {
            renderer,
            stdout: TextOut::spawn("ktap-stdout", std::io::stdout(), STDOUT_MARK)
                .context("starting the output thread")?,
            // status lines are few and short: never a reason to hold the board back
            stderr: TextOut::spawn("ktap-stderr", std::io::stderr(), usize::MAX)
                .context("starting the output thread")?,
            first_event: None,
        })
    }

    /// A `ktap: ` line on stderr. A failing stderr is not worth stopping the trace for.
    fn status(&self, line: &str) {
        let _ = self.stderr.write(format!("ktap: {line}\n"));
    }

    fn flush_problems(&mut self) {
        for p in self.renderer.take_problems() {
            self.status(&p);
        }
    }

    /// The program's last output (trace_end's tables), everything queued written out; returns
    /// when the first records arrived.
    fn finish(mut self) -> anyhow::Result<Option<Instant>> {
        let text = self.renderer.finish();
        self.flush_problems();
        let written = self.stdout.write(text).and_then(|()| self.stdout.finish());
        let _ = self.stderr.finish();
        written.context("writing output")?;
        Ok(self.first_event)
    }
}

impl Output for CliOutput<'_> {
    fn records(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.first_event.get_or_insert_with(Instant::now);
        let text = self.renderer.feed(data);
        self.stdout.write(text)?;
        self.flush_problems();
        Ok(())
    }

    fn notice(&mut self, line: &str) {
        self.status(line);
    }

    fn has_room(&self) -> bool {
        self.stdout.has_room()
    }
}
