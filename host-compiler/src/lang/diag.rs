//! Diagnostics: what every stage of the front end reports, as data with byte ranges.
//!
//! Stages only collect [`Diagnostic`]s; text is produced at the CLI edge by [`render`] (plain, for
//! files, tests and pipes) or [`emit_stderr`] (coloured when stderr is a terminal), both through
//! codespan-reporting: `error: message`, `--> file:line:col`, the source line and carets.

use std::io::IsTerminal;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
use codespan_reporting::term::{self, Chars, Config};

pub use crate::sidecar::Span;

/// One error in a script: a message, where it is, further labelled places and notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, one line.
    pub message: String,
    /// The byte range the error is about.
    pub primary: Span,
    /// Other places that explain it, each with a short text ("first declared here").
    pub labels: Vec<(Span, String)>,
    /// Hints and explanations shown below the source.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `primary`.
    pub fn error(message: impl Into<String>, primary: Span) -> Diagnostic {
        Diagnostic { message: message.into(), primary, labels: Vec::new(), notes: Vec::new() }
    }

    /// Add a secondary label.
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Diagnostic {
        self.labels.push((span, text.into()));
        self
    }

    /// Add a note.
    pub fn note(mut self, text: impl Into<String>) -> Diagnostic {
        self.notes.push(text.into());
        self
    }
}

/// A span from two byte offsets.
pub const fn span(start: usize, end: usize) -> Span {
    Span { start, end }
}

/// The smallest span covering both.
pub fn join(a: Span, b: Span) -> Span {
    span(a.start.min(b.start), a.end.max(b.end))
}

fn config() -> Config {
    Config { chars: Chars::ascii(), ..Config::default() }
}

/// Clamp a span to the source and to character boundaries, so rendering never fails.
fn clamp(s: Span, source: &str) -> std::ops::Range<usize> {
    let fix = |mut i: usize| {
        i = i.min(source.len());
        while !source.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = fix(s.start);
    start..fix(s.end).max(start)
}

fn to_codespan(d: &Diagnostic, source: &str) -> CsDiagnostic<()> {
    let mut labels = vec![Label::primary((), clamp(d.primary, source))];
    labels.extend(d.labels.iter().map(|(s, t)| Label::secondary((), clamp(*s, source)).with_message(t)));
    CsDiagnostic::error().with_message(&d.message).with_labels(labels).with_notes(d.notes.clone())
}

/// Render diagnostics as plain text (no colour): `error: ...`, `--> file:line:col`, source line, carets.
pub fn render(diags: &[Diagnostic], file_name: &str, source: &str) -> String {
    let file = SimpleFile::new(file_name, source);
    let cfg = config();
    let mut out = String::new();
    for d in diags {
        match term::emit_into_string(&cfg, &file, &to_codespan(d, source)) {
            Ok(s) => {
                // codespan pads label lines; keep the text free of trailing blanks
                for line in s.lines() {
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
            Err(e) => out.push_str(&format!("error: {} (could not show the source: {e})\n", d.message)),
        }
    }
    out
}

/// Write diagnostics to stderr, coloured when stderr is a terminal (and `NO_COLOR` is unset).
pub fn emit_stderr(diags: &[Diagnostic], file_name: &str, source: &str) {
    let choice = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let mut stream = StandardStream::stderr(choice);
    let file = SimpleFile::new(file_name, source);
    let cfg = config();
    for d in diags {
        if term::emit_to_write_style(&mut stream, &cfg, &file, &to_codespan(d, source)).is_err() {
            eprintln!("error: {}", d.message);
        }
    }
}

/// Up to three of `candidates` close to `name` (edit distance), best first, for "did you mean".
pub fn similar<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.dedup();
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// "did you mean `a` or `b`?", or `None` when there is nothing close.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let close = similar(name, candidates);
    let quoted: Vec<String> = close.iter().map(|c| format!("`{c}`")).collect();
    match quoted.as_slice() {
        [] => None,
        [one] => Some(format!("did you mean {one}?")),
        [init @ .., last] => Some(format!("did you mean {} or {last}?", init.join(", "))),
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_file_line_col_and_caret() {
        let src = "var x = 1\nkprobe:f { y = 2 }\n";
        let d = Diagnostic::error("unknown identifier `y`", span(21, 22)).note("declare it first");
        let text = render(&[d], "t.kp", src);
        assert!(text.contains("error: unknown identifier `y`"), "{text}");
        assert!(text.contains("--> t.kp:2:12"), "{text}");
        assert!(text.contains("kprobe:f { y = 2 }"), "{text}");
        assert!(text.contains('^'), "{text}");
    }

    #[test]
    fn spans_outside_the_source_or_inside_a_char_do_not_break_rendering() {
        let src = "print(\"é\")";
        let d = Diagnostic::error("x", span(8, 400));
        assert!(render(&[d], "t.kp", src).contains("error: x"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("execnam", ["execname", "pid"]).as_deref(), Some("did you mean `execname`?"));
        assert_eq!(did_you_mean("zzzzzz", ["execname", "pid"]), None);
    }
}
