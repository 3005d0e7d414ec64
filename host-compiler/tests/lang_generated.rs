//! Property: every well-typed script compiles, and the image the compiler emits parses, verifies and
//! lists to assembly that assembles back to the same bytes. Scripts come from a seeded generator over
//! the language (globals, tables keyed by tuples of ints and strings, aggregations, locals in nested
//! blocks, every assignment operator, arithmetic, comparisons and logic, `if`/`elseif`/`else`,
//! `while`, both `for`s, `break`/`continue`, named functions, built-ins, printf/print, every probe
//! kind with and without predicates), so every run checks the same ones.

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
    /// Key parts of each table: `true` for a string part.
    tables: Vec<Vec<bool>>,
    /// Aggregation tables (one string key each).
    aggs: usize,
    /// Named functions `fN(a, b)` returning an integer.
    funcs: usize,
    /// Inside a loop (`break` and `continue` allowed).
    in_loop: bool,
    /// Inside a named function (no `probename`).
    in_func: bool,
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
    match r.below(9) {
        0 => format!("{}{}", r.pick(&["-", "!", "~"]), int_expr(r, s, depth - 1)),
        1 => format!("({})", int_expr(r, s, depth - 1)),
        2 => {
            let op = r.pick(&["==", "!=", "<", "<=", ">", ">=", "&&", "||"]);
            format!("({} {op} {})", int_expr(r, s, depth - 1), int_expr(r, s, depth - 1))
        }
        3 => format!("len({})", str_expr(r, s)),
        4 if s.funcs > 0 => format!("f{}({}, {})", r.below(s.funcs), int_expr(r, s, 0), int_expr(r, s, 0)),
        5 if s.aggs > 0 => {
            let f = r.pick(&["count", "sum", "avg", "min", "max"]);
            format!("{f}(a{}[{}])", r.below(s.aggs), str_expr(r, s))
        }
        6 => format!("({} {} \"x\")", str_expr(r, s), r.pick(&["==", "!="])),
        _ => {
            let op = r.pick(&["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"]);
            format!("{} {op} {}", int_expr(r, s, depth - 1), int_expr(r, s, depth - 1))
        }
    }
}

fn str_expr(r: &mut Rng, s: &Scope) -> String {
    match r.below(5) {
        0 if !s.str_locals.is_empty() => s.str_locals[r.below(s.str_locals.len())].clone(),
        1 => format!("\"{}\"", r.pick(&["", "dd", "a b", "x%y", "long-ish string with spaces"])),
        2 => format!("execname .. \"{}\"", r.pick(&["", "/x"])),
        3 if !s.in_func => r.pick(&["arch", "probename"]).into(),
        3 => "arch".into(),
        _ => "execname".into(),
    }
}

fn key(r: &mut Rng, s: &Scope, t: usize, depth: u32) -> String {
    let parts: Vec<String> = s.tables[t]
        .iter()
        .map(|is_str| if *is_str { str_expr(r, s) } else { int_expr(r, s, depth.min(1)) })
        .collect();
    parts.join(", ")
}

/// A block of 1..=3 statements at `indent`, one level deeper.
fn block(r: &mut Rng, s: &mut Scope, out: &mut String, depth: u32) {
    out.push_str("{\n");
    let (ni, ns) = (s.int_locals.len(), s.str_locals.len());
    for _ in 0..1 + r.below(3) {
        statement(r, s, out, depth + 1);
    }
    // the block's locals end with it
    s.int_locals.truncate(ni);
    s.str_locals.truncate(ns);
    out.push_str("    }");
}

