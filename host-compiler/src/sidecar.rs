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
    pub stacks: Vec<Slot>,
    /// Tables of names for integer values (an enum's enumerators, the board's system calls),
    /// indexed by names id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<Names>,
    /// The integer values the renderer shows by name: which slot, from which table of `names`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named: Vec<Named>,
    /// The KASLR slide (run-time minus link-time address) the image's kernel addresses assume,
    /// when it was compiled against a vmlinux: `push --image` refuses an image whose slide is not
    /// the running kernel's, since its kprobe addresses would point into the wrong code. `None`
    /// for images whose addresses the host did not compute (`asm`, a System.map image, which the
    /// agent checks symbol by symbol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_slide: Option<u64>,
}

/// Names for the values of one integer type. The device sends the number; the host shows the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    /// What the values are, for listings: `enum pid_type`, `system calls`.
    pub what: String,
    /// Only the low `bytes` bytes of a value are compared (a 4-byte enum may arrive in a register
    /// sign-extended, or loaded zero-extended); 0 compares all 64 bits.
    pub bytes: u8,
    /// (value, name), sorted by the compared bytes of the value (see [`Names::new`]); a value
    /// with several names keeps its first.
    pub values: Vec<(i64, String)>,
    /// A value without a name reads as this text followed by its number in parentheses (`None`:
    /// the number alone), so distinct values never read alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
}

impl Names {
    /// The name of `v`, if it has one.
    pub fn name_of(&self, v: i64) -> Option<&str> {
        let mask = compared_bits(self.bytes);
        let key = v as u64 & mask;
        // values are sorted as masked when built with `Names::new`
        self.values
            .binary_search_by(|(x, _)| (*x as u64 & mask).cmp(&key))
            .ok()
            .map(|i| self.values[i].1.as_str())
    }

    /// How `v` reads: its name, else `other(v)`, else the number.
    pub fn text(&self, v: i64) -> String {
        match (self.name_of(v), &self.other) {
            (Some(n), _) => n.to_owned(),
            (None, Some(o)) => format!("{o}({v})"),
            (None, None) => v.to_string(),
        }
    }

    /// Names for `values`, kept in the order `name_of` searches (by masked value; the first name
    /// of a value wins).
    pub fn new(what: String, bytes: u8, values: Vec<(i64, String)>, other: Option<String>) -> Names {
        let mask = compared_bits(bytes);
        let mut values = values;
        values.sort_by_key(|(v, _)| *v as u64 & mask);
        values.dedup_by_key(|(v, _)| *v as u64 & mask);
        Names { what, bytes, values, other }
    }
}

/// The mask of the low `bytes` bytes of a value that [`Names`] compares (0 or 8 and more: all 64 bits).
fn compared_bits(bytes: u8) -> u64 {
    match bytes {
        0 | 8.. => u64::MAX,
        b => (1u64 << (u32::from(b) * 8)) - 1,
    }
}

/// A value shown by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    /// Where the value is.
    pub slot: Slot,
    /// Its names: an index into [`Sidecar::names`].
    pub names: u16,
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

/// Where a value the renderer treats specially arrives: a printf argument or a table key component
/// (a kernel stack, little-endian u64 return addresses; an integer shown by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
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
    /// The names integer values in `slot` are shown by, if any.
    pub fn names_of(&self, slot: Slot) -> Option<&Names> {
        let n = self.named.iter().find(|n| n.slot == slot)?;
        self.names.get(n.names as usize)
    }

    /// The sidecar path for an image path: `x.kimg` -> `x.kimg.json`.
    pub fn path_for(image: &std::path::Path) -> std::path::PathBuf {
        let mut p = image.as_os_str().to_owned();
        p.push(".json");
        p.into()
    }
}
