//! The ktap script language: front end and code generator.
//!
//! Pipeline: [`lexer`] -> [`parser`] (a tree plus errors, never failing) -> [`lower`] (names, types and
//! bytecode in one walk) -> image and sidecar ([`compile`]) -> `Image::parse` and the VM's verifier,
//! so every image this module returns is one the kernel accepts. Every stage appends to one list of
//! [`Diagnostic`]s with byte spans; text is made only at the CLI edge ([`render`], [`emit_stderr`]).
//!
//! Kernel symbols come through the [`Resolver`] trait (implemented over the board's vmlinux by
//! `crate::vmlinux`); [`NoKernel`] accepts every name, for `check` without a vmlinux.
//!
//! Architecture invariant: the compiler never emits an image that fails `Image::parse` or the verifier;
//! such a failure is reported as an internal compiler error, not returned.
//!
//! Modules: [`lexer`], [`parser`] and [`ast`] (syntax), [`lower`] (checking and code generation),
//! [`format_spec`] (printf formats, shared with the output formatter), [`diag`] (diagnostics),
//! [`disasm`] (image listing).

pub mod ast;
pub mod diag;
pub mod disasm;
pub mod format_spec;
pub mod lexer;
pub mod lower;
pub mod parser;

use ktap_protocol::image::build::{ImageBuilder, OwnedProbe, OwnedSymbols};
use ktap_protocol::image::{FuncSpec, Image, KeyShape, PROBE_EVERY_CPU, ProbeKind, TableSpec, ValueKind};
use ktap_protocol::limits::{MAX_BUILD_ID, MAX_CODE, MAX_FUNCS, MAX_IMAGE};

pub use diag::{Diagnostic, Span, emit_stderr, render};

use crate::board::Arch;
use crate::ktypes::NEEDS_DWARF;
pub use crate::ktypes::{Member, Param, ParamLoc, ParamsOf, Shape, TypeRef};
use crate::sidecar::{FuncInfo, Named, ProbeInfo, Show, Sidecar, Slot, TableInfo, TableView};

/// A kernel's system calls: numbers, names, and where a call's arguments are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Syscalls {
    /// (number, name without prefix, e.g. `openat`), sorted by number; free slots left out.
    pub table: Vec<(u32, String)>,
    /// Offset in `struct pt_regs` and size in bytes of argument 0, 1, ... at syscall entry.
    pub args: Vec<(u32, u8)>,
    /// Where the syscall number is in `struct pt_regs` when the call returns (`None`: nowhere).
    pub exit_nr: Option<(u32, u8)>,
}

/// Kernel symbol lookup, injected so the compiler needs no vmlinux in tests or `check`.
pub trait Resolver {
    /// Run-time address of kernel function `sym` (for kprobes and kretprobes).
    fn kprobe_addr(&self, sym: &str) -> Result<u64, String>;
    /// Check that tracepoint `subsys:event` exists.
    fn tracepoint(&self, subsys: &str, event: &str) -> Result<(), String>;

    /// Parameters of a kernel function (names, types, where the kprobe finds them) or the
    /// `TP_PROTO` arguments of a tracepoint (`ParamLoc::Arg(n)` = the n-th).
    fn params(&self, of: ParamsOf<'_>) -> Result<Vec<Param>, String> {
        let _ = of;
        Err(NEEDS_DWARF.to_owned())
    }

    /// What a type is, typedefs and qualifiers peeled.
    fn shape(&self, ty: &TypeRef) -> Result<Shape, String> {
        let _ = ty;
        Err(NEEDS_DWARF.to_owned())
    }

    /// The C spelling of a type (`struct file *`), for messages.
    fn type_name(&self, ty: &TypeRef) -> String {
        let _ = ty;
        "?".to_owned()
    }

    /// Member `name` of the struct or union `ty` (typedefs peeled; not through pointers). The error
    /// names the type and suggests members ("did you mean").
    fn member(&self, ty: &TypeRef, name: &str) -> Result<Member, String> {
        let _ = (ty, name);
        Err(NEEDS_DWARF.to_owned())
    }

