//! The C headers of the kernel module agree with the Rust side:
//! - `kmod/ktap_uapi.h` with `ktap_protocol::kdev` (ioctl numbers, struct fields in order, types,
//!   offsets and sizes) and the kernel-side refusal codes of `ktap_protocol::wire::codes`;
//! - `kmod/ktap_vm.h` with the glue's `ffi.rs` structs and `vm.rs` result codes, and with the
//!   protocol's probe kinds, context fields and limits.
//!
//! The headers and Rust sources are parsed as text: every `#define KTAP_*` must be checked here,
//! and every struct is compared field by field, so an addition on either side fails the test.

use std::collections::HashMap;
use std::path::PathBuf;

use ktap_protocol::image::{ImageError, ProbeKind};
use ktap_protocol::isa::CtxField;
use ktap_protocol::kdev::{self, KStats, LoadArgs};
use ktap_protocol::limits;
use ktap_protocol::wire::codes;

fn read(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `#define NAME value` lines (values kept as text).
fn defines(h: &str) -> HashMap<String, String> {
    h.lines()
        .filter_map(|l| l.trim().strip_prefix("#define "))
        .filter_map(|l| {
            let l = l.split("/*").next().unwrap().trim();
            let (name, value) = l.split_once(char::is_whitespace)?;
            Some((name.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Evaluate `256 * 1024`, `(A + 1)`, `0x6b01` with names from `env`.
fn eval(expr: &str, env: &HashMap<String, String>) -> i64 {
    fn sum(t: &[String], i: &mut usize, env: &HashMap<String, String>) -> i64 {
        let mut v = product(t, i, env);
        while t.get(*i).map(String::as_str) == Some("+") {
            *i += 1;
            v += product(t, i, env);
        }
        v
    }
    fn product(t: &[String], i: &mut usize, env: &HashMap<String, String>) -> i64 {
        let mut v = atom(t, i, env);
        while t.get(*i).map(String::as_str) == Some("*") {
            *i += 1;
            v *= atom(t, i, env);
        }
        v
    }
    fn atom(t: &[String], i: &mut usize, env: &HashMap<String, String>) -> i64 {
        let tok = t[*i].clone();
        *i += 1;
        if tok == "(" {
            let v = sum(t, i, env);
            assert_eq!(t[*i], ")");
            *i += 1;
            return v;
        }
        if tok == "-" {
            return -atom(t, i, env);
        }
        if let Some(h) = tok.strip_prefix("0x") {
            return i64::from_str_radix(h, 16).unwrap();
        }
        if let Ok(n) = tok.parse() {
            return n;
        }
        let def = env.get(&tok).unwrap_or_else(|| panic!("unknown name {tok}"));
        eval(def, env)
    }
    let mut toks = Vec::new();
    let mut cur = String::new();
    for c in expr.chars() {
        if c.is_alphanumeric() || c == '_' {
            cur.push(c);
        } else {
            if !cur.is_empty() {
                toks.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                toks.push(c.to_string());
            }
        }
    }
    if !cur.is_empty() {
        toks.push(cur);
    }
    let mut i = 0;
    let v = sum(&toks, &mut i, env);
    assert_eq!(i, toks.len(), "trailing tokens in `{expr}`");
    v
}

/// A field: name, element size, count (1 unless an array).
#[derive(Debug, PartialEq, Eq)]
struct Field {
    name: String,
    size: usize,
    count: usize,
}

/// Natural-alignment layout: (offset of each field, total size).
fn layout(fields: &[Field]) -> (Vec<usize>, usize) {
    let mut off = 0usize;
    let mut align = 1usize;
    let mut offs = Vec::new();
    for f in fields {
        off = off.next_multiple_of(f.size);
        align = align.max(f.size);
        offs.push(off);
        off += f.size * f.count;
    }
    (offs, off.next_multiple_of(align))
}

/// The fields of `struct name { ... };` in a C header.
fn c_struct(h: &str, name: &str, env: &HashMap<String, String>) -> Vec<Field> {
    let start = h.find(&format!("struct {name} {{")).unwrap_or_else(|| panic!("no struct {name}"));
    let body = &h[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("};").unwrap()];
    body.lines()
        .map(|l| l.split("/*").next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l = l.strip_suffix(';').unwrap_or_else(|| panic!("`{l}`"));
            let (ty, decl) = l.split_once(char::is_whitespace).unwrap();
            let size = match ty {
                "__u64" | "__s64" => 8,
                "__u32" | "__s32" => 4,
                "__u16" | "__s16" => 2,
                "__u8" | "__s8" | "char" => 1,
                t => panic!("type {t} in struct {name}"),
            };
            let decl = decl.trim();
            let (fname, count) = match decl.split_once('[') {
                Some((n, dim)) => (n.trim(), eval(dim.trim_end_matches(']'), env) as usize),
                None => (decl, 1),
            };
            Field { name: fname.to_string(), size, count }
        })
        .collect()
}

/// The fields of `pub struct name { pub f: T, ... }` in a Rust source.
fn rust_struct(src: &str, name: &str, env: &HashMap<String, String>) -> Vec<Field> {
    let start = src.find(&format!("pub struct {name} {{")).unwrap_or_else(|| panic!("no struct {name}"));
    let body = &src[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    body.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("pub "))
        .map(|l| {
            let (fname, ty) = l.trim_end_matches(',').split_once(':').unwrap();
            let ty = ty.trim();
            let prim = |t: &str| match t {
                "u64" | "i64" => 8,
                "u32" | "i32" => 4,
                "u16" | "i16" => 2,
                "u8" | "i8" => 1,
                t => panic!("type {t} in struct {name}"),
            };
            let (size, count) = match ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                Some(arr) => {
                    let (elem, n) = arr.split_once(';').unwrap();
                    (prim(elem.trim()), eval(n.trim(), env) as usize)
                }
                None => (prim(ty), 1),
            };
            Field { name: fname.trim().to_string(), size, count }
        })
        .collect()
}

fn rust_limits() -> HashMap<String, String> {
    [
        ("MAX_PROBE_NAME", limits::MAX_PROBE_NAME as i64),
        ("MAX_STR", limits::MAX_STR as i64),
        ("MAX_RECORD", limits::MAX_RECORD as i64),
        ("MAX_IMAGE", limits::MAX_IMAGE as i64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Check `expected` against the header's defines, and that the header has no unchecked `KTAP_*`.
fn check_defines(h: &str, guard: &str, expected: &[(&str, i64)]) {
    let defs = defines(h);
    for (name, want) in expected {
        let v = defs.get(*name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(eval(v, &defs), *want, "{name}");
    }
    for name in defs.keys() {
        assert!(
            name == guard || expected.iter().any(|(n, _)| n == name),
            "{name} is not checked against Rust"
        );
    }
}

#[test]
fn uapi_header_matches_kdev() {
    let h = read("kmod/ktap_uapi.h");
    check_defines(
        &h,
        "KTAP_UAPI_H",
        &[
            ("KTAP_IOC_LOAD", kdev::IOC_LOAD.into()),
            ("KTAP_IOC_START", kdev::IOC_START.into()),
            ("KTAP_IOC_STOP", kdev::IOC_STOP.into()),
            ("KTAP_IOC_STATS", kdev::IOC_STATS.into()),
            ("KTAP_IOC_UNLOAD", kdev::IOC_UNLOAD.into()),
            ("KTAP_E_ATTACH_FAILED", codes::ATTACH_FAILED.into()),
            ("KTAP_E_BUILD_ID_MISMATCH", codes::BUILD_ID_MISMATCH.into()),
            ("KTAP_E_BUSY", codes::BUSY.into()),
            ("KTAP_E_NO_MEMORY", codes::NO_MEMORY.into()),
            ("KTAP_E_NO_TRACEPOINT", codes::NO_TRACEPOINT.into()),
            ("KTAP_E_KERNEL", codes::KERNEL.into()),
            ("KTAP_E_IMAGE_TOO_LARGE", ImageError::TooLarge { len: 0 }.code().into()),
        ],
    );
    let env = defines(&h);
    let kdev_src = read("../protocol/src/kdev.rs");
    for (c, rust, size) in [
        ("ktap_load_args", "LoadArgs", size_of::<LoadArgs>()),
        ("ktap_kstats", "KStats", size_of::<KStats>()),
    ] {
        let cf = c_struct(&h, c, &env);
        let rf = rust_struct(&kdev_src, rust, &HashMap::new());
        assert_eq!(cf, rf, "struct {c} vs kdev::{rust}");
        let (_, c_size) = layout(&cf);
        assert_eq!(c_size, size, "size of struct {c}");
    }
    // the Rust side really has the offsets natural alignment gives the C side
    let (offs, _) = layout(&c_struct(&h, "ktap_load_args", &env));
    let rust_offs = [
        std::mem::offset_of!(LoadArgs, image),
        std::mem::offset_of!(LoadArgs, len),
        std::mem::offset_of!(LoadArgs, flags),
        std::mem::offset_of!(LoadArgs, code),
        std::mem::offset_of!(LoadArgs, offset),
        std::mem::offset_of!(LoadArgs, detail),
        std::mem::offset_of!(LoadArgs, nprobes),
    ];
    assert_eq!(offs, rust_offs);
}

#[test]
fn vm_header_matches_the_glue_and_the_protocol() {
    let h = read("kmod/ktap_vm.h");
    let glue_vm = read("glue/src/vm.rs");
    let run_code = |name: &str| -> i64 {
        let line = glue_vm
            .lines()
            .find(|l| l.starts_with(&format!("const {name}: i32 = ")))
            .unwrap_or_else(|| panic!("glue has no {name}"));
        line.rsplit(' ').next().unwrap().trim_end_matches(';').parse().unwrap()
    };
    let ctx = |f: CtxField| f as i64;
    check_defines(
        &h,
        "KTAP_VM_H",
        &[
            ("KTAP_PROBE_KPROBE", ProbeKind::Kprobe as i64),
            ("KTAP_PROBE_KRETPROBE", ProbeKind::Kretprobe as i64),
            ("KTAP_PROBE_TRACEPOINT", ProbeKind::Tracepoint as i64),
            ("KTAP_PROBE_BEGIN", ProbeKind::Begin as i64),
            ("KTAP_PROBE_END", ProbeKind::End as i64),
            ("KTAP_PROBE_TIMER", ProbeKind::Timer as i64),
            ("KTAP_PROBE_EVERY_CPU", ktap_protocol::image::PROBE_EVERY_CPU.into()),
            ("KTAP_CTX_PID", ctx(CtxField::Pid)),
            ("KTAP_CTX_TID", ctx(CtxField::Tid)),
            ("KTAP_CTX_CPU", ctx(CtxField::Cpu)),
            ("KTAP_CTX_UID", ctx(CtxField::Uid)),
            ("KTAP_CTX_TIME_NS", ctx(CtxField::TimeNs)),
            ("KTAP_CTX_RETVAL", ctx(CtxField::Retval)),
            ("KTAP_CTX_WALL_NS", ctx(CtxField::WallNs)),
            ("KTAP_CTX_NUM_CPUS", ctx(CtxField::NumCpus)),
            ("KTAP_CTX_IN_INTERRUPT", ctx(CtxField::InInterrupt)),
            ("KTAP_CTX_ARG0", ctx(CtxField::Arg0)),
            ("KTAP_CTX_NARGS", CtxField::ALL.iter().filter(|(f, _)| f.arg_index().is_some()).count() as i64),
            ("KTAP_MAX_PROBE_NAME", limits::MAX_PROBE_NAME as i64),
            ("KTAP_MAX_STR", limits::MAX_STR as i64),
            ("KTAP_MAX_RECORD", limits::MAX_RECORD as i64),
            ("KTAP_MAX_IMAGE", limits::MAX_IMAGE as i64),
            ("KTAP_RUN_OK", run_code("RUN_OK")),
            ("KTAP_RUN_BUDGET", run_code("RUN_BUDGET")),
            ("KTAP_RUN_ERROR", run_code("RUN_ERROR")),
            ("KTAP_RUN_BAD_HANDLE", run_code("RUN_BAD_HANDLE")),
        ],
    );
    // every context field the VM can ask for is one the C side knows
    for (f, name) in CtxField::ALL {
        let n = *f as i64;
        assert!(n <= 8 || (16..16 + 10).contains(&n), "ctx field {name} ({n}) unknown to ktap_hit_ctx");
    }
    let env = defines(&h);
    let ffi = read("glue/src/ffi.rs");
    for (c, rust) in
        [("ktap_vm_status", "Status"), ("ktap_vm_probe", "Probe"), ("ktap_vm_counters", "Counters")]
    {
        assert_eq!(
            c_struct(&h, c, &env),
            rust_struct(&ffi, rust, &rust_limits()),
            "struct {c} vs ffi::{rust}"
        );
    }
}
