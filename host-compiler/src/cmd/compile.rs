//! `ktap-host compile`: compile a script to an image and its sidecar (`IMAGE.json`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ktap_host::lang;
use ktap_host::sidecar::Sidecar;

use super::check::{ScriptOpts, fail};

/// Compile a ktap script to a program image for `push --image` or `disasm`. The image is parsed and
/// verified before it is written; names and format strings go to the sidecar IMAGE.json beside it.
/// Kprobes need --vmlinux (their addresses come from it).
#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub script: ScriptOpts,
    /// Where to write the image (the sidecar goes to IMAGE.json)
    #[arg(short, long, value_name = "IMAGE")]
    pub output: PathBuf,
}

/// `ktap-host compile` under the name the subcommand enum uses for every command.
pub type Cmd = CompileArgs;

impl CompileArgs {
    /// Compile and write.
    pub fn run(self) -> anyhow::Result<()> {
        run(self)
    }
}

/// Compile the script and write the image and its sidecar.
pub fn run(args: CompileArgs) -> anyhow::Result<()> {
    let l = args.script.load()?;
    let compiled = lang::compile(&l.source, &l.name, &l.opts, l.resolver())
        .map_err(|diags| fail(&diags, &l.name, &l.source))?;
    l.leave_index_behind();
    let out = &args.output;
    std::fs::write(out, &compiled.image).with_context(|| format!("cannot write image {}", out.display()))?;
    let sc_path = Sidecar::path_for(out);
    let json = serde_json::to_string_pretty(&compiled.sidecar).context("cannot encode the sidecar")?;
    std::fs::write(&sc_path, json + "\n")
        .with_context(|| format!("cannot write sidecar {}", sc_path.display()))?;
    eprintln!(
        "{}: wrote {} ({} bytes, {} probes) and {}",
        l.name,
        out.display(),
        compiled.image.len(),
        compiled.sidecar.probes.len(),
        sc_path.display()
    );
    Ok(())
}