    /// The enumerators of enum `ty` (typedefs peeled): (name, value) in declaration order. The
    /// compiler copies them into the sidecar, so the host shows such values by name.
    fn enumerators(&self, ty: &TypeRef) -> Result<Vec<(String, i64)>, String> {
        let _ = ty;
        Err(NEEDS_DWARF.to_owned())
    }

    /// The name of enum `ty`'s value `value`, if it has one.
    fn enum_name(&self, ty: &TypeRef, value: i64) -> Option<String> {
        let size = match self.shape(ty).ok()? {
            Shape::Enum { size, .. } => size,
            _ => return None,
        };
        let names = crate::sidecar::Names::new(
            String::new(),
            size,
            self.enumerators(ty).ok()?.into_iter().map(|(n, v)| (v, n)).collect(),
            None,
        );
        names.name_of(value).map(str::to_owned)
    }

    /// Every tracepoint matching the glob `subsys:event` (`*` any run of characters, `?` one), as
    /// (subsystem, event) pairs in a stable order: what `trace sched:*` expands to.
    fn tracepoints_matching(&self, subsys: &str, event: &str) -> Result<Vec<(String, String)>, String> {
        let _ = (subsys, event);
        Err("expanding a tracepoint pattern needs the board's vmlinux (`--vmlinux PATH`)".to_owned())
    }

    /// The kernel's system calls, for `trace syscalls:sys_enter_NAME` (from the vmlinux's
    /// `sys_call_table` and `struct pt_regs`).
    fn syscalls(&self) -> Result<Syscalls, String> {
        Err("the system call table is read from the board's vmlinux: pass `--vmlinux PATH`".into())
    }

    /// The kernel's release string (`6.1.0-28-armmp`), for `kernel_v`; `None` when unknown.
    fn kernel_release(&self) -> Option<String> {
        None
    }

    /// For symbols without a build-id (a System.map): the base symbol (`_text` or `_stext`) and
    /// the address the resolved addresses assume. Then the image lists every symbol it attaches to
    /// (its SYMBOLS section), which the agent checks against the running kernel's kallsyms.
    fn symbol_base(&self) -> Option<(String, u64)> {
        None
    }

    /// The KASLR slide the resolved kernel addresses include (a vmlinux: 0 until rebased to a
    /// running kernel); `None` when addresses do not come from a vmlinux.
    fn kernel_slide(&self) -> Option<u64> {
        None
    }
}

/// `*` matches any run of characters, `?` any one character; everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // iterative matcher with one backtrack point for the last `*`
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// A resolver that accepts every symbol with address 0: for `check` without a vmlinux.
/// [`compile`] refuses kprobes resolved to 0, asking for `--vmlinux`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKernel;

impl Resolver for NoKernel {
    fn kprobe_addr(&self, _sym: &str) -> Result<u64, String> {
        Ok(0)
    }

    fn tracepoint(&self, _subsys: &str, _event: &str) -> Result<(), String> {
        Ok(())
    }

    /// Without a kernel a pattern stands for itself (one probe), so `check` still checks the body.
    fn tracepoints_matching(&self, subsys: &str, event: &str) -> Result<Vec<(String, String)>, String> {
        Ok(vec![(subsys.to_owned(), event.to_owned())])
    }
}

/// What a compilation depends on besides the script.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// The board's architecture (decides how many `argN` exist).
    pub arch: Arch,
    /// GNU build-id of the vmlinux the symbols came from (empty without one).
    pub build_id: Vec<u8>,
}

/// A compiled script: the device image and its host-side sidecar.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The image, already parsed and verified.
    pub image: Vec<u8>,
    /// Names, spans and format strings for the host.
    pub sidecar: Sidecar,
}

/// Compile a script. Kprobes need real addresses (a resolver over the vmlinux); every error in the
/// script is returned, sorted by position.
pub fn compile(
    source: &str,
    file_name: &str,
    opts: &CompileOptions,
    resolver: &dyn Resolver,
) -> Result<Compiled, Vec<Diagnostic>> {
    run(source, file_name, opts, resolver, true)
}

