//! Calling conventions per arch: `symbols/abi.c` compiled by each arch's cross gcc with `-g` (at -O0
//! and -O2), linked as a small kernel-like ELF, and the parameter locations read back from its
//! DWARF must be that arch's argument registers (the probe's `argN`), or the stack slots the
//! convention puts later arguments in.

mod symbols;

use std::path::{Path, PathBuf};
use std::process::Command;

use ktap_host::ktypes::ParamLoc::{self, Arg, Pair, Stack, Unavailable};
use ktap_host::ktypes::{ParamsOf, Shape, TypeRef};
use ktap_host::lang::Resolver;
use ktap_host::vmlinux::Vmlinux;
use symbols::missing;

/// One arch: compiler triple, extra flags, and the expected locations per fixture function.
struct Case {
    triple: &'static str,
    flags: &'static [&'static str],
    /// eight(a..h): longs.
    eight: [ParamLoc; 8],
    /// pair(int a, long long b, int c): on 32-bit boards b is a register pair, even-aligned.
    pair: [ParamLoc; 3],
}

fn cases() -> Vec<Case> {
    vec![
        // AAPCS: r0-r3, then the stack; a 64-bit value takes an even register pair (r2:r3)
        Case {
            triple: "arm-linux-gnueabihf",
            flags: &["-marm"],
            eight: [Arg(0), Arg(1), Arg(2), Arg(3), Stack(0), Stack(4), Stack(8), Stack(12)],
            pair: [Arg(0), Pair { lo: 2, hi: 3 }, Stack(0)],
        },
        // AArch64: x0-x7
        Case {
            triple: "aarch64-linux-gnu",
            flags: &[],
            eight: [Arg(0), Arg(1), Arg(2), Arg(3), Arg(4), Arg(5), Arg(6), Arg(7)],
            pair: [Arg(0), Arg(1), Arg(2)],
        },
        // MIPS o32: $a0-$a3, then the stack above the 16-byte home area; pairs even-aligned
        Case {
            triple: "mips-linux-gnu",
            flags: &["-mno-abicalls", "-fno-pic"],
            eight: [Arg(0), Arg(1), Arg(2), Arg(3), Stack(16), Stack(20), Stack(24), Stack(28)],
            // big-endian: the first register of the pair ($a2) holds the high word
            pair: [Arg(0), Pair { lo: 3, hi: 2 }, Stack(16)],
        },
        Case {
            triple: "mipsel-linux-gnu",
            flags: &["-mno-abicalls", "-fno-pic"],
            eight: [Arg(0), Arg(1), Arg(2), Arg(3), Stack(16), Stack(20), Stack(24), Stack(28)],
            pair: [Arg(0), Pair { lo: 2, hi: 3 }, Stack(16)],
        },
        // PowerPC SysV: r3-r10; a 64-bit value in an aligned pair (r5:r6), so c is in r7
        Case {
            triple: "powerpc-linux-gnu",
            flags: &[],
            eight: [Arg(0), Arg(1), Arg(2), Arg(3), Arg(4), Arg(5), Arg(6), Arg(7)],
            pair: [Arg(0), Pair { lo: 3, hi: 2 }, Arg(4)],
        },
        // PowerPC64 ELFv2: r3-r10
        Case {
            triple: "powerpc64le-linux-gnu",
            flags: &[],
            eight: [Arg(0), Arg(1), Arg(2), Arg(3), Arg(4), Arg(5), Arg(6), Arg(7)],
            pair: [Arg(0), Arg(1), Arg(2)],
        },
        // x86_64 SysV: rdi rsi rdx rcx r8 r9, then the stack above the return address
        Case {
            triple: "x86_64-linux-gnu",
            flags: &[],
            eight: [Arg(0), Arg(1), Arg(2), Arg(3), Arg(4), Arg(5), Stack(8), Stack(16)],
            pair: [Arg(0), Arg(1), Arg(2)],
        },
    ]
}

