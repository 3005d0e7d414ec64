//! `ktap-host symbols --vmlinux V index`: build and cache the whole DWARF name index of a kernel
//! now, so later compiles against it read the cache instead of indexing lazily.
//!
//! `check`, `compile` and `push` start this same subcommand detached (`--background`, at the lowest
//! CPU priority, in its own process group so a Ctrl-C meant for the terminal's command does not
//! reach it) when they read a kernel's DWARF and found no cached index: the first compile costs
//! what it did, and a later one finds the cache. The cache entry is written atomically and builders
//! lock each other out ([`Vmlinux::store_index_cache`]), so a crash or a concurrent run can only
//! cost time, never leave a wrong index.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use ktap_host::vmlinux::Vmlinux;
use ktap_host::vmlinux::query::IndexCache;
use serde::Serialize;

use super::{Source, json};

/// `index` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run as the detached builder check, compile and push start: lowest CPU priority, no output
    #[arg(long, hide = true)]
    background: bool,
}

#[derive(Serialize)]
struct IndexOut {
    /// Built by this run, cached already, or busy (another run is building it).
    index: IndexCache,
}

pub(crate) fn run(source: &Source, args: &Args, as_json: bool) -> anyhow::Result<String> {
    let v = source.vmlinux()?;
    if args.background {
        lowest_priority();
    }
    let progress = !args.background && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let state = v.store_index_cache(progress).map_err(anyhow::Error::msg)?;
    if args.background {
        return Ok(String::new());
    }
    if as_json {
        return json(&IndexOut { index: state });
    }
    let path = v.path().display();
    Ok(match state {
        IndexCache::Built => format!("indexed the DWARF of {path} and cached it\n"),
        IndexCache::Cached => format!("the DWARF index of {path} is cached already\n"),
        IndexCache::Busy => format!("another ktap-host is indexing {path} now\n"),
    })
}

/// Nice 19 for this process's threads (the index build's workers inherit it from this thread).
fn lowest_priority() {
    // SAFETY: setpriority only reads its integer arguments; 0 is the calling thread on Linux.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// After a run that read `v`'s DWARF lazily with no whole index cached: start the detached
/// builder and return at once (`KTAP_BACKGROUND_INDEX=0` turns this off). Best effort: a builder
/// that cannot start only means the next compile indexes lazily again.
pub fn in_background(v: &Vmlinux) {
    if !v.index_cache_wanted() || std::env::var_os("KTAP_BACKGROUND_INDEX").is_some_and(|s| s == "0") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let child = Command::new(exe)
        .arg("symbols")
        .arg("--vmlinux")
        .arg(v.path())
        .args(["index", "--background"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Ok(mut child) = child {
        // reaped here if this process outlives it (push); else init inherits it
        std::thread::spawn(move || child.wait());
    }
}
