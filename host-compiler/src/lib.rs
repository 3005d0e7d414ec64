//! ktap-host as a library: boards, the script compiler, vmlinux symbols, transports and formatting.
//! The `ktap-host` binary is a thin clap front end over these modules.

pub mod board;
pub mod format;
pub mod ktypes;
pub mod lang;
pub mod link;
pub mod qemu;
pub mod session;
pub mod sidecar;
pub mod sim;
pub mod textout;
pub mod vmlinux;
