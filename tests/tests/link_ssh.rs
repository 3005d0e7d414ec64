//! The SSH transport end to end: `ktap-host push --ssh` runs the system `ssh` against a throwaway
//! `sshd` on loopback; the remote command bridges its stdio to the QEMU guest's agent UART, so the
//! bytes go host -> ssh -> sshd -> remote command -> pty -> guest agent and back, with the same
//! protocol code as a serial link.

use std::time::Duration;

use ktap_e2e::sshd::Sshd;
use ktap_e2e::{HostRun, TestEnv, kprobes, scratch_dir, script};

const T: Duration = Duration::from_secs(90);

#[test]
fn push_over_ssh_through_a_real_sshd_counts_exactly_and_leaves_nothing_armed() {
    let env = TestEnv::get();
    let sshd = Sshd::start(&scratch_dir("sshd"));
    let mut guest = env.boot();
    let bridge = format!("{} stdio {}", env!("CARGO_BIN_EXE_link_relay"), guest.agent_port().display());
    let case = env.kprobe_case(700);
    let mut push = env.host();
    push.arg("push")
        .args(sshd.host_args())
        .args(["--agent-command", &bridge, "--vmlinux"])
        .arg(&env.artifacts.vmlinux)
        .args(env.kprobe_opt_in())
        .arg(&case.script);
    let mut run = HostRun::spawn(push);
    run.wait_armed(T);
    assert!(kprobes(&mut guest).contains(case.function), "probe not armed over ssh");
    guest.console.run_ok(&case.workload, T).unwrap();
    run.signal("INT");
    let (status, out, err) = run.finish(T);
    assert!(status.success(), "push --ssh failed: {status}\n{out}\n{err}");
    assert_eq!(case.counted(&out), Some(case.count), "stdout:\n{out}\nstderr:\n{err}");
    // the link is named by its ssh command line, so the user sees which transport was used
    assert!(
        err.contains("connected to")
            && err.contains(&format!("-T {}", sshd.target.split(':').next().unwrap())),
        "{err}"
    );
    assert!(!kprobes(&mut guest).contains(case.function), "probe left armed after the ssh session");
    guest.shutdown();
}

#[test]
fn an_unreachable_ssh_target_fails_fast_with_sshs_own_reason() {
    let env = TestEnv::get();
    let sshd = Sshd::start(&scratch_dir("sshd-bad"));
    // a port where nothing listens
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut push = env.host();
    push.args(["push", "--ssh", &format!("127.0.0.1:{port}")]);
    for o in &sshd.client_options {
        push.args(["--ssh-option", o]);
    }
    // the kprobe hazard is checked before ssh runs
    push.arg("--vmlinux").arg(&env.artifacts.vmlinux).args(env.kprobe_opt_in()).arg(script("count_reads.kp"));
    let started = std::time::Instant::now();
    let (status, _, err) = HostRun::spawn(push).finish(T);
    assert!(!status.success());
    assert!(err.contains("Connection refused"), "ssh's reason is shown: {err}");
    assert!(err.contains("closed its output"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn deploy_copies_the_agent_and_module_through_ssh() {
    let env = TestEnv::get();
    let scratch = scratch_dir("deploy");
    let sshd = Sshd::start(&scratch.join("sshd"));
    let dest = scratch.join("board dir");
    let mut deploy = env.host();
    deploy
        .arg("deploy")
        .args(sshd.host_args())
        .arg("--artifacts")
        .arg(env.artifacts.agent.parent().unwrap())
        .arg("--dest")
        .arg(&dest)
        // the only machine a test reaches over ssh is this x86 host: copy, never insmod an ARM module here
        .arg("--no-load");
    let (status, _, err) = HostRun::spawn(deploy).finish(T);
    assert!(status.success(), "deploy failed: {err}");
    for f in [&env.artifacts.agent, &env.artifacts.module] {
        let copied = dest.join(f.file_name().unwrap());
        assert_eq!(
            std::fs::read(&copied).unwrap(),
            std::fs::read(f).unwrap(),
            "{} differs",
            copied.display()
        );
    }
    assert!(err.contains("installed in"), "{err}");

    // a board that is not there: ssh's own reason, naming the step
    let mut deploy = env.host();
    deploy.args(["deploy", "--ssh", "127.0.0.1:1", "--no-load"]);
    for o in &sshd.client_options {
        deploy.args(["--ssh-option", o]);
    }
    let (status, _, err) = HostRun::spawn(deploy).finish(T);
    assert!(!status.success());
    assert!(
        err.contains("creating /tmp/ktap on 127.0.0.1:1 failed") && err.contains("Connection refused"),
        "{err}"
    );
}
