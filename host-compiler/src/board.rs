//! Boards as data: one TOML file per board under `boards/`, parsed strictly (unknown keys are errors)
//! and then checked by named rules, so a typo in a board file is reported instead of ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading or validating a board file.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The board file could not be read.
    #[error("cannot read board file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for the board schema.
    #[error("board file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, with line and column.
        message: String,
    },
    /// A named validation rule failed.
    #[error("board file {path}: {rule}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The rule that failed.
        rule: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No board of that name exists.
    #[error("no board named `{name}` (known boards: {known})")]
    Unknown {
        /// The requested name.
        name: String,
        /// The boards found in the boards directory.
        known: String,
    },
}

/// CPU architecture of a board, as the compiler and the formatter need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 32-bit ARM (ARMv7, AAPCS).
    Arm,
    /// 64-bit ARM.
    Aarch64,
    /// 32-bit MIPS, o32 ABI.
    Mips,
    /// 32-bit PowerPC.
    Powerpc,
    /// 64-bit PowerPC, ELFv2.
    Powerpc64,
    /// x86_64.
    X86_64,
}

impl Arch {
    /// How many function arguments the calling convention passes in registers.
    pub fn register_args(self) -> u8 {
        match self {
            Arch::Arm | Arch::Mips => 4,
            Arch::X86_64 => 6,
            Arch::Aarch64 | Arch::Powerpc | Arch::Powerpc64 => 8,
        }
    }

    /// The ELF `e_machine` value of a vmlinux built for this arch.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Arm => 40,
            Arch::Aarch64 => 183,
            Arch::Mips => 8,
            Arch::Powerpc => 20,
            Arch::Powerpc64 => 21,
            Arch::X86_64 => 62,
        }
    }
}

/// Byte order of a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    /// Little-endian.
    Little,
    /// Big-endian.
    Big,
}

/// One board, as read from `boards/<name>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// The board's name; must equal the file stem.
    pub name: String,
    /// One line for `ktap-host boards`.
    pub description: String,
    /// CPU architecture.
    pub arch: Arch,
    /// Byte order.
    pub endian: Endian,
    /// Native word size in bits (32 or 64).
    pub word_bits: u8,
    /// How the agent is built and reached.
    pub agent: AgentSpec,
    /// The kernel the board runs and how modules are built for it.
    pub kernel: KernelSpec,
    /// How to emulate the board; absent for real hardware.
    pub qemu: Option<QemuSpec>,
    /// How the host reaches a real board's agent when `push`/`deploy` get no --port or --ssh.
    #[serde(default)]
    pub link: Option<LinkSpec>,
}

/// A real board's default transport (`[link]`): a serial port or an ssh target. Command-line
/// flags override it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Host-side serial device wired to the agent's UART (e.g. /dev/ttyUSB0).
    pub port: Option<String>,
    /// Line speed of `port` [default: the agent's baud].
    pub baud: Option<u32>,
    /// `port` is the board's login console (type the agent command at its shell prompt).
    #[serde(default)]
    pub console: bool,
    /// `[user@]host[:port]` for the system ssh.
    pub ssh: Option<String>,
    /// ssh/scp `-o` options.
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// The command that starts the agent over ssh or on the console.
    pub agent_command: Option<String>,
}

/// The target agent: its Rust target and the device it talks on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Rust target triple the static agent is built for.
    pub rust_target: String,
    /// Serial device on the board that the agent opens.
    pub device: String,
    /// Line speed of that device.
    pub baud: u32,
}

/// The board's kernel: where it comes from and how out-of-tree modules are built against it.
/// Either a Debian kernel (`debian_metapackage` and `flavour`) or one built from Debian's kernel
/// source (`[kernel.source]`), never both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// Debian metapackage whose dependency names the exact kernel ABI (e.g. `linux-image-armmp`).
    #[serde(default)]
    pub debian_metapackage: Option<String>,
    /// Debian architecture of the kernel packages, or of the cross C library (`libc6-dev-<arch>-cross`)
    /// when the kernel is built from source (e.g. `armhf`, `mips`).
    pub debian_arch: String,
    /// Debian kernel flavour (e.g. `armmp`), with `debian_metapackage`.
    #[serde(default)]
    pub flavour: Option<String>,
    /// Build the kernel from `linux-source-6.1` instead of using a Debian kernel.
    #[serde(default)]
    pub source: Option<SourceKernelSpec>,
    /// `ARCH=` for Kbuild.
    pub kbuild_arch: String,
    /// `CROSS_COMPILE=` prefix for Kbuild.
    pub cross_compile: String,
    /// Debian package providing the cross C compiler.
    pub cross_gcc_package: String,
    /// Rust target the VM object for the kernel module is built for.
    pub rust_target: String,
    /// Extra rustc flags for the kernel VM object.
    #[serde(default)]
    pub rustflags: Vec<String>,
    /// Set when kprobes and kretprobes can crash this kernel: what goes wrong. `push` then refuses
    /// scripts with kprobes unless the user opts in, and prints this as the warning.
    #[serde(default)]
    pub kprobe_hazard: Option<String>,
}

