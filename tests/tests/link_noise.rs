//! A bad cable between the host and the QEMU board: the relay (`link_relay pty`) flips 1% of the bytes
//! in each direction and drops some at random. Nothing crashes on either side, the corruption is
//! counted and reported, the trace keeps running and the final aggregation arrives complete.

use std::path::Path;
use std::time::Duration;

use ktap_e2e::{HostRun, TestEnv, count_for, kprobes, relay, scratch_dir, script};

const T: Duration = Duration::from_secs(180);

#[test]
fn a_noisy_line_loses_nothing_that_matters_and_says_what_it_cost() {
    let env = TestEnv::get();
    let mut guest = env.boot();
    let log = scratch_dir("noise").join("relay.log");
    // 10 per mille flipped, 3 per mille dropped, both directions
    let relay = relay::spawn(
        Path::new(env!("CARGO_BIN_EXE_link_relay")),
        guest.agent_port(),
        &["--flip", "10", "--drop", "3", "--seed", "6"],
        &log,
    );
    let mut push = env.push(std::path::Path::new(&relay.port));
    push.arg(script("count_reads.kp"));
    let mut run = HostRun::spawn(push);
    run.wait_armed(T);
    assert!(kprobes(&mut guest).contains("vfs_read"));
    for _ in 0..3 {
        guest.console.run_ok("dd if=/dev/zero of=/dev/null bs=1 count=300", T).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    run.signal("INT");
    let (status, out, err) = run.finish(T);
    let last = relay.stop();
    assert!(status.success(), "push over the noisy line failed: {status}\n{out}\n{err}\nrelay: {last}");
    // the final aggregation, complete and exact
    assert_eq!(count_for(&out, "dd"), Some(900), "stdout:\n{out}\nstderr:\n{err}\nrelay: {last}");
    // the noise was real, and it was reported rather than hidden
    assert!(!last.contains(" 0 flipped"), "the relay corrupted nothing: {last}");
    assert!(err.contains("corrupted frames dropped"), "no report of the corruption:\n{err}");
    assert!(!kprobes(&mut guest).contains("vfs_read"), "probe left armed");
    eprintln!("host: {}", err.lines().rfind(|l| l.contains("corrupt") || l.contains("resend")).unwrap_or(""));
    eprintln!("{last}");
    guest.shutdown();
}
