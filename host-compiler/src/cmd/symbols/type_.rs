//! `ktap-host symbols type 'struct NAME'`: a pahole-like layout with offsets and sizes.

use std::fmt::Write;

use ktap_host::vmlinux::{Layout, LayoutMember};

use super::func::declare;
use super::{Source, json};

/// `type` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `struct NAME`, `union NAME`, `enum NAME`, or a typedef (`u32`, `pid_t`)
    pub name: String,
}

pub(crate) fn run(source: &Source, args: &Args, as_json: bool) -> anyhow::Result<String> {
    let v = source.vmlinux()?;
    let ty = v.type_named(&args.name).map_err(anyhow::Error::msg)?;
    let layout = v.layout(ty).map_err(anyhow::Error::msg)?;
    if as_json {
        return json(&layout);
    }
    Ok(layout_text(&layout))
}

/// The layout as C with `/* offset size */` comments.
pub(crate) fn layout_text(l: &Layout) -> String {
    let mut out = String::new();
    match l.kind.as_str() {
        "struct" | "union" => {
            let _ = writeln!(out, "{} {} {{", l.kind, l.name);
            members(&mut out, &l.members, 1);
            let _ = writeln!(out, "\n\t/* size: {} */\n}};", l.size);
        }
        "enum" => {
            let _ = writeln!(out, "enum {} {{", l.name);
            for (n, v) in &l.enumerators {
                let _ = writeln!(out, "\t{n} = {v},");
            }
            let _ = writeln!(out, "}};\t/* size: {} */", l.size);
        }
        other => {
            let _ = writeln!(out, "{other}\t/* size: {} */", l.size);
        }
    }
    out
}

fn members(out: &mut String, ms: &[LayoutMember], depth: usize) {
    let tabs = "\t".repeat(depth);
    for m in ms {
        if let Some(n) = &m.nested {
            let _ = writeln!(out, "{tabs}{} {{", n.kind);
            members(out, &n.members, depth + 1);
            let _ = writeln!(out, "{tabs}}};{:>w$}/* {:5} {:5} */", "", m.offset, m.size, w = 1);
            continue;
        }
        let (decl, at) = match m.bits {
            Some((shift, bits)) => {
                (format!("{}:{bits};", declare(&m.ty, &m.name)), format!("{}:{shift}", m.offset))
            }
            None => (format!("{};", declare(&m.ty, &m.name)), m.offset.to_string()),
        };
        let width = 48usize.saturating_sub(8 * depth);
        let _ = writeln!(out, "{tabs}{decl:<width$} /* {at:>5} {:5} */", m.size);
    }
}