/// A kernel built from Debian's `linux-source-6.1`: `tinyconfig` plus a per-board fragment, for
/// boards Debian ships no kernel for (big-endian MIPS, 32-bit PowerPC). Their busybox is built
/// from Debian's busybox source as well, since those ports have no `busybox-static` either.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceKernelSpec {
    /// Kconfig fragment (`CONFIG_X=y` lines), relative to the boards directory. Every line must
    /// survive into the final `.config`; the builder names the ones Kconfig dropped.
    pub fragment: String,
    /// The file in the build tree QEMU boots with `-kernel` (`vmlinux`, `arch/powerpc/boot/uImage`).
    #[serde(default = "default_image")]
    pub image: String,
    /// Make targets besides `vmlinux` and `modules` that produce `image` (e.g. `uImage`).
    #[serde(default)]
    pub make_targets: Vec<String>,
}

fn default_image() -> String {
    "vmlinux".into()
}

impl KernelSpec {
    /// Where the kernel comes from; `None` only for a spec that did not pass [`Board`] validation.
    pub fn origin(&self) -> Option<KernelOrigin<'_>> {
        match (&self.source, &self.debian_metapackage, &self.flavour) {
            (Some(s), None, None) => Some(KernelOrigin::Source(s)),
            (None, Some(metapackage), Some(flavour)) => Some(KernelOrigin::Debian { metapackage, flavour }),
            _ => None,
        }
    }
}

/// Where a board's kernel comes from (see [`KernelSpec::origin`]).
#[derive(Debug, Clone, Copy)]
pub enum KernelOrigin<'a> {
    /// A Debian kernel package, resolved from its metapackage.
    Debian {
        /// `linux-image-<flavour>`.
        metapackage: &'a str,
        /// The Debian flavour the resolved ABI ends with.
        flavour: &'a str,
    },
    /// Built from `linux-source-6.1` with a fragment.
    Source(&'a SourceKernelSpec),
}

/// How QEMU emulates the board.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSpec {
    /// The `qemu-system-*` binary.
    pub binary: String,
    /// The Debian package providing it.
    pub package: String,
    /// `-M` argument.
    pub machine: String,
    /// `-cpu` argument.
    pub cpu: String,
    /// Number of CPUs.
    pub smp: u8,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Kernel console device name (first serial port).
    pub console: String,
    /// Further arguments, passed as they are.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra words for the guest kernel's command line, after the console and init settings.
    #[serde(default)]
    pub kernel_cmdline: Vec<String>,
}

