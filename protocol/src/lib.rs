//! The contract between `ktap-host`, the target agent and the kernel VM.
//!
//! - [`isa`]: the instruction set, defined once as a table that the encoder, decoder, disassembler and
//!   verifier all read.
//! - [`image`]: the program image the host compiles and the kernel verifies (little-endian on every board).
//! - [`record`]: what the VM emits per event: ids and raw values, never text.
//! - [`wire`]: postcard messages between host and agent, with a version handshake.
//! - [`kdev`]: the `/dev/ktap` ioctl interface between the agent and the kernel module.
//! - [`frame`]: COBS framing with a CRC-32 per frame, resynchronising after garbage.
//! - `pack` (feature `pack`): DEFLATE (miniz_oxide) for bulk transfers: packed on the host, unpacked as a stream on
//!   the board with a fixed window, length and CRC checked.
//! - `asm` (feature `alloc`): the text assembler that `ktap-host asm` and the verifier tests use.
//!
//! Everything here is `no_std`, allocation-free unless the `alloc` feature is on, and panic-free on the
//! paths the kernel uses (decoding and record writing): indexing goes through `get`, arithmetic is checked.
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
pub mod asm;
pub mod bytes;
pub mod frame;
pub mod image;
pub mod isa;
pub mod kdev;
pub mod limits;
#[cfg(feature = "pack")]
pub mod pack;
pub mod record;
pub mod wire;
