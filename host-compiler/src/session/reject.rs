//! Turning the agent's numeric answers (`Rejected`, `Error`) back into text, with the sidecar's names.

use ktap_protocol::image::Image;
use ktap_protocol::wire::codes;

use super::errno;
use crate::sidecar::Sidecar;

/// What the host knows about the image a rejection refers to.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageContext<'a> {
    /// The image bytes that were uploaded.
    pub image: Option<&'a [u8]>,
    /// Its sidecar (probe specs, function names).
    pub sidecar: Option<&'a Sidecar>,
}

/// The description of a verifier code (`0x02xx`).
fn verifier_reason(code: u16) -> Option<&'static str> {
    ktap_vm::describe_code(code)
}

/// Text for a code, whatever its range.
pub fn reason(code: u16) -> String {
    let text = if code & 0xff00 == 0x0200 { verifier_reason(code) } else { codes::describe(code) };
    match text {
        Some(t) => t.to_owned(),
        None if code & 0xff00 == 0x0200 => format!("verifier error {code:#06x}"),
        None => format!("unknown reason code {code:#06x}"),
    }
}

/// Render `Rejected { code, offset, detail }`. Attach errors (`offset` = probe index) name the probe
/// as the script wrote it and the errno; every other code names the byte offset in the image and,
/// for verifier codes whose offset lies in a function's code, that function.
pub fn rejection(code: u16, offset: u32, detail: i32, machine: &str, ctx: ImageContext<'_>) -> String {
    let mut s = reason(code);
    if matches!(code, codes::ATTACH_FAILED | codes::NO_TRACEPOINT) {
        let spec = ctx.sidecar.and_then(|sc| sc.probes.get(offset as usize)).map(|p| p.spec.as_str());
        match spec {
            Some(spec) => s.push_str(&format!(": probe {offset} `{spec}`")),
            None => s.push_str(&format!(": probe {offset}")),
        }
        if detail != 0 {
            s.push_str(&format!(": {}", errno::describe(machine, detail)));
        }
        return s;
    }
    if let Some(text) = symbol_refusal(code, offset, detail, machine, ctx) {
        return text;
    }
    s.push_str(&format!(" at byte offset {offset}"));
    // verifier offsets point at instructions: name the function they are in
    if let Some(name) = (code & 0xff00 == 0x0200).then(|| function_at(ctx, offset)).flatten() {
        s.push_str(&format!(" (in `{name}`)"));
    }
    // Image and verifier refusals carry only the ioctl's EINVAL as detail: the code says it all.
    if detail != 0 && code & 0xff00 >= 0x0300 {
        let d = if code & 0xff00 == 0x0300 {
            errno::describe(machine, detail)
        } else {
            format!("detail {detail}")
        };
        s.push_str(&format!(": {d}"));
    }
    s
}

/// A refusal of an image compiled from a System.map ([`codes::SYMBOL_MISMATCH`],
/// [`codes::SYMBOL_UNLISTED`], [`codes::NO_KALLSYMS`]), naming the symbol from the image's own SYMBOLS section or probes.
fn symbol_refusal(
    code: u16,
    offset: u32,
    detail: i32,
    machine: &str,
    ctx: ImageContext<'_>,
) -> Option<String> {
    if code == codes::NO_KALLSYMS {
        let why = match detail {
            0 => "it shows only zero addresses (the agent is not root, or kernel.kptr_restrict)".to_owned(),
            e => errno::describe(machine, e),
        };
        return Some(format!("{}: {why}", reason(code)));
    }
    let img = Image::parse(ctx.image?).ok()?;
    let syms = img.symbols?;
    let base = String::from_utf8_lossy(syms.base_name);
    match code {
        codes::SYMBOL_MISMATCH => {
            let sym = syms.at_offset(offset as usize)?;
            let name = String::from_utf8_lossy(sym.name);
            let head = "System.map does not match the running kernel";
            let map = offset_text(&base, sym.addr.wrapping_sub(syms.base_addr) as i64);
            let is_base = syms.iter().next().is_some_and(|first| first.offset == sym.offset);
            Some(match detail {
                codes::SYMBOL_ABSENT => {
                    format!(
                        "{head}: `{name}` at {map} in the map is not in the running kernel's /proc/kallsyms"
                    )
                }
                // the base itself differs: the whole kernel sits elsewhere
                d if is_base => format!(
                    "{head}: `{name}` is {:#x} in the map, the board's is {:#x} ({}{:#x} away{}: KASLR or another kernel; push the script itself, so it is compiled against the running kernel's base, with this kernel's map)",
                    sym.addr,
                    syms.base_addr.wrapping_add(d as i64 as u64),
                    if d < 0 { "-" } else { "+" },
                    d.unsigned_abs(),
                    if d == i32::MAX || d == i32::MIN + 1 { " or more" } else { "" }
                ),
                d => format!(
                    "{head}: `{name}` at {map} in the map, {} on the board",
                    offset_text(&base, i64::from(d))
                ),
            })
        }
        codes::SYMBOL_UNLISTED => {
            let mut found = None;
            img.probes_at(|at, p| {
                if at == offset as usize {
                    found = Some(String::from_utf8_lossy(p.name).into_owned());
                }
            });
            Some(format!(
                "{}: the kprobe on `{}` (byte offset {offset}) is not covered by the image's symbol list; the image was not made by ktap-host compile, or is damaged",
                reason(code),
                found?
            ))
        }
        _ => None,
    }
}

/// `_text+0x1234` / `_text-0x10`.
fn offset_text(base: &str, off: i64) -> String {
    match off < 0 {
        true => format!("{base}-{:#x}", off.unsigned_abs()),
        false => format!("{base}+{off:#x}"),
    }
}

/// Render `Error { code, detail }`; `detail` is an errno for kernel- and device-side codes.
pub fn agent_error(code: u16, detail: i32, machine: &str) -> String {
    let mut s = reason(code);
    match code {
        codes::VERSION_MISMATCH => s.push_str(&format!(" (the agent speaks version {detail})")),
        codes::BAD_MESSAGE if detail == 1 => {
            s.push_str(": a frame from ktap-host arrived corrupted (bad CRC)")
        }
        codes::BAD_MESSAGE if detail == 2 => s.push_str(": a message from ktap-host did not decode"),
        _ if detail != 0 && code & 0xff00 >= 0x0300 => {
            s.push_str(&format!(": {}", errno::describe(machine, detail)));
        }
        _ if detail != 0 => s.push_str(&format!(" (detail {detail})")),
        _ => {}
    }
    s
}

/// The name of the function whose code contains image offset `offset` (sidecar name, or `function N`).
pub fn function_at(ctx: ImageContext<'_>, offset: u32) -> Option<String> {
    let img = Image::parse(ctx.image?).ok()?;
    let off = offset as usize;
    let idx = img.funcs().position(|f| {
        let start = img.code_offset + f.code_off as usize;
        off >= start && off < start + f.code_len as usize
    })?;
    match ctx.sidecar.and_then(|s| s.funcs.get(idx)) {
        Some(f) => Some(f.name.clone()),
        None => Some(format!("function {idx}")),
    }
}
