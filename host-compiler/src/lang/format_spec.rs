//! printf format strings, shared by the compiler (which checks formats and argument kinds) and the
//! output formatter (which renders `Printf` records with the format string from the sidecar).
//!
//! Grammar of one conversion: `%` flags* width? (`.` precision?)? conversion, where flags are
//! `- + space 0 #`, width and precision are decimal (at most [`MAX_WIDTH`]), and the conversion is one
//! of `d i u x X o c s p`; `%%` is a literal `%`. Every integer is 64-bit, so there are no length
//! modifiers (`%ld` is an error that says so). Rendering follows C's printf for these conversions;
//! `%p` prints `0x` and lowercase hex.

use std::fmt;
use std::ops::Range;

use ktap_protocol::image::ArgKind;
use ktap_protocol::record::Value;

/// Largest width or precision accepted.
pub const MAX_WIDTH: u32 = 256;

/// A piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text (`%%` becomes its own `"%"` piece).
    Text(&'a str),
    /// A conversion consuming one argument.
    Conv(Conversion),
}

/// Flags of a conversion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `-`: pad on the right.
    pub left: bool,
    /// `+`: always print a sign (signed conversions).
    pub plus: bool,
    /// space: a space where a `+` would go.
    pub space: bool,
    /// `0`: pad numbers with zeros (ignored with `-` or a precision).
    pub zero: bool,
    /// `#`: `0x`/`0X` before non-zero hex, a leading `0` for octal.
    pub alt: bool,
}

/// The conversion letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// `%d` or `%i`: signed decimal.
    Signed,
    /// `%u`: unsigned decimal.
    Unsigned,
    /// `%x`: lowercase hex.
    Hex,
    /// `%X`: uppercase hex.
    HexUpper,
    /// `%o`: octal.
    Octal,
    /// `%c`: the low byte as a character.
    Char,
    /// `%s`: a string.
    Str,
    /// `%p`: `0x` and lowercase hex.
    Pointer,
}

impl Conv {
    /// What kind of argument the conversion takes.
    pub fn arg_kind(self) -> ArgKind {
        match self {
            Conv::Str => ArgKind::Str,
            _ => ArgKind::Int,
        }
    }

    fn from_char(c: char) -> Option<Conv> {
        Some(match c {
            'd' | 'i' => Conv::Signed,
            'u' => Conv::Unsigned,
            'x' => Conv::Hex,
            'X' => Conv::HexUpper,
            'o' => Conv::Octal,
            'c' => Conv::Char,
            's' => Conv::Str,
            'p' => Conv::Pointer,
            _ => return None,
        })
    }
}

/// One `%...` conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// Flags.
    pub flags: Flags,
    /// Minimum field width.
    pub width: Option<u32>,
    /// Precision: minimum digits for integers, maximum bytes for strings.
    pub precision: Option<u32>,
    /// The conversion.
    pub conv: Conv,
    /// Byte range of the whole conversion in the format string.
    pub span: Range<usize>,
}

/// Why a format string is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// First byte of the problem in the format string.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
    /// What is wrong.
    pub kind: FormatErrorKind,
}

/// What is wrong with a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatErrorKind {
    /// The format ends inside a conversion.
    Incomplete,
    /// An unknown conversion letter.
    UnknownConversion(char),
    /// A C length modifier (`l`, `ll`, `h`, `z`, ...).
    LengthModifier(char),
    /// `*` width or precision.
    StarWidth,
    /// Width or precision above [`MAX_WIDTH`].
    TooWide,
}

impl fmt::Display for FormatErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatErrorKind::Incomplete => {
                f.write_str("`%` at the end of the format (write `%%` for a percent sign)")
            }
            FormatErrorKind::UnknownConversion(c) => write!(f, "unknown conversion `%{c}`"),
            FormatErrorKind::LengthModifier(c) => {
                write!(f, "length modifier `{c}` is not needed: every integer is 64-bit")
            }
            FormatErrorKind::StarWidth => f.write_str("`*` width or precision is not supported"),
            FormatErrorKind::TooWide => write!(f, "width or precision larger than {MAX_WIDTH}"),
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.kind, self.start)
    }
}

impl std::error::Error for FormatError {}

