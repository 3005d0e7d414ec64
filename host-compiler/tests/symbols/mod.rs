//! Shared by the symbol tests: finding the real kernel and tools, and reading `pahole` output.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// In CI a missing prerequisite is a failure; elsewhere a loud skip.
pub fn missing(what: &str) {
    let msg = format!("{what}: run `cargo xtask setup`");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true: not skipping)");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
}

/// The Debian armmp `-dbg` vmlinux: `KTAP_VMLINUX` when it is a 32-bit ARM one (`cargo xtask test`
/// sets it to the first board's, which may be another arch), else the kernel cache.
pub fn armmp_vmlinux() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KTAP_VMLINUX").map(PathBuf::from)
        && is_arm_elf(&p)
    {
        return Some(p);
    }
    let root = PathBuf::from(std::env::var_os("HOME")?).join(".cache/ktap-rs/kernels/armhf-armmp");
    let dirs =
        |p: &Path| std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).collect::<Vec<_>>();
    for version in dirs(&root) {
        if !version.join("complete").exists() {
            continue;
        }
        let boot = version.join("root/usr/lib/debug/boot");
        if let Some(v) = dirs(&boot)
            .into_iter()
            .find(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinux-")))
        {
            return Some(v);
        }
    }
    None
}

/// Is `tool` on PATH?
pub fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// One member line of `pahole -C`: name -> (byte offset, size, bit offset for bitfields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaholeMember {
    pub offset: u64,
    pub size: u64,
    pub bit: Option<u64>,
}

/// A struct as pahole lays it out: every named member at any depth (pahole prints offsets of
/// nested anonymous members from the start of the outer struct), and the total size.
#[derive(Debug, Clone)]
pub struct PaholeStruct {
    pub members: HashMap<String, PaholeMember>,
    pub size: u64,
}

/// Run `pahole -C NAME` on the vmlinux and parse it.
pub fn pahole(vmlinux: &Path, name: &str) -> PaholeStruct {
    let out = Command::new("pahole")
        .arg("-F")
        .arg("dwarf")
        .arg("-C")
        .arg(name)
        .arg(vmlinux)
        .output()
        .expect("running pahole");
    assert!(out.status.success(), "pahole -C {name}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("pahole output is UTF-8");
    assert!(!text.trim().is_empty(), "pahole knows no `{name}`");
    parse(&text)
}

fn parse(text: &str) -> PaholeStruct {
    let mut members = HashMap::new();
    let mut size = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("/* size: ") {
            size = rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok());
            continue;
        }
        let (Some(semi), Some(open)) = (t.find(';'), t.rfind("/*")) else { continue };
        if semi > open || t.starts_with("/*") {
            continue;
        }
        // `} headers;` closes a named member whose struct is defined in place
        let decl = strip_attributes(t[..semi].trim_start_matches('}'));
        let Some(name) = member_name(&decl) else { continue };
        let nums = t[open + 2..].trim_end_matches("*/").replace(':', " : ");
        let f: Vec<&str> = nums.split_whitespace().collect();
        let parsed = match f.as_slice() {
            [off, ":", bit, size] => (off.parse().ok(), size.parse().ok(), bit.parse().ok()),
            [off, size] => (off.parse().ok(), size.parse().ok(), None),
            _ => (None, None, None),
        };
        if let (Some(offset), Some(size), bit) = parsed {
            members.insert(name, PaholeMember { offset, size, bit });
        }
    }
    PaholeStruct { members, size: size.expect("pahole printed no size") }
}

fn strip_attributes(decl: &str) -> String {
    match decl.find("__attribute__") {
        Some(i) => decl[..i].trim().to_owned(),
        None => decl.trim().to_owned(),
    }
}

/// The declared name in a C member declaration.
fn member_name(decl: &str) -> Option<String> {
    if let Some(i) = decl.find("(*") {
        let rest = &decl[i + 2..];
        return Some(rest[..rest.find(')')?].trim().to_owned());
    }
    let decl = decl.split(':').next()?.trim();
    let decl = decl.split('[').next()?.trim();
    let name = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?;
    (!name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')).then(|| name.to_owned())
}

/// Whether `path` is an ELF file for 32-bit ARM (little-endian `e_machine` 40 at offset 18).
fn is_arm_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok()
        && head[..4] == *b"\x7fELF"
        && u16::from_le_bytes([head[18], head[19]]) == 40
}
