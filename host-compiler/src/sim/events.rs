//! The events file: JSON lines, one synthetic or recorded probe hit per line.
//!
//! Every field but `probe` is optional; the defaults are written down on [`Event`] and in
//! `docs/language.md`. Blank lines and lines starting with `#` are skipped. A malformed line is an
//! error naming `file:line`.

use serde::Deserialize;

/// Most times one line may repeat (`"repeat"`), so a typo cannot make the simulator run for hours.
pub const MAX_REPEAT: u64 = 10_000_000;

/// Time between events that give no `time_ns`, in nanoseconds.
pub const DEFAULT_TIME_STEP_NS: i64 = 1000;

/// One probe hit, with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The probe as a script writes it: `kprobe:vfs_read`, `kretprobe:vfs_read`, `trace sched:sched_switch`
    /// (also accepted: `sched:sched_switch`, `tracepoint:sched:sched_switch`).
    pub probe: String,
    /// Thread group id; default 1.
    pub pid: i64,
    /// Thread id; default the pid.
    pub tid: i64,
    /// Real uid; default 0.
    pub uid: i64,
    /// CPU; default 0.
    pub cpu: i64,
    /// Command name (truncated to the VM's string length); default `init`.
    pub comm: String,
    /// Monotonic time; default the previous event's time plus [`DEFAULT_TIME_STEP_NS`] (the first: 0).
    pub time_ns: i64,
    /// `arg0`, `arg1`, ...; missing ones are 0. Unsigned values above `i64::MAX` wrap.
    pub args: Vec<i64>,
    /// `retval` (kretprobes); default 0.
    pub retval: i64,
    /// How many identical hits this line stands for; default 1 (time advances for each one).
    pub repeat: u64,
    /// Kernel return addresses `stack()` sees, innermost first; default none.
    pub stack: Vec<u64>,
    /// Memory `kernel_string`, `user_string` and struct field reads see; everything else faults.
    pub mem: Vec<Memory>,
    /// Wall-clock time in ns; default `time_ns`.
    pub wall_ns: i64,
    /// Online CPUs; default 1.
    pub num_cpus: i64,
    /// Whether the hit is in interrupt context; default false.
    pub in_interrupt: bool,
    /// 1-based line number in the file, for messages.
    pub line: usize,
}

/// A piece of memory an event makes readable: `{"addr": N, "str": "text"}` (the text and its NUL) or
/// `{"addr": N, "bytes": [1, 2]}`, kernel memory unless `"user": true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// First address.
    pub addr: u64,
    /// The bytes from `addr` on.
    pub bytes: Vec<u8>,
    /// User memory of the current task (else kernel memory).
    pub user: bool,
}

impl Memory {
    /// `len` bytes at `addr`, if this piece holds all of them (and is the right kind).
    pub fn read(&self, user: bool, addr: u64, len: usize) -> Option<&[u8]> {
        if user != self.user {
            return None;
        }
        let off = usize::try_from(addr.checked_sub(self.addr)?).ok()?;
        self.bytes.get(off..off.checked_add(len)?)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    addr: Int,
    str: Option<String>,
    bytes: Option<Vec<u8>>,
    #[serde(default)]
    user: bool,
}

/// An integer as JSON may write it: signed, or unsigned beyond `i64::MAX` (wraps).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Int {
    Signed(i64),
    Unsigned(u64),
}

