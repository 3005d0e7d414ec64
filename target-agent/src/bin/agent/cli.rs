//! The command line, from the raw `argv` the kernel put on the stack.

use core::ffi::{CStr, c_char};

/// Default line speed.
pub const DEFAULT_BAUD: u32 = 115_200;

/// The usage text (`--help`, and after a usage error on stderr).
pub const USAGE: &str = "\
usage: ktap-agent [DEVICE | - | --console] [--baud N]
       ktap-agent --version
Serve one ktap-host at a time over a serial line or stdio.
  DEVICE      serial line to the host (e.g. /dev/ttyAMA1): raw 8N1, no flow control, --baud
  -           stdin/stdout (the default; for `ssh board ktap-agent -`); exits at end of input
  --console   stdin/stdout are the login console the host typed this command on: raw mode at
              --baud while serving, settings restored on exit; exits when the host's session ends
  --baud N    line speed for DEVICE or --console (default 115200)
  --version   print the agent and wire protocol versions
exit status: 0 input ended (stdio) or the console session ended, 2 usage, 3 cannot open or configure DEVICE,
             4 link I/O error, 128+N stopped by signal N (after disarming)
";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Cmd<'a> {
    /// Serve a host on `device` (`None`: stdio) at `baud`.
    Serve {
        /// The serial device, or `None` for stdin/stdout.
        device: Option<&'a CStr>,
        /// Line speed.
        baud: u32,
        /// stdio is a shared login console (`--console`).
        console: bool,
    },
    /// Print the versions.
    Version,
    /// Print the usage.
    Help,
}

/// The raw arguments: `argc` and `argv` from the initial stack.
pub struct Args {
    argc: usize,
    argv: *const *const c_char,
}

impl Args {
    /// # Safety
    /// `argv` must point to `argc` valid NUL-terminated strings that live for the whole program (the
    /// kernel's initial stack).
    pub unsafe fn new(argc: usize, argv: *const *const c_char) -> Args {
        Args { argc, argv }
    }

    fn get(&self, i: usize) -> Option<&'static CStr> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: guaranteed by `new`'s caller for i < argc.
        unsafe {
            let p = *self.argv.add(i);
            (!p.is_null()).then(|| CStr::from_ptr(p))
        }
    }

    /// The arguments after the program name.
    pub fn iter(&self) -> impl Iterator<Item = &'static CStr> + '_ {
        (1..self.argc).filter_map(|i| self.get(i))
    }
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, c| acc.checked_mul(10)?.checked_add((*c as char).to_digit(10)?))
}

/// Parse the command line; `Err` carries the message for stderr.
pub fn parse<'a>(args: impl Iterator<Item = &'a CStr>) -> Result<Cmd<'a>, &'static str> {
    let mut device = None;
    let mut stdio = false;
    let mut console = false;
    let mut baud = DEFAULT_BAUD;
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        match a.to_bytes() {
            b"--version" | b"-V" => return Ok(Cmd::Version),
            b"--help" | b"-h" => return Ok(Cmd::Help),
            b"--baud" => {
                let v = args.next().ok_or("--baud needs a value")?;
                baud = parse_u32(v.to_bytes()).filter(|b| *b > 0).ok_or("--baud needs a positive number")?;
            }
            b"-" if device.is_none() && !stdio => stdio = true,
            b"--console" if device.is_none() => {
                stdio = true;
                console = true;
            }
            s if s.starts_with(b"--baud=") => {
                baud = parse_u32(s.get(7..).unwrap_or(&[]))
                    .filter(|b| *b > 0)
                    .ok_or("--baud needs a positive number")?;
            }
            s if s.starts_with(b"-") => return Err("unknown option"),
            _ if device.is_none() && !stdio => device = Some(a),
            _ => return Err("only one DEVICE"),
        }
    }
    Ok(Cmd::Serve { device, baud, console })
}

/// Format `v` in decimal into `buf`, returning the digits.
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or(&[])
}
