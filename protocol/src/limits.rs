//! Hard limits shared by the compiler, the verifier and the VM. Changing one is a format change.

/// Maximum length in bytes of any string value (execname, keys, string constants).
pub const MAX_STR: usize = 64;
/// Maximum integer registers a function may declare.
pub const MAX_INT_REGS: u8 = 32;
/// Maximum string registers a function may declare.
pub const MAX_STR_REGS: u8 = 8;
/// Maximum arguments of one `printf` (and of one register list).
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
