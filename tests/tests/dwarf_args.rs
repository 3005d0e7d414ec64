//! Kernel types on the real board: scripts name arguments and follow struct chains resolved from the
//! board's vmlinux DWARF on the host, and print what the kernel really holds. The expected values are
//! the workload's own (file names it opens, the processes that fork), never recorded output.

use std::time::Duration;

use ktap_e2e::{TestEnv, write_script};

const T: Duration = Duration::from_secs(90);

/// `arg.filename` of `do_sys_openat2` (a `const char __user *` in 6.1) read as a user string: the
/// names the workload opens, each exactly as often as it opens them.
#[test]
fn open_file_names_come_from_the_filename_argument() {
    let env = TestEnv::get();
    let s = write_script(
        "opens",
        "kprobe:do_sys_openat2 {\n    printf(\"open %s\\n\", user_string(arg.filename))\n}\n",
    );
    // names nothing else on the board opens
    let names = ["/tmp/ktap-dwarf-a", "/tmp/ktap-dwarf-bb", "/tmp/ktap-dwarf-missing"];
    let workload = format!(
        "echo a > {0}; echo b > {1}; for f in {0} {0} {1} {2}; do read x < $f; done 2>/dev/null; true",
        names[0], names[1], names[2]
    );
    let out = env.trace(&s, &workload, T);
    let count = |n: &str| out.lines().filter(|l| *l == format!("open {n}")).count();
    // the shell opens each itself (builtins, no fork: safe on boards with a kprobe hazard): `>` once
    // for the first two, then `<` per loop pass. `read`, not `:`: a failed redirection of a special
    // builtin aborts the whole command line in an interactive shell
    assert_eq!(count(names[0]), 3, "{}: {out}", env.board.name);
    assert_eq!(count(names[1]), 2, "{}: {out}", env.board.name);
    assert_eq!(count(names[2]), 1, "{}: {out}", env.board.name);
}

/// `task_struct->comm` through a chain: the parent of every fork, read as `arg.parent->comm` from
/// the tracepoint's `struct task_struct *`, is the process that forked, which the kernel also
/// reports as `execname`; and the workload's shell shows up.
#[test]
fn task_comm_through_a_struct_chain_names_the_forking_process() {
    let env = TestEnv::get();
    let s = write_script(
        "forks",
        "trace sched:sched_process_fork {\n    printf(\"fork %s %s %d\\n\", execname, arg.parent->comm, arg.child->pid)\n}\n",
    );
    let out = env.trace(&s, "for i in 1 2 3 4 5; do /bin/true; done; sh -c '/bin/true; /bin/true'", T);
    let forks: Vec<Vec<&str>> =
        out.lines().filter_map(|l| l.strip_prefix("fork ")).map(|l| l.split_whitespace().collect()).collect();
    assert!(forks.len() >= 7, "{}: only {} forks\n{out}", env.board.name, forks.len());
    for f in &forks {
        assert_eq!(f.len(), 3, "{out}");
        assert_eq!(f[0], f[1], "execname vs parent->comm: {out}");
        assert!(f[2].parse::<u32>().is_ok_and(|pid| pid > 1), "child pid: {out}");
    }
    assert!(forks.iter().filter(|f| f[1] == "sh").count() >= 7, "{}: {out}", env.board.name);
}