fn statement(r: &mut Rng, s: &mut Scope, out: &mut String, depth: u32) {
    if depth < 2 {
        let mut b = String::new();
        let done = match r.below(12) {
            0 => {
                b.push_str(&format!("if {} ", int_expr(r, s, 2)));
                block(r, s, &mut b, depth);
                if r.below(2) == 0 {
                    b.push_str(&format!(" elseif {} ", int_expr(r, s, 1)));
                    block(r, s, &mut b, depth);
                }
                if r.below(2) == 0 {
                    b.push_str(" else ");
                    block(r, s, &mut b, depth);
                }
                true
            }
            1 => {
                // a bounded loop: a fresh counter
                let c = format!("w{}", s.int_locals.len() + s.str_locals.len());
                b.push_str(&format!("var {c} = 0\n    while {c} < {} ", r.below(5)));
                let outer = std::mem::replace(&mut s.in_loop, true);
                b.push_str("{\n");
                b.push_str(&format!("    {c} += 1\n"));
                b.push_str("    ");
                block(r, s, &mut b, depth);
                b.push_str("\n    }");
                s.in_loop = outer;
                s.int_locals.push(c);
                true
            }
            2 => {
                let i = format!("i{}", s.int_locals.len() + s.str_locals.len() + depth as usize);
                b.push_str(&format!(
                    "for ({i} = {}, {}, {}) ",
                    r.below(3),
                    r.below(6),
                    r.pick(&["1", "2", "-1"])
                ));
                let outer = std::mem::replace(&mut s.in_loop, true);
                s.int_locals.push(i);
                block(r, s, &mut b, depth);
                s.int_locals.pop();
                s.in_loop = outer;
                true
            }
            // one table loop at a time, so string registers (8) suffice for its keys and temporaries
            3 if !s.tables.is_empty() && !s.in_loop => {
                let t = r.below(s.tables.len());
                let n = s.int_locals.len() + s.str_locals.len() + depth as usize;
                let mut names = Vec::new();
                let outer = std::mem::replace(&mut s.in_loop, true);
                let (ni, ns) = (s.int_locals.len(), s.str_locals.len());
                for (j, is_str) in s.tables[t].clone().iter().enumerate() {
                    let k = format!("k{n}_{j}");
                    if *is_str {
                        s.str_locals.push(k.clone())
                    } else {
                        s.int_locals.push(k.clone())
                    }
                    names.push(k);
                }
                let v = format!("v{n}");
                s.int_locals.push(v.clone());
                names.push(v);
                b.push_str(&format!("for ({} in pairs(t{t})) ", names.join(", ")));
                block(r, s, &mut b, depth);
                s.int_locals.truncate(ni);
                s.str_locals.truncate(ns);
                s.in_loop = outer;
                true
            }
            4 if s.in_loop => {
                b.push_str(&format!("if {} {{ {} }}", int_expr(r, s, 1), r.pick(&["break", "continue"])));
                true
            }
            _ => false,
        };
        if done {
            out.push_str("    ");
            out.push_str(&b);
            out.push('\n');
            return;
        }
    }
    let line = match r.below(11) {
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
        7 if s.aggs > 0 => {
            let a = r.below(s.aggs);
            match r.below(3) {
                0 => format!("a{a}[{}] <<< {}", str_expr(r, s), int_expr(r, s, 2)),
                1 => format!("a{a}[{}] <<< hist({})", str_expr(r, s), int_expr(r, s, 1)),
                _ => format!("print_hist(a{a})"),
            }
        }
        8 if !s.tables.is_empty() => {
            let t = r.below(s.tables.len());
            if r.below(2) == 0 {
                format!("delete(t{t}[{}])", key(r, s, t, 0))
            } else {
                format!("delete(t{t})")
            }
        }
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
    let tables: Vec<Vec<bool>> =
        (0..r.below(4)).map(|_| (0..1 + r.below(2)).map(|_| r.below(2) == 0).collect()).collect();
    for t in 0..tables.len() {
        if r.below(2) == 0 {
            out.push_str(&format!("var t{t} = {{}}\n"));
        } else {
            out.push_str(&format!("var t{t} = table({})\n", 1 + r.below(2000)));
        }
    }
    let aggs = r.below(3);
    for a in 0..aggs {
        out.push_str(&format!("var a{a} = {{}}\n"));
    }
    let funcs = r.below(3);
    for f in 0..funcs {
        // a function may call the ones before it (never itself: recursion does not compile)
        let fs = Scope {
            globals,
            tables: tables.clone(),
            aggs: 0,
            funcs: f,
            in_loop: false,
            in_func: true,
            int_locals: vec!["a".into(), "b".into()],
            str_locals: Vec::new(),
            retval: false,
            args: false,
        };
        out.push_str(&format!("function f{f}(a, b) {{\n    return {}\n}}\n", int_expr(r, &fs, 2)));
    }
    let probes = [
        "kprobe:vfs_read",
        "kretprobe:do_sys_open",
        "trace sched:sched_switch",
        "trace sched:sched_*",
        "kprobe:vfs_read /pid != 1/",
        "tick-10ms",
        "profile-1s",
        "trace_begin",
        "trace_end",
    ];
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
            aggs,
            funcs,
            in_loop: false,
            in_func: false,
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
            statement(r, &mut s, &mut out, 0);
        }
        out.push_str("}\n");
    }
    out
}

#[test]
fn every_generated_well_typed_script_compiles_verifies_and_round_trips() {
    let opts = CompileOptions { arch: Arch::Arm, build_id: support::BUILD_ID.to_vec() };
    let mut r = Rng(0x6b74_6170_0000_0001);
    for i in 0..1500 {
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