impl Board {
    /// Parse and validate a board file.
    pub fn from_file(path: &Path) -> Result<Board, BoardError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| BoardError::Read { path: path.to_owned(), source })?;
        let board: Board = toml::from_str(&text)
            .map_err(|e| BoardError::Parse { path: path.to_owned(), message: e.to_string() })?;
        board.validate(path)?;
        Ok(board)
    }

    /// Load board `name` from a boards directory.
    pub fn load(boards_dir: &Path, name: &str) -> Result<Board, BoardError> {
        let path = boards_dir.join(format!("{name}.toml"));
        if !path.exists() {
            let known = list(boards_dir).unwrap_or_default().join(", ");
            return Err(BoardError::Unknown { name: name.to_owned(), known });
        }
        Board::from_file(&path)
    }

    /// Whether a program with `kprobes` kprobes and kretprobes may run on this board. `Ok(None)`: the
    /// kernel has no known kprobe hazard (or there are no kprobes). On a board with a
    /// `kernel.kprobe_hazard`: `Err` naming it unless `allow` (the user's opt-in), else `Ok(Some)` with
    /// the warning to print.
    pub fn kprobe_policy(&self, kprobes: usize, allow: bool) -> Result<Option<String>, String> {
        match &self.kernel.kprobe_hazard {
            Some(hazard) if kprobes > 0 => {
                if allow {
                    Ok(Some(format!(
                        "WARNING: {kprobes} kprobe(s) on {}, whose kernel may crash under kprobes: {hazard}. \
                         Tracepoints are safe there; keep processes from exiting while tracing.",
                        self.name
                    )))
                } else {
                    Err(format!(
                        "the program has {kprobes} kprobe(s), and kprobes can crash the kernel of board {}: \
                         {hazard}. Use tracepoints (`trace subsys:event`), or pass --allow-kprobe-hazard \
                         with a workload that never forks or exits",
                        self.name
                    ))
                }
            }
            _ => Ok(None),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), BoardError> {
        let invalid =
            |rule, message: String| Err(BoardError::Invalid { path: path.to_owned(), rule, message });
        if path.file_stem().and_then(|s| s.to_str()) != Some(self.name.as_str()) {
            return invalid("name-matches-file", format!("name `{}` differs from the file name", self.name));
        }
        if self.word_bits != 32 && self.word_bits != 64 {
            return invalid("word-bits", format!("word_bits is {}, expected 32 or 64", self.word_bits));
        }
        let arch_bits = match self.arch {
            Arch::Arm | Arch::Mips | Arch::Powerpc => 32,
            Arch::Aarch64 | Arch::Powerpc64 | Arch::X86_64 => 64,
        };
        if arch_bits != self.word_bits {
            return invalid("word-bits-match-arch", format!("{:?} is a {arch_bits}-bit arch", self.arch));
        }
        if self.agent.baud == 0 {
            return invalid("baud", "baud must be positive".into());
        }
        if !self.agent.device.starts_with("/dev/") {
            return invalid("agent-device", format!("`{}` is not a /dev path", self.agent.device));
        }
        let k = &self.kernel;
        match (&k.source, &k.debian_metapackage, &k.flavour) {
            _ if k.origin().is_some() => {}
            (Some(_), _, _) => {
                return invalid(
                    "kernel-origin",
                    "[kernel.source] builds the kernel: drop debian_metapackage and flavour".into(),
                );
            }
            _ => {
                return invalid(
                    "kernel-origin",
                    "the kernel needs debian_metapackage and flavour (a Debian kernel) or [kernel.source]"
                        .into(),
                );
            }
        }
        if let Some(s) = &k.source
            && (s.fragment.is_empty() || Path::new(&s.fragment).is_absolute() || s.fragment.contains(".."))
        {
            return invalid(
                "kernel-source-fragment",
                format!("fragment `{}` must be a path inside the boards directory", s.fragment),
            );
        }
        if let Some(l) = &self.link {
            let message = match (&l.port, &l.ssh) {
                (Some(_), Some(_)) => Some("[link] names both a port and an ssh target; keep one"),
                (None, None) => Some("[link] needs a port or an ssh target"),
                (None, Some(_)) if l.console => Some("[link] console = true needs a port"),
                _ if self.qemu.is_some() => Some(
                    "a QEMU board is reached through the pty of the guest it boots; [link] is for real boards",
                ),
                _ if l.baud == Some(0) => Some("[link] baud must be positive"),
                _ => None,
            };
            if let Some(m) = message {
                return invalid("link", m.into());
            }
            if let Some(t) = &l.ssh
                && let Err(e) = t.parse::<crate::link::SshTarget>()
            {
                return invalid("link", format!("[link] ssh = `{t}`: {e}"));
            }
        }
        if let Some(q) = &self.qemu
            && (q.smp == 0 || q.memory_mb < 64)
        {
            return invalid("qemu-size", "qemu needs smp >= 1 and memory_mb >= 64".into());
        }
        if let Some(q) = &self.qemu
            && let Some(w) = q.kernel_cmdline.iter().find(|w| w.is_empty() || w.contains(char::is_whitespace))
        {
            return invalid("qemu-cmdline-words", format!("kernel_cmdline entry `{w}` is not one word"));
        }
        Ok(())
    }
}

