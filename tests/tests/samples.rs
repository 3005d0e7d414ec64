//! The samples on the real board kernel: each compiles against the board's vmlinux, runs in the
//! guest under a workload that exercises it, and prints sensible, non-empty output. Then the
//! differential check: for samples whose output is deterministic, the events the kernel saw are
//! recorded in the guest (a recorder script prints them as JSON lines) and `ktap-host sim` on those
//! events must print exactly what the kernel printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ktap_e2e::{HostRun, TestEnv, kernel_complaints, workspace};

const T: Duration = Duration::from_secs(90);

fn sample(name: &str) -> PathBuf {
    workspace().join("samples").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = workspace().join("target/e2e-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", std::process::id()))
}

/// Push `script`, run `workload` on the guest console once tracing is armed, stop with Ctrl-C
/// (or wait for the program's own `exit()` when `workload` is `None`); stdout and stderr.
fn run(
    env: &TestEnv,
    guest: &mut ktap_host::qemu::Guest,
    script: &Path,
    workload: Option<&str>,
) -> (String, String) {
    let mut c = env.push(guest.agent_port());
    c.arg(script);
    let mut r = HostRun::spawn(c);
    r.wait_armed(T);
    if let Some(w) = workload {
        guest.console.run_ok(w, T).unwrap();
        r.signal("INT");
    }
    let (status, out, err) = r.finish(T);
    assert!(status.success(), "{}: push failed: {status}\n{out}\n{err}", script.display());
    (out, err)
}

/// One sample, its workload, and what its output must show.
struct Case {
    script: &'static str,
    workload: Option<&'static str>,
    check: fn(&str) -> Result<(), String>,
}

fn has(out: &str, needle: &str) -> Result<(), String> {
    if out.contains(needle) { Ok(()) } else { Err(format!("no `{needle}` in the output")) }
}

/// The count a `print(table)` line reports for `key`.
fn count_for(out: &str, key: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
}

const DD: &str = "dd if=/dev/zero of=/dev/null bs=512 count=200";

