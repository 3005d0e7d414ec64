//! The big-endian test: one script and one deterministic workload on `qemu-mipsel` and `qemu-mips`
//! (the same o32 ABI, opposite byte orders) must print exactly the same text. Both boards must be
//! built; `cargo xtask test` runs this file (it is not part of the per-board run: `test = false` in
//! Cargo.toml) when its selection holds both, and `KTAP_TWIN_BOARDS=a,b` names another pair.

use std::time::Duration;

use ktap_e2e::{TestEnv, script};

const T: Duration = Duration::from_secs(120);
/// 11 reads and 11 writes of 300 bytes by `dd` (one more write: its statistics). By path, so the
/// shell execs it (a bare `dd` runs as a busybox applet in a forked shell, without an exec).
const WORKLOAD: &str = "/bin/dd if=/dev/zero of=/dev/null bs=300 count=11";

fn twins() -> (String, String) {
    let spec = std::env::var("KTAP_TWIN_BOARDS").unwrap_or_else(|_| "qemu-mipsel,qemu-mips".into());
    let mut names = spec.split(',').map(str::trim);
    match (names.next(), names.next(), names.next()) {
        (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => (a.to_owned(), b.to_owned()),
        _ => panic!("KTAP_TWIN_BOARDS=`{spec}`: expected two board names separated by a comma"),
    }
}

#[test]
fn the_same_script_prints_the_same_on_both_byte_orders() {
    let (a, b) = twins();
    let (ea, eb) = (TestEnv::for_board(&a), TestEnv::for_board(&b));
    assert_ne!(ea.board.endian, eb.board.endian, "{a} and {b} have the same byte order");
    assert_eq!(ea.board.arch, eb.board.arch, "{a} and {b} differ in more than the byte order");
    let s = script("endian_twins.kp");
    let out_a = ea.trace(&s, WORKLOAD, T);
    let out_b = eb.trace(&s, WORKLOAD, T);
    // what the workload makes the kernel see, so equal outputs are also right ones
    for needle in [
        "exec dd argc=5 prio=120 point_of_no_return=1 file=busybox len=7",
        "execs=1 neg=-1234567890123 hex=1234567890abcd wide=12000000000",
    ] {
        assert!(out_a.contains(needle), "{a} did not print `{needle}`:\n{out_a}");
    }
    assert_eq!(out_a, out_b, "{a} printed:\n{out_a}\n{b} printed:\n{out_b}");
}
