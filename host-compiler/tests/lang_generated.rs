//! Property: every well-typed script compiles, and the image the compiler emits parses, verifies and
//! lists to assembly that assembles back to the same bytes. Scripts come from a seeded generator over
//! the current language slice (globals, int- and string-keyed tables, locals, every assignment
//! operator, arithmetic, built-ins, printf/print, every probe kind), so every run checks the same ones.

#[path = "lang/support.rs"]
mod support;

use ktap_host::board::Arch;
use ktap_host::lang::{self, CompileOptions, disasm::disassemble};
use ktap_protocol::image::Image;
use support::FakeKernel;

/// xorshift64*: small, seeded, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// What a block may use.
struct Scope {
    globals: usize,
    /// Key kind of each table: `true` for strings.
    tables: Vec<bool>,
    int_locals: Vec<String>,
    str_locals: Vec<String>,
    retval: bool,
    /// `argN` exist (kprobes and tracepoints).
    args: bool,
}

fn int_expr(r: &mut Rng, s: &Scope, depth: u32) -> String {
    let leaf = depth == 0 || r.below(3) == 0;
    if leaf {
        return match r.below(7) {
            0 => format!("{}", r.next() as i32 % 1000),
            1 => format!("0x{:x}", r.next() >> r.below(64)),
            2 if s.globals > 0 => format!("g{}", r.below(s.globals)),
            3 if !s.int_locals.is_empty() => s.int_locals[r.below(s.int_locals.len())].clone(),
            4 if s.retval => "retval".into(),
            4 | 5 if s.args => {
                r.pick(&["pid", "tid", "uid", "cpu", "time", "arg0", "arg1", "arg2", "arg3"]).into()
            }
            4 | 5 => r.pick(&["pid", "tid", "uid", "cpu", "time"]).into(),
            6 if !s.tables.is_empty() => {
                let t = r.below(s.tables.len());
                format!("t{t}[{}]", key(r, s, t, depth.saturating_sub(1)))
            }
            _ => format!("{}", r.below(100)),
        };
    }
    match r.below(4) {
        0 => format!("-{}", int_expr(r, s, depth - 1)),
        1 => format!("({})", int_expr(r, s, depth - 1)),
        _ => {
            let op = r.pick(&["+", "-", "*", "/", "%"]);
            format!("{} {op} {}", int_expr(r, s, depth - 1), int_expr(r, s, depth - 1))
        }
    }
}

fn str_expr(r: &mut Rng, s: &Scope) -> String {
    match r.below(3) {
        0 if !s.str_locals.is_empty() => s.str_locals[r.below(s.str_locals.len())].clone(),
        1 => format!("\"{}\"", r.pick(&["", "dd", "a b", "x%y", "long-ish string with spaces"])),
        _ => "execname".into(),
    }
}

fn key(r: &mut Rng, s: &Scope, t: usize, depth: u32) -> String {
    if s.tables[t] { str_expr(r, s) } else { int_expr(r, s, depth.min(1)) }
}

fn statement(r: &mut Rng, s: &mut Scope, out: &mut String) {
    let line = match r.below(8) {
        0 => {
            let name = format!("l{}", s.int_locals.len() + s.str_locals.len());
            let line = format!("var {name} = {}", int_expr(r, s, 2));
            s.int_locals.push(name);
            line
        }
        1 => {
            let name = format!("l{}", s.int_locals.len() + s.str_locals.len());
            let line = format!("var {name} = {}", str_expr(r, s));
            s.str_locals.push(name);
            line
        }
        2 if s.globals > 0 => {
            let op = r.pick(&["=", "+=", "-=", "*=", "/=", "%="]);
            format!("g{} {op} {}", r.below(s.globals), int_expr(r, s, 2))
        }
        3 | 4 if !s.tables.is_empty() => {
            let t = r.below(s.tables.len());
            let op = r.pick(&["=", "+=", "-="]);
            format!("t{t}[{}] {op} {}", key(r, s, t, 1), int_expr(r, s, 2))
        }
        5 => {
            let n = r.below(4);
            let mut fmt = String::new();
            let mut args = String::new();
            for _ in 0..n {
                if r.below(2) == 0 {
                    fmt.push_str(r.pick(&["%d ", "%x ", "%5d|", "%-3u "]));
                    args.push_str(&format!(", {}", int_expr(r, s, 1)));
                } else {
                    fmt.push_str(r.pick(&["%s ", "%8s|"]));
                    args.push_str(&format!(", {}", str_expr(r, s)));
                }
            }
            format!("printf(\"{fmt}\\n\"{args})")
        }
        6 if !s.tables.is_empty() => format!("print(t{})", r.below(s.tables.len())),
        _ => {
            let a = int_expr(r, s, 1);
            let b = str_expr(r, s);
            format!("print({a}, {b})")
        }
    };
    out.push_str("    ");
    out.push_str(&line);
    out.push('\n');
}

fn script(r: &mut Rng) -> String {
    let mut out = String::new();
    let globals = r.below(4);
    for g in 0..globals {
        out.push_str(&format!("var g{g} = {}\n", r.next() as i64 % 100_000));
    }
    let tables: Vec<bool> = (0..r.below(4)).map(|_| r.below(2) == 0).collect();
    for t in 0..tables.len() {
        out.push_str(&format!("var t{t} = {{}}\n"));
    }
    let probes =
        ["kprobe:vfs_read", "kretprobe:do_sys_open", "trace sched:sched_switch", "trace_begin", "trace_end"];
    let mut any = false;
    for (i, p) in probes.iter().enumerate() {
        // each probe with even odds; the last one when none came before (a script needs a probe)
        let skip = r.below(2) == 0;
        if skip && (any || i + 1 < probes.len()) {
            continue;
        }
        any = true;
        let mut s = Scope {
            globals,
            tables: tables.clone(),
            int_locals: Vec::new(),
            str_locals: Vec::new(),
            retval: p.starts_with("kretprobe"),
            args: p.starts_with("kprobe") || p.starts_with("trace "),
        };
        out.push_str(p);
        out.push_str(" {\n");
        // the first use of each table fixes its key kind: give every table one in the first block
        for t in 0..tables.len() {
            let k = key(r, &s, t, 0);
            out.push_str(&format!("    t{t}[{k}] += 1\n"));
        }
        for _ in 0..1 + r.below(6) {
            statement(r, &mut s, &mut out);
        }
        out.push_str("}\n");
    }
    out
}

#[test]
fn every_generated_well_typed_script_compiles_verifies_and_round_trips() {
    let opts = CompileOptions { arch: Arch::Arm, build_id: support::BUILD_ID.to_vec() };
    let mut r = Rng(0x6b74_6170_0000_0001);
    for i in 0..1000 {
        let src = script(&mut r);
        let c = lang::compile(&src, "gen.kp", &opts, &FakeKernel).unwrap_or_else(|d| {
            panic!("script {i} does not compile:\n{src}\n{}", lang::render(&d, "gen.kp", &src))
        });
        let img = Image::parse(&c.image).unwrap_or_else(|e| panic!("script {i}: {e}\n{src}"));
        if let Err(e) = ktap_vm::verify(&img) {
            panic!("script {i}: the verifier refuses the compiler's image: {e}\n{src}");
        }
        let text = disassemble(&c.image, Some(&c.sidecar)).unwrap();
        let back = ktap_protocol::asm::assemble(&text).unwrap_or_else(|e| panic!("script {i}: {e}\n{text}"));
        assert!(back.image.build() == c.image, "script {i}: the listing does not reassemble\n{text}");
    }
}
