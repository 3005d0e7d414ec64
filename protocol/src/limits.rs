//! Hard limits shared by the compiler, the verifier and the VM. Changing one is a format change.

/// Maximum length in bytes of any string value (execname, keys, string constants, stacks).
pub const MAX_STR: usize = 128;
/// Most kernel return addresses one `kstack` captures (8 bytes each, so they fit one string).
pub const MAX_STACK: usize = MAX_STR / 8;
/// Maximum components of a table key (`t[a, b, c, d]`).
pub const MAX_KEYS: usize = 4;
/// Maximum buckets of a linear aggregate (`lhist`); it also keeps an under and an over bucket.
pub const MAX_LINEAR_BUCKETS: u8 = 64;
/// Buckets of a log2 aggregate: bucket 0 holds values <= 0, bucket i holds [2^(i-1), 2^i).
pub const LOG2_BUCKETS: usize = 64;
/// Maximum memory one table's entries may take, in bytes (keys, values, buckets and index).
pub const MAX_TABLE_BYTES: usize = 8 << 20;
/// Maximum call depth: a probe handler plus this many nested calls.
pub const MAX_CALL_DEPTH: usize = 8;
/// The frame memory a program may declare (integer and string registers of every frame on the
/// deepest call path, see `image::frame_bytes`). Frames are preallocated, never on the kernel
/// stack, but the limit is the 8 KiB ARM32 kernel stack so a program never needs more frame memory
/// than the smallest kernel stack we run on.
pub const MAX_FRAME_BUDGET: u32 = 8192;
/// Shortest timer period (`tick-N`, `profile-N`) in nanoseconds: 1 ms, so a profile timer on
/// every CPU of a slow board costs at most a few percent.
pub const MIN_TIMER_PERIOD_NS: u64 = 1_000_000;
/// Longest timer period in nanoseconds: one hour.
pub const MAX_TIMER_PERIOD_NS: u64 = 3_600_000_000_000;
/// Maximum integer registers a function may declare.
pub const MAX_INT_REGS: u8 = 32;
/// Maximum string registers a function may declare.
pub const MAX_STR_REGS: u8 = 8;
/// Maximum arguments of one `printf` (and of one register list: call arguments, table keys).
pub const MAX_ARGS: usize = 8;
/// Maximum integer globals in one program.
pub const MAX_GLOBALS: u16 = 256;
/// Maximum tables in one program.
pub const MAX_TABLES: u16 = 16;
/// Maximum capacity (entries) of one table.
pub const MAX_TABLE_CAPACITY: u32 = 16384;
/// Capacity of a table whose script declares none.
pub const DEFAULT_TABLE_CAPACITY: u32 = 256;
/// Maximum probes in one program.
pub const MAX_PROBES: u16 = 64;
/// Maximum functions in one program.
pub const MAX_FUNCS: u16 = 256;
/// Maximum code size in bytes.
pub const MAX_CODE: usize = 64 * 1024;
/// Maximum size of a whole image in bytes.
pub const MAX_IMAGE: usize = 256 * 1024;
/// Maximum instructions executed by one probe hit, whatever the image asks for.
pub const MAX_BUDGET: u32 = 100_000;
/// Instructions one probe hit may execute when the image does not say.
pub const DEFAULT_BUDGET: u32 = 10_000;
/// Maximum length of one record in bytes. A record must fit one `Records` message in one frame
/// (checked below), so the agent never has to split or drop a well-formed record.
pub const MAX_RECORD: usize = 1000;
/// Maximum length of a probe's target name in bytes.
pub const MAX_PROBE_NAME: usize = 127;
/// Maximum length of the kernel build-id in bytes.
pub const MAX_BUILD_ID: usize = 64;

// A Records message is a variant byte, a varint length (at most 3 bytes) and the record bytes.
const _: () = assert!(MAX_RECORD + 4 <= crate::frame::MAX_PAYLOAD);
