//! [`Tap`]: a Linux tap interface as a [`NetBackend`], with the 12-byte
//! virtio-net header on every frame so checksum and segmentation offloads
//! pass between the guest and the host stack untouched.
//!
//! Serves the host side of virtio 1.2 §5.1.6 through the kernel's tun
//! driver (Documentation/networking/tuntap.rst): TUNSETIFF with IFF_TAP,
//! IFF_NO_PI and IFF_VNET_HDR; TUNSETVNETHDRSZ 12 (`virtio_net_hdr_v1`,
//! whose num_buffers field the tap skips); TUNSETOFFLOAD from the
//! negotiated GUEST_* features. Frames go out with one writev straight
//! from guest memory and come in with one read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use vm_memory::volatile_memory::PtrGuard;

use super::backend::{NetBackend, Offloads, TxFrame};
use super::{HEADER_LEN, RX_BUFFER_LEN};

/// The tun/tap control device.
const TUN_PATH: &str = "/dev/net/tun";
/// Bytes in an interface name, NUL included.
const IFNAMSIZ: usize = 16;
/// Most guest-memory slices one writev takes; a frame in more pieces is
/// copied into a buffer first.
const MAX_IOVECS: usize = 64;
/// Every offload a tap can take for the guest.
const ALL_OFFLOADS: Offloads = Offloads {
    csum: true,
    tso4: true,
    tso6: true,
    ufo: false,
};

/// The part of `struct ifreq` TUNSETIFF uses: the name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(size_of::<IfReq>() == size_of::<libc::ifreq>());

