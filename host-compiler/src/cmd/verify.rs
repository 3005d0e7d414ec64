//! `ktap-host verify`: run the module's own checks (`Image::parse`, then `ktap_vm::verify`) on the host.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use ktap_protocol::image::Image;
use ktap_vm::{VerifyError, verify};

use super::disasm::load_sidecar;
use ktap_host::sidecar::Sidecar;

/// Check a program image exactly as the kernel module will: the structural parse, then the verifier
/// (the same code, compiled for the host). Prints `ok: ...` and exits 0, or prints the reason with
/// its byte offset (and the function it falls in, named from the sidecar when present) and exits 1.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image (from `ktap-host compile` or `ktap-host asm`)
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Sidecar with names [default: IMAGE.json when it exists]
    #[arg(long, value_name = "PATH")]
    pub sidecar: Option<PathBuf>,
}

/// `ktap-host verify` under the name the subcommand enum uses for every command.
pub type Cmd = VerifyArgs;

impl VerifyArgs {
    /// Verify and report.
    pub fn run(self) -> anyhow::Result<()> {
        let path = &self.image;
        let bytes = std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
        let sidecar = load_sidecar(path, self.sidecar.as_deref(), false)?;
        let img = match Image::parse(&bytes) {
            Ok(img) => img,
            Err(e) => bail!("{}: rejected (code {:#x}): {e}", path.display(), e.code()),
        };
        match verify(&img) {
            Ok(v) => {
                let mut probes = 0;
                img.probes(|_| probes += 1);
                super::emit(&format!(
                    "ok: {} functions, {probes} probes, {} tables, {} globals, {} code bytes, budget {}\n",
                    v.funcs().len(),
                    img.tables().count(),
                    img.globals,
                    img.code.len(),
                    v.budget(),
                ))
            }
            Err(e) => {
                let place = where_in(&img, &e, sidecar.as_ref());
                bail!("{}: rejected (code {:#x}): {e}{place}", path.display(), e.code())
            }
        }
    }
}

/// `" (in fnN `name`, code offset X)"` when the error's offset lies inside a function's code.
fn where_in(img: &Image<'_>, e: &VerifyError, sidecar: Option<&Sidecar>) -> String {
    let Some(code_off) = (e.offset() as usize).checked_sub(img.code_offset) else { return String::new() };
    if code_off >= img.code.len() {
        return String::new();
    }
    for (i, f) in img.funcs().enumerate() {
        let start = f.code_off as usize;
        if (start..start.saturating_add(f.code_len as usize)).contains(&code_off) {
            let name =
                sidecar.and_then(|s| s.funcs.get(i)).map(|f| format!(" `{}`", f.name)).unwrap_or_default();
            return format!(" (in fn{i}{name}, code offset {code_off:#06x})");
        }
    }
    String::new()
}
