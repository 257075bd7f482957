//! The bounce path (`bounce.rs`) on a real file opened with O_DIRECT:
//! requests whose buffers O_DIRECT cannot take as they are still land
//! intact and are counted; aligned ones go straight through; partial
//! blocks fail with IOERR. Skipped, with a note, where the filesystem
//! under the temporary directory refuses O_DIRECT.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use virtio_bindings::virtio_blk::{VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use vmm_sys_util::tempfile::TempFile;

use super::testing::*;
use super::*;
use crate::testing::{guest_memory, WRITE};

/// A 64 KiB file of zeros opened O_DIRECT, or `None` where O_DIRECT is refused.
fn direct_disk() -> Option<(TempFile, FileBackend)> {
    let tmp = TempFile::new_with_prefix(std::env::temp_dir().join("flint-bounce")).unwrap();
    tmp.as_file()
        .write_all_at(&[0; DISK_LEN as usize], 0)
        .unwrap();
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(tmp.as_path())
    {
        Ok(file) => file,
        Err(e) => {
            eprintln!("O_DIRECT refused in the temporary directory ({e}): test skipped");
            return None;
        }
    };
    Some((tmp, FileBackend::new(file, Access::ReadWrite).unwrap()))
}

/// A 4 KiB-aligned data area.
const BASE: u64 = (DATA + 0xfff) & !0xfff;

#[test]
fn misaligned_buffers_are_bounced_and_land_intact() {
    for engine in ENGINES {
        let mem = guest_memory();
        let Some((tmp, backend)) = direct_disk() else {
            return;
        };
        assert_eq!(backend.alignment(), 4096, "O_DIRECT on a file: 4 KiB");
        let mut rig = Rig::on(&mem, backend, engine);
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        // 1000 + 3096 bytes at odd addresses: valid virtio, not O_DIRECT.
        rig.put(BASE + 1, &data[..1000]);
        rig.put(BASE + 0x3001, &data[1000..]);
        let out = rig.request(
            VIRTIO_BLK_T_OUT,
            8,
            &[(BASE + 1, 1000, 0), (BASE + 0x3001, 3096, 0)],
        );
        assert_eq!(out.1, OK, "{engine:?}");
        assert_eq!(file_bytes(&tmp, 4096, 4096), data, "{engine:?}");
        assert_eq!(rig.block.bounced(), 1);

        let read = rig.request(
            VIRTIO_BLK_T_IN,
            8,
            &[(BASE + 0x5003, 2048, WRITE), (BASE + 0x7005, 2048, WRITE)],
        );
        assert_eq!(read.1, OK, "{engine:?}");
        let mut back = rig.get(BASE + 0x5003, 2048);
        back.extend(rig.get(BASE + 0x7005, 2048));
        assert_eq!(back, data, "{engine:?}");
        assert_eq!(rig.block.bounced(), 2);
    }
}

#[test]
fn aligned_requests_go_straight_through() {
    for engine in ENGINES {
        let mem = guest_memory();
        let Some((tmp, backend)) = direct_disk() else {
            return;
        };
        let mut rig = Rig::on(&mem, backend, engine);
        rig.put(BASE, &[0x5a; 8192]);
        let out = rig.request(VIRTIO_BLK_T_OUT, 16, &[(BASE, 8192, 0)]);
        assert_eq!(out.1, OK, "{engine:?}");
        assert_eq!(file_bytes(&tmp, 8192, 8192), vec![0x5a; 8192]);
        assert_eq!(rig.block.bounced(), 0, "{engine:?}");
    }
}

#[test]
fn partial_blocks_fail_with_ioerr_and_leave_the_disk_alone() {
    for engine in ENGINES {
        let mem = guest_memory();
        let Some((tmp, backend)) = direct_disk() else {
            return;
        };
        let mut rig = Rig::on(&mem, backend, engine);
        rig.put(BASE + 1, &[0x77; 512]);
        // 512 bytes at sector 1 of a disk with 4 KiB blocks.
        let out = rig.request(VIRTIO_BLK_T_OUT, 1, &[(BASE + 1, 512, 0)]);
        assert_eq!(out.1, IOERR, "{engine:?}");
        assert_eq!(file_bytes(&tmp, 0, 8192), vec![0; 8192], "{engine:?}");
    }
}