/// Why a [`Tap`] could not be set up; each names the interface.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name does not fit an interface name.
    #[error("tap interface name {0:?} is longer than 15 bytes or has a NUL")]
    Name(String),
    /// /dev/net/tun could not be opened.
    #[error("cannot open /dev/net/tun for tap interface {name}")]
    OpenTun {
        /// The interface asked for.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// TUNSETIFF failed: no permission to create the interface (needs
    /// CAP_NET_ADMIN) or to attach to it (owner / group), or an interface
    /// of that name that is not a single-queue tap.
    #[error("cannot create or attach to tap interface {name}")]
    Attach {
        /// The interface asked for.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// TUNSETVNETHDRSZ failed.
    #[error("cannot set the virtio-net header size on tap interface {name}")]
    VnetHeader {
        /// The interface.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// TUNSETOFFLOAD failed where it should not.
    #[error("cannot set offloads on tap interface {name}")]
    Offloads {
        /// The interface.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A tap interface opened non-blocking with a 12-byte virtio-net header.
///
/// Dropping it closes the descriptor; an interface the open created (not
/// persistent) disappears then.
pub struct Tap {
    file: File,
    name: String,
    offloads: bool,
    /// For frames in more than [`MAX_IOVECS`] pieces.
    bounce: Vec<u8>,
}

impl Tap {
    /// Attach to the tap interface `name`, creating it when there is none
    /// (which needs CAP_NET_ADMIN); a name with `%d` lets the kernel pick
    /// the number, and an empty name the whole name ([`name`](Tap::name)
    /// tells). The interface's address and link state are left to the
    /// host.
    pub fn open(name: &str) -> Result<Self, TapError> {
        if name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(TapError::Name(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(TUN_PATH)
            .map_err(|source| TapError::OpenTun {
                name: name.to_string(),
                source,
            })?;
        let name = set_iff(&file, name).map_err(|source| TapError::Attach {
            name: name.to_string(),
            source,
        })?;
        set_vnet_header_size(&file).map_err(|source| TapError::VnetHeader {
            name: name.clone(),
            source,
        })?;
        // Probe with every offload, then start with none until a driver
        // negotiates.
        let offloads = set_offload(&file, ALL_OFFLOADS).is_ok();
        set_offload(&file, Offloads::default()).map_err(|source| TapError::Offloads {
            name: name.clone(),
            source,
        })?;
        Ok(Self::with_file(file, name, offloads))
    }

    /// A tap over an already configured descriptor (tests use a socket).
    pub(super) fn with_file(file: File, name: String, offloads: bool) -> Self {
        Tap {
            file,
            name,
            offloads,
            bounce: vec![0; RX_BUFFER_LEN],
        }
    }

    /// The interface's name, as the kernel gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Write a frame in too many pieces through the bounce buffer.
    fn send_copy(&mut self, frame: &TxFrame<'_>) -> io::Result<()> {
        let n = frame.copy_to(&mut self.bounce).map_err(io::Error::other)?;
        let written = retry(|| (&self.file).write(&self.bounce[..n]))?;
        check_written(written, n)
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("name", &self.name)
            .field("fd", &self.file.as_raw_fd())
            .field("offloads", &self.offloads)
            .finish_non_exhaustive()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl NetBackend for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match retry(|| (&self.file).read(buf)) {
            // A tap never reads 0 bytes for a frame; treat it as none.
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, frame: &TxFrame<'_>) -> io::Result<()> {
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovecs = [empty; MAX_IOVECS];
        let mut guards: [Option<PtrGuard>; MAX_IOVECS] = [const { None }; MAX_IOVECS];
        let mut count = 0;
        for slice in frame.slices() {
            let slice = slice.map_err(io::Error::other)?;
            if count == MAX_IOVECS {
                return self.send_copy(frame);
            }
            let guard = slice.ptr_guard();
            iovecs[count] = libc::iovec {
                iov_base: guard.as_ptr().cast_mut().cast(),
                iov_len: guard.len(),
            };
            guards[count] = Some(guard);
            count += 1;
        }
        let written = retry(|| {
            // SAFETY: the first `count` (<= MAX_IOVECS) iovecs point into guest memory kept
            // mapped by `guards` and the borrow of `frame`; writev only reads them.
            let n = unsafe {
                libc::writev(self.file.as_raw_fd(), iovecs.as_ptr(), count as libc::c_int)
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })?;
        // `guards` lives to here.
        check_written(written, frame.len())
    }

    fn supports_offloads(&self) -> bool {
        self.offloads
    }

    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()> {
        if !self.offloads {
            // Nothing was ever turned on (see open).
            return Ok(());
        }
        set_offload(&self.file, offloads)
    }
}

/// Run `op` again while it is interrupted by a signal.
fn retry<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A tap takes a frame whole or not at all; a short count is an error.
fn check_written(written: usize, len: usize) -> io::Result<()> {
    match written == len {
        true => Ok(()),
        false => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("tap took {written} of {len} bytes"),
        )),
    }
}

/// TUNSETIFF: attach to or create `name`; returns the interface's name.
fn set_iff(file: &File, name: &str) -> io::Result<String> {
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        // The flags fit the 16-bit field (linux/if_tun.h).
        flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` has its layout
    // and is alive and writable for the call; the fd is open (borrowed).
    let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = req.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
    Ok(String::from_utf8_lossy(&req.name[..len]).into_owned())
}

/// TUNSETVNETHDRSZ: 12 bytes, `virtio_net_hdr_v1`.
fn set_vnet_header_size(file: &File) -> io::Result<()> {
    // HEADER_LEN is 12.
    let size = HEADER_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int from `size`, alive for the call;
    // the fd is open for the borrow of `file`.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETOFFLOAD: the TUN_F_* bits for `offloads`.
fn set_offload(file: &File, offloads: Offloads) -> io::Result<()> {
    let flags = [
        (offloads.csum, libc::TUN_F_CSUM),
        (offloads.tso4, libc::TUN_F_TSO4),
        (offloads.tso6, libc::TUN_F_TSO6),
        (offloads.ufo, libc::TUN_F_UFO),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |f, (_, flag)| f | flag);
    // SAFETY: TUNSETOFFLOAD takes its argument by value and touches no
    // memory of ours. The descriptor is open for the borrow of `file`.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