/// Check a script completely (syntax, names, types, limits, symbols) without requiring kprobe
/// addresses. Returns every error, sorted by position; empty means the script is fine.
pub fn check(
    source: &str,
    file_name: &str,
    opts: &CompileOptions,
    resolver: &dyn Resolver,
) -> Vec<Diagnostic> {
    match run(source, file_name, opts, resolver, false) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}

/// The name of an arch as users write it.
pub fn board_arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Arm => "arm",
        Arch::Aarch64 => "aarch64",
        Arch::Mips => "mips",
        Arch::Powerpc => "powerpc",
        Arch::Powerpc64 => "powerpc64",
        Arch::X86_64 => "x86_64",
    }
}

fn run(
    source: &str,
    file_name: &str,
    opts: &CompileOptions,
    resolver: &dyn Resolver,
    need_addresses: bool,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let script = parser::parse(source, &mut diags);
    let env = lower::Env { arch: opts.arch, resolver, need_addresses };
    let prog = lower::lower(&script, source, &env, &mut diags);
    let whole = Span { start: 0, end: 0 };
    if opts.build_id.len() > MAX_BUILD_ID {
        diags.push(Diagnostic::error(
            format!("the kernel build-id is {} bytes, more than {MAX_BUILD_ID}", opts.build_id.len()),
            whole,
        ));
    }
    if !diags.is_empty() {
        diags.sort_by_key(|d| (d.primary.start, d.primary.end));
        // a glob probe compiles its body once per tracepoint: report each mistake once
        diags.dedup();
        return Err(diags);
    }
    let (mut builder, mut sidecar) = assemble(&prog, file_name, opts);
    sidecar.kernel_slide = resolver.kernel_slide();
    if need_addresses {
        builder.symbols = symbols_section(&builder, resolver);
    }
    let code_len = builder.code.len();
    if code_len > MAX_CODE || builder.funcs.len() > MAX_FUNCS as usize {
        let biggest = prog.funcs.iter().max_by_key(|f| f.code.len()).map_or(whole, |f| f.span);
        return Err(vec![
            Diagnostic::error(
                format!("the program is too large: {code_len} bytes of code, at most {MAX_CODE}"),
                biggest,
            )
            .note("split the script, or shorten the largest probe"),
        ]);
    }
    let image = builder.build();
    if image.len() > MAX_IMAGE {
        return Err(vec![Diagnostic::error(
            format!("the image is too large: {} bytes, at most {MAX_IMAGE}", image.len()),
            whole,
        )]);
    }
    let all_attachable = prog
        .probes
        .iter()
        .all(|p| !matches!(p.kind, ProbeKind::Kprobe | ProbeKind::Kretprobe) || p.addr != 0);
    if let Err(e) = validate(&image, all_attachable) {
        return Err(vec![
            Diagnostic::error(format!("internal compiler error: the generated image is invalid: {e}"), whole)
                .note("this is a bug in ktap-host; please report it with the script"),
        ]);
    }
    Ok(Compiled { image, sidecar })
}

/// The SYMBOLS section for a resolver without a build-id: the base symbol first (so even a
/// program of tracepoints only is checked against the map, and a KASLR slide shows up as such),
/// then each kprobe's and kretprobe's symbol once, at its start (a probe may carry an offset).
fn symbols_section(b: &ImageBuilder, resolver: &dyn Resolver) -> Option<OwnedSymbols> {
    let (base_name, base_addr) = resolver.symbol_base()?;
    let mut entries: Vec<(u64, Vec<u8>)> = vec![(base_addr, base_name.clone().into_bytes())];
    for p in b.probes.iter().filter(|p| matches!(p.kind, ProbeKind::Kprobe | ProbeKind::Kretprobe)) {
        let name = String::from_utf8_lossy(&p.name);
        if entries.iter().any(|(_, n)| *n == p.name) {
            continue;
        }
        // resolved once already while lowering, so this cannot fail now
        let addr = resolver.kprobe_addr(&name).ok()?;
        entries.push((addr, p.name.clone()));
    }
    Some(OwnedSymbols { base_name: base_name.into_bytes(), base_addr, entries })
}

