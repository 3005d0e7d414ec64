//! The front end never panics and never hangs: every prefix and many one-character edits of every
//! test script, plus random token soup, go through `check`, `compile` and `render`. Whatever compiles
//! must also parse and verify (`compile` checks that itself; this makes it a test).

#[path = "lang/support.rs"]
mod support;

use ktap_host::board::Arch;
use ktap_host::lang::{self, CompileOptions, NoKernel};
use support::{FakeKernel, scripts};

fn opts() -> CompileOptions {
    CompileOptions { arch: Arch::Arm, build_id: support::BUILD_ID.to_vec() }
}

/// Run the whole pipeline on `src`; panics propagate and fail the test with the input shown.
fn exercise(src: &str, render: bool) {
    let r = std::panic::catch_unwind(|| {
        let d = lang::check(src, "fuzz.kp", &opts(), &NoKernel);
        if render {
            let _ = lang::render(&d, "fuzz.kp", src);
        }
        match lang::compile(src, "fuzz.kp", &opts(), &FakeKernel) {
            Ok(c) => {
                let img = ktap_protocol::image::Image::parse(&c.image).unwrap();
                ktap_vm::verify(&img).unwrap();
                lang::disasm::disassemble(&c.image, Some(&c.sidecar)).unwrap();
            }
            Err(d) => {
                assert!(!d.is_empty());
                for x in &d {
                    assert!(x.primary.start <= x.primary.end && x.primary.end <= src.len(), "{x:?}");
                }
                if render {
                    let _ = lang::render(&d, "fuzz.kp", src);
                }
            }
        }
    });
    if r.is_err() {
        panic!("the front end panicked on:\n{src}");
    }
}

const EDITS: &[&str] = &["", "{", "}", "(", "[", "\"", "\n", ":", "=", "x", "é", " var "];

#[test]
fn prefixes_and_edits_of_every_script() {
    let mut runs = 0usize;
    for path in scripts("ok").into_iter().chain(scripts("err")) {
        let src = std::fs::read_to_string(&path).unwrap();
        let cuts: Vec<usize> = (0..=src.len()).filter(|i| src.is_char_boundary(*i)).collect();
        // big generated scripts (limits) are sampled, not edited everywhere
        let stride = if src.len() > 1500 { 37 } else { 1 };
        for &i in cuts.iter().step_by(stride) {
            exercise(&src[..i], i.is_multiple_of(7));
            runs += 1;
        }
        for w in cuts.windows(2).step_by(stride) {
            let (a, b) = (w[0], w[1]);
            for e in EDITS {
                let edited = format!("{}{e}{}", &src[..a], &src[b..]);
                exercise(&edited, false);
                runs += 1;
            }
        }
    }
    assert!(runs > 5_000, "{runs}");
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

#[test]
fn random_token_soup() {
    const TOKENS: &[&str] = &[
        "var",
        "t",
        "x",
        "=",
        "{",
        "}",
        "{}",
        "(",
        ")",
        "[",
        "]",
        "kprobe",
        "kretprobe",
        ":",
        "trace",
        "trace_begin",
        "trace_end",
        "sched",
        "vfs_read",
        "print",
        "printf",
        "\"%d\\n\"",
        "\"%s\"",
        "\"a\"",
        "execname",
        "pid",
        "retval",
        "arg0",
        "arg7",
        "1",
        "0x7fffffffffff",
        "-",
        "+",
        "*",
        "/",
        "%",
        "+=",
        "-=",
        ",",
        ";",
        "\n",
        "\n",
        "\n",
        "#c\n",
        "if",
        "==",
        "no_such_fn",
        "\"",
        ".",
        "9",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let n = (rng.next() % 60) as usize;
        let mut src = String::new();
        for _ in 0..n {
            src.push_str(rng.pick(TOKENS));
            src.push(' ');
        }
        exercise(&src, true);
    }
}

#[test]
fn structured_random_scripts_compile_and_verify() {
    // well-formed scripts built from the grammar: they must all compile and verify
    let mut rng = Rng(0x1234_5678_9abc_def1);
    const INT_ATOMS: &[&str] =
        &["pid", "tid", "cpu", "uid", "arg0", "arg3", "1", "-7", "0x123456789", "g", "t[pid]", "i"];
    for case in 0..400 {
        let mut src = String::from(
            "var g = 3\nvar t = {}\nvar s = {}\nkprobe:vfs_read {\n var i = arg1\n var n = execname\n",
        );
        for _ in 0..(rng.next() % 12) {
            let mut e = rng.pick(INT_ATOMS).to_string();
            for _ in 0..(rng.next() % 5) {
                let op = rng.pick(&["+", "-", "*", "/", "%"]);
                let rhs = rng.pick(INT_ATOMS);
                e = if rng.next().is_multiple_of(2) {
                    format!("({e}) {op} {rhs}")
                } else {
                    format!("{rhs} {op} ({e})")
                };
            }
            let stmt = match rng.next() % 7 {
                0 => format!(" g += {e}\n"),
                1 => format!(" t[{e}] = {e}\n"),
                2 => format!(" s[n] -= {e}\n"),
                3 => format!(" i = {e}\n"),
                4 => format!(" printf(\"%s %5d %x\\n\", n, {e}, i)\n"),
                5 => format!(" print({e}, n, \"x\")\n"),
                _ => format!(" t[i] %= {e}\n"),
            };
            src.push_str(&stmt);
        }
        src.push_str("}\ntrace_end { print(t)\n print(s) }\n");
        if let Err(d) = lang::compile(&src, "gen.kp", &opts(), &FakeKernel) {
            panic!("case {case} does not compile:\n{src}\n{}", lang::render(&d, "gen.kp", &src));
        }
    }
}