/// Parse a format string into literal text and conversions.
pub fn parse(fmt: &str) -> Result<Vec<Piece<'_>>, FormatError> {
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut chars = fmt.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != '%' {
            continue;
        }
        if start > text_start {
            pieces.push(Piece::Text(&fmt[text_start..start]));
        }
        let err = |end: usize, kind| Err(FormatError { start, end, kind });
        let mut flags = Flags::default();
        while let Some(&(_, f)) = chars.peek() {
            match f {
                '-' => flags.left = true,
                '+' => flags.plus = true,
                ' ' => flags.space = true,
                '0' => flags.zero = true,
                '#' => flags.alt = true,
                _ => break,
            }
            chars.next();
        }
        let number =
            |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| -> Result<Option<u32>, usize> {
                let mut n: Option<u32> = None;
                while let Some(&(at, d)) = chars.peek() {
                    let Some(v) = d.to_digit(10) else { break };
                    let next = n.unwrap_or(0).saturating_mul(10).saturating_add(v);
                    if next > MAX_WIDTH {
                        return Err(at + 1);
                    }
                    n = Some(next);
                    chars.next();
                }
                Ok(n)
            };
        let width = match number(&mut chars) {
            Ok(w) => w,
            Err(end) => return err(end, FormatErrorKind::TooWide),
        };
        let mut precision = None;
        if let Some(&(_, '.')) = chars.peek() {
            chars.next();
            precision = match number(&mut chars) {
                Ok(p) => Some(p.unwrap_or(0)),
                Err(end) => return err(end, FormatErrorKind::TooWide),
            };
        }
        let Some((at, letter)) = chars.next() else { return err(fmt.len(), FormatErrorKind::Incomplete) };
        let end = at + letter.len_utf8();
        if letter == '%' && end - start == 2 {
            pieces.push(Piece::Text("%"));
            text_start = end;
            continue;
        }
        let conv = match Conv::from_char(letter) {
            Some(c) => c,
            None if matches!(letter, 'l' | 'h' | 'z' | 'j' | 't' | 'L' | 'q') => {
                return err(end, FormatErrorKind::LengthModifier(letter));
            }
            None if letter == '*' => return err(end, FormatErrorKind::StarWidth),
            None => return err(end, FormatErrorKind::UnknownConversion(letter)),
        };
        pieces.push(Piece::Conv(Conversion { flags, width, precision, conv, span: start..end }));
        text_start = end;
    }
    if text_start < fmt.len() {
        pieces.push(Piece::Text(&fmt[text_start..]));
    }
    Ok(pieces)
}

/// The argument kinds a parsed format takes, in order.
pub fn arg_kinds(pieces: &[Piece<'_>]) -> Vec<ArgKind> {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Conv(c) => Some(c.conv.arg_kind()),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Render a parsed format with the values of a record. A value of the wrong kind is rendered as
/// itself (an integer in decimal, a string as text); a missing value as `<missing>`.
pub fn render(pieces: &[Piece<'_>], values: &[Value<'_>]) -> String {
    let mut out = String::new();
    let mut values = values.iter();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Conv(c) => match values.next() {
                Some(v) => c.render(v, &mut out),
                None => out.push_str("<missing>"),
            },
        }
    }
    out
}

impl Conversion {
    /// Append one value formatted by this conversion.
    pub fn render(&self, value: &Value<'_>, out: &mut String) {
        match (self.conv, value) {
            (Conv::Str, Value::Str(s)) => self.render_str(s, out),
            (Conv::Str, Value::Int(v)) => self.render_str(v.to_string().as_bytes(), out),
            (_, Value::Str(s)) => self.render_str(s, out),
            (_, Value::Int(v)) => self.render_int(*v, out),
            (_, Value::Buckets(_)) => {}
        }
    }

    /// Append a string: at most `precision` bytes, padded to `width`.
    pub fn render_str(&self, s: &[u8], out: &mut String) {
        let s = match self.precision {
            Some(p) => s.get(..p as usize).unwrap_or(s),
            None => s,
        };
        let text = String::from_utf8_lossy(s);
        self.pad("", "", &text, false, out);
    }

    /// Append an integer.
    pub fn render_int(&self, v: i64, out: &mut String) {
        let f = self.flags;
        let u = v as u64;
        let (sign, mut digits, mut prefix) = match self.conv {
            Conv::Signed => {
                let sign = if v < 0 {
                    "-"
                } else if f.plus {
                    "+"
                } else if f.space {
                    " "
                } else {
                    ""
                };
                (sign, v.unsigned_abs().to_string(), "")
            }
            Conv::Unsigned | Conv::Str => ("", u.to_string(), ""),
            Conv::Hex => ("", format!("{u:x}"), if f.alt && u != 0 { "0x" } else { "" }),
            Conv::HexUpper => ("", format!("{u:X}"), if f.alt && u != 0 { "0X" } else { "" }),
            Conv::Octal => ("", format!("{u:o}"), ""),
            Conv::Pointer => ("", format!("{u:x}"), "0x"),
            Conv::Char => {
                let c = (v as u8) as char;
                self.pad("", "", &c.to_string(), false, out);
                return;
            }
        };
        if let Some(p) = self.precision {
            if p == 0 && u == 0 {
                digits.clear();
            }
            let p = p as usize;
            if digits.len() < p {
                digits = format!("{}{digits}", "0".repeat(p - digits.len()));
            }
        }
        if self.conv == Conv::Octal && f.alt && !digits.starts_with('0') {
            prefix = "0";
        }
        let zero = f.zero && !f.left && self.precision.is_none();
        self.pad(sign, prefix, &digits, zero, out);
    }

