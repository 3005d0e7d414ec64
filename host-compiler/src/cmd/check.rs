//! `ktap-host check`: report every error in a script without writing anything.
//!
//! Also home of [`ScriptOpts`], the options `check` and `compile` share: the script, the board (its
//! arch decides how many `argN` exist) and the optional vmlinux that resolves kernel symbols.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ktap_host::board::Board;
use ktap_host::lang::{self, CompileOptions, NoKernel, Resolver};
use ktap_host::vmlinux::Vmlinux;
use ktap_host::vmlinux::symmap::SymbolMap;

use super::BoardOpts;

/// Check a ktap script: syntax, names, types, limits and (with --vmlinux) kernel symbols. Prints
/// every error; exits non-zero if there is any.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub script: ScriptOpts,
}

/// `ktap-host check` under the name the subcommand enum uses for every command.
pub type Cmd = CheckArgs;

/// The script and the kernel it is checked or compiled against.
#[derive(Debug, Clone, Args)]
pub struct ScriptOpts {
    /// The ktap script
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// The unstripped vmlinux of the kernel the board runs (e.g. from linux-image-*-dbg): resolves
    /// kprobe functions and tracepoints, and its build-id goes into the image. Addresses are
    /// link-time ones (`push` rebases them to the running kernel)
    #[arg(long, env = "KTAP_VMLINUX", value_name = "PATH")]
    pub vmlinux: Option<PathBuf>,
    /// Without a vmlinux: the kernel's System.map, or /proc/kallsyms saved from the board as root.
    /// Resolves kprobe functions and tracepoints only; `arg.NAME` and struct members need a
    /// vmlinux with DWARF. The image carries no build-id but lists the symbols it uses, which the
    /// agent checks against the running kernel's /proc/kallsyms before arming. Given, it is used
    /// instead of any vmlinux (a KTAP_VMLINUX left in the environment does not get in the way)
    #[arg(long, alias = "kallsyms", value_name = "PATH")]
    pub system_map: Option<PathBuf>,
    #[command(flatten)]
    pub board: BoardOpts,
}

/// A script read from disk with everything needed to compile it.
pub struct Loaded {
    /// The script text.
    pub source: String,
    /// The script path as given, for messages and the sidecar.
    pub name: String,
    /// Arch and build-id.
    pub opts: CompileOptions,
    /// The vmlinux, if one was given (kept to leave its DWARF index cache behind).
    pub vmlinux: Option<Box<Vmlinux>>,
    /// The System.map, or [`NoKernel`], when there is no vmlinux.
    other: Box<dyn Resolver>,
}

impl Loaded {
    /// What kernel symbols and types resolve against.
    pub fn resolver(&self) -> &dyn Resolver {
        match &self.vmlinux {
            Some(v) => v.as_ref(),
            None => self.other.as_ref(),
        }
    }

    /// After the compile: start the background DWARF index build if it read the vmlinux lazily
    /// and no whole index is cached ([`super::symbols::index::in_background`]).
    pub fn leave_index_behind(&self) {
        if let Some(v) = &self.vmlinux {
            super::symbols::index::in_background(v);
        }
    }
}

impl ScriptOpts {
    /// Read the script, load the board and open the vmlinux (checked against the board's arch).
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let name = self.script.display().to_string();
        let source =
            std::fs::read_to_string(&self.script).with_context(|| format!("cannot read script {name}"))?;
        let board = self.board.load()?;
        if let Some(map) = &self.system_map {
            let mut map = SymbolMap::open(map).map_err(anyhow::Error::msg)?;
            map.set_arch(board.arch);
            let opts = CompileOptions { arch: board.arch, build_id: Vec::new() };
            return Ok(Loaded { source, name, opts, vmlinux: None, other: Box::new(map) });
        }
        let vmlinux = self.vmlinux.as_deref().map(|p| Vmlinux::open_for(p, board.arch)).transpose()?;
        let build_id = vmlinux.as_ref().map_or_else(Vec::new, |v| v.build_id().to_vec());
        let opts = CompileOptions { arch: board.arch, build_id };
        Ok(Loaded { source, name, opts, vmlinux: vmlinux.map(Box::new), other: Box::new(NoKernel) })
    }
}

/// The compile options and symbol resolver for `board`: its vmlinux (checked against the board's
/// arch; its build-id goes into the image) or, without one, `without`.
pub fn kernel_resolver(
    vmlinux: Option<&Path>,
    board: &Board,
    without: Box<dyn Resolver>,
) -> anyhow::Result<(CompileOptions, Box<dyn Resolver>)> {
    let (build_id, resolver): (Vec<u8>, Box<dyn Resolver>) = match vmlinux {
        Some(path) => {
            let v = Vmlinux::open_for(path, board.arch)?;
            (v.build_id().to_vec(), Box::new(v))
        }
        None => (Vec::new(), without),
    };
    Ok((CompileOptions { arch: board.arch, build_id }, resolver))
}

/// Print diagnostics on stderr and turn them into the command's error.
pub fn fail(diags: &[lang::Diagnostic], name: &str, source: &str) -> anyhow::Error {
    lang::emit_stderr(diags, name, source);
    let n = diags.len();
    anyhow::anyhow!("{name}: {n} error{}", if n == 1 { "" } else { "s" })
}

impl CheckArgs {
    /// Check the script.
    pub fn run(self) -> anyhow::Result<()> {
        run(self)
    }
}

/// Check the script; `Ok` only if it has no errors.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let l = args.script.load()?;
    let diags = lang::check(&l.source, &l.name, &l.opts, l.resolver());
    if !diags.is_empty() {
        return Err(fail(&diags, &l.name, &l.source));
    }
    l.leave_index_behind();
    if let Some(map) = &args.script.system_map {
        eprintln!("{}: no errors (kernel symbols checked against {})", l.name, map.display());
    } else if args.script.vmlinux.is_none() {
        eprintln!("{}: no errors (kernel symbols not checked: pass --vmlinux)", l.name);
    } else {
        eprintln!("{}: no errors", l.name);
    }
    Ok(())
}
