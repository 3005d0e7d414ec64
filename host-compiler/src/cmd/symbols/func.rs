//! `ktap-host symbols func NAME`: a function's parameters and where a kprobe at its entry finds them.

use std::fmt::Write;

use ktap_host::ktypes::{Param, ParamLoc};
use ktap_host::lang::Resolver;
use ktap_host::vmlinux::Vmlinux;
use serde::Serialize;

use super::{Source, json};

/// `func` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Function symbol (`vfs_read`, or a clone such as `foo.isra.0`)
    pub name: String,
}

/// A parameter as printed.
#[derive(Serialize)]
pub(crate) struct ParamOut {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// `arg0`.., `stack+N` or `unavailable`.
    pub location: String,
    /// The register, when in one.
    pub register: Option<String>,
}

#[derive(Serialize)]
struct FuncOut {
    name: String,
    address: String,
    clone_of: Option<String>,
    abi: &'static str,
    returns: String,
    params: Vec<ParamOut>,
}

/// Parameters as printed; `registers`: name the register of each `argN` (kprobes; a tracepoint's
/// `argN` is its N-th `TP_PROTO` argument, not a register).
pub(crate) fn params_out(v: &Vmlinux, params: &[Param], registers: bool) -> Vec<ParamOut> {
    params
        .iter()
        .map(|p| {
            let (location, register) = match p.loc {
                ParamLoc::Arg(n) => {
                    (format!("arg{n}"), v.abi().arg_reg_name(n).filter(|_| registers).map(String::from))
                }
                ParamLoc::Pair { lo, hi } => {
                    let regs = v.abi().arg_reg_name(lo).zip(v.abi().arg_reg_name(hi));
                    (format!("arg{hi}:arg{lo}"), regs.filter(|_| registers).map(|(l, h)| format!("{h}:{l}")))
                }
                ParamLoc::Stack(off) => (format!("stack{off:+}"), None),
                ParamLoc::Unavailable => ("unavailable".to_owned(), None),
            };
            ParamOut { name: p.name.clone(), ty: v.type_name(&p.ty), location, register }
        })
        .collect()
}

/// Parameter lines: `  arg0 (r0)      struct file *file`.
pub(crate) fn params_text(out: &mut String, params: &[ParamOut]) {
    for p in params {
        let loc = match &p.register {
            Some(r) => format!("{} ({r})", p.location),
            None => p.location.clone(),
        };
        let _ = writeln!(out, "  {loc:<14} {}", declare(&p.ty, &p.name));
    }
}

/// A C declaration of `name` with type spelling `ty` (`char comm[16]`, `void (*fn)()`).
pub(crate) fn declare(ty: &str, name: &str) -> String {
    if let Some(i) = ty.find("(*") {
        return format!("{}(*{name}{}", &ty[..i], &ty[i + 2..]);
    }
    match ty.find('[') {
        Some(i) => format!("{}{name}{}", pad(&ty[..i]), &ty[i..]),
        None => format!("{}{name}", pad(ty)),
    }
}

fn pad(ty: &str) -> String {
    let ty = ty.trim_end();
    if ty.ends_with('*') { ty.to_owned() } else { format!("{ty} ") }
}

pub(crate) fn run(source: &Source, args: &Args, as_json: bool) -> anyhow::Result<String> {
    let v = source.vmlinux()?;
    let f = v.function_info(&args.name).map_err(anyhow::Error::msg)?;
    let o = FuncOut {
        name: f.name.clone(),
        address: format!("{:#x}", f.addr),
        clone_of: f.clone_of.clone(),
        abi: v.abi().name(),
        returns: v.type_name(&f.ret),
        params: params_out(v, &f.params, true),
    };
    if as_json {
        return json(&o);
    }
    let mut out = String::new();
    let clone = o.clone_of.as_deref().map(|c| format!(" (a gcc clone of `{c}`)")).unwrap_or_default();
    let _ = writeln!(out, "{} {}(...) at {}{clone}, {}", o.returns, o.name, o.address, o.abi);
    params_text(&mut out, &o.params);
    Ok(out)
}
