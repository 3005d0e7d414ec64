//! `ktap-host boards`: the boards in the boards directory, one line each.

use anyhow::{Context, bail};
use clap::Args;
use ktap_host::board::{self, Board};

use super::BoardsDir;

/// List the boards: name, arch, byte order, the agent's serial device, emulated or real, description.
#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    dir: BoardsDir,
}

impl Cmd {
    /// Print the table; a board file that does not validate is listed with its error and makes the
    /// command fail.
    pub fn run(self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let names = board::list(&dir).with_context(|| format!("cannot list boards in {}", dir.display()))?;
        if names.is_empty() {
            bail!("no board files (*.toml) in {}", dir.display());
        }
        let mut table = format!(
            "{:<16} {:<10} {:<7} {:<20} {:<5} DESCRIPTION\n",
            "NAME", "ARCH", "ENDIAN", "AGENT DEVICE", "KIND"
        );
        let mut bad = 0;
        for name in names {
            match Board::load(&dir, &name) {
                Ok(b) => table.push_str(&format!("{}\n", line(&b))),
                Err(e) => {
                    bad += 1;
                    table.push_str(&format!("{name:<16} invalid: {e}\n"));
                }
            }
        }
        super::emit(&table)?;
        if bad > 0 {
            bail!("{bad} board file(s) in {} do not validate", dir.display());
        }
        Ok(())
    }
}

fn line(b: &Board) -> String {
    let arch = format!("{:?}", b.arch).to_lowercase();
    let endian = format!("{:?}", b.endian).to_lowercase();
    let device = format!("{}@{}", b.agent.device, b.agent.baud);
    let kind = if b.qemu.is_some() { "qemu" } else { "real" };
    format!("{:<16} {arch:<10} {endian:<7} {device:<20} {kind:<5} {}", b.name, b.description)
}
