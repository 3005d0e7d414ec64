//! The ktap VM: a pure verifier and a bounded, allocation-free interpreter.
//!
//! - [`verify`] turns a parsed [`ktap_protocol::image::Image`] into a [`Verified`] program or a
//!   [`VerifyError`] naming the problem and its byte offset in the image.
//! - [`Program::new`] allocates everything the program will use (globals, fixed-capacity tables, the
//!   register frame, a record buffer); [`Program::run`] runs one handler for one probe hit against an
//!   [`Env`] and never allocates.
//!
//! The same crate runs in the kernel module (through `ktap-module/glue`) and on the host (tests and
//! `ktap-host sim`).
//!
//! Architecture invariant: nothing here can panic. Indexing goes through `get`, arithmetic is wrapping
//! or checked, allocation is fallible (`try_reserve*`, see `fixed.rs`); the kernel build fails if the
//! linked object references the panic machinery.
#![no_std]
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::arithmetic_side_effects
    )
)]

extern crate alloc;

mod clears;
mod error;
mod fixed;
mod interp;
mod program;
mod table;
mod verified;
mod verify;

pub use error::{AllocFailed, RunError, VerifyError, describe_code};
pub use program::{Counters, Env, Program};
pub use verified::{AluOp, ArgList, Cond, FormatSpec, FuncInfo, Op, ProbeInfo, RegRange, StrBuf, Verified};
pub use verify::verify;
