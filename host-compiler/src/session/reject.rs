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
