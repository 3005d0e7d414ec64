//! Tests against small ELF files written here (any class and byte order), one built by the host C
//! compiler, and the board's real vmlinux when `KTAP_VMLINUX` names it.

use std::path::PathBuf;
use std::process::Command;

use super::*;
use goblin::elf::program_header::PT_NOTE;
use goblin::elf::section_header::SHT_NOTE;

/// ELF note type of a GNU build-id.
const NT_GNU_BUILD_ID: u32 = 3;

const STT_NOTYPE: u8 = 0;
const STB_LOCAL: u8 = 0;

/// A minimal ELF writer: one PT_NOTE segment, `.notes`, `.symtab`, `.strtab`, `.shstrtab`.
struct TestElf {
    is_64: bool,
    le: bool,
    machine: u16,
    build_id: Option<Vec<u8>>,
    /// name, value, type, bind
    syms: Vec<(&'static str, u64, u8, u8)>,
}

/// A section header: name, type, offset, size, link, info, align, entsize.
type Shdr = (u32, u32, u64, u64, u32, u32, u64, u64);

struct Out {
    le: bool,
    b: Vec<u8>,
}

impl Out {
    fn u8(&mut self, v: u8) {
        self.b.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.b.extend(if self.le { v.to_le_bytes() } else { v.to_be_bytes() });
    }
    fn u32(&mut self, v: u32) {
        self.b.extend(if self.le { v.to_le_bytes() } else { v.to_be_bytes() });
    }
    fn u64(&mut self, v: u64) {
        self.b.extend(if self.le { v.to_le_bytes() } else { v.to_be_bytes() });
    }
    /// A word of the file's class.
    fn word(&mut self, is_64: bool, v: u64) {
        if is_64 { self.u64(v) } else { self.u32(v as u32) }
    }
    fn align(&mut self, a: usize) {
        while !self.b.len().is_multiple_of(a) {
            self.b.push(0);
        }
    }
}

impl TestElf {
    fn arm() -> TestElf {
        TestElf {
            is_64: false,
            le: true,
            machine: 40,
            build_id: Some((1..=20).collect()),
            syms: vec![
                ("_text", 0xc000_8000, STT_NOTYPE, STB_GLOBAL),
                ("_stext", 0xc000_8240, STT_NOTYPE, STB_GLOBAL),
                ("vfs_read", 0xc030_1001, STT_FUNC, STB_GLOBAL), // Thumb: bit 0 set
                ("arm_func", 0xc030_2000, STT_FUNC, STB_GLOBAL),
                ("do_thing.isra.0", 0xc030_3000, STT_FUNC, STB_LOCAL),
                ("show_stat", 0xc030_4000, STT_FUNC, STB_LOCAL),
                ("show_stat", 0xc030_5000, STT_FUNC, STB_LOCAL),
                ("dup_with_global", 0xc030_6000, STT_FUNC, STB_LOCAL),
                ("dup_with_global", 0xc030_7000, STT_FUNC, STB_GLOBAL),
                ("__tracepoint_sched_switch", 0xc100_0000, STT_OBJECT, STB_GLOBAL),
                ("__tracepoint_sched_wakeup", 0xc100_0040, STT_OBJECT, STB_GLOBAL),
                ("str__sched__trace_system_name", 0xc110_0000, STT_OBJECT, STB_LOCAL),
                ("str___9p__trace_system_name", 0xc110_0010, STT_OBJECT, STB_LOCAL),
                ("__tracepoint_9p_client_req", 0xc100_0080, STT_OBJECT, STB_GLOBAL),
            ],
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let (w, ehsize, phentsize, shentsize, symsize) =
            if self.is_64 { (8u64, 64u16, 56u16, 64u16, 24u64) } else { (4, 52, 32, 40, 16) };
        // contents first, header patched in at the end
        let mut o = Out { le: self.le, b: vec![0; ehsize as usize + phentsize as usize] };
        // a non-build-id note first, as in a real vmlinux (Xen / Linux notes)
        let notes_off = o.b.len();
        o.u32(6);
        o.u32(4);
        o.u32(0x101);
        o.b.extend(b"Linux\0");
        o.align(4);
        o.u32(0);
        if let Some(id) = &self.build_id {
            o.u32(4);
            o.u32(id.len() as u32);
            o.u32(NT_GNU_BUILD_ID);
            o.b.extend(b"GNU\0");
            o.b.extend(id);
            o.align(4);
        }
        let notes_len = o.b.len() - notes_off;
        // strtab
        let mut strtab = vec![0u8];
        let mut names = Vec::new();
        for (name, ..) in &self.syms {
            names.push(strtab.len() as u32);
            strtab.extend(name.as_bytes());
            strtab.push(0);
        }
        o.align(8);
        let symtab_off = o.b.len();
        for _ in 0..symsize {
            o.u8(0); // the null symbol
        }
        for ((_, value, typ, bind), name) in self.syms.iter().zip(&names) {
            let info = (bind << 4) | typ;
            if self.is_64 {
                o.u32(*name);
                o.u8(info);
                o.u8(0);
                o.u16(1);
                o.u64(*value);
                o.u64(0);
            } else {
                o.u32(*name);
                o.u32(*value as u32);
                o.u32(0);
                o.u8(info);
                o.u8(0);
                o.u16(1);
            }
        }
        let symtab_len = o.b.len() - symtab_off;
        let strtab_off = o.b.len();
        o.b.extend(&strtab);
        let shstrtab_off = o.b.len();
        let shstrtab = b"\0.notes\0.symtab\0.strtab\0.shstrtab\0";
        o.b.extend(shstrtab);
        o.align(8);
        let shoff = o.b.len();
        // name, type, offset, size, link, info, align, entsize
        let sections: [Shdr; 5] = [
            (0, 0, 0, 0, 0, 0, 0, 0),
            (1, SHT_NOTE, notes_off as u64, notes_len as u64, 0, 0, 4, 0),
            (8, SHT_SYMTAB, symtab_off as u64, symtab_len as u64, 3, 1, w, symsize),
            (16, 3, strtab_off as u64, strtab.len() as u64, 0, 0, 1, 0),
            (24, 3, shstrtab_off as u64, shstrtab.len() as u64, 0, 0, 1, 0),
        ];
        for (name, typ, off, size, link, info, align, entsize) in sections {
            o.u32(name);
            o.u32(typ);
            o.word(self.is_64, 0); // flags
            o.word(self.is_64, 0); // addr
            o.word(self.is_64, off);
            o.word(self.is_64, size);
            o.u32(link);
            o.u32(info);
            o.word(self.is_64, align);
            o.word(self.is_64, entsize);
        }
        // ELF header
        let body = std::mem::take(&mut o.b);
        o.b.extend(b"\x7fELF");
        o.u8(if self.is_64 { 2 } else { 1 });
        o.u8(if self.le { 1 } else { 2 });
        o.u8(1);
        o.b.resize(16, 0);
        o.u16(2); // ET_EXEC
        o.u16(self.machine);
        o.u32(1);
        o.word(self.is_64, 0xc000_8000); // entry
        o.word(self.is_64, ehsize as u64); // phoff
        o.word(self.is_64, shoff as u64);
        o.u32(0); // flags
        o.u16(ehsize);
        o.u16(phentsize);
        o.u16(1);
        o.u16(shentsize);
        o.u16(5);
        o.u16(4);
        assert_eq!(o.b.len(), ehsize as usize);
        // PT_NOTE
        o.u32(PT_NOTE);
        if self.is_64 {
            o.u32(4); // flags
            o.u64(notes_off as u64);
            o.u64(0);
            o.u64(0);
            o.u64(notes_len as u64);
            o.u64(notes_len as u64);
            o.u64(4);
        } else {
            o.u32(notes_off as u32);
            o.u32(0);
            o.u32(0);
            o.u32(notes_len as u32);
            o.u32(notes_len as u32);
            o.u32(4); // flags
            o.u32(4);
        }
        let mut out = o.b;
        out.extend(&body[out.len()..]);
        out
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ktap-vmlinux-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write(name: &str, elf: &TestElf) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, elf.bytes()).unwrap();
    p
}

#[test]
fn arm32_identity_symbols_and_thumb_bit() {
    let p = write("arm", &TestElf::arm());
    let v = Vmlinux::open(&p).unwrap();
    assert_eq!(v.build_id(), (1..=20).collect::<Vec<u8>>());
    assert_eq!(hex(v.build_id()), "0102030405060708090a0b0c0d0e0f1011121314");
    assert_eq!((v.machine(), v.is_64(), v.is_little_endian()), (40, false, true));
    assert_eq!(v.text(), 0xc000_8000);
    assert_eq!(v.function("vfs_read").unwrap(), 0xc030_1000, "Thumb bit cleared");
    assert_eq!(v.function("arm_func").unwrap(), 0xc030_2000);
    assert_eq!(v.function("dup_with_global").unwrap(), 0xc030_7000, "the global one wins");
    v.check_arch(Arch::Arm).unwrap();
    v.check_tracepoint("sched", "sched_switch").unwrap();
    v.check_tracepoint("9p", "9p_client_req").unwrap();
}

#[test]
fn errors_name_the_file_and_suggest() {
    let p = write("arm-err", &TestElf::arm());
    let v = Vmlinux::open(&p).unwrap();
    let file = p.display().to_string();

    let e = v.function("vfs_reed").unwrap_err().to_string();
    assert!(e.contains("no kernel function `vfs_reed`") && e.contains(&file), "{e}");
    assert!(e.contains("did you mean `vfs_read`?"), "{e}");

    let e = v.function("do_thing").unwrap_err().to_string();
    assert!(e.contains("did you mean `do_thing.isra.0`?"), "{e}");

    let e = v.function("show_stat").unwrap_err().to_string();
    assert!(e.contains("ambiguous") && e.contains("0xc0304000, 0xc0305000"), "{e}");

    let e = v.check_tracepoint("sched", "sched_swich").unwrap_err().to_string();
    assert!(e.contains("no tracepoint `sched:sched_swich`") && e.contains(&file), "{e}");
    assert!(e.contains("__tracepoint_sched_swich") && e.contains("did you mean `sched_switch`"), "{e}");

    let e = v.check_tracepoint("shed", "sched_switch").unwrap_err().to_string();
    assert!(e.contains("no tracepoint subsystem `shed`") && e.contains("did you mean `sched`"), "{e}");

    let e = v.check_arch(Arch::Mips).unwrap_err().to_string();
    assert!(e.contains(&file) && e.contains("ELF machine 40 (ARM)") && e.contains("Mips (machine 8)"), "{e}");
}

#[test]
fn kprobe_addresses_are_rebased_only_with_a_runtime_base() {
    let p = write("arm-rebase", &TestElf::arm());
    let mut v = Vmlinux::open(&p).unwrap();
    assert_eq!((v.base_symbol("_text"), v.base_symbol("_stext")), (Some(0xc000_8000), Some(0xc000_8240)));
    assert_eq!(v.kprobe_address("vfs_read").unwrap(), 0xc030_1000);
    v.rebase("", 0).unwrap();
    assert_eq!(v.kprobe_address("vfs_read").unwrap(), 0xc030_1000, "0 = unknown: no KASLR");
    v.rebase("_text", 0xc100_8000).unwrap();
    assert_eq!(v.kprobe_address("vfs_read").unwrap(), 0xc130_1000);
    v.rebase("_stext", 0xc000_8240).unwrap();
    assert_eq!((v.slide(), v.kprobe_address("vfs_read").unwrap()), (0, 0xc030_1000), "no KASLR via _stext");
}

#[test]
fn rebase_by_stext_with_a_kaslr_offset() {
    let p = write("arm-stext", &TestElf::arm());
    let mut v = Vmlinux::open(&p).unwrap();
    // what ARM32/arm64 report: kallsyms has only `_stext`, moved by 0x0230_0000
    v.rebase("_stext", 0xc230_8240).unwrap();
    assert_eq!(v.slide(), 0x0230_0000);
    assert_eq!(v.kprobe_address("vfs_read").unwrap(), 0xc260_1000);
    assert_eq!(v.kprobe_address("arm_func").unwrap(), 0xc260_2000);
    // a slide downwards wraps correctly
    v.rebase("_stext", 0xc000_0240).unwrap();
    assert_eq!(v.kprobe_address("vfs_read").unwrap(), 0xc02f_9000);
}

#[test]
fn rebase_by_a_symbol_the_vmlinux_lacks_is_an_error() {
    let mut elf = TestElf::arm();
    elf.syms.retain(|s| s.0 != "_stext");
    let p = write("arm-no-stext", &elf);
    let mut v = Vmlinux::open(&p).unwrap();
    assert_eq!(v.base_symbol("_stext"), None);
    let e = v.rebase("_stext", 0xc230_8240).unwrap_err().to_string();
    assert!(
        e.contains("no `_stext` symbol") && e.contains("0xc2308240") && e.contains(&p.display().to_string()),
        "{e}"
    );
    let e = v.rebase("startup", 0xc230_8240).unwrap_err().to_string();
    assert!(e.contains("no `startup` symbol"), "{e}");
    assert_eq!(v.kprobe_address("vfs_read").unwrap(), 0xc030_1000, "a failed rebase leaves addresses alone");
    v.rebase("_text", 0xc100_8000).unwrap();
    assert_eq!(v.kprobe_address("vfs_read").unwrap(), 0xc130_1000, "`_text` still works");
}

#[test]
fn big_endian_and_64_bit_files() {
    let mut mips = TestElf::arm();
    (mips.le, mips.machine) = (false, 8);
    mips.syms[2].1 = 0x8030_1001; // not ARM: the low bit is kept (MIPS16 aside, kernels don't set it)
    let v = Vmlinux::open(&write("mips", &mips)).unwrap();
    assert_eq!((v.machine(), v.is_little_endian()), (8, false));
    assert_eq!(v.build_id().len(), 20);
    assert_eq!(v.function("vfs_read").unwrap(), 0x8030_1001);
    v.check_arch(Arch::Mips).unwrap();

    let mut a64 = TestElf::arm();
    (a64.is_64, a64.machine) = (true, 183);
    a64.syms[0].1 = 0xffff_8000_0800_0000;
    a64.syms[1].1 = 0xffff_8000_0801_0000; // _stext
    a64.syms[3].1 = 0xffff_8000_0830_2000;
    let mut v = Vmlinux::open(&write("a64", &a64)).unwrap();
    assert!(v.is_64());
    v.rebase("_text", 0xffff_8000_1800_0000).unwrap(); // KASLR slide of 0x1000_0000
    assert_eq!(v.kprobe_address("arm_func").unwrap(), 0xffff_8000_1830_2000);
    // arm64 under KASLR as the agent sees it: `_stext` only, a slide that is not a round number
    v.rebase("_stext", 0xffff_a0e1_c7e1_0000).unwrap();
    assert_eq!(v.slide(), 0x20e1_bfe0_0000);
    assert_eq!(v.kprobe_address("arm_func").unwrap(), 0xffff_a0e1_c810_2000);
}

#[test]
fn unusable_files_are_clear_errors() {
    let mut no_id = TestElf::arm();
    no_id.build_id = None;
    let p = write("no-id", &no_id);
    let e = Vmlinux::open(&p).unwrap_err().to_string();
    assert!(e.contains("no GNU build-id") && e.contains(&p.display().to_string()), "{e}");

    let mut no_text = TestElf::arm();
    no_text.syms.remove(0);
    let e = Vmlinux::open(&write("no-text", &no_text)).unwrap_err().to_string();
    assert!(e.contains("no `_text` symbol"), "{e}");

    let p = tmp("garbage");
    std::fs::write(&p, b"not an elf at all, just some bytes.............................").unwrap();
    let e = Vmlinux::open(&p).unwrap_err().to_string();
    assert!(e.contains("is not a valid ELF file") && e.contains(&p.display().to_string()), "{e}");

    let p = tmp("missing");
    let e = Vmlinux::open(&p).unwrap_err().to_string();
    assert!(e.starts_with(&format!("cannot read vmlinux {}", p.display())), "{e}");
}

/// A real ELF from the host C compiler: addresses must equal what `nm` says.
#[test]
fn host_cc_elf_matches_nm() {
    let src = tmp("prog.c");
    std::fs::write(
        &src,
        "int _text;\nint __tracepoint_my_event;\n\
         __attribute__((noinline)) int helper(int x) { return x * 3; }\n\
         int main(void) { return helper(_text) + __tracepoint_my_event; }\n",
    )
    .unwrap();
    let exe = tmp("prog");
    let st = Command::new("cc")
        .args(["-g", "-O1", "-no-pie", "-Wl,--build-id=0x0123456789abcdef"])
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("the host C compiler `cc` runs");
    assert!(st.success());
    let v = Vmlinux::open(&exe).unwrap();
    assert_eq!(hex(v.build_id()), "0123456789abcdef");
    assert_eq!(v.machine(), 62);
    let nm = Command::new("nm").arg(&exe).output().expect("nm runs");
    let nm = String::from_utf8(nm.stdout).unwrap();
    let addr_of = |name: &str| {
        let line = nm.lines().find(|l| l.ends_with(&format!(" {name}"))).unwrap();
        u64::from_str_radix(line.split(' ').next().unwrap(), 16).unwrap()
    };
    assert_eq!(v.function("helper").unwrap(), addr_of("helper"));
    assert_eq!(v.function("main").unwrap(), addr_of("main"));
    assert_eq!(v.text(), addr_of("_text"));
    // a tracepoint without TRACE_SYSTEM names in the file: only the event is checked
    v.check_tracepoint("anything", "my_event").unwrap();
}

/// The board's real vmlinux (Debian armmp -dbg). `KTAP_VMLINUX` names it; the test runner sets it.
/// Without the variable the kernel cache (`~/.cache/ktap-rs/kernels`) is searched.
#[test]
fn real_vmlinux() {
    let path = match std::env::var_os("KTAP_VMLINUX") {
        Some(p) => PathBuf::from(p),
        None => match cached_vmlinux() {
            Some(p) => p,
            None => {
                eprintln!(
                    "real_vmlinux: KTAP_VMLINUX is not set and no vmlinux is in ~/.cache/ktap-rs/kernels: skipped"
                );
                return;
            }
        },
    };
    let t = std::time::Instant::now();
    let v = Vmlinux::open(&path).unwrap_or_else(|e| panic!("KTAP_VMLINUX={}: {e}", path.display()));
    let opened = t.elapsed();
    eprintln!(
        "{}: opened in {opened:?}, machine {}, build-id {}, _text {:#x}, {} functions",
        path.display(),
        v.machine(),
        hex(v.build_id()),
        v.text(),
        v.function_count()
    );
    assert!(opened < std::time::Duration::from_secs(10), "opening took {opened:?}");
    assert!(v.build_id().len() >= 16, "build-id {}", hex(v.build_id()));
    assert!(v.function_count() > 10_000, "only {} functions", v.function_count());
    let vfs_read = v.function("vfs_read").unwrap();
    assert!(vfs_read > v.text());
    assert!(v.base_symbol("_stext").is_some_and(|s| s >= v.text() && s < vfs_read), "_stext");
    if v.machine() == 40 {
        v.check_arch(Arch::Arm).unwrap();
        assert_eq!(vfs_read & 1, 0);
    }
    v.check_tracepoint("sched", "sched_switch").unwrap();
    v.check_tracepoint("raw_syscalls", "sys_enter").unwrap();
    let e = v.check_tracepoint("sched", "sched_swtch").unwrap_err().to_string();
    assert!(e.contains("did you mean `sched_switch`"), "{e}");
    let e = v.check_tracepoint("shed", "sched_switch").unwrap_err().to_string();
    assert!(e.contains("no tracepoint subsystem `shed`") && e.contains("did you mean `sched`"), "{e}");
    let e = v.function("vfs_reed").unwrap_err().to_string();
    assert!(e.contains("did you mean `vfs_read`"), "{e}");
    // System.map beside the -dbg vmlinux: addresses must agree
    let map = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("vmlinux-"));
    if let Some(abi) = map {
        let sysmap = path.with_file_name(format!("System.map-{abi}"));
        if let Ok(text) = std::fs::read_to_string(&sysmap) {
            let find = |name: &str| {
                text.lines()
                    .find(|l| l.split(' ').nth(2) == Some(name))
                    .map(|l| u64::from_str_radix(l.split(' ').next().unwrap(), 16).unwrap())
                    // 32-bit MIPS System.map prints sign-extended 64-bit addresses
                    .map(|a| if v.is_64() { a } else { a & 0xffff_ffff })
            };
            assert_eq!(Some(vfs_read), find("vfs_read"), "vfs_read vs {}", sysmap.display());
            assert_eq!(Some(v.text()), find("_text"), "_text vs {}", sysmap.display());
            assert_eq!(v.base_symbol("_stext"), find("_stext"), "_stext vs {}", sysmap.display());
        }
    }
}

/// `~/.cache/ktap-rs/kernels/<arch-flavour>/<version>/root/usr/lib/debug/boot/vmlinux-*`.
fn cached_vmlinux() -> Option<PathBuf> {
    let root = PathBuf::from(std::env::var_os("HOME")?).join(".cache/ktap-rs/kernels");
    let dirs = |p: &std::path::Path| {
        std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).collect::<Vec<_>>()
    };
    for version in dirs(&root).iter().flat_map(|k| dirs(k)) {
        if !version.join("complete").exists() {
            continue; // still being downloaded
        }
        for boot in [version.join("root/usr/lib/debug/boot"), version.join("usr/lib/debug/boot")] {
            let found = dirs(&boot)
                .into_iter()
                .find(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinux-")));
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

#[test]
fn ppc64_kprobes_go_to_the_elfv2_local_entry() {
    // st_other bits 5-7: 0 and 1 mean no separate local entry; 3 (the kernel's `addis r2; addi r2`) means 8 bytes
    assert_eq!(super::ppc64_local_entry(0), 0);
    assert_eq!(super::ppc64_local_entry(1 << 5), 0);
    assert_eq!(super::ppc64_local_entry(2 << 5), 4);
    assert_eq!(super::ppc64_local_entry(3 << 5), 8);
    assert_eq!(super::ppc64_local_entry((3 << 5) | 0x3), 8);
    assert_eq!(super::ppc64_local_entry(6 << 5), 64);
}
