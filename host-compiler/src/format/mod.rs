//! Records to text, with the sidecar's strings: the host half of every `printf` and `print(table)`.
//!
//! Rendering is pure: bytes in, text out, no I/O. Problems (an unknown format id, a malformed record,
//! a table whose inserts were refused) never abort rendering; they are collected for the caller to
//! show on stderr, so nothing is lost silently and program output stays clean.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write;

use ktap_protocol::image::ArgKind;
use ktap_protocol::record::{Record, RecordKind, Value, records};

use crate::lang::format_spec::{self, Piece};
use crate::sidecar::{Show, Sidecar, Slot};

mod hist;
mod symbolize;

pub use symbolize::kernel_symbolizer;

/// Width of the key column of a printed table.
pub const TABLE_KEY_WIDTH: usize = 32;
/// Width of the value column of a printed table.
pub const TABLE_VALUE_WIDTH: usize = 12;

/// One component of a table key as it arrived.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Str(Vec<u8>),
}

/// A table entry's value as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Int(i64),
    /// count, sum, min, max and the non-empty buckets of an aggregate.
    Agg {
        stats: [i64; 4],
        buckets: Vec<(u8, u32)>,
    },
}

impl Val {
    /// What entries sort by: the value, or an aggregate's count.
    fn weight(&self) -> i64 {
        match self {
            Val::Int(v) => *v,
            Val::Agg { stats, .. } => stats[0],
        }
    }
}

type Entry = (Vec<Key>, Val);

/// Split a table entry record into keys and value (see `ktap_protocol::record`).
fn entry(values: &[Value<'_>]) -> Option<Entry> {
    let key = |v: &Value<'_>| match v {
        Value::Int(k) => Some(Key::Int(*k)),
        Value::Str(s) => Some(Key::Str(s.to_vec())),
        Value::Buckets(_) => None,
    };
    match values {
        [keys @ .., Value::Int(c), Value::Int(s), Value::Int(lo), Value::Int(hi), b @ Value::Buckets(_)]
            if !keys.is_empty() =>
        {
            let keys = keys.iter().map(key).collect::<Option<Vec<_>>>()?;
            Some((keys, Val::Agg { stats: [*c, *s, *lo, *hi], buckets: b.buckets().collect() }))
        }
        [keys @ .., Value::Int(v)] if !keys.is_empty() => {
            Some((keys.iter().map(key).collect::<Option<Vec<_>>>()?, Val::Int(*v)))
        }
        _ => None,
    }
}

/// Streaming renderer: table entries may span several record batches, so it keeps the tables being
/// printed until their `TableEnd`.
pub struct Renderer<'s> {
    sidecar: &'s Sidecar,
    /// Each sidecar format, parsed once (`Err`: the reason it does not parse).
    formats: Vec<Result<Vec<Piece<'s>>, String>>,
    tables: BTreeMap<u16, Vec<Entry>>,
    problems: Vec<String>,
    /// Kernel address to `symbol+0xoff`, for stacks; without one they print as hex.
    symbolize: Option<Symbolizer<'s>>,
}

/// Turns a kernel address into `symbol+0xoff` (already rebased for KASLR by its maker).
pub type Symbolizer<'s> = Box<dyn Fn(u64) -> Option<String> + 's>;

impl std::fmt::Debug for Renderer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("tables", &self.tables)
            .field("problems", &self.problems)
            .field("symbolize", &self.symbolize.is_some())
            .finish()
    }
}

impl<'s> Renderer<'s> {
    /// A renderer for the records of the image `sidecar` describes.
    pub fn new(sidecar: &'s Sidecar) -> Self {
        let formats =
            sidecar.formats.iter().map(|f| format_spec::parse(f).map_err(|e| e.to_string())).collect();
        Renderer { sidecar, formats, tables: BTreeMap::new(), problems: Vec::new(), symbolize: None }
    }

    /// Symbolize kernel stacks with `f` (else their addresses print as hex).
    pub fn with_symbolizer(mut self, f: Symbolizer<'s>) -> Self {
        self.symbolize = Some(f);
        self
    }

    /// A stack value (little-endian u64 return addresses) as one frame per line, each indented.
    fn stack_text(&self, raw: &[u8]) -> String {
        if raw.len() < 8 {
            return "    (no stack)".into();
        }
        let mut out = String::new();
        for (i, chunk) in raw.chunks_exact(8).enumerate() {
            let addr = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let name = self.symbolize.as_ref().and_then(|f| f(addr)).unwrap_or_else(|| format!("{addr:#x}"));
            if i > 0 {
                out.push('\n');
            }
            let _ = write!(out, "    {name}");
        }
        out
    }

    fn is_stack(&self, v: Slot) -> bool {
        self.sidecar.stacks.contains(&v)
    }

