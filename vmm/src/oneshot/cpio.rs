//! A minimal writer of "newc" cpio archives (the format Linux unpacks into its initramfs,
//! Documentation/driver-api/early-userspace/buffer-format.rst): directories and regular
//! files, owned by root, ending with the TRAILER!!! entry. Pure: bytes in, bytes out.

/// Builds one archive in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

impl Archive {
    /// Add a directory (mode 0755).
    pub fn dir(&mut self, path: &str) {
        self.entry(path.as_bytes(), S_IFDIR | 0o755, 2, &[]);
    }

    /// Add a regular file (mode 0644) holding `data`.
    pub fn file(&mut self, path: &str, data: &[u8]) {
        self.entry(path.as_bytes(), S_IFREG | 0o644, 1, data);
    }

    /// The archive, with its trailer, padded to a multiple of 512 bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(b"TRAILER!!!", 0, 1, &[]);
        self.bytes.resize(self.bytes.len().next_multiple_of(512), 0);
        self.bytes
    }

    fn entry(&mut self, name: &[u8], mode: u32, nlink: u32, data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name);
        self.bytes.push(0);
        self.pad4();
        self.bytes.extend_from_slice(data);
        self.pad4();
    }

    fn pad4(&mut self) {
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entry_has_newc_header_name_and_data_on_4_byte_boundaries() {
        let mut a = Archive::default();
        a.file("flint/argv", b"a b\0");
        let bytes = a.finish();
        assert_eq!(&bytes[..6], b"070701");
        let field = |i: usize| {
            let s = std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap();
            u32::from_str_radix(s, 16).unwrap()
        };
        assert_eq!(field(1), S_IFREG | 0o644);
        assert_eq!(field(6), 4, "filesize");
        assert_eq!(field(11), 11, "namesize counts the NUL");
        // 110-byte header + 11-byte name = 121, padded to 124.
        assert_eq!(&bytes[110..121], b"flint/argv\0");
        assert_eq!(&bytes[124..128], b"a b\0");
        assert_eq!(&bytes[128..134], b"070701", "the trailer follows");
    }

    #[test]
    fn archive_ends_with_trailer_and_is_padded_to_512() {
        let mut a = Archive::default();
        a.dir("flint");
        let bytes = a.finish();
        assert_eq!(bytes.len() % 512, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
    }
}
