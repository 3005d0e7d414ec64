//! The syscalls of `deploy` through the protocol (link, issue 6): create a file (and its
//! directories), write it, make it durable, give it its mode, rename it into place, remove it; and
//! replace the kernel module (`delete_module` + `finit_module`). Two backends like the rest of
//! [`super`]: rustix, and o32 numbers on MIPS.

use core::ffi::CStr;

use super::Fd;

/// A positive errno.
pub type Errno = i32;

/// File exists (`mkdir` of a directory that is already there).
pub const EEXIST: Errno = 17;
/// No such file (`delete_module` of a module that is not loaded).
pub const ENOENT: Errno = 2;
/// No space left on device (a write that wrote nothing).
pub const ENOSPC: Errno = 28;

/// Create every missing directory above the file `path` (mode 0755).
pub fn make_parents(path: &CStr) -> Result<(), Errno> {
    let bytes = path.to_bytes();
    let mut buf = [0u8; 256];
    for (i, b) in bytes.iter().enumerate().skip(1) {
        if *b != b'/' {
            continue;
        }
        let dir = buf.get_mut(..=i).ok_or(EEXIST)?;
        dir.copy_from_slice(bytes.get(..=i).unwrap_or(&[]));
        if let Some(last) = dir.last_mut() {
            *last = 0; // replaces the '/', terminating the directory's name
        }
        let dir = CStr::from_bytes_until_nul(dir).map_err(|_| EEXIST)?;
        match imp::mkdir(dir) {
            Ok(()) | Err(EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub use imp::{chmod_sync_close, create, load_module, rename, unlink};

#[cfg(not(target_arch = "mips"))]
mod imp {
    use core::ffi::CStr;

    use rustix::fd::{BorrowedFd, IntoRawFd};
    use rustix::fs::{AtFlags, CWD, Mode, OFlags};

    use super::{ENOENT, Errno, Fd};

    fn err(e: rustix::io::Errno) -> Errno {
        e.raw_os_error()
    }

    fn fd(raw: Fd) -> BorrowedFd<'static> {
        // SAFETY: only descriptors this module's callers opened and have not closed yet.
        unsafe { BorrowedFd::borrow_raw(raw) }
    }

    /// `mkdir(2)`, mode 0755.
    pub fn mkdir(path: &CStr) -> Result<(), Errno> {
        rustix::fs::mkdirat(CWD, path, Mode::from_raw_mode(0o755)).map_err(err)
    }

    /// Create (truncate) `path` for writing, mode 0600 until committed.
    pub fn create(path: &CStr) -> Result<Fd, Errno> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
        rustix::fs::openat(CWD, path, flags, Mode::from_raw_mode(0o600))
            .map(IntoRawFd::into_raw_fd)
            .map_err(err)
    }

    /// `fchmod` + `fsync`, then close: the content is on storage before the rename makes it visible.
    pub fn chmod_sync_close(raw: Fd, mode: u32) -> Result<(), Errno> {
        let r =
            rustix::fs::fchmod(fd(raw), Mode::from_raw_mode(mode)).and_then(|()| rustix::fs::fsync(fd(raw)));
        // SAFETY: the caller gives up `raw` here.
        unsafe { rustix::io::close(raw) };
        r.map_err(err)
    }

    /// `rename(2)`: atomic replacement of `to`.
    pub fn rename(from: &CStr, to: &CStr) -> Result<(), Errno> {
        rustix::fs::renameat(CWD, from, CWD, to).map_err(err)
    }

    /// `unlink(2)`.
    pub fn unlink(path: &CStr) -> Result<(), Errno> {
        rustix::fs::unlinkat(CWD, path, AtFlags::empty()).map_err(err)
    }

    /// Remove the module `name` if loaded (without waiting for users), then `finit_module` the file.
    pub fn load_module(name: &CStr, path: &CStr) -> Result<(), Errno> {
        match rustix::system::delete_module(name, OFlags::NONBLOCK.bits() as i32) {
            Ok(()) => {}
            Err(e) if err(e) == ENOENT => {}
            Err(e) => return Err(err(e)),
        }
        let file =
            rustix::fs::openat(CWD, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(err)?;
        rustix::system::finit_module(&file, c"", 0).map_err(err)
    }
}

#[cfg(target_arch = "mips")]
mod imp {
    use core::ffi::CStr;

    use super::super::mips_o32::syscall;
    use super::{ENOENT, Errno, Fd};

    /// o32 numbers (checked against linux-raw-sys's mips tables).
    mod nr {
        pub const CLOSE: u32 = 4006;
        pub const FCHMOD: u32 = 4094;
        pub const FSYNC: u32 = 4118;
        pub const DELETE_MODULE: u32 = 4129;
        pub const OPENAT: u32 = 4288;
        pub const MKDIRAT: u32 = 4289;
        pub const UNLINKAT: u32 = 4294;
        pub const RENAMEAT: u32 = 4295;
        pub const FINIT_MODULE: u32 = 4348;
    }
    const AT_FDCWD: usize = -100isize as usize;
    const O_WRONLY: usize = 1;
    const O_CREAT: usize = 0x100;
    const O_TRUNC: usize = 0x200;
    const O_NONBLOCK: usize = 0x80;
    const O_CLOEXEC: usize = 0x8_0000;

    /// `mkdir(2)`, mode 0755.
    pub fn mkdir(path: &CStr) -> Result<(), Errno> {
        // SAFETY: `path` is NUL-terminated and outlives the call.
        unsafe { syscall(nr::MKDIRAT, AT_FDCWD, path.as_ptr() as usize, 0o755, 0) }.map(|_| ())
    }

    /// Create (truncate) `path` for writing, mode 0600 until committed.
    pub fn create(path: &CStr) -> Result<Fd, Errno> {
        let flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
        // SAFETY: as above.
        unsafe { syscall(nr::OPENAT, AT_FDCWD, path.as_ptr() as usize, flags, 0o600) }.map(|fd| fd as Fd)
    }

    /// `fchmod` + `fsync`, then close.
    pub fn chmod_sync_close(fd: Fd, mode: u32) -> Result<(), Errno> {
        // SAFETY: no memory is passed.
        let r = unsafe { syscall(nr::FCHMOD, fd as usize, mode as usize, 0, 0) }
            .and_then(|_| unsafe { syscall(nr::FSYNC, fd as usize, 0, 0, 0) });
        // SAFETY: as above.
        let _ = unsafe { syscall(nr::CLOSE, fd as usize, 0, 0, 0) };
        r.map(|_| ())
    }

    /// `rename(2)`.
    pub fn rename(from: &CStr, to: &CStr) -> Result<(), Errno> {
        // renameat takes four arguments: dirfd, old, dirfd, new
        // SAFETY: both paths are NUL-terminated and outlive the call.
        unsafe { syscall(nr::RENAMEAT, AT_FDCWD, from.as_ptr() as usize, AT_FDCWD, to.as_ptr() as usize) }
            .map(|_| ())
    }

    /// `unlink(2)`.
    pub fn unlink(path: &CStr) -> Result<(), Errno> {
        // SAFETY: as above.
        unsafe { syscall(nr::UNLINKAT, AT_FDCWD, path.as_ptr() as usize, 0, 0) }.map(|_| ())
    }

    /// Remove the module `name` if loaded, then `finit_module` the file.
    pub fn load_module(name: &CStr, path: &CStr) -> Result<(), Errno> {
        // SAFETY: `name` is NUL-terminated and outlives the call.
        match unsafe { syscall(nr::DELETE_MODULE, name.as_ptr() as usize, O_NONBLOCK, 0, 0) } {
            Ok(_) => {}
            Err(ENOENT) => {}
            Err(e) => return Err(e),
        }
        // SAFETY: as above.
        let fd = unsafe { syscall(nr::OPENAT, AT_FDCWD, path.as_ptr() as usize, O_CLOEXEC, 0) }?;
        // SAFETY: the parameter string is an empty NUL-terminated literal.
        let r = unsafe { syscall(nr::FINIT_MODULE, fd, c"".as_ptr() as usize, 0, 0) };
        // SAFETY: no memory is passed.
        let _ = unsafe { syscall(nr::CLOSE, fd, 0, 0, 0) };
        r.map(|_| ())
    }
}
