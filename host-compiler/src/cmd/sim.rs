//! `ktap-host sim`: run a script or image on the host against an events file, printing what `push`
//! would print (the library half is `ktap_host::sim`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use ktap_host::format::{Renderer, kernel_symbolizer};
use ktap_host::lang;
use ktap_host::sidecar::Sidecar;
use ktap_host::sim::{self, EventsKernel, events};
use ktap_host::vmlinux::Vmlinux;

use super::BoardOpts;
use super::check::{fail, kernel_resolver};
use super::disasm::load_sidecar;

/// Run a script (or a compiled image) with the kernel module's own VM on the host, against recorded
/// or synthetic events, and print exactly what `push` would print: records on stdout, problems on
/// stderr. trace_begin runs before the first event and trace_end after the last.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// The ktap script (or use --image)
    #[arg(value_name = "SCRIPT", required_unless_present = "image", conflicts_with = "image")]
    pub script: Option<PathBuf>,
    /// A compiled image instead of a script (its sidecar IMAGE.json names the probes)
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<PathBuf>,
    /// Sidecar of --image [default: IMAGE.json]
    #[arg(long, value_name = "PATH", requires = "image")]
    pub sidecar: Option<PathBuf>,
    /// The events, one JSON object per line (`--help` shows the fields)
    ///
    /// Blank lines and lines starting with `#` are skipped. A line:
    ///   {"probe": "kprobe:vfs_read", "pid": 12, "tid": 12, "uid": 0, "cpu": 0, "comm": "dd",
    ///    "time_ns": 1000, "args": [3, 0, 1], "retval": 1, "repeat": 1000}
    /// Only `probe` is required, spelled as in the script (`kprobe:f`, `kretprobe:f`,
    /// `trace sub:event`). Defaults: pid 1, tid = pid, uid 0, cpu 0, comm "init", args 0, retval 0,
    /// repeat 1, time_ns the previous hit's plus 1000 (the first: 0). Events for probes the program
    /// does not have are counted and reported on stderr; a malformed line is an error (file:line).
    #[arg(long, value_name = "FILE.jsonl", verbatim_doc_comment)]
    pub events: PathBuf,
    /// Compile the script against this vmlinux [default: every kernel symbol exists, with a fake
    /// address, and tracepoint patterns match the tracepoints the events name]
    #[arg(long, env = "KTAP_VMLINUX", value_name = "PATH")]
    pub vmlinux: Option<PathBuf>,
    #[command(flatten)]
    pub board: BoardOpts,
}

/// `ktap-host sim` under the name the subcommand enum uses for every command.
pub type Cmd = SimArgs;

impl SimArgs {
    /// Simulate and print.
    pub fn run(self) -> anyhow::Result<()> {
        let ev_name = self.events.display().to_string();
        let text = std::fs::read_to_string(&self.events)
            .with_context(|| format!("cannot read events file {ev_name}"))?;
        let evs = events::parse(&text, &ev_name)?;
        let (origin, image, sidecar) = self.program(&evs)?;
        let renderer = match (&self.vmlinux, sidecar.stacks.is_empty()) {
            // stacks print as symbol+offset, as `push` prints them; the events' addresses are the
            // vmlinux's own (no KASLR slide on the host)
            (Some(path), false) => {
                let v = Vmlinux::open_for(path, self.board.load()?.arch)?;
                Renderer::new(&sidecar).with_symbolizer(kernel_symbolizer(&v)?)
            }
            _ => Renderer::new(&sidecar),
        };
        let out = sim::simulate_with(&image, &sidecar, &evs, renderer).with_context(|| origin.clone())?;
        super::emit(&out.stdout)?;
        for p in &out.problems {
            eprintln!("ktap: {p}");
        }
        Ok(())
    }

    /// The image and its sidecar: compiled from the script, or read from --image.
    fn program(&self, evs: &[events::Event]) -> anyhow::Result<(String, Vec<u8>, Sidecar)> {
        if let Some(path) = &self.image {
            let origin = path.display().to_string();
            let bytes = std::fs::read(path).with_context(|| format!("cannot read image {origin}"))?;
            let Some(sc) = load_sidecar(path, self.sidecar.as_deref(), false)? else {
                bail!(
                    "no sidecar {} for image {origin}: sim needs it to match events to probes",
                    Sidecar::path_for(path).display()
                );
            };
            return Ok((origin, bytes, sc));
        }
        let Some(path) = &self.script else { bail!("give a SCRIPT or --image") };
        let name = path.display().to_string();
        let source = std::fs::read_to_string(path).with_context(|| format!("cannot read script {name}"))?;
        let board = self.board.load()?;
        let (opts, resolver) =
            kernel_resolver(self.vmlinux.as_deref(), &board, Box::new(EventsKernel::of(evs)))?;
        let c = lang::compile(&source, &name, &opts, resolver.as_ref())
            .map_err(|diags| fail(&diags, &name, &source))?;
        Ok((name, c.image, c.sidecar))
    }
}
