//! Shared by the language tests: a fake kernel with deterministic symbol addresses, and the
//! per-script settings read from leading `# test: KEY VALUE` comments.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ktap_host::board::Arch;
use ktap_host::lang::{
    CompileOptions, Member, NoKernel, Param, ParamLoc, ParamsOf, Resolver, Shape, TypeRef,
};

/// A kernel where every function exists at an address derived from its name, except names
/// starting with `no_such`; a few tracepoints exist.
pub struct FakeKernel;

/// The fake kernel's build-id.
pub const BUILD_ID: [u8; 20] = [
    0x6b, 0x74, 0x61, 0x70, 0x2d, 0x72, 0x73, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
    0x0a, 0x0b, 0x0c,
];

const TRACEPOINTS: &[(&str, &str)] = &[
    ("sched", "sched_switch"),
    ("sched", "sched_process_exec"),
    ("sched", "sched_wakeup"),
    ("syscalls", "sys_enter_read"),
    ("irq", "irq_handler_entry"),
    ("irq", "softirq_entry"),
];

/// The fake kernel's types (32-bit ARM layout), by `TypeRef` number: what the DWARF of a real
/// vmlinux would say about the few types the tests use.
fn fake_shape(t: u64) -> Option<Shape> {
    let int = |size, signed| Shape::Int { size, signed };
    let ptr = |to| Shape::Ptr { to: TypeRef(to) };
    let st = |name: &str, size| Shape::Struct { name: name.into(), size };
    Some(match t {
        1 => int(4, true),  // int
        2 => int(4, false), // unsigned int / size_t
        3 => int(1, false), // unsigned char
        4 => int(8, true),  // loff_t
        10 => st("file", 128),
        11 => ptr(10), // struct file *
        12 => st("path", 8),
        13 => st("dentry", 64),
        14 => ptr(13), // struct dentry *
        15 => st("qstr", 16),
        16 => ptr(3), // const unsigned char *
        17 => Shape::Array { elem: TypeRef(3), len: Some(16), elem_size: 1 }, // char comm[16]
        18 => st("task_struct", 2048),
        19 => ptr(18), // struct task_struct *
        20 => Shape::Bool,
        21 => ptr(4), // loff_t *
        22 => Shape::Enum { name: "pid_type".into(), size: 4 },
        23 => st("pid_namespace", 64),
        24 => ptr(23), // struct pid_namespace *
        _ => return None,
    })
}