/// Names of all boards in a directory, sorted.
pub fn list(boards_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(boards_dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boards_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards")
    }

    #[test]
    fn every_board_file_validates() {
        let names = list(&boards_dir()).unwrap();
        assert!(names.contains(&"qemu-armv7".to_string()));
        for name in names {
            Board::load(&boards_dir(), &name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn unknown_key_is_an_error_with_its_name() {
        let dir = std::env::temp_dir().join(format!("ktap-board-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = std::fs::read_to_string(boards_dir().join("qemu-armv7.toml")).unwrap();
        let path = dir.join("qemu-armv7.toml");
        std::fs::write(&path, good.replace("word_bits = 32", "word_bits = 32\nwordbits = 32")).unwrap();
        let err = Board::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `wordbits`"), "{err}");
        std::fs::write(&path, good.replace("word_bits = 32", "word_bits = 64")).unwrap();
        let err = Board::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("word-bits-match-arch"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_kernel_comes_from_debian_or_from_source_never_both() {
        let dir = std::env::temp_dir().join(format!("ktap-board-origin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mips = Board::load(&boards_dir(), "qemu-mips").unwrap();
        match mips.kernel.origin() {
            Some(KernelOrigin::Source(s)) => {
                assert_eq!(s.fragment, "kernels/qemu-mips.config");
                assert_eq!(s.image, "vmlinux");
            }
            o => panic!("qemu-mips kernel origin {o:?}"),
        }
        let good = std::fs::read_to_string(boards_dir().join("qemu-mips.toml")).unwrap();
        let path = dir.join("qemu-mips.toml");
        let both = good.replace("[kernel]\n", "[kernel]\ndebian_metapackage = \"x\"\nflavour = \"y\"\n");
        std::fs::write(&path, both).unwrap();
        let err = Board::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("kernel-origin") && err.contains("drop debian_metapackage"), "{err}");
        let start = good.find("[kernel.source]").unwrap();
        let end = good[start..].find("[qemu]").unwrap() + start;
        std::fs::write(&path, format!("{}{}", &good[..start], &good[end..])).unwrap();
        let err = Board::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("kernel-origin") && err.contains("[kernel.source]"), "{err}");
        std::fs::write(&path, good.replace("kernels/qemu-mips.config", "../x.config")).unwrap();
        let err = Board::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("kernel-source-fragment"), "{err}");
        let armv7 = Board::load(&boards_dir(), "qemu-armv7").unwrap();
        assert!(matches!(armv7.kernel.origin(), Some(KernelOrigin::Debian { flavour: "armmp", .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_section_names_one_transport_of_a_real_board() {
        let dir = std::env::temp_dir().join(format!("ktap-board-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let real = std::fs::read_to_string(boards_dir().join("armv7.toml")).unwrap();
        let (head, _) = real.split_once("\n[link]\n").expect("armv7 names its default port");
        let path = dir.join("armv7.toml");
        let with = |link: &str| {
            std::fs::write(&path, format!("{head}\n[link]\n{link}\n")).unwrap();
            Board::from_file(&path)
        };
        let b = with("ssh = \"root@router:2222\"\nssh_options = [\"IdentityFile=k\"]").unwrap();
        let l = b.link.unwrap();
        assert_eq!((l.ssh.as_deref(), l.ssh_options.len(), l.port), (Some("root@router:2222"), 1, None));
        let b = with("port = \"/dev/ttyUSB3\"\nbaud = 57600\nconsole = true").unwrap();
        assert_eq!(b.link.unwrap().baud, Some(57600));
        for (bad, why) in [
            ("port = \"/dev/ttyUSB0\"\nssh = \"b\"", "both"),
            ("baud = 9600", "needs a port or an ssh target"),
            ("ssh = \"b\"\nconsole = true", "needs a port"),
            ("ssh = \"root@\"", "ssh = `root@`"),
            ("port = \"/dev/ttyUSB0\"\nspeed = 1", "unknown field `speed`"),
        ] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let qemu = std::fs::read_to_string(boards_dir().join("qemu-armv7.toml")).unwrap();
        let path = dir.join("qemu-armv7.toml");
        std::fs::write(&path, format!("{qemu}\n[link]\nport = \"/dev/pts/3\"\n")).unwrap();
        assert!(Board::from_file(&path).unwrap_err().to_string().contains("real boards"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kernel_cmdline_entries_are_single_words() {
        let dir = std::env::temp_dir().join(format!("ktap-board-cmdline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = std::fs::read_to_string(boards_dir().join("qemu-aarch64.toml")).unwrap();
        assert!(good.trim_end().lines().any(|l| l == "[qemu]") && !good.contains("kernel_cmdline ="));
        let path = dir.join("qemu-aarch64.toml");
        std::fs::write(&path, format!("{good}kernel_cmdline = [\"nokaslr\", \"quiet\"]\n")).unwrap();
        let board = Board::from_file(&path).unwrap();
        assert_eq!(board.qemu.unwrap().kernel_cmdline, ["nokaslr", "quiet"]);
        std::fs::write(&path, format!("{good}kernel_cmdline = [\"nokaslr quiet\"]\n")).unwrap();
        let err = Board::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("qemu-cmdline-words"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kprobes_on_a_hazardous_kernel_need_the_opt_in_and_warn() {
        let mips = Board::load(&boards_dir(), "qemu-mipsel").unwrap();
        assert_eq!(mips.kprobe_policy(0, false), Ok(None));
        let refused = mips.kprobe_policy(1, false).unwrap_err();
        assert!(
            refused.contains("--allow-kprobe-hazard") && refused.contains("kprobe_flush_task"),
            "{refused}"
        );
        let warned = mips.kprobe_policy(2, true).unwrap().unwrap();
        assert!(
            warned.starts_with("WARNING: 2 kprobe(s) on qemu-mipsel") && warned.contains("current_kprobe")
        );
        let arm = Board::load(&boards_dir(), "qemu-armv7").unwrap();
        assert_eq!(arm.kprobe_policy(3, false), Ok(None));
    }

    #[test]
    fn unknown_board_lists_known_ones() {
        let err = Board::load(&boards_dir(), "nope").unwrap_err().to_string();
        assert!(err.contains("qemu-armv7"), "{err}");
    }
}