/// `Image::parse`, then the VM's verifier (skipped by `check` when kprobes have no address yet:
/// the verifier refuses address 0).
fn validate(image: &[u8], verify: bool) -> Result<(), String> {
    let parsed = Image::parse(image).map_err(|e| e.to_string())?;
    if verify {
        ktap_vm::verify(&parsed)
            .map_err(|e| format!("{e} (verifier code {:#06x}, image offset {})", e.code(), e.offset()))?;
    }
    Ok(())
}

/// Lay out the functions back to back and fill the image builder and the sidecar.
fn assemble(prog: &lower::Program, file_name: &str, opts: &CompileOptions) -> (ImageBuilder, Sidecar) {
    let mut b = ImageBuilder {
        build_id: opts.build_id.clone(),
        budget: 0,
        frame_budget: prog.frame_budget,
        ..ImageBuilder::default()
    };
    let mut sidecar = Sidecar { source_file: file_name.to_owned(), ..Sidecar::default() };
    for f in &prog.funcs {
        b.funcs.push(FuncSpec {
            code_off: b.code.len() as u32,
            code_len: f.code.len() as u32,
            n_int: f.n_int,
            n_str: f.n_str,
            params_int: f.params_int,
            params_str: f.params_str,
            ret: f.ret,
        });
        b.code.extend_from_slice(&f.code);
        sidecar.funcs.push(FuncInfo { name: f.name.clone(), span: f.span });
    }
    b.consts = prog.consts.clone();
    b.strings = prog.strings.clone();
    b.globals = prog.globals.len() as u16;
    sidecar.globals = prog.globals.clone();
    for (i, t) in prog.tables.iter().enumerate() {
        b.tables.push(TableSpec { keys: KeyShape::of(&t.keys), value: t.value, capacity: t.capacity });
        sidecar.tables.push(TableInfo { name: t.name.clone(), span: t.span });
        let table = i as u16;
        let show = match t.value {
            ValueKind::Log2 => Some(Show::Hist),
            ValueKind::Linear { min, step, nbuckets } => Some(Show::Lhist { min, step, buckets: nbuckets }),
            ValueKind::Int if t.bars => Some(Show::Bars),
            ValueKind::Int | ValueKind::Stats => None,
        };
        if let Some(show) = show {
            sidecar.views.push(TableView { table, show });
        }
        for (key, _) in t.stack_keys.iter().enumerate().filter(|(_, s)| **s) {
            sidecar.stacks.push(Slot::TableKey { table, key: key as u8 });
        }
        for (key, names) in t.named_keys.iter().enumerate() {
            if let Some(names) = *names {
                sidecar.named.push(Named { slot: Slot::TableKey { table, key: key as u8 }, names });
            }
        }
    }
    for p in &prog.probes {
        b.probes.push(OwnedProbe {
            kind: p.kind,
            func: p.func,
            addr: p.addr,
            flags: if p.every_cpu { PROBE_EVERY_CPU } else { 0 },
            name: p.name.as_bytes().to_vec(),
        });
        sidecar.probes.push(ProbeInfo { spec: p.spec.clone(), span: p.span, syscalls: p.syscalls.clone() });
    }
    for (id, f) in prog.formats.iter().enumerate() {
        b.formats.push(f.kinds.clone());
        sidecar.formats.push(f.text.clone());
        let format = id as u16;
        for (arg, _) in f.stacks.iter().enumerate().filter(|(_, s)| **s) {
            sidecar.stacks.push(Slot::FormatArg { format, arg: arg as u8 });
        }
        for (arg, names) in f.names.iter().enumerate() {
            if let Some(names) = *names {
                sidecar.named.push(Named { slot: Slot::FormatArg { format, arg: arg as u8 }, names });
            }
        }
    }
    sidecar.names = prog.names.clone();
    (b, sidecar)
}