/// `<triple>-gcc`, or Debian's versioned name.
fn compiler(triple: &str) -> Option<String> {
    ["", "-12", "-13", "-14"]
        .iter()
        .map(|v| format!("{triple}-gcc{v}"))
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

fn build(cc: &str, flags: &[&str], opt: &str, out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/symbols/abi.c");
    let o = Command::new(cc)
        .args(["-g", opt, "-nostdlib", "-static", "-fno-stack-protector", "-Wl,--build-id", "-Wl,-e,_text"])
        .args(flags)
        .arg(&src)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("{cc}: {e}"));
    assert!(o.status.success(), "{cc} {opt}: {}", String::from_utf8_lossy(&o.stderr));
}

/// At -O0 only registers are trusted (stack arguments come from DWARF, which then names the
/// frame's home slots, not the entry stack): stack slots may be unavailable there.
fn check(v: &Vmlinux, func: &str, want: &[ParamLoc], opt: &str, triple: &str) {
    let params = v.params(ParamsOf::Function(func)).unwrap_or_else(|e| panic!("{triple} {opt} {func}: {e}"));
    let got: Vec<ParamLoc> = params.iter().map(|p| p.loc).collect();
    let ok = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| g == w || (opt == "-O0" && matches!(w, Stack(_)) && *g == Unavailable));
    assert!(ok, "{triple} {opt} {func}: locations {got:?}, convention says {want:?}");
}

#[test]
fn parameter_registers_follow_each_abi() {
    let dir = tempfile::tempdir().unwrap();
    let mut ran = Vec::new();
    for case in cases() {
        let Some(cc) = compiler(case.triple) else {
            missing(&format!("no {}-gcc for the {} calling-convention fixture", case.triple, case.triple));
            continue;
        };
        // gcc 12 writes DWARF 5; Debian's and most custom kernels before it, DWARF 4
        for (opt, dwarf) in [("-O0", "-gdwarf-5"), ("-O2", "-gdwarf-5"), ("-O2", "-gdwarf-4")] {
            let out: PathBuf = dir.path().join(format!("{}{opt}{dwarf}.elf", case.triple));
            let flags: Vec<&str> = case.flags.iter().copied().chain([dwarf]).collect();
            build(&cc, &flags, opt, &out);
            let mut v = Vmlinux::open(&out).unwrap_or_else(|e| panic!("{e}"));
            v.set_cache_dir(None);
            check(&v, "eight", &case.eight, opt, case.triple);
            check(&v, "pair", &case.pair, opt, case.triple);
            // a struct by value: neither it nor what follows is placed by the convention guess
            let byval = v.params(ParamsOf::Function("byval")).unwrap();
            assert_eq!(byval[0].loc, Unavailable, "{} {opt}: {byval:?}", case.triple);
            let p = v.params(ParamsOf::Function("ptr")).unwrap();
            assert_eq!(v.type_name(&p[0].ty), "struct pt *", "{}", case.triple);
            assert_eq!(v.type_name(&p[1].ty), "const char *", "{}", case.triple);
            let to = pointee(&v, &p[0].ty);
            assert_eq!(v.member(&to, "y").unwrap().offset, 4, "{}", case.triple);
        }
        ran.push(case.triple);
    }
    eprintln!("calling conventions checked for: {}", ran.join(", "));
}

/// What a pointer type points to.
fn pointee(v: &Vmlinux, ty: &TypeRef) -> TypeRef {
    match v.shape(ty).unwrap() {
        Shape::Ptr { to } => to,
        s => panic!("not a pointer: {s:?}"),
    }
}

