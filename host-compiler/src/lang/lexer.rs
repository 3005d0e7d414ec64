//! The lexer: source text to tokens with byte spans. It never fails: bad input becomes a
//! diagnostic and lexing goes on (an unknown character is skipped, a bad literal still yields a token).
//!
//! Newlines are not tokens, but every token records whether a newline precedes it: the parser uses that
//! to end statements without `;` and to resynchronise after an error.

use super::diag::{Diagnostic, Span, span};

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A name or keyword (keywords are recognised by the parser).
    Ident,
    /// An integer literal (hex literals up to `u64::MAX` wrap to negative values).
    Int(i64),
    /// A string literal with escapes decoded.
    Str(String),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// `:`
    Colon,
    /// `.`
    Dot,
    /// `=`
    Assign,
    /// `+=`, `-=`, `*=`, `/=`, `%=`: the operator character.
    OpAssign(char),
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// The other operators, kept whole: `==`, `!=`, `<=`, `>=`, `&&`, `||`, `<<<`, `<<`, `>>`, `..`,
    /// `->`, `<`, `>`, `!`, `&`, `|`, `^`, `~`; and `?`, `$`, `@`, which the language does not use.
    Other(&'static str),
    /// A decimal number with a unit suffix (`10ms`, `1s`): the number and the suffix, for timer heads.
    Dur(u64, &'static str),
    /// End of input.
    Eof,
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Its bytes in the source.
    pub span: Span,
    /// A newline (or the start of the file) comes between the previous token and this one.
    pub nl_before: bool,
}

const OTHER_OPS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "<<<", "<<", ">>", "..", "->", "<", ">", "!", "&", "|", "^", "~",
    "?", "$", "@",
];

/// Unit suffixes a decimal number may carry (timer periods).
pub const UNITS: &[&str] = &["s", "ms", "us", "ns"];

/// Lex `src` completely. The last token is always [`Tok::Eof`].
pub fn lex(src: &str, diags: &mut Vec<Diagnostic>) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut nl = true;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let mut push = |tok: Tok, end: usize, nl: &mut bool| {
            out.push(Token { tok, span: span(start, end), nl_before: *nl });
            *nl = false;
        };
        match c {
            b'\n' => {
                nl = true;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | 0x0c => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                push(Tok::Ident, i, &mut nl);
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let text = &src[start..i];
                let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = UNITS.iter().find(|u| **u == &text[digits.len()..]);
                match unit {
                    Some(u) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                        let value = digits.parse::<u64>().unwrap_or(u64::MAX);
                        push(Tok::Dur(value, u), i, &mut nl);
                    }
                    _ => {
                        let value = number(text, span(start, i), diags);
                        push(Tok::Int(value), i, &mut nl);
                    }
                }
            }
            b'"' => {
                let (value, end) = string(src, start, diags);
                i = end;
                push(Tok::Str(value), i, &mut nl);
            }
            _ => {
                let single = match c {
                    b'{' => Some(Tok::LBrace),
                    b'}' => Some(Tok::RBrace),
                    b'(' => Some(Tok::LParen),
                    b')' => Some(Tok::RParen),
                    b'[' => Some(Tok::LBracket),
                    b']' => Some(Tok::RBracket),
                    b',' => Some(Tok::Comma),
                    b';' => Some(Tok::Semi),
                    b':' => Some(Tok::Colon),
                    _ => None,
                };
                let next = bytes.get(i + 1).copied();
                if let Some(tok) = single {
                    i += 1;
                    push(tok, i, &mut nl);
                } else if matches!(c, b'+' | b'-' | b'*' | b'/' | b'%') && next == Some(b'=') {
                    i += 2;
                    push(Tok::OpAssign(c as char), i, &mut nl);
                } else if let Some(op) = OTHER_OPS.iter().find(|op| bytes[i..].starts_with(op.as_bytes())) {
                    i += op.len();
                    push(Tok::Other(op), i, &mut nl);
                } else {
                    let tok = match c {
                        b'=' => Some(Tok::Assign),
                        b'+' => Some(Tok::Plus),
                        b'-' => Some(Tok::Minus),
                        b'*' => Some(Tok::Star),
                        b'/' => Some(Tok::Slash),
                        b'%' => Some(Tok::Percent),
                        b'.' => Some(Tok::Dot),
                        _ => None,
                    };
                    match tok {
                        Some(tok) => {
                            i += 1;
                            push(tok, i, &mut nl);
                        }
                        None => {
                            let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                            i += ch.len_utf8();
                            diags.push(Diagnostic::error(
                                format!("unexpected character {ch:?}"),
                                span(start, i),
                            ));
                        }
                    }
                }
            }
        }
    }
    out.push(Token { tok: Tok::Eof, span: span(src.len(), src.len()), nl_before: true });
    out
}

