//! `/dev/ktap` as a [`Device`]: the ioctls of `ktap_protocol::kdev`.
//!
//! The device is opened at the first load and closed after every unload, so it is held only while a
//! program is loaded: a second agent (another SSH session) can use it once this one's session ended,
//! and closing is also the kernel's disarm, whatever happened before.
//!
//! The same value installs files and replaces the module for `deploy` over the protocol
//! ([`Install`], through `sys::files`): the module can only be replaced while `/dev/ktap` is closed.

use core::ffi::c_void;

use ktap_agent::install::Install;
use ktap_agent::{Device, Errno, LoadError};
use ktap_protocol::kdev::{IOC_LOAD, IOC_START, IOC_STATS, IOC_STOP, IOC_UNLOAD, KStats, LoadArgs};
use ktap_protocol::wire::{MODULE_NAME, codes};

use crate::sys::{self, Access, Fd, errno};

/// The device node the kernel module creates.
pub const PATH: &core::ffi::CStr = c"/dev/ktap";

/// The kernel module's device, opened lazily.
#[derive(Debug, Default)]
pub struct Ktap {
    fd: Option<Fd>,
    /// The temporary file an install is writing.
    writing: Option<Fd>,
}

impl Ktap {
    /// Not opened yet.
    pub const fn new() -> Self {
        Ktap { fd: None, writing: None }
    }

    /// The open descriptor (to poll for records).
    pub fn fd(&self) -> Option<Fd> {
        self.fd
    }

    fn simple(&mut self, op: u32) -> Result<(), Errno> {
        let fd = self.fd.ok_or(errno::ENODEV)?;
        // SAFETY: START, STOP and UNLOAD take no argument.
        unsafe { sys::ioctl(fd, op, core::ptr::null_mut()) }.map(|_| ())
    }

    /// Close the device (the kernel disarms and frees whatever is still loaded).
    pub fn close(&mut self) {
        if let Some(fd) = self.fd.take() {
            sys::close(fd);
        }
    }
}

impl Device for Ktap {
    fn load(&mut self, image: &[u8]) -> Result<u16, LoadError> {
        let fd = match self.fd {
            Some(fd) => fd,
            None => {
                let fd = sys::open(PATH, Access::Device).map_err(|errno| LoadError::NoDevice { errno })?;
                self.fd = Some(fd);
                fd
            }
        };
        let mut args = LoadArgs {
            image: image.as_ptr() as usize as u64,
            len: u32::try_from(image.len()).unwrap_or(u32::MAX),
            ..LoadArgs::default()
        };
        // SAFETY: IOC_LOAD takes a LoadArgs, which outlives the call; `image` is borrowed across it.
        let r = unsafe { sys::ioctl(fd, IOC_LOAD, (&raw mut args).cast::<c_void>()) };
        match r {
            Ok(_) => Ok(u16::try_from(args.nprobes).unwrap_or(u16::MAX)),
            Err(e) if args.code != 0 => Err(LoadError::Refused {
                code: u16::try_from(args.code).unwrap_or(codes::KERNEL),
                offset: args.offset,
                detail: if args.detail != 0 { args.detail } else { -e },
            }),
            Err(e) => Err(LoadError::Refused { code: codes::KERNEL, offset: 0, detail: -e }),
        }
    }

    fn kallsyms(&mut self, feed: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), Errno> {
        sys::read_chunks(c"/proc/kallsyms", feed)
    }

    fn start(&mut self) -> Result<(), Errno> {
        self.simple(IOC_START)
    }

    fn stop(&mut self) -> Result<(), Errno> {
        self.simple(IOC_STOP)
    }

    fn stats(&mut self) -> Result<KStats, Errno> {
        let fd = self.fd.ok_or(errno::ENODEV)?;
        let mut k = KStats::default();
        // SAFETY: IOC_STATS fills a KStats, which outlives the call.
        unsafe { sys::ioctl(fd, IOC_STATS, (&raw mut k).cast::<c_void>()) }?;
        Ok(k)
    }

    fn read_records(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        let Some(fd) = self.fd else { return Ok(0) };
        loop {
            match sys::read(fd, buf) {
                Err(errno::EAGAIN) => return Ok(0),
                Err(errno::EINTR) => {}
                r => return r,
            }
        }
    }

    fn unload(&mut self) -> Result<(), Errno> {
        let r = self.simple(IOC_UNLOAD);
        self.close();
        r
    }
}

impl Install for Ktap {
    fn create(&mut self, tmp: &core::ffi::CStr) -> Result<(), Errno> {
        if let Some(fd) = self.writing.take() {
            sys::close(fd);
        }
        sys::files::make_parents(tmp)?;
        self.writing = Some(sys::files::create(tmp)?);
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), Errno> {
        let fd = self.writing.ok_or(errno::ENODEV)?;
        while !data.is_empty() {
            match sys::write(fd, data) {
                Ok(0) => return Err(sys::files::ENOSPC),
                Ok(n) => data = data.get(n..).unwrap_or(&[]),
                Err(errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn commit(&mut self, tmp: &core::ffi::CStr, path: &core::ffi::CStr, mode: u32) -> Result<(), Errno> {
        let fd = self.writing.take().ok_or(errno::ENODEV)?;
        sys::files::chmod_sync_close(fd, mode)?;
        sys::files::rename(tmp, path)
    }

    fn discard(&mut self, tmp: &core::ffi::CStr) {
        if let Some(fd) = self.writing.take() {
            sys::close(fd);
        }
        let _ = sys::files::unlink(tmp);
    }

    fn load_module(&mut self, path: &core::ffi::CStr) -> Result<(), Errno> {
        // the session unloaded any program; make sure the device is released too
        self.close();
        sys::files::load_module(MODULE_NAME, path)
    }
}