/// Compressed DWARF (`objcopy --compress-debug-sections`: SHF_COMPRESSED zlib and zstd, and the
/// GNU `.zdebug_*` form) reads the same as the plain file.
#[test]
fn compressed_debug_sections_read_like_plain_ones() {
    let cc = compiler("x86_64-linux-gnu").unwrap_or_else(|| "cc".to_owned());
    if !symbols::have("objcopy") {
        missing("objcopy (binutils) for the compressed-DWARF fixture");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.elf");
    build(&cc, &[], "-O2", &plain);
    let answers = |path: &Path| {
        let mut v = Vmlinux::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        v.set_cache_dir(None);
        let p = v.params(ParamsOf::Function("ptr")).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let to = pointee(&v, &p[0].ty);
        let eight: Vec<ParamLoc> =
            v.params(ParamsOf::Function("eight")).unwrap().iter().map(|p| p.loc).collect();
        (v.type_name(&p[0].ty), v.member(&to, "y").unwrap().offset, eight)
    };
    let want = answers(&plain);
    let mut tried = Vec::new();
    for how in ["zlib", "zlib-gnu", "zstd"] {
        let out = dir.path().join(format!("{how}.elf"));
        let o = Command::new("objcopy")
            .arg(format!("--compress-debug-sections={how}"))
            .arg(&plain)
            .arg(&out)
            .output()
            .unwrap();
        if !o.status.success() {
            // binutils built without zstd says so; zlib must always work
            assert_ne!(how, "zlib", "objcopy: {}", String::from_utf8_lossy(&o.stderr));
            missing(&format!("objcopy cannot write {how}: {}", String::from_utf8_lossy(&o.stderr).trim()));
            continue;
        }
        let sections = Command::new("readelf").args(["-S", "-W"]).arg(&out).output().unwrap();
        let text = String::from_utf8_lossy(&sections.stdout);
        let compressed = if how == "zlib-gnu" {
            text.contains(".zdebug_info")
        } else {
            text.lines().any(|l| l.contains(".debug_info") && l.split_whitespace().any(|f| f.contains('C')))
        };
        assert!(compressed, "{how}: objcopy left .debug_info plain:\n{text}");
        assert_eq!(answers(&out), want, "{how}");
        tried.push(how);
    }
    eprintln!("compressed DWARF read: {}", tried.join(", "));
}

/// A 64-bit argument on a 32-bit board is read from its register pair: compiled against each
/// 32-bit fixture and run in the simulator with the pair's two words (the low one sign-extended,
/// as a 32-bit register may arrive), `arg.b` is the whole value; a struct passed by value is an
/// error at the script location saying why.
#[test]
fn register_pairs_make_64_bit_arguments_and_structs_by_value_are_refused() {
    let bin = env!("CARGO_BIN_EXE_ktap-host");
    let boards = concat!(env!("CARGO_MANIFEST_DIR"), "/../boards");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("pair.kp");
    std::fs::write(&script, "kprobe:pair {\n    printf(\"%x\\n\", arg.b)\n}\n").unwrap();
    let byval = dir.path().join("byval.kp");
    std::fs::write(&byval, "kprobe:byval {\n    print(arg.p.x)\n}\n").unwrap();
    let mut ran = Vec::new();
    // (triple, flags, board whose arch matches, the pair's argument registers lo, hi)
    let cases: [(&str, &[&str], &str, usize, usize); 2] = [
        ("arm-linux-gnueabihf", &["-marm"], "qemu-armv7", 2, 3),
        ("mipsel-linux-gnu", &["-mno-abicalls", "-fno-pic"], "qemu-mipsel", 2, 3),
    ];
    for (triple, flags, board, lo, hi) in cases {
        let Some(cc) = compiler(triple) else {
            missing(&format!("no {triple}-gcc for the register-pair fixture"));
            continue;
        };
        let elf = dir.path().join(format!("{triple}.elf"));
        build(&cc, flags, "-O2", &elf);
        let mut args = vec![0i64; 4];
        args[lo] = 0x89ab_cdefu32 as i32 as i64;
        args[hi] = 0x0123_4567;
        let events = dir.path().join("ev.jsonl");
        let line = format!("{{\"probe\": \"kprobe:pair\", \"args\": {args:?}}}\n");
        std::fs::write(&events, line).unwrap();
        let sim = |s: &Path| {
            Command::new(bin)
                .args(["sim", "--board", board, "--boards-dir", boards, "--vmlinux"])
                .arg(&elf)
                .arg("--events")
                .arg(&events)
                .arg(s)
                .env_remove("KTAP_CACHE")
                .output()
                .unwrap()
        };
        let o = sim(&script);
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{triple}: {err}");
        assert_eq!(out.trim(), "123456789abcdef", "{triple}: {err}");
        let o = sim(&byval);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{triple}");
        assert!(err.contains("byval.kp:2:") && err.contains("struct passed by value"), "{triple}: {err}");
        ran.push(triple);
    }
    eprintln!("register pairs read on: {}", ran.join(", "));
}
