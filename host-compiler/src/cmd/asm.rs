//! `ktap-host asm`: assemble the text assembly (what `disasm` prints) into an image.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use ktap_protocol::asm::assemble;

/// Assemble a text listing into a program image: the language `ktap-host disasm` prints (so the two
/// round-trip), with labels for jump targets. The image is written as is, not verified, so that
/// images the verifier must refuse can be written too: check it with `ktap-host verify`.
#[derive(Debug, Args)]
pub struct AsmArgs {
    /// The assembly source (`-` for stdin)
    #[arg(value_name = "FILE")]
    pub source: PathBuf,
    /// Where to write the image
    #[arg(short, long, value_name = "IMAGE")]
    pub output: PathBuf,
}

/// `ktap-host asm` under the name the subcommand enum uses for every command.
pub type Cmd = AsmArgs;

impl AsmArgs {
    /// Assemble and write.
    pub fn run(self) -> anyhow::Result<()> {
        let src = &self.source;
        let text = if src.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("cannot read stdin")?;
            s
        } else {
            std::fs::read_to_string(src).with_context(|| format!("cannot read {}", src.display()))?
        };
        let bytes = match assemble(&text) {
            Ok(a) => a.image.build(),
            Err(e) => bail!("{}:{}: {}", src.display(), e.line, e.message),
        };
        let out = &self.output;
        std::fs::write(out, &bytes).with_context(|| format!("cannot write image {}", out.display()))?;
        eprintln!("{}: wrote {} ({} bytes)", src.display(), out.display(), bytes.len());
        Ok(())
    }
}
