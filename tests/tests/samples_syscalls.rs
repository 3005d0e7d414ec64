//! `trace syscalls:sys_enter_NAME` / `sys_exit_NAME` on the real board kernel, where they exist only
//! as ftrace events: the compiler builds them on `raw_syscalls` with the number test in the VM and
//! the number <-> name table from the board's vmlinux; `probename` travels as the call's number and
//! the host prints its event's name. The expected counts are the workload's own.

use std::time::Duration;

use ktap_e2e::{TestEnv, ThreeOpens, write_script};

const T: Duration = Duration::from_secs(90);

/// The shell opens three files by name (redirections of builtins: no fork), one of them missing:
/// each name is seen exactly as often as it is opened, through `arg1` (the path) of `openat`, and
/// the missing one fails at `sys_exit_openat` with ENOENT.
#[test]
fn openat_by_name_sees_each_path_and_its_result() {
    let env = TestEnv::get();
    let s = write_script(
        "sys_openat",
        r#"
trace syscalls:sys_enter_openat {
    printf("%s %s\n", probename, user_string(arg1))
}
trace syscalls:sys_exit_openat /retval == -2 && execname == "sh"/ {
    printf("%s ENOENT\n", probename)
}
"#,
    );
    let opens = ThreeOpens::new("sys");
    let out = env.trace(&s, &opens.workload(), T);
    opens.assert_counted(&out, &env.board.name, |n| format!("syscalls:sys_enter_openat {n}"));
    let enoent = out.lines().filter(|l| *l == "syscalls:sys_exit_openat ENOENT").count();
    assert_eq!(enoent, 1, "{}: {out}", env.board.name);
}

/// The issue's headline probe: `syscalls:sys_enter_*` names every call of a process by its real
/// event. `dd bs=1 count=7` reads its input exactly 7 times, and writes each byte to /dev/null.
#[test]
fn every_call_by_name_counts_the_workloads_reads() {
    let env = TestEnv::get();
    let s = write_script(
        "sys_all",
        r#"
var calls = {}
trace syscalls:sys_enter_* /execname == "dd"/ {
    calls[probename] += 1
}
trace syscalls:sys_exit_read /execname == "dd"/ {
    calls["bytes read"] += retval
}
trace_end {
    print(calls)
}
"#,
    );
    let out = env.trace(&s, "dd if=/dev/zero of=/dev/null bs=1 count=7 2>/dev/null", T);
    let count = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key) && l[key.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert_eq!(count("syscalls:sys_enter_read"), Some(7), "{}: {out}", env.board.name);
    assert_eq!(count("bytes read"), Some(7), "{}: {out}", env.board.name);
    assert!(count("syscalls:sys_enter_write").is_some_and(|n| n >= 7), "{}: {out}", env.board.name);
    // every key is a real event name (or ours)
    for l in out.lines().filter(|l| !l.trim().is_empty()) {
        assert!(l.starts_with("syscalls:sys_enter_") || l.starts_with("bytes read"), "{l}\n{out}");
    }
}
