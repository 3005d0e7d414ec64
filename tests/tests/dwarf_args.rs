//! Kernel types on the real board: scripts name arguments and follow struct chains resolved from the
//! board's vmlinux DWARF on the host, and print what the kernel really holds. The expected values are
//! the workload's own (file names it opens, the processes that fork), never recorded output.

use std::time::Duration;

use ktap_e2e::{TestEnv, ThreeOpens, count_for, write_script};
use ktap_host::lang::{ParamsOf, Resolver};
use ktap_host::vmlinux::Vmlinux;

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
    let opens = ThreeOpens::new("dwarf");
    let out = env.trace(&s, &opens.workload(), T);
    opens.assert_counted(&out, &env.board.name, |n| format!("open {n}"));
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

/// An enum argument prints as its enumerator's name, from the board's DWARF, through `%s`, `print`
/// of a table keyed by it, while `%d` keeps the number: `__task_pid_nr_ns(task, enum pid_type
/// type, ns)` is what `/proc/self` and `/proc/self/stat` ask for the shell's tgid, process group
/// and session (no fork: the shell's own `read`). The names expected are the enumerators the
/// vmlinux's DWARF gives for the numbers printed, not text written here.
#[test]
fn an_enum_argument_prints_as_its_enumerators_name() {
    let env = TestEnv::get();
    let v = Vmlinux::open_for(&env.artifacts.vmlinux, env.board.arch).unwrap_or_else(|e| panic!("{e}"));
    let params = v.params(ParamsOf::Function("__task_pid_nr_ns")).unwrap_or_else(|e| panic!("{e}"));
    let ty = params.iter().find(|p| p.name == "type").map(|p| p.ty).expect("a `type` parameter");
    let enumerators = v.enumerators(&ty).unwrap_or_else(|e| panic!("{e}"));
    let name_of = |n: i64| enumerators.iter().find(|(_, v)| *v == n).map(|(name, _)| name.clone());
    let s = write_script(
        "pid_type",
        r#"
var types = {}
kprobe:__task_pid_nr_ns /execname == "sh"/ {
    var t = arg.type
    printf("type %s %d\n", arg.type, t)
    types[t] += 1
}
trace_end {
    print(types)
}
"#,
    );
    let out = env.trace(&s, "read x < /proc/self/stat", T);
    let lines: Vec<(&str, i64)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("type "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, n)| (name, n.parse().unwrap_or_else(|_| panic!("`{n}` is not a number:\n{out}"))))
        .collect();
    assert!(!lines.is_empty(), "{}: no hit\n{out}", env.board.name);
    for (name, n) in &lines {
        assert_eq!(Some(name.to_string()), name_of(*n), "{}: {n} printed as {name}\n{out}", env.board.name);
    }
    // `/proc/self` and `/proc/self/stat` ask for the tgids (the shell's, its parent's), the process
    // group and the session (the pid is read without it): each by its name in the table, counted
    // as often as the printf lines show it
    for n in 1..4 {
        let name = name_of(n).unwrap_or_else(|| panic!("the DWARF of pid_type has no value {n}"));
        let printed = lines.iter().filter(|(_, m)| *m == n).count() as u64;
        assert!(printed > 0, "{}: {name} never seen\n{out}", env.board.name);
        assert_eq!(count_for(&out, &name), Some(printed), "{}: {name}\n{out}", env.board.name);
    }
}