/// A member of the fake kernel: (struct type, name, offset, bits, member type).
type FakeMember = (u64, &'static str, u64, Option<(u8, u8)>, u64);

const FAKE_MEMBERS: &[FakeMember] = &[
    (10, "f_path", 8, None, 12),
    (10, "f_flags", 32, None, 2),
    (10, "f_mode", 36, Some((2, 3)), 2),
    (10, "f_pos", 40, None, 4),
    (12, "dentry", 4, None, 14),
    (13, "d_name", 16, None, 15),
    (13, "d_iname", 40, None, 17),
    (15, "len", 4, None, 2),
    (15, "name", 8, None, 16),
    (18, "pid", 600, None, 1),
    (18, "comm", 900, None, 17),
    (18, "prio", 44, None, 1),
    (23, "pid_type", 8, None, 22),
];

impl Resolver for FakeKernel {
    fn kprobe_addr(&self, sym: &str) -> Result<u64, String> {
        if sym.starts_with("no_such") {
            return Err(format!("vmlinux (fake) has no function `{sym}`"));
        }
        // FNV-1a, so addresses are stable across runs and platforms
        let h =
            sym.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Ok(0xc010_0000 + (h & 0xf_fffc))
    }

    fn tracepoint(&self, subsys: &str, event: &str) -> Result<(), String> {
        if TRACEPOINTS.contains(&(subsys, event)) {
            Ok(())
        } else {
            Err(format!("vmlinux (fake) has no tracepoint `{subsys}:{event}`"))
        }
    }

    fn syscalls(&self) -> Result<ktap_host::lang::Syscalls, String> {
        // ARM EABI numbers; r0-r5 in `uregs`, the number in r7
        let table = [(3, "read"), (4, "write"), (5, "open"), (6, "close"), (145, "readv"), (322, "openat")];
        Ok(ktap_host::lang::Syscalls {
            table: table.iter().map(|(n, s)| (*n, s.to_string())).collect(),
            args: (0..6).map(|i| (i * 4, 4)).collect(),
            exit_nr: Some((28, 4)),
        })
    }

    fn tracepoints_matching(&self, subsys: &str, event: &str) -> Result<Vec<(String, String)>, String> {
        Ok(TRACEPOINTS
            .iter()
            .filter(|(s, e)| ktap_host::lang::glob_match(subsys, s) && ktap_host::lang::glob_match(event, e))
            .map(|(s, e)| (s.to_string(), e.to_string()))
            .collect())
    }

    fn params(&self, of: ParamsOf<'_>) -> Result<Vec<Param>, String> {
        let p =
            |name: &str, ty: u64, n: u8| Param { name: name.into(), ty: TypeRef(ty), loc: ParamLoc::Arg(n) };
        match of {
            ParamsOf::Function("vfs_read") => {
                Ok(vec![p("file", 11, 0), p("buf", 16, 1), p("count", 2, 2), p("pos", 21, 3)])
            }
            ParamsOf::Function("__task_pid_nr_ns") => {
                Ok(vec![p("task", 19, 0), p("type", 22, 1), p("ns", 24, 2)])
            }
            ParamsOf::Function("do_many") => Ok(vec![
                p("a", 1, 0),
                Param { name: "spilled".into(), ty: TypeRef(1), loc: ParamLoc::Stack(8) },
            ]),
            ParamsOf::Tracepoint { subsys: "sched", event: "sched_switch" } => {
                Ok(vec![p("preempt", 20, 0), p("prev", 19, 1), p("next", 19, 2)])
            }
            ParamsOf::Function(f) => Err(format!("vmlinux (fake) has no debug info for `{f}`")),
            ParamsOf::Tracepoint { subsys, event } => {
                Err(format!("vmlinux (fake) has no debug info for `{subsys}:{event}`"))
            }
        }
    }

    fn shape(&self, ty: &TypeRef) -> Result<Shape, String> {
        fake_shape(ty.0).ok_or_else(|| format!("no type {}", ty.0))
    }

    fn type_name(&self, ty: &TypeRef) -> String {
        match fake_shape(ty.0) {
            Some(Shape::Struct { name, .. }) => format!("struct {name}"),
            Some(Shape::Ptr { to }) => format!("{} *", self.type_name(&to)),
            Some(Shape::Int { size: 1, .. }) => "unsigned char".into(),
            Some(Shape::Int { size: 8, .. }) => "loff_t".into(),
            Some(Shape::Int { signed: true, .. }) => "int".into(),
            Some(Shape::Int { .. }) => "unsigned int".into(),
            Some(Shape::Array { .. }) => "char [16]".into(),
            Some(Shape::Bool) => "bool".into(),
            Some(Shape::Enum { name, .. }) => format!("enum {name}"),
            _ => "?".into(),
        }
    }

    fn enumerators(&self, ty: &TypeRef) -> Result<Vec<(String, i64)>, String> {
        match fake_shape(ty.0) {
            Some(Shape::Enum { .. }) => {
                Ok(["PIDTYPE_PID", "PIDTYPE_TGID", "PIDTYPE_PGID", "PIDTYPE_SID", "PIDTYPE_MAX"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.to_string(), i as i64))
                    .collect())
            }
            _ => Err(format!("type {} is not an enum", ty.0)),
        }
    }

    fn member(&self, ty: &TypeRef, name: &str) -> Result<Member, String> {
        let of_ty: Vec<&FakeMember> = FAKE_MEMBERS.iter().filter(|m| m.0 == ty.0).collect();
        match of_ty.iter().find(|m| m.1 == name) {
            Some(m) => Ok(Member { name: name.into(), offset: m.2, bits: m.3, ty: TypeRef(m.4) }),
            None => {
                let names: Vec<&str> = of_ty.iter().map(|m| m.1).collect();
                let close: Vec<&str> = names.iter().copied().filter(|n| strsim_like(n, name)).collect();
                Err(if close.is_empty() {
                    format!("its members: {}", names.join(", "))
                } else {
                    format!("did you mean `{}`?", close.join("` or `"))
                })
            }
        }
    }
}

/// Names sharing a 4-byte prefix or suffix count as close (enough for the fake kernel's messages).
fn strsim_like(a: &str, b: &str) -> bool {
    let n = 4.min(a.len()).min(b.len());
    a[..n] == b[..n] || a[a.len() - n..] == b[b.len() - n..]
}

/// Settings of one test script.
pub struct Settings {
    /// `# test: arch x86_64` (default arm, the qemu-armv7 board).
    pub arch: Arch,
    /// `# test: resolver none` compiles with [`NoKernel`].
    pub no_kernel: bool,
}

impl Settings {
    /// Read the `# test:` lines at the top of `src`.
    pub fn of(src: &str) -> Settings {
        let mut s = Settings { arch: Arch::Arm, no_kernel: false };
        for line in src.lines().take_while(|l| l.starts_with('#')) {
            let Some(rest) = line.strip_prefix("# test: ") else { continue };
            match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["arch", "x86_64"] => s.arch = Arch::X86_64,
                ["arch", "aarch64"] => s.arch = Arch::Aarch64,
                ["arch", "mips"] => s.arch = Arch::Mips,
                ["arch", "arm"] => s.arch = Arch::Arm,
                ["resolver", "none"] => s.no_kernel = true,
                other => panic!("unknown test setting {other:?}"),
            }
        }
        s
    }

    /// Compile options for these settings.
    pub fn options(&self) -> CompileOptions {
        CompileOptions { arch: self.arch, build_id: BUILD_ID.to_vec() }
    }

    /// The resolver for these settings.
    pub fn resolver(&self) -> &'static dyn Resolver {
        if self.no_kernel { &NoKernel } else { &FakeKernel }
    }
}

/// The `.kp` scripts of `tests/lang/<dir>`, sorted.
pub fn scripts(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lang").join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kp"))
        .collect();
    v.sort();
    v
}