const CASES: &[Case] = &[
    Case {
        script: "syscall_count.kp",
        workload: Some("ls / > /dev/null"),
        check: |o| {
            has(o, "SYSCALL")?;
            let rows = o.lines().skip(1).filter(|l| l.split_whitespace().count() == 2).count();
            if rows >= 3 { Ok(()) } else { Err(format!("only {rows} syscall numbers counted")) }
        },
    },
    Case {
        script: "syscall_by_proc.kp",
        workload: Some(DD),
        check: |o| {
            has(o, "busiest: ")?;
            match count_for(o, "dd") {
                Some(n) if n >= 400 => Ok(()),
                n => Err(format!("dd made {n:?} system calls, expected at least 400")),
            }
        },
    },
    Case {
        // busybox runs applets like `ls` inside the shell's fork; a path to the binary really execs
        script: "execsnoop.kp",
        workload: Some("/bin/busybox true; /bin/busybox true"),
        check: |o| {
            has(o, "exec busybox")?;
            let n = o.lines().find_map(|l| l.strip_suffix(" execs")).and_then(|n| n.parse::<u64>().ok());
            if n.is_some_and(|n| n >= 2) { Ok(()) } else { Err(format!("{n:?} execs, expected at least 2")) }
        },
    },
    Case { script: "read_latency.kp", workload: Some(DD), check: |o| has(o, "dd") },
    Case {
        script: "sched_switch.kp",
        workload: Some("sleep 1"),
        check: |o| {
            has(o, "switches per cpu:")?;
            has(o, "switched out:")?;
            if count_for(o, "0").unwrap_or(0) > 0 { Ok(()) } else { Err("no switches on cpu 0".into()) }
        },
    },
    Case {
        script: "error_returns.kp",
        workload: Some("cat / 2>/dev/null; true"),
        check: |o| has(o, "cat        errno 21"),
    },
    Case {
        script: "write_bytes.kp",
        workload: Some("dd if=/dev/zero of=/dev/null bs=100 count=7"),
        check: |o| {
            // 700 bytes of data, then dd's own summary on stderr ("7+0 records in", ...)
            let line = o.lines().find(|l| l.starts_with("dd ")).ok_or("no dd line")?;
            let n = line.split_whitespace().nth(2).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            if (700..800).contains(&n) { Ok(()) } else { Err(format!("dd line: {line}")) }
        },
    },
    Case {
        script: "read_classes.kp",
        workload: Some("dd if=/dev/zero of=/dev/null bs=4096 count=5"),
        check: |o| has(o, "large"),
    },
    Case {
        script: "kmalloc_sizes.kp",
        workload: Some("ls -R /proc/self > /dev/null"),
        check: |o| has(o, " bytes requested"),
    },
    Case {
        script: "proc_lifecycle.kp",
        workload: Some("ls / > /dev/null"),
        check: |o| {
            // the shell forks to run `ls` (a busybox applet: no exec), the child exits
            has(o, "fork  sh")?;
            has(o, "exit  ls")
        },
    },
    Case {
        script: "mutex_hot.kp",
        workload: Some("ls -R /sys/kernel > /dev/null 2>&1; true"),
        check: |o| has(o, "ls"),
    },
    Case {
        script: "hardirq_time.kp",
        workload: Some("sleep 1"),
        check: |o| {
            has(o, "IRQ")?;
            if o.lines().count() >= 2 { Ok(()) } else { Err("no interrupt counted".into()) }
        },
    },
    Case {
        // user_string: the path a process passes to openat, read from its memory
        script: "opensnoop.kp",
        workload: Some("cat /proc/version > /dev/null"),
        check: |o| {
            has(o, "FILE")?;
            let hit = o.lines().any(|l| l.contains(" cat ") && l.ends_with(" /proc/version"));
            if hit { Ok(()) } else { Err("no `cat ... /proc/version` line".into()) }
        },
    },
    Case {
        // a tick timer and exit(): stops by itself after three ticks, trace_end still runs
        script: "countdown.kp",
        workload: None,
        check: |o| {
            has(o, "tick 1: ")?;
            has(o, "tick 3: ")?;
            has(o, "stopped after 3 ticks")
        },
    },
    Case {
        // tick-1s: the per-second view shows the workload's process
        script: "top.kp",
        workload: Some("dd if=/dev/zero of=/dev/null bs=512 count=100; sleep 2"),
        check: |o| {
            has(o, "--- second 1")?;
            let dd: u64 = o
                .lines()
                .filter(|l| l.split_whitespace().next() == Some("dd"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
            if dd >= 200 { Ok(()) } else { Err(format!("dd made {dd} system calls, expected at least 200")) }
        },
    },
    Case {
        // tick-2s printing and clearing a table
        script: "page_faults.kp",
        workload: Some("ls -R /proc/self > /dev/null 2>&1; sleep 3"),
        check: |o| match count_for(o, "ls") {
            Some(n) if n > 0 => Ok(()),
            n => Err(format!("ls page faults: {n:?}")),
        },
    },
    Case {
        // profile timers on every CPU, stacks symbolized from the board's vmlinux
        script: "stack_profile.kp",
        workload: Some("dd if=/dev/zero of=/dev/null bs=4096 count=3000"),
        check: |o| {
            let frames: Vec<&str> =
                o.lines().filter(|l| l.starts_with("    ") && !l.trim().is_empty()).collect();
            let named =
                frames.iter().filter(|l| l.trim().contains("+0x") && !l.trim().starts_with("0x")).count();
            // symbol names come only from the vmlinux's symbol table: real kernel functions
            if named > 0 && named * 2 >= frames.len() {
                Ok(())
            } else {
                Err(format!("{named} of {} frame lines symbolized", frames.len()))
            }
        },
    },
];

#[test]
fn samples_run_on_the_board_and_print_sensible_output() {
    let env = TestEnv::get();
    let mut guest = env.boot();
    let mut failures = Vec::new();
    for case in CASES {
        let (out, err) = run(&env, &mut guest, &sample(case.script), case.workload);
        if out.trim().is_empty() {
            failures.push(format!("{}: no output\nstderr:\n{err}", case.script));
        } else if let Err(why) = (case.check)(&out) {
            failures.push(format!("{}: {why}\nstdout:\n{out}\nstderr:\n{err}", case.script));
        }
    }
    let dmesg = guest.console.run_ok("dmesg", T).unwrap();
    let bad = kernel_complaints(&dmesg);
    assert!(bad.is_empty(), "kernel complained:\n{}", bad.join("\n"));
    guest.shutdown();
    assert!(CASES.len() >= 10);
    assert!(
        failures.is_empty(),
        "{} of {} samples failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

/// A deterministic sample and how to drive it: every probe block of the sample gets, first in its
/// body, a recorder (printfs of the hit as an events-file line: probe, pid, tid, uid, cpu, comm,
/// time, the `argN` the sample reads, `retval` in kretprobes and `sys_exit_*`, and `mem` when given), and non-timer
/// probes get `pred` (so only the workload's process counts, and the agent's own activity cannot
/// feed the recording). The kernel's output is then the recorded events interleaved with the
/// sample's own output, and `sim` on the recorded events must print exactly the same.
struct Differential {
    sample: &'static str,
    pred: Option<&'static str>,
    /// More fields of the events line (a printf format piece and its arguments), e.g. `mem`.
    extra: Option<(&'static str, &'static str)>,
    /// `None`: the sample stops itself with `exit()`.
    workload: Option<&'static str>,
}

const fn d(sample: &'static str, pred: Option<&'static str>, workload: &'static str) -> Differential {
    Differential { sample, pred, extra: None, workload: Some(workload) }
}

const IS_DD: &str = r#"execname == "dd""#;
const IS_LS: &str = r#"execname == "ls""#;
const IS_CAT: &str = r#"execname == "cat""#;

const DIFFERENTIAL: &[Differential] = &[
    d("write_bytes.kp", Some(IS_DD), "dd if=/dev/zero of=/dev/null bs=300 count=11"),
    d("read_classes.kp", Some(IS_DD), "dd if=/dev/zero of=/dev/null bs=1024 count=9"),
    d(
        "read_sizes_lhist.kp",
        Some(IS_DD),
        "dd if=/dev/zero of=/dev/null bs=700 count=5; dd if=/dev/zero of=/dev/null bs=3000 count=2",
    ),
    d(
        "error_returns.kp",
        Some(IS_CAT),
        "cat / 2>/dev/null; cat /proc/version > /dev/null; cat / 2>/dev/null; true",
    ),
    d("syscall_count.kp", Some(IS_DD), "dd if=/dev/zero of=/dev/null bs=512 count=10"),
    d("syscall_by_proc.kp", Some(IS_DD), "dd if=/dev/zero of=/dev/null bs=512 count=10"),
    d("syscall_errors.kp", Some(IS_CAT), "cat / 2>/dev/null; cat /nonexistent 2>/dev/null; true"),
    // `syscalls:` events by name (built on raw_syscalls): sim builds the raw event from the name
    d("syscall_names.kp", Some(IS_CAT), "cat / 2>/dev/null; cat /proc/version > /dev/null; true"),
    d("demo.kp", Some(IS_CAT), "cat /proc/version > /dev/null"),
    d("kmalloc_sizes.kp", Some(IS_CAT), "cat /proc/self/status > /dev/null"),
    d("page_alloc.kp", Some(IS_LS), "ls -R /proc/self > /dev/null 2>&1; true"),
    d("mutex_hot.kp", Some(IS_LS), "ls / > /dev/null"),
    d("execsnoop.kp", None, "/bin/busybox true; /bin/busybox true"),
    d("proc_lifecycle.kp", None, "ls / > /dev/null"),
    d("sched_events.kp", None, "ls / > /dev/null; /bin/busybox true"),
    d("signals.kp", None, "sh -c 'kill -HUP $$'; true"),
    // timers: the ticks are recorded like any hit, so what they print follows from the events
    d("top.kp", Some(IS_DD), "dd if=/dev/zero of=/dev/null bs=512 count=10; sleep 2"),
    d("page_faults.kp", Some(IS_LS), "ls / > /dev/null; sleep 3"),
    Differential { sample: "countdown.kp", pred: Some(IS_DD), extra: None, workload: None },
    // user_string: the string the kernel read is recorded as the process's memory
    Differential {
        sample: "opensnoop.kp",
        pred: Some(IS_CAT),
        extra: Some((
            r#", \"mem\": [{\"addr\": %d, \"str\": \"%s\", \"user\": true}]"#,
            "arg1, user_string(arg1)",
        )),
        workload: Some("cat /proc/version > /dev/null"),
    },
];

/// The samples whose kernel output is not a function of events a script can record, and why.
const NOT_DETERMINISTIC: &[(&str, &str)] = &[
    ("stack_profile.kp", "profile timers sample whatever runs; a stack value cannot be printed as numbers"),
    ("first_event.kp", "prints the CPU trace_begin happened to run on"),
    (
        "read_latency.kp",
        "the kernel's `time` advances within a run, so the time a recorder prints is not the one the sample reads a few instructions later",
    ),
    ("sched_switch.kp", "recording a switch wakes the agent, whose switches are recorded in turn"),
    ("workqueue.kp", "recorded output is flushed to the tty by workqueue items, which are recorded in turn"),
    ("hardirq_time.kp", "recorded output makes serial interrupts, which are recorded in turn"),
    ("softirq_time.kp", "recorded output makes serial interrupts, whose softirqs are recorded in turn"),
    ("migrations.kp", "whether the scheduler migrates a task is not up to the workload"),
    ("block_io.kp", "the guest has no block device"),
    ("net_xmit.kp", "the guest has no network device"),
    ("tcp_send.kp", "the guest has no network device"),
    ("kfree_skb.kp", "the guest has no network device"),
];

/// The highest `argN` the script reads (`None`: none).
fn max_arg(src: &str) -> Option<usize> {
    let b = src.as_bytes();
    let mut max = None;
    for (i, _) in src.match_indices("arg") {
        let before = i.checked_sub(1).and_then(|j| b.get(j)).copied().unwrap_or(b' ');
        let digit = b.get(i + 3).copied().unwrap_or(b' ');
        let after = b.get(i + 4).copied().unwrap_or(b' ');
        if !(before.is_ascii_alphanumeric() || before == b'_')
            && digit.is_ascii_digit()
            && !(after.is_ascii_alphanumeric() || after == b'_')
        {
            max = max.max(Some(usize::from(digit - b'0')));
        }
    }
    max
}

/// The recorder for one probe head (printf's arguments are at most 8, so it takes a few).
fn recorder(head: &str, src: &str, d: &Differential) -> String {
    let timer = head.starts_with("tick-") || head.starts_with("profile-");
    let mut r = String::from(
        r#"printf("{\"probe\": \"%s\", \"pid\": %d, \"tid\": %d, \"uid\": %d, \"cpu\": %d, \"comm\": \"%s\", ", probename, pid, tid, uid, cpu, execname); "#,
    );
    let (mut fmt, mut args) = (String::from(r#"\"time_ns\": %d"#), String::from("time"));
    if let Some(n) = max_arg(src).filter(|_| !timer) {
        let list: Vec<String> = (0..=n).map(|i| format!("arg{i}")).collect();
        fmt.push_str(&format!(r#", \"args\": [{}]"#, vec!["%d"; n + 1].join(", ")));
        args.push_str(&format!(", {}", list.join(", ")));
    }
    if head.starts_with("kretprobe:") || head.starts_with("trace syscalls:sys_exit_") {
        fmt.push_str(r#", \"retval\": %d"#);
        args.push_str(", retval");
    }
    r.push_str(&format!(r#"printf("{fmt}", {args}); "#));
    if let Some((f, a)) = d.extra.filter(|_| !timer) {
        r.push_str(&format!(r#"printf("{f}", {a}); "#));
    }
    r.push_str(r#"printf("}\n")"#);
    r
}

/// The sample with the recorder woven into every probe block.
fn instrumented(sample_src: &str, d: &Differential) -> String {
    let mut out = String::new();
    for line in sample_src.lines() {
        let t = line.trim_end();
        let head = ["kprobe:", "kretprobe:", "trace ", "tick-", "profile-"].iter().any(|p| t.starts_with(p))
            && t.ends_with('{');
        if !head {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let head = t.trim_end_matches('{').trim_end();
        let timer = head.starts_with("tick-") || head.starts_with("profile-");
        match (head.split_once(" /"), d.pred.filter(|_| !timer)) {
            // an existing predicate: both must hold
            (Some((h, p)), Some(pred)) => {
                out.push_str(&format!("{h} /({}) && ({pred})/ {{\n", p.trim_end_matches('/')))
            }
            (None, Some(pred)) => out.push_str(&format!("{head} /{pred}/ {{\n")),
            (_, None) => out.push_str(&format!("{head} {{\n")),
        }
        out.push_str(&format!("    {}\n", recorder(head, sample_src, d)));
    }
    out
}

#[test]
fn sim_prints_what_the_kernel_printed_for_the_same_events() {
    // every sample is either checked here or named with the reason its output is not deterministic
    let mut unlisted = Vec::new();
    for e in std::fs::read_dir(workspace().join("samples")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let listed =
            DIFFERENTIAL.iter().any(|d| d.sample == name) || NOT_DETERMINISTIC.iter().any(|n| n.0 == name);
        if name.ends_with(".kp") && !listed {
            unlisted.push(name);
        }
    }
    assert!(unlisted.is_empty(), "samples neither in DIFFERENTIAL nor in NOT_DETERMINISTIC: {unlisted:?}");
    let env = TestEnv::get();
    let mut guest = env.boot();
    let mut failures = Vec::new();
    for d in DIFFERENTIAL {
        let src = std::fs::read_to_string(sample(d.sample)).unwrap();
        let script = tmp(d.sample);
        std::fs::write(&script, instrumented(&src, d)).unwrap();
        let (kernel_out, _) = run(&env, &mut guest, &script, d.workload);
        let events: String =
            kernel_out.lines().filter(|l| l.starts_with("{\"probe\"")).map(|l| format!("{l}\n")).collect();
        if events.is_empty() {
            failures.push(format!("{}: nothing recorded:\n{kernel_out}", d.sample));
            continue;
        }
        let ev_file = tmp(&format!("{}.events.jsonl", d.sample));
        std::fs::write(&ev_file, &events).unwrap();

        let o = env
            .host()
            .arg("sim")
            .arg(&script)
            .arg("--events")
            .arg(&ev_file)
            .arg("--vmlinux")
            .arg(&env.artifacts.vmlinux)
            .output()
            .unwrap();
        let sim_out = String::from_utf8_lossy(&o.stdout);
        if !o.status.success() {
            failures.push(format!("{}: sim failed: {}", d.sample, String::from_utf8_lossy(&o.stderr)));
            continue;
        }
        if sim_out != kernel_out {
            failures.push(format!(
                "{}: sim and kernel differ\n--- kernel\n{kernel_out}\n--- sim\n{sim_out}",
                d.sample
            ));
        }
    }
    guest.shutdown();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
