//! `link_relay`: the relay of the link tests as a process.
//!
//! `link_relay stdio PTY`: bridge stdin/stdout to PTY (the remote command an ssh test runs, so the
//! agent on the QEMU guest is reached through a real sshd).
//! `link_relay pty PTY [--flip N] [--drop N] [--bps N] [--seed N]`: make a new pty pair, print
//! `relay: <path>` for the host to open, and forward between it and PTY, corrupting N per mille of
//! the bytes, dropping N per mille, limiting to N bytes/s; the counts go to stderr every second.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use ktap_e2e::relay::{self, Counts, Impair};
use serialport::SerialPort;

fn fail(msg: &str) -> ! {
    eprintln!("link_relay: {msg}");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, target) = match args.as_slice() {
        [m, t, ..] => (m.as_str(), t.as_str()),
        _ => fail(
            "usage: link_relay stdio PTY | link_relay pty PTY [--flip N] [--drop N] [--bps N] [--seed N]",
        ),
    };
    let board = relay::open(target).unwrap_or_else(|e| fail(&e.to_string()));
    let board_tx = board.try_clone_native().unwrap_or_else(|e| fail(&e.to_string()));
    match mode {
        "stdio" => {
            let up = Arc::new(Counts::default());
            std::thread::spawn(move || {
                let _ = relay::pump(std::io::stdin(), board_tx, Impair::default(), up);
                // the host's ssh went away: stop, as an agent on stdio would
                std::process::exit(0);
            });
            let _ = relay::pump(board, std::io::stdout(), Impair::default(), Arc::new(Counts::default()));
        }
        "pty" => {
            let mut impair = Impair::default();
            let mut it = args[2..].iter();
            while let Some(opt) = it.next() {
                let v: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| fail(&format!("{opt} needs a number")));
                match opt.as_str() {
                    "--flip" => impair.flip_per_mille = v as u32,
                    "--drop" => impair.drop_per_mille = v as u32,
                    "--bps" => impair.bytes_per_sec = Some(v as u32),
                    "--seed" => impair.seed = v,
                    _ => fail(&format!("unknown option {opt}")),
                }
            }
            let (mut master, slave) = serialport::TTYPort::pair().unwrap_or_else(|e| fail(&e.to_string()));
            let _ = master.set_timeout(Duration::from_millis(100));
            let master_tx = master.try_clone_native().unwrap_or_else(|e| fail(&e.to_string()));
            let name = slave.name().unwrap_or_else(|| fail("the new pty has no name"));
            println!("relay: {name}");
            let _ = std::io::stdout().flush();
            let (up, down) = (Arc::new(Counts::default()), Arc::new(Counts::default()));
            let (u, d) = (Arc::clone(&up), Arc::clone(&down));
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    eprintln!("relay: host->board {}; board->host {}", u.line(), d.line());
                }
            });
            let up_impair = Impair { seed: impair.seed.wrapping_add(1), ..impair };
            std::thread::spawn(move || relay::pump(master, board_tx, up_impair, up));
            let _ = relay::pump(board, master_tx, impair, down);
            drop(slave);
        }
        m => fail(&format!("unknown mode `{m}`")),
    }
}
