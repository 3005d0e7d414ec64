//! `ktap-host disasm`: list a compiled image, section by section.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ktap_host::lang::disasm::disassemble;
use ktap_host::sidecar::Sidecar;

/// Print a program image: functions disassembled one instruction per line (offsets within the code
/// section), constants, strings, globals, tables, probes, formats (with their strings when the
/// sidecar IMAGE.json is present), the kernel build-id and the instruction budget.
#[derive(Debug, Args)]
pub struct DisasmArgs {
    /// The image (from `ktap-host compile`)
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Sidecar with names and format strings [default: IMAGE.json when it exists]
    #[arg(long, value_name = "PATH")]
    pub sidecar: Option<PathBuf>,
    /// Ignore the sidecar: list the image as the device sees it
    #[arg(long, conflicts_with = "sidecar")]
    pub no_sidecar: bool,
}

/// `ktap-host disasm` under the name the subcommand enum uses for every command.
pub type Cmd = DisasmArgs;

impl DisasmArgs {
    /// Print the listing.
    pub fn run(self) -> anyhow::Result<()> {
        run(self)
    }
}

/// Print the listing of the image.
pub fn run(args: DisasmArgs) -> anyhow::Result<()> {
    let path = &args.image;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
    let sidecar = load_sidecar(path, args.sidecar.as_deref(), args.no_sidecar)?;
    let text = disassemble(&bytes, sidecar.as_ref())
        .with_context(|| format!("{} is not a valid image", path.display()))?;
    super::emit(&text)
}

/// The sidecar given, or IMAGE.json when it exists (`None` with `ignore`).
pub fn load_sidecar(
    image: &std::path::Path,
    given: Option<&std::path::Path>,
    ignore: bool,
) -> anyhow::Result<Option<Sidecar>> {
    let path = match (given, ignore) {
        (_, true) => None,
        (Some(p), false) => Some(p.to_path_buf()),
        (None, false) => Some(Sidecar::path_for(image)).filter(|p| p.exists()),
    };
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read sidecar {}", p.display()))?;
    let sc = serde_json::from_str(&text).with_context(|| format!("sidecar {} is not valid", p.display()))?;
    Ok(Some(sc))
}