    fn pad(&self, sign: &str, prefix: &str, body: &str, zero: bool, out: &mut String) {
        let len = sign.len() + prefix.len() + body.chars().count();
        let fill = (self.width.unwrap_or(0) as usize).saturating_sub(len);
        if self.flags.left {
            out.push_str(sign);
            out.push_str(prefix);
            out.push_str(body);
            out.extend(std::iter::repeat_n(' ', fill));
        } else if zero {
            out.push_str(sign);
            out.push_str(prefix);
            out.extend(std::iter::repeat_n('0', fill));
            out.push_str(body);
        } else {
            out.extend(std::iter::repeat_n(' ', fill));
            out.push_str(sign);
            out.push_str(prefix);
            out.push_str(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt1(f: &str, v: Value<'_>) -> String {
        render(&parse(f).unwrap(), &[v])
    }

    #[test]
    fn parses_pieces() {
        let p = parse("a%-08.3d%%b%s").unwrap();
        assert_eq!(p.len(), 5);
        assert_eq!(p[0], Piece::Text("a"));
        let Piece::Conv(c) = &p[1] else { panic!() };
        assert!(c.flags.left && c.flags.zero);
        assert_eq!((c.width, c.precision, c.conv, c.span.clone()), (Some(8), Some(3), Conv::Signed, 1..8));
        assert_eq!(p[2], Piece::Text("%"));
        assert_eq!(arg_kinds(&p), vec![ArgKind::Int, ArgKind::Str]);
    }

    #[test]
    fn errors_point_at_the_conversion() {
        let e = parse("x %ld").unwrap_err();
        assert_eq!((e.start, e.end, e.kind), (2, 4, FormatErrorKind::LengthModifier('l')));
        assert_eq!(parse("%q").unwrap_err().kind, FormatErrorKind::LengthModifier('q'));
        assert_eq!(parse("%y").unwrap_err().kind, FormatErrorKind::UnknownConversion('y'));
        assert_eq!(parse("100%").unwrap_err().kind, FormatErrorKind::Incomplete);
        assert_eq!(parse("%*d").unwrap_err().kind, FormatErrorKind::StarWidth);
        assert_eq!(parse("%999d").unwrap_err().kind, FormatErrorKind::TooWide);
        assert_eq!(parse("%5%").unwrap_err().kind, FormatErrorKind::UnknownConversion('%'));
        assert_eq!(parse("é%é").unwrap_err().kind, FormatErrorKind::UnknownConversion('é'));
    }

    #[test]
    fn renders_like_c() {
        assert_eq!(fmt1("[%5d]", Value::Int(-42)), "[  -42]");
        assert_eq!(fmt1("[%-5d]", Value::Int(42)), "[42   ]");
        assert_eq!(fmt1("[%05d]", Value::Int(-42)), "[-0042]");
        assert_eq!(fmt1("[%+d]", Value::Int(7)), "[+7]");
        assert_eq!(fmt1("[% d]", Value::Int(7)), "[ 7]");
        assert_eq!(fmt1("[%.3d]", Value::Int(7)), "[007]");
        assert_eq!(fmt1("[%.0d]", Value::Int(0)), "[]");
        assert_eq!(fmt1("[%u]", Value::Int(-1)), "[18446744073709551615]");
        assert_eq!(fmt1("[%#x]", Value::Int(255)), "[0xff]");
        assert_eq!(fmt1("[%#X]", Value::Int(255)), "[0XFF]");
        assert_eq!(fmt1("[%#x]", Value::Int(0)), "[0]");
        assert_eq!(fmt1("[%#o]", Value::Int(8)), "[010]");
        assert_eq!(fmt1("[%08x]", Value::Int(0xbeef)), "[0000beef]");
        assert_eq!(fmt1("[%p]", Value::Int(0xc0de)), "[0xc0de]");
        assert_eq!(fmt1("[%c]", Value::Int(65)), "[A]");
        assert_eq!(fmt1("[%-4s]", Value::Str(b"dd")), "[dd  ]");
        assert_eq!(fmt1("[%.2s]", Value::Str(b"bash")), "[ba]");
        assert_eq!(fmt1("[%d]", Value::Int(i64::MIN)), "[-9223372036854775808]");
        assert_eq!(render(&parse("%d %s").unwrap(), &[Value::Int(1)]), "1 <missing>");
    }
}
