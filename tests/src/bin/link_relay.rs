//! `link_relay`: the relay of the link tests as a process.
//!
//! `link_relay stdio PTY`: bridge stdin/stdout to PTY (the remote command an ssh test runs, so the
//! agent on the QEMU guest is reached through a real sshd).
//! `link_relay pty PTY [--flip N] [--drop N] [--bps N] [--seed N] [--control]`: make a new pty
//! pair, print `relay: <path>` for the host to open, and forward between it and PTY, corrupting N
//! per mille of the bytes, dropping N per mille, limiting to N bytes/s; the counts go to stderr
//! every second. With `--control`, stdin takes lines `pace N` (N bytes/s, 0 for unlimited) that
//! change the limit of both directions while it runs.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use ktap_e2e::relay::{self, Counts, Impair, Pace};
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
            "usage: link_relay stdio PTY | link_relay pty PTY [--flip N] [--drop N] [--bps N] [--seed N] [--control]",
        ),
    };
    let board = relay::open(target).unwrap_or_else(|e| fail(&e.to_string()));
    let board_tx = board.try_clone_native().unwrap_or_else(|e| fail(&e.to_string()));
    match mode {
        "stdio" => {
            let up = Arc::new(Counts::default());
            std::thread::spawn(move || {
                let _ = relay::pump(std::io::stdin(), board_tx, Impair::default(), &Pace::default(), up);
                // the host's ssh went away: stop, as an agent on stdio would
                std::process::exit(0);
            });
            let down = Arc::new(Counts::default());
            let _ = relay::pump(board, std::io::stdout(), Impair::default(), &Pace::default(), down);
        }
        "pty" => {
            let mut impair = Impair::default();
            let pace = Pace::new(None);
            let mut control = false;
            let mut it = args[2..].iter();
            while let Some(opt) = it.next() {
                if opt == "--control" {
                    control = true;
                    continue;
                }
                let v: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| fail(&format!("{opt} needs a number")));
                match opt.as_str() {
                    "--flip" => impair.flip_per_mille = v as u32,
                    "--drop" => impair.drop_per_mille = v as u32,
                    "--bps" => pace.set(Some(v as u32)),
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
            if control {
                let pace = Arc::clone(&pace);
                // EOF (the test is gone) leaves the pace as it is; the relay ends with the board's pty
                std::thread::spawn(move || {
                    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                        match line.strip_prefix("pace ").and_then(|n| n.trim().parse::<u32>().ok()) {
                            Some(bps) => pace.set(Some(bps).filter(|b| *b > 0)),
                            None => eprintln!("link_relay: ignored control line `{line}`"),
                        }
                    }
                });
            }
            let up_impair = Impair { seed: impair.seed.wrapping_add(1), ..impair };
            let up_pace = Arc::clone(&pace);
            std::thread::spawn(move || relay::pump(master, board_tx, up_impair, &up_pace, up));
            let _ = relay::pump(board, master_tx, impair, &pace, down);
            drop(slave);
        }
        m => fail(&format!("unknown mode `{m}`")),
    }
}
