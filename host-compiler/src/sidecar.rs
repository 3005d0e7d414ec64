//! The host-side sidecar of an image: everything the device never sees but the host needs to turn
//! ids back into text (format strings, table and probe names, source spans). The device image holds
//! only ids; `compile` writes the sidecar next to the image as `IMAGE.json`.

use serde::{Deserialize, Serialize};

/// A byte range in the script source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// Host-side names and strings for one compiled image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Script file the image was compiled from.
    pub source_file: String,
    /// Format strings, indexed by format id (the `Printf` record id).
    pub formats: Vec<String>,
    /// Tables, indexed by table id.
    pub tables: Vec<TableInfo>,
    /// Probes, indexed by probe index in the image.
    pub probes: Vec<ProbeInfo>,
    /// Globals, indexed by global id.
    pub globals: Vec<String>,
    /// Functions, indexed by function id: name and span (for runtime error reports).
    pub funcs: Vec<FuncInfo>,
    /// How the renderer shows a table when it differs from the default (an int table as key/value
    /// lines, an aggregate as its statistics, with its buckets as a histogram).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<TableView>,
    /// The values that are kernel stacks (`stack()`): the renderer symbolizes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<StackValue>,
}

/// How to show one table (`print(t)` at the end, `print_hist(t)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableView {
    /// Table id.
    pub table: u16,
    /// What to show.
    pub show: Show,
}

/// What a table's lines show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Show {
    /// One statistic of an aggregate per key, as a key/value line (`count()`, `sum()`, ...).
    Count,
    /// The sum.
    Sum,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// sum / count.
    Avg,
    /// A power-of-two histogram per key (`hist()`).
    Hist,
    /// A linear histogram per key (`lhist(v, min, max, step)`): bucket i starts at min + i * step.
    Lhist {
        /// Start of bucket 0.
        min: i64,
        /// Bucket width.
        step: i64,
        /// In-range buckets (the VM adds an under bucket at this index and an over bucket after it).
        buckets: u8,
    },
    /// An int table as one bar per key (`print_hist(t)`).
    Bars,
}

/// A value that holds a kernel stack (little-endian u64 return addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StackValue {
    /// Argument `arg` (0-based) of printf format `format`.
    FormatArg {
        /// Format id.
        format: u16,
        /// Argument position.
        arg: u8,
    },
    /// Key component `key` (0-based) of table `table`.
    TableKey {
        /// Table id.
        table: u16,
        /// Key component.
        key: u8,
    },
}

/// A table as the script declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Variable name.
    pub name: String,
    /// Where it was declared.
    pub span: Span,
}

/// A probe as the script wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// The probe as written, e.g. `kprobe:vfs_read`.
    pub spec: String,
    /// Where it was written.
    pub span: Span,
    /// For `trace syscalls:sys_enter_NAME` / `sys_exit_NAME` (built on `raw_syscalls`): which
    /// calls, and where the handler reads their number and arguments (so `sim` can build the raw
    /// event from a named one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<SyscallProbe>,
}

/// A probe on system calls by name, attached to `raw_syscalls:sys_enter` or `sys_exit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallProbe {
    /// `sys_exit_*` (else `sys_enter_*`).
    pub exit: bool,
    /// (number, name) of the calls it traces.
    pub calls: Vec<(u32, String)>,
    /// It traces every call of the kernel's table (no number filter).
    pub all: bool,
    /// Offset in `struct pt_regs` and size of argument 0, 1, ... (the raw event's `arg0` points to
    /// the registers).
    pub args: Vec<(u32, u8)>,
    /// Where the number is in `struct pt_regs` at `sys_exit` (`None`: nowhere).
    pub exit_nr: Option<(u32, u8)>,
}

/// A function (probe handler) of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuncInfo {
    /// Name for messages, e.g. `kprobe:vfs_read` or `trace_end`.
    pub name: String,
    /// Where its body starts.
    pub span: Span,
}

impl Sidecar {
    /// The sidecar path for an image path: `x.kimg` -> `x.kimg.json`.
    pub fn path_for(image: &std::path::Path) -> std::path::PathBuf {
        let mut p = image.as_os_str().to_owned();
        p.push(".json");
        p.into()
    }
}
