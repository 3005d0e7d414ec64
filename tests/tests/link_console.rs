//! Console sharing end to end: the QEMU board's second UART becomes a busybox login console (the
//! agent init started there is stopped, and an interactive shell takes the line). `push --console`
//! types the agent command at its prompt, traces over the same line, and afterwards the shell
//! answers again in cooked mode.

use std::time::{Duration, Instant};

use ktap_e2e::{HostRun, TestEnv, kprobes, script};
use ktap_host::link::{Link, SerialLink};

const T: Duration = Duration::from_secs(90);

/// Type `line` on the console at `port` and wait for `answer` in what comes back. Typed again
/// (after a fresh prompt) if the shell did not take it: busybox ash asks the terminal for the cursor
/// position (ESC [6n) when it prints a prompt, and input that arrives while it waits for the answer
/// is swallowed.
fn shell_answers(port: &str, line: &str, answer: &str) -> String {
    let mut link = SerialLink::open(port, 115_200).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    for _ in 0..4 {
        link.write_all(format!("{line}\r").as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let n = link.read(&mut buf, Duration::from_millis(200)).unwrap();
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(answer) {
                return String::from_utf8_lossy(&seen).into_owned();
            }
        }
    }
    panic!(
        "the console did not answer `{line}` with `{answer}`; it showed:\n{}",
        String::from_utf8_lossy(&seen)
    )
}

#[test]
fn push_console_types_the_agent_at_the_prompt_and_gives_the_shell_back() {
    let env = TestEnv::get();
    let mut guest = env.boot();
    let dev = &env.board.agent.device;
    let port = guest.agent_port().to_string_lossy().into_owned();
    guest
        .console
        .run_ok("killall ktap-agent; while pidof ktap-agent >/dev/null; do usleep 50000; done", T)
        .unwrap();
    guest.console.run_ok(&format!("setsid sh -c 'exec sh -i <{dev} >{dev} 2>&1' & true"), T).unwrap();
    // the line is a shell now: it echoes and evaluates
    shell_answers(&port, "echo shell$((20+1))", "shell21");

    // the default agent command (deploy's directory, else PATH: /bin/ktap-agent in the initramfs)
    let case = env.kprobe_case(400);
    let mut push = env.host();
    push.args(["push", "--port", &port, "--console", "--vmlinux"])
        .arg(&env.artifacts.vmlinux)
        .args(env.kprobe_opt_in())
        .arg(&case.script);
    let mut run = HostRun::spawn(push);
    run.wait_armed(T);
    guest.console.run_ok(&case.workload, T).unwrap();
    run.signal("INT");
    let (status, out, err) = run.finish(T);
    assert!(status.success(), "push --console failed: {status}\n{out}\n{err}");
    assert_eq!(case.counted(&out), Some(case.count), "stdout:\n{out}\nstderr:\n{err}");
    assert!(!kprobes(&mut guest).contains(case.function), "probe left armed");

    // the agent restored the line: the shell echoes the typed text and evaluates it again
    let shown = shell_answers(&port, "echo back$((40+2))", "back42");
    assert!(shown.contains("echo back$((40+2))"), "no echo: the console was left raw:\n{shown}");
    let ps = guest.console.run_ok("ps", T).unwrap();
    assert!(!ps.contains("ktap-agent --console"), "the console agent did not exit:\n{ps}");
    guest.shutdown();
}

#[test]
fn push_console_without_a_prompt_says_so() {
    let env = TestEnv::get();
    let guest = env.boot();
    // the agent init started owns the line: it speaks frames, never a prompt
    let port = guest.agent_port().to_string_lossy().into_owned();
    let mut push = env.host();
    push.args(["push", "--port", &port, "--console", "--vmlinux"])
        .arg(&env.artifacts.vmlinux)
        // the kprobe hazard is checked before the port is opened
        .args(env.kprobe_opt_in())
        .arg(script("count_reads.kp"));
    let (status, _, err) = HostRun::spawn(push).finish(T);
    assert!(!status.success());
    assert!(err.contains("no shell prompt on") && err.contains("log in on the console first"), "{err}");
    guest.shutdown();
}