    fn view(&self, table: u16) -> Option<Show> {
        self.sidecar.views.iter().find(|v| v.table == table).map(|v| v.show)
    }

    /// Render a batch of concatenated records.
    pub fn feed(&mut self, data: &[u8]) -> String {
        let mut out = String::new();
        for rec in records(data) {
            match rec {
                Ok(rec) => self.record(&mut out, &rec),
                Err(e) => {
                    self.problems
                        .push(format!("malformed records from the agent ({e}); rest of the batch skipped"));
                    break;
                }
            }
        }
        out
    }

    /// Tables still open (entries without their end record) are printed and reported.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        for (id, entries) in std::mem::take(&mut self.tables) {
            let name = self.table_name(id);
            self.problems.push(format!("table `{name}` ended without its end record: printed as received"));
            self.print_table(&mut out, id, entries);
        }
        out
    }

    /// Problems met so far (each once); the caller prints them to stderr.
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    fn table_name(&self, id: u16) -> String {
        self.sidecar.tables.get(id as usize).map_or_else(|| format!("#{id}"), |t| t.name.clone())
    }

    fn record(&mut self, out: &mut String, rec: &Record<'_>) {
        let mut values = Vec::new();
        for v in rec.values() {
            match v {
                Ok(v) => values.push(v),
                Err(e) => {
                    self.problems.push(format!("malformed record from the agent: {e}"));
                    return;
                }
            }
        }
        match rec.kind {
            RecordKind::Printf => self.printf(out, rec.id, &values),
            RecordKind::TableEntry => match entry(&values) {
                Some(e) => self.tables.entry(rec.id).or_default().push(e),
                None => self.problems.push(format!(
                    "table entry for `{}` is not keys + a value or an aggregate",
                    self.table_name(rec.id)
                )),
            },
            // the session stops tracing on it; nothing to print
            RecordKind::Exit => {}
            RecordKind::BudgetExhausted => {
                let name = self
                    .sidecar
                    .funcs
                    .get(rec.id as usize)
                    .map_or_else(|| format!("function #{}", rec.id), |f| f.name.clone());
                self.problems.push(format!(
                    "{name}: a hit ran out of instruction budget and was aborted (every such hit is counted in budget_exhausted)"
                ));
            }
            RecordKind::TableEnd => {
                let entries = self.tables.remove(&rec.id).unwrap_or_default();
                let name = self.table_name(rec.id);
                if let [Value::Int(count), Value::Int(refused)] = values.as_slice() {
                    if (entries.len() as i64) < *count {
                        self.problems.push(format!(
                            "table `{name}`: {} of its {count} entries did not arrive",
                            *count - entries.len() as i64
                        ));
                    }
                    if *refused > 0 {
                        self.problems.push(format!("table `{name}`: {refused} inserts refused (table full)"));
                    }
                }
                self.print_table(out, rec.id, entries);
            }
        }
    }

    fn printf(&mut self, out: &mut String, id: u16, args: &[Value<'_>]) {
        let fmt = self.sidecar.formats.get(id as usize).map_or("", String::as_str);
        let pieces = match self.formats.get(id as usize) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.problems
                    .push(format!("format {id} `{}` is invalid ({e}): printed as is", fmt.escape_debug()));
                out.push_str(fmt);
                return;
            }
            None => {
                self.problems
                    .push(format!("printf record with unknown format id {id} (image and sidecar differ?)"));
                return;
            }
        };
        let mut args = args.iter().enumerate();
        for piece in pieces {
            match piece {
                Piece::Text(s) => out.push_str(s),
                Piece::Conv(c) => match args.next() {
                    Some((i, a)) => {
                        let slot = Slot::FormatArg { format: id, arg: i as u8 };
                        let text;
                        let a = match a {
                            Value::Str(raw) if self.is_stack(slot) => {
                                text = self.stack_text(raw);
                                &Value::Str(text.as_bytes())
                            }
                            // `%s` (and `print`) of a named integer: its name; `%d`, `%x`, ...
                            // keep the number
                            Value::Int(v) if c.conv.arg_kind() == ArgKind::Str => {
                                match self.sidecar.names_of(slot) {
                                    Some(names) => {
                                        text = names.text(*v);
                                        &Value::Str(text.as_bytes())
                                    }
                                    None => a,
                                }
                            }
                            a => a,
                        };
                        let is_str = matches!(a, Value::Str(_));
                        if is_str != (c.conv.arg_kind() == ArgKind::Str) {
                            self.problems.push(format!(
                                "format {id} `{}`: `{}` got a {}",
                                fmt.escape_debug(),
                                fmt.get(c.span.clone()).unwrap_or("%?"),
                                if is_str { "string" } else { "number" }
                            ));
                        }
                        c.render(a, out);
                    }
                    None => {
                        self.problems.push(format!("format {id}: fewer arguments than conversions"));
                        out.push_str("<missing>");
                    }
                },
            }
        }
        if args.next().is_some() {
            self.problems.push(format!("format {id}: more arguments than conversions"));
        }
    }
}