fn number(text: &str, at: Span, diags: &mut Vec<Diagnostic>) -> i64 {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let digits_clean = digits.replace('_', "");
    if digits_clean.is_empty() || !digits_clean.chars().all(|c| c.is_digit(radix)) {
        let kind = if radix == 16 { "hexadecimal" } else { "decimal" };
        diags.push(Diagnostic::error(format!("invalid {kind} integer literal `{text}`"), at));
        return 0;
    }
    match u64::from_str_radix(&digits_clean, radix) {
        Ok(v) => v as i64,
        Err(_) => {
            diags.push(
                Diagnostic::error(format!("integer literal `{text}` does not fit in 64 bits"), at)
                    .note("integers are 64-bit; the largest literal is 0xffffffffffffffff"),
            );
            0
        }
    }
}

/// Decode the string literal starting at `start` (the opening quote). Returns the value and the offset
/// after the literal. An unterminated literal ends at the end of its line.
fn string(src: &str, start: usize, diags: &mut Vec<Diagnostic>) -> (String, usize) {
    let mut value = String::new();
    let mut chars = src[start + 1..].char_indices().map(|(o, c)| (o + start + 1, c)).peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (value, at + 1),
            '\n' => break,
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, '0')) => value.push('\0'),
                Some((e, '\n')) | Some((e, '\r')) => {
                    diags.push(Diagnostic::error("unterminated string literal", span(start, e)));
                    return (value, e);
                }
                Some((e, other)) => {
                    diags.push(
                        Diagnostic::error(
                            format!("unknown escape `\\{other}`"),
                            span(at, e + other.len_utf8()),
                        )
                        .note("known escapes: \\n \\t \\\\ \\\" \\0"),
                    );
                    value.push(other);
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    let end = src[start..].find('\n').map_or(src.len(), |n| start + n);
    diags.push(
        Diagnostic::error("unterminated string literal", span(start, end)).note("add the closing `\"`"),
    );
    (value, end)
}

/// Source offset of each byte of a decoded string literal, plus one entry for its end: lets the
/// checker point into a format string (`%d` inside `"a %d\n"`).
pub fn string_offsets(src: &str, lit: Span) -> Vec<usize> {
    let mut out = Vec::new();
    let Some(text) = src.get(lit.start..lit.end) else { return out };
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((o, c)) = chars.next() {
        let at = lit.start + o;
        match c {
            '"' => break,
            '\\' => {
                if let Some((_, e)) = chars.next() {
                    out.extend(std::iter::repeat_n(at, e.len_utf8()));
                }
            }
            c => out.extend(std::iter::repeat_n(at, c.len_utf8())),
        }
    }
    out.push(lit.end.saturating_sub(1).max(lit.start));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> (Vec<Tok>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        let t = lex(src, &mut d).into_iter().map(|t| t.tok).collect();
        (t, d)
    }

    #[test]
    fn tokens_and_newlines() {
        let mut d = Vec::new();
        let t = lex("var x = 0x10 # c\nx += -1;", &mut d);
        assert!(d.is_empty());
        let kinds: Vec<_> = t.iter().map(|t| t.tok.clone()).collect();
        assert_eq!(
            kinds,
            [
                Tok::Ident,
                Tok::Ident,
                Tok::Assign,
                Tok::Int(16),
                Tok::Ident,
                Tok::OpAssign('+'),
                Tok::Minus,
                Tok::Int(1),
                Tok::Semi,
                Tok::Eof
            ]
        );
        assert!(t[0].nl_before && !t[1].nl_before && t[4].nl_before);
    }

    #[test]
    fn strings_and_escapes() {
        let (t, d) = toks(r#""a\n\t\\\"\0b""#);
        assert!(d.is_empty());
        assert_eq!(t[0], Tok::Str("a\n\t\\\"\0b".into()));
        let (t, d) = toks("\"abc\nx");
        assert_eq!(t[0], Tok::Str("abc".into()));
        assert_eq!(d[0].message, "unterminated string literal");
        let (_, d) = toks(r#""\q""#);
        assert_eq!(d[0].message, "unknown escape `\\q`");
    }

    #[test]
    fn bad_numbers_and_characters() {
        let (t, d) = toks("0xffffffffffffffff 99999999999999999999 12ab 0x ` é");
        assert_eq!(t[0], Tok::Int(-1));
        assert_eq!(d.len(), 5, "{d:?}");
    }

    #[test]
    fn offsets_of_decoded_bytes() {
        let src = r#"x("a\n%d")"#;
        let offs = string_offsets(src, span(2, 10));
        // a \n % d, then the closing quote
        assert_eq!(offs, vec![3, 4, 6, 7, 9]);
    }
}