impl Int {
    fn get(self) -> i64 {
        match self {
            Int::Signed(v) => v,
            Int::Unsigned(v) => v as i64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    probe: String,
    pid: Option<Int>,
    tid: Option<Int>,
    uid: Option<Int>,
    cpu: Option<Int>,
    comm: Option<String>,
    time_ns: Option<Int>,
    #[serde(default)]
    args: Vec<Int>,
    retval: Option<Int>,
    repeat: Option<u64>,
    #[serde(default)]
    stack: Vec<Int>,
    #[serde(default)]
    mem: Vec<RawMemory>,
    wall_ns: Option<Int>,
    num_cpus: Option<Int>,
    #[serde(default)]
    in_interrupt: bool,
}

/// A line that is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}")]
pub struct EventError {
    /// The events file as named.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Parse a whole events file. `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Event>, EventError> {
    let mut out = Vec::new();
    let mut time = 0i64;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |problem: String| EventError { file: file.to_owned(), line: line_no, problem };
        let raw: Raw = serde_json::from_str(trimmed).map_err(|e| err(e.to_string()))?;
        if raw.probe.trim().is_empty() {
            return Err(err("`probe` is empty".into()));
        }
        let repeat = raw.repeat.unwrap_or(1);
        if repeat == 0 || repeat > MAX_REPEAT {
            return Err(err(format!("`repeat` must be between 1 and {MAX_REPEAT}, not {repeat}")));
        }
        if raw.args.len() > 10 {
            return Err(err(format!("{} args given; probes have at most 10 (arg0..arg9)", raw.args.len())));
        }
        let pid = raw.pid.map_or(1, Int::get);
        let mut mem = Vec::new();
        for m in raw.mem {
            let bytes = match (m.str, m.bytes) {
                (Some(s), None) => s.into_bytes().into_iter().chain([0]).collect(),
                (None, Some(b)) => b,
                _ => return Err(err("each `mem` entry has exactly one of `str` and `bytes`".into())),
            };
            mem.push(Memory { addr: m.addr.get() as u64, bytes, user: m.user });
        }
        time = match raw.time_ns {
            Some(t) => t.get(),
            None if out.is_empty() => 0,
            None => time.wrapping_add(DEFAULT_TIME_STEP_NS),
        };
        out.push(Event {
            probe: raw.probe,
            pid,
            tid: raw.tid.map_or(pid, Int::get),
            uid: raw.uid.map_or(0, Int::get),
            cpu: raw.cpu.map_or(0, Int::get),
            comm: raw.comm.unwrap_or_else(|| "init".into()),
            time_ns: time,
            args: raw.args.into_iter().map(Int::get).collect(),
            retval: raw.retval.map_or(0, Int::get),
            repeat,
            stack: raw.stack.into_iter().map(|a| a.get() as u64).collect(),
            mem,
            wall_ns: raw.wall_ns.map_or(time, Int::get),
            num_cpus: raw.num_cpus.map_or(1, Int::get),
            in_interrupt: raw.in_interrupt,
            line: line_no,
        });
        // The repeated hits advance the clock too.
        time = time.wrapping_add(DEFAULT_TIME_STEP_NS.wrapping_mul(repeat as i64 - 1));
    }
    Ok(out)
}

/// The probe spelling the compiler's sidecar uses for what a user wrote: `kprobe:f` and
/// `kretprobe:f` as they are, tracepoints as `trace subsys:event`.
pub fn canonical_probe(spec: &str) -> String {
    let s = spec.trim();
    if s.starts_with("kprobe:") || s.starts_with("kretprobe:") || !s.contains(':') {
        return s.to_owned();
    }
    let tp = s
        .strip_prefix("trace ")
        .or_else(|| s.strip_prefix("tracepoint:"))
        .or_else(|| s.strip_prefix("trace:"))
        .unwrap_or(s);
    format!("trace {}", tp.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_time() {
        let ev =
            parse("{\"probe\":\"kprobe:f\",\"repeat\":3}\n\n# c\n{\"probe\":\"kprobe:f\",\"pid\":7}\n", "e")
                .unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[0].pid, ev[0].tid, ev[0].comm.as_str(), ev[0].time_ns), (1, 1, "init", 0));
        assert_eq!((ev[1].pid, ev[1].tid, ev[1].time_ns, ev[1].line), (7, 7, 3000, 4));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("{\"probe\":\"kprobe:f\"}\n{\"probe\":1}\n", "ev.jsonl").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("ev.jsonl", 2));
        assert!(parse("{\"probe\":\"kprobe:f\",\"color\":1}", "e").unwrap_err().problem.contains("color"));
        assert!(parse("{\"probe\":\"kprobe:f\",\"repeat\":0}", "e").is_err());
    }

    #[test]
    fn stacks_and_memory() {
        let ev = parse(
            r#"{"probe":"kprobe:f","stack":[3221225472,1],"mem":[{"addr":16,"str":"hi"},{"addr":32,"bytes":[1,2],"user":true}]}"#,
            "e",
        )
        .unwrap();
        assert_eq!(ev[0].stack, [0xc000_0000, 1]);
        assert_eq!(ev[0].mem[0].read(false, 17, 2), Some(&b"i\0"[..]));
        assert_eq!(ev[0].mem[1].read(true, 32, 2), Some(&[1, 2][..]));
        assert_eq!(ev[0].mem[1].read(false, 32, 2), None);
        assert!(parse(r#"{"probe":"kprobe:f","mem":[{"addr":1}]}"#, "e").is_err());
    }

    #[test]
    fn probe_spellings() {
        for s in ["trace sched:sched_switch", "sched:sched_switch", "tracepoint:sched:sched_switch"] {
            assert_eq!(canonical_probe(s), "trace sched:sched_switch");
        }
        assert_eq!(canonical_probe(" kprobe:vfs_read "), "kprobe:vfs_read");
    }
}