impl Renderer<'_> {
    /// A printed table: one line per entry, keys left (comma-separated), value right, largest value
    /// (or count) first, then by key; aggregates show their statistics, or the one the sidecar names,
    /// or a histogram per key; `print_hist` tables one bar per key. Stack keys print as frames,
    /// named integer keys (enums, system calls) as their names.
    fn print_table(&self, out: &mut String, id: u16, entries: Vec<Entry>) {
        // named integer keys sort by their names, as they read
        let mut entries: Vec<Entry> = entries
            .into_iter()
            .map(|(keys, v)| {
                let keys = keys
                    .into_iter()
                    .enumerate()
                    .map(|(i, k)| {
                        match (k, self.sidecar.names_of(Slot::TableKey { table: id, key: i as u8 })) {
                            (Key::Int(v), Some(names)) => Key::Str(names.text(v).into_bytes()),
                            (k, _) => k,
                        }
                    })
                    .collect();
                (keys, v)
            })
            .collect();
        entries.sort_by(|a, b| match b.1.weight().cmp(&a.1.weight()) {
            Ordering::Equal => a.0.cmp(&b.0),
            o => o,
        });
        let view = self.view(id);
        let mut bars = Vec::new();
        for (keys, value) in &entries {
            let key = self.key_text(id, keys);
            let stat = |s: &[i64; 4], show: Option<Show>| match show {
                Some(Show::Count) => Some(s[0]),
                Some(Show::Sum) => Some(s[1]),
                Some(Show::Min) => Some(s[2]),
                Some(Show::Max) => Some(s[3]),
                Some(Show::Avg) => Some(s[1].checked_div(s[0]).unwrap_or(0)),
                _ => None,
            };
            match value {
                Val::Int(v) if view == Some(Show::Bars) => bars.push((key, (*v).max(0) as u64)),
                Val::Int(v) => line(out, &key, *v),
                Val::Agg { stats, buckets } => match (stat(stats, view), view) {
                    (Some(v), _) => line(out, &key, v),
                    (None, Some(Show::Hist)) => self.histogram(out, &key, hist::log2_rows(buckets)),
                    (None, Some(Show::Lhist { min, step, buckets: nb })) => {
                        self.histogram(out, &key, hist::linear_rows(buckets, min, step, nb))
                    }
                    (None, _) if !buckets.is_empty() => self.histogram(out, &key, hist::raw_rows(buckets)),
                    (None, _) => {
                        let [count, sum, min, max] = *stats;
                        let avg = sum.checked_div(count).unwrap_or(0);
                        let _ = writeln!(
                            out,
                            "{key:<TABLE_KEY_WIDTH$} count={count} sum={sum} min={min} max={max} avg={avg}"
                        );
                    }
                },
            }
        }
        if !bars.is_empty() {
            hist::rows(out, "key", &bars);
        }
    }

    fn histogram(&self, out: &mut String, key: &str, rows: Vec<(String, u64)>) {
        let _ = writeln!(out, "{key}");
        hist::rows(out, "value", &rows);
    }

    fn key_text(&self, table: u16, keys: &[Key]) -> String {
        keys.iter()
            .enumerate()
            .map(|(i, k)| match k {
                Key::Int(k) => k.to_string(),
                Key::Str(s) if self.is_stack(Slot::TableKey { table, key: i as u8 }) => {
                    format!("\n{}\n", self.stack_text(s))
                }
                Key::Str(s) => String::from_utf8_lossy(s).into_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One key/value line; a key that ends in a newline (a stack) puts the value on a line of its own.
fn line(out: &mut String, key: &str, v: i64) {
    match key.strip_suffix('\n') {
        Some(k) => {
            let _ = writeln!(out, "{}", k.trim_start_matches('\n'));
            let _ = writeln!(out, "{:>w$}", v, w = TABLE_KEY_WIDTH + 1 + TABLE_VALUE_WIDTH);
        }
        None => {
            let _ = writeln!(out, "{key:<TABLE_KEY_WIDTH$} {v:>TABLE_VALUE_WIDTH$}");
        }
    }
}

/// Render a whole record stream at once (tests, offline tools): the text and the problems.
pub fn render(sidecar: &Sidecar, data: &[u8]) -> (String, Vec<String>) {
    let mut r = Renderer::new(sidecar);
    let mut text = r.feed(data);
    text.push_str(&r.finish());
    (text, r.take_problems())
}

#[cfg(test)]
mod tests;
