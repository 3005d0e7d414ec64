//! `ktap-host deploy` through the protocol into a QEMU guest whose module was removed first: the agent
//! and the module arrive packed in acknowledged CRC-checked frames (over the guest's serial pty, and
//! over a real sshd bridged to it), are renamed into place under a directory that did not exist,
//! the module is loaded from the deployed file, and traces then run on the deployed pieces. A module
//! file the kernel refuses is reported with the kernel's errno, and the agent keeps serving.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ktap_e2e::sshd::Sshd;
use ktap_e2e::{HostRun, TestEnv, scratch_dir};
use ktap_host::qemu::Guest;

/// Generous: a deploy is ~170 KB through a TCG guest's UART, on a machine that may be busy.
const T: Duration = Duration::from_secs(300);

/// Remove the module init loaded (the agent holds `/dev/ktap` only while a program is loaded).
fn remove_module(guest: &mut Guest) {
    guest
        .console
        .run_ok("rmmod ktap && ! grep -q '^ktap ' /proc/modules && [ ! -e /dev/ktap ] && echo gone", T)
        .unwrap();
}

/// The host's md5 of `file`.
fn md5(file: &Path) -> String {
    let out = Command::new("md5sum").arg(file).output().expect("md5sum on the host");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// The deployed files are the built ones, with their modes, and no temporary file is left.
fn check_installed(env: &TestEnv, guest: &mut Guest, dest: &str) {
    for (f, mode) in [(&env.artifacts.agent, "-rwxr-xr-x"), (&env.artifacts.module, "-rw-r--r--")] {
        let name = f.file_name().unwrap().to_string_lossy();
        let got = guest.console.run_ok(&format!("md5sum {dest}/{name}; ls -l {dest}/{name}"), T).unwrap();
        assert!(got.contains(&md5(f)), "{dest}/{name} differs from {}:\n{got}", f.display());
        assert!(got.lines().any(|l| l.starts_with(mode)), "{dest}/{name} mode:\n{got}");
    }
    let listing = guest.console.run_ok(&format!("ls -a {dest}"), T).unwrap();
    assert!(!listing.contains(".part"), "a temporary file was left:\n{listing}");
    let loaded = guest.console.run_ok("grep '^ktap ' /proc/modules; ls -l /dev/ktap", T).unwrap();
    assert!(loaded.contains("ktap ") && loaded.contains("/dev/ktap"), "module not loaded:\n{loaded}");
}

/// `ktap-host deploy` of the agent and module that `artifacts` (a directory with an
/// `artifacts.toml`) names, over the serial `port` into `dest`.
fn deploy_from(env: &TestEnv, artifacts: &Path, port: &Path, dest: &str) -> Command {
    let mut deploy = env.host();
    deploy.arg("deploy").arg("--port").arg(port).arg("--artifacts").arg(artifacts).args(["--dest", dest]);
    deploy
}

/// `ktap-host deploy` of the built agent and module over the serial `port` into `dest`.
fn deploy_over(env: &TestEnv, port: &Path, dest: &str) -> Command {
    deploy_from(env, env.artifacts.agent.parent().unwrap(), port, dest)
}

/// An artifacts directory naming the built agent and the first half of the built module: a file
/// whose section headers lie past its end, which the kernel's module loader refuses (`ENOEXEC`).
fn truncated_module_artifacts(env: &TestEnv) -> PathBuf {
    let dir = scratch_dir("deploy-truncated");
    let module = std::fs::read(&env.artifacts.module).expect("the built module");
    let cut = dir.join("ktap.ko");
    std::fs::write(&cut, &module[..module.len() / 2]).unwrap();
    let a = &env.artifacts;
    let text = format!(
        "board = {:?}\nkernel_release = {:?}\nkernel_package_version = {:?}\nkernel = {:?}\n\
         initramfs = {:?}\nvmlinux = {:?}\nmodule = {:?}\nagent = {:?}\n",
        a.board, a.kernel_release, a.kernel_package_version, a.kernel, a.initramfs, a.vmlinux, cut, a.agent
    );
    std::fs::write(dir.join("artifacts.toml"), text).unwrap();
    dir
}

#[test]
fn deploy_over_serial_installs_agent_and_module_and_the_trace_runs_on_them() {
    let env = TestEnv::get();
    let mut guest = env.boot();
    remove_module(&mut guest);
    let port = guest.agent_port().to_owned();

    // without the module, a push says what is missing
    let mut push = env.push(&port);
    push.arg(&env.kprobe_case(1).script);
    let (status, _, err) = HostRun::spawn(push).finish(T);
    assert!(!status.success() && err.contains("is the ktap module loaded?"), "{err}");

    // a module file the kernel refuses: the refusal and the kernel's errno, nothing loaded
    let bad = truncated_module_artifacts(&env);
    let (status, _, err) = HostRun::spawn(deploy_from(&env, &bad, &port, "/tmp/bad")).finish(T);
    assert!(!status.success(), "deploy of a truncated module succeeded:\n{err}");
    assert!(err.contains("the kernel refused to load the module: ENOEXEC (errno 8)"), "{err}");
    let modules = guest.console.run_ok("grep -c '^ktap ' /proc/modules; true", T).unwrap();
    assert!(modules.lines().any(|l| l.trim() == "0"), "a module is loaded after the refusal:\n{modules}");

    let dest = "/tmp/fresh/ktap";
    let (status, _, err) = HostRun::spawn(deploy_over(&env, &port, dest)).finish(T);
    assert!(status.success(), "deploy failed: {status}\n{err}");
    assert!(err.contains(&format!("installed {dest}/ktap.ko")) && err.contains("sent packed"), "{err}");
    assert!(err.contains(&format!("module loaded from {dest}/ktap.ko")), "{err}");
    check_installed(&env, &mut guest, dest);

    // the deployed module traces through the running agent ...
    env.count_exactly(&mut guest, env.push(&port), 300);

    // ... and through the deployed agent, started in place of init's
    let dev = &env.board.agent.device;
    let baud = env.board.agent.baud;
    guest
        .console
        .run_ok("killall ktap-agent; while pidof ktap-agent >/dev/null; do usleep 50000; done", T)
        .unwrap();
    guest
        .console
        .run_ok(&format!("setsid {dest}/ktap-agent {dev} --baud {baud} >/tmp/deployed.log 2>&1 & true"), T)
        .unwrap();
    env.count_exactly(&mut guest, env.push(&port), 300);
    let running = guest.console.run_ok("cat /proc/$(pidof ktap-agent)/cmdline | tr '\\0' ' '", T).unwrap();
    assert!(running.contains(&format!("{dest}/ktap-agent")), "{running}");

    // a second deploy replaces the loaded module (the module load step, again, with one in place)
    let (status, _, err) = HostRun::spawn(deploy_over(&env, &port, dest)).finish(T);
    assert!(status.success() && err.contains("module loaded"), "second deploy failed: {status}\n{err}");
    check_installed(&env, &mut guest, dest);
    let dmesg = guest.console.run_ok("dmesg", T).unwrap();
    let bad = ktap_e2e::kernel_complaints(&dmesg);
    assert!(bad.is_empty(), "kernel complained:\n{}", bad.join("\n"));
    guest.shutdown();
}

#[test]
fn deploy_over_ssh_through_the_agent_loads_the_module_in_the_guest() {
    let env = TestEnv::get();
    let sshd = Sshd::start(&scratch_dir("sshd-deploy"));
    let mut guest = env.boot();
    remove_module(&mut guest);
    // the remote command bridges ssh's stdio to the guest's agent UART (the guest has no network)
    let bridge = format!("{} stdio {}", env!("CARGO_BIN_EXE_link_relay"), guest.agent_port().display());
    let dest = "/tmp/over-ssh";
    let mut deploy = env.host();
    deploy
        .arg("deploy")
        .args(sshd.host_args())
        .args(["--via", "agent", "--agent-command", &bridge])
        .arg("--artifacts")
        .arg(env.artifacts.agent.parent().unwrap())
        .args(["--dest", dest]);
    let (status, _, err) = HostRun::spawn(deploy).finish(T);
    assert!(status.success(), "deploy --ssh --via agent failed: {status}\n{err}");
    assert!(err.contains(&format!("module loaded from {dest}/ktap.ko")), "{err}");
    check_installed(&env, &mut guest, dest);

    let mut push = env.host();
    push.arg("push")
        .args(sshd.host_args())
        .args(["--agent-command", &bridge, "--vmlinux"])
        .arg(&env.artifacts.vmlinux)
        .args(env.kprobe_opt_in());
    env.count_exactly(&mut guest, push, 300);
    guest.shutdown();
}
