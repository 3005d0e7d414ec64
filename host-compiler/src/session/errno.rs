//! Errno names for the numbers a board reports (attach failures, kernel errors).
//!
//! Linux numbers 1..=34 are the same on every architecture; above that MIPS has its own table, the
//! others (ARM, AArch64, PowerPC, x86) use the generic one. The board's `uname -m` picks the table.

/// The symbolic name of `errno` (sign ignored) on a board whose `uname -m` is `machine`.
pub fn name(machine: &str, errno: i32) -> Option<&'static str> {
    let n = errno.unsigned_abs();
    if let Some(s) = COMMON.get(n.wrapping_sub(1) as usize).filter(|_| n >= 1) {
        return Some(s);
    }
    let table = if machine.starts_with("mips") { MIPS } else { GENERIC };
    table.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

/// `ENOENT (errno 2)`, or `errno 200` when the number has no name here.
pub fn describe(machine: &str, errno: i32) -> String {
    let n = errno.unsigned_abs();
    match name(machine, errno) {
        Some(s) => format!("{s} (errno {n})"),
        None => format!("errno {n}"),
    }
}

const COMMON: [&str; 34] = [
    "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD", "EAGAIN",
    "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR", "EISDIR",
    "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EMLINK",
    "EPIPE", "EDOM", "ERANGE",
];

const GENERIC: &[(u32, &str)] = &[
    (35, "EDEADLK"),
    (36, "ENAMETOOLONG"),
    (37, "ENOLCK"),
    (38, "ENOSYS"),
    (39, "ENOTEMPTY"),
    (40, "ELOOP"),
    (61, "ENODATA"),
    (62, "ETIME"),
    (75, "EOVERFLOW"),
    (84, "EILSEQ"),
    (95, "EOPNOTSUPP"),
    (110, "ETIMEDOUT"),
    (114, "EALREADY"),
    (115, "EINPROGRESS"),
    (125, "ECANCELED"),
    (524, "ENOTSUPP"),
];

const MIPS: &[(u32, &str)] = &[
    (45, "EDEADLK"),
    (46, "ENOLCK"),
    (61, "ENODATA"),
    (62, "ETIME"),
    (78, "ENAMETOOLONG"),
    (79, "EOVERFLOW"),
    (88, "EILSEQ"),
    (89, "ENOSYS"),
    (90, "ELOOP"),
    (93, "ENOTEMPTY"),
    (122, "EOPNOTSUPP"),
    (145, "ETIMEDOUT"),
    (149, "EALREADY"),
    (150, "EINPROGRESS"),
    (158, "ECANCELED"),
    (524, "ENOTSUPP"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_architecture() {
        assert_eq!(name("armv7l", -22), Some("EINVAL"));
        assert_eq!(name("mips", 22), Some("EINVAL"));
        assert_eq!(name("armv7l", -38), Some("ENOSYS"));
        assert_eq!(name("mips", -89), Some("ENOSYS"));
        assert_eq!(name("aarch64", -95), Some("EOPNOTSUPP"));
        assert_eq!(name("armv7l", 0), None);
        assert_eq!(describe("armv7l", -2), "ENOENT (errno 2)");
        assert_eq!(describe("armv7l", -4000), "errno 4000");
    }
}
