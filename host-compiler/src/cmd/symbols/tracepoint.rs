//! `ktap-host symbols tracepoint SUBSYS:EVENT`: the arguments a tracepoint probe receives and the
//! layout of its trace record.

use std::fmt::Write;

use serde::Serialize;

use super::func::{ParamOut, params_out, params_text};
use super::type_::layout_text;
use super::{Source, json};
use ktap_host::vmlinux::Layout;

/// `tracepoint` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `subsystem:event`, e.g. `sched:sched_switch`
    pub name: String,
}

#[derive(Serialize)]
struct TpOut {
    subsys: String,
    event: String,
    from: String,
    params: Vec<ParamOut>,
    record: Option<Layout>,
}

pub(crate) fn run(source: &Source, args: &Args, as_json: bool) -> anyhow::Result<String> {
    let Some((subsys, event)) = args.name.split_once(':') else {
        anyhow::bail!("`{}` is not SUBSYS:EVENT (e.g. sched:sched_switch)", args.name);
    };
    let v = source.vmlinux()?;
    let t = v.tracepoint_info(subsys, event).map_err(anyhow::Error::msg)?;
    let o = TpOut {
        subsys: subsys.into(),
        event: event.into(),
        from: t.from,
        params: params_out(v, &t.params, false),
        record: t.record,
    };
    if as_json {
        return json(&o);
    }
    let mut out = String::new();
    let _ = writeln!(out, "tracepoint {subsys}:{event} (arguments from `{}`)", o.from);
    params_text(&mut out, &o.params);
    match &o.record {
        Some(r) => {
            let _ = writeln!(out, "\ntrace record:\n{}", layout_text(r));
        }
        None => {
            let _ = writeln!(
                out,
                "\n(no trace record layout: `{event}` is a bare tracepoint, or its class has no DWARF)"
            );
        }
    }
    Ok(out)
}
