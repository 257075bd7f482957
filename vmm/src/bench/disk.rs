//! The passthrough disk table of `flint bench --disk-mib N`: sequential
//! write (then FLUSH / fdatasync) and read of a whole loop device
//! (`losetup --direct-io=on` over a file here), 8 KiB, 16 KiB and 1 MiB
//! requests at queue depth 1 and 32, four ways in one run:
//!
//! - native: this process, O_DIRECT on the device through io_uring with
//!   the same number of requests in flight;
//! - flint passthrough: the probe's `probe.blk-bench` on `--passthrough DEV`;
//! - flint file-backed: the same on a regular file of the same size on the
//!   host filesystem (flint's default cache=writeback, so the host page
//!   cache is in play and it can beat "native");
//! - QEMU microvm: the probe on virtio-blk with `cache=none,aio=io_uring`
//!   on the same device, where QEMU is installed.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use io_uring::{opcode, types, IoUring};

use super::figures::{flint_blk_rates, parse_blk_bench, GuestRates, Rates, BLK_DEPTHS, BLK_SIZES};

/// A loop device over a file, detached on drop.
struct LoopDev(String);

impl LoopDev {
    fn attach(file: &Path) -> Result<LoopDev, String> {
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(file)
            .output()
            .map_err(|e| format!("losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(LoopDev(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Rates per depth (BLK_DEPTHS) and size (BLK_SIZES).
type Table = [GuestRates; 2];

/// Prints the disk table.
pub(super) fn disk_figure(mib: u64, dir: &Path, probe: &Path, qemu: Option<&Path>) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("\ndisk table: skipped (needs root for a loop device)");
        return;
    }
    match rows(mib, dir, probe, qemu) {
        Ok(rows) => print_table(mib, &rows),
        Err(e) => println!("\ndisk table: skipped ({e})"),
    }
}

/// Rounds of the whole table; each cell is the median of its rounds.
const ROUNDS: usize = 3;

fn rows(
    mib: u64,
    dir: &Path,
    probe: &Path,
    qemu: Option<&Path>,
) -> Result<Vec<(&'static str, Table)>, String> {
    let backing = dir.join("disk-table-device.img");
    let file = dir.join("disk-table-file.img");
    allocate(&backing, mib)?;
    allocate(&file, mib)?;
    let dev = LoopDev::attach(&backing)?;
    let file_arg = format!("path={}", file.display());
    let mut rounds: Vec<Vec<(&'static str, Table)>> = Vec::new();
    // The contestants alternate within each round, so drift in the host's
    // storage speed hits them alike.
    for _ in 0..ROUNDS {
        let mut round = vec![("native O_DIRECT", native(Path::new(&dev.0), mib << 20)?)];
        round.push(("flint passthrough", flint_table(&["--passthrough", &dev.0])));
        round.push(("flint file (cache)", flint_table(&["--disk", &file_arg])));
        if let Some(q) = qemu {
            let mut t = [[None; 3]; 2];
            for (row, depth) in t.iter_mut().zip(BLK_DEPTHS) {
                *row = qemu_rates(q, probe, &dev.0, depth);
            }
            round.push(("qemu microvm", t));
        }
        rounds.push(round);
    }
    drop(dev);
    let _ = std::fs::remove_file(&backing);
    let _ = std::fs::remove_file(&file);
    Ok(medians(&rounds))
}

/// The probe's bench through flint at each depth.
fn flint_table(args: &[&str]) -> Table {
    let mut t = [[None; 3]; 2];
    for (row, depth) in t.iter_mut().zip(BLK_DEPTHS) {
        *row = flint_blk_rates(args, depth).unwrap_or([None; 3]);
    }
    t
}

/// Cell by cell, the median over the rounds (of those that produced one).
fn medians(rounds: &[Vec<(&'static str, Table)>]) -> Vec<(&'static str, Table)> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    let median = |mut v: Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let mut out = first.clone();
    for (c, (_, table)) in out.iter_mut().enumerate() {
        for (d, row) in table.iter_mut().enumerate() {
            for (i, cell) in row.iter_mut().enumerate() {
                let cells = rounds.iter().filter_map(|r| r[c].1[d][i]);
                let (w, r): (Vec<f64>, Vec<f64>) = cells.map(|x| (x.write, x.read)).unzip();
                *cell = median(w)
                    .zip(median(r))
                    .map(|(write, read)| Rates { write, read });
            }
        }
    }
    out
}

/// A file of `mib` MiB, allocated (written), so no run pays for allocation.
fn allocate(path: &Path, mib: u64) -> Result<(), String> {
    use std::os::unix::fs::FileExt as _;
    let err = |e: io::Error| format!("{}: {e}", path.display());
    let f = File::create(path).map_err(err)?;
    let chunk = vec![0u8; 1 << 20];
    for i in 0..mib {
        f.write_all_at(&chunk, i << 20).map_err(err)?;
    }
    f.sync_all().map_err(err)
}

/// The probe under QEMU microvm on `dev` (cache=none, aio=io_uring).
fn qemu_rates(qemu: &Path, probe: &Path, dev: &str, depth: u64) -> GuestRates {
    let mut cmd: Vec<OsString> = super::qemu_cmd(qemu, probe, 64);
    let drive = format!("file={dev},if=none,id=d0,format=raw,cache=none,aio=io_uring");
    let append = format!("probe.virtio=1 probe.blk-bench=1 probe.blk-bench-qd={depth}");
    for a in [
        "-global",
        "virtio-mmio.force-legacy=false",
        "-drive",
        &drive,
        "-device",
        "virtio-blk-device,drive=d0",
        "-append",
        &append,
    ] {
        cmd.push(a.into());
    }
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(out) => parse_blk_bench(&String::from_utf8_lossy(&out.stdout)),
        Err(_) => [None; 3],
    }
}

/// Native sequential passes over the device at each depth and size.
fn native(dev: &Path, bytes: u64) -> Result<Table, String> {
    let err = |e: io::Error| format!("{}: {e}", dev.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .map_err(err)?;
    let mut t = [[None; 3]; 2];
    for (row, depth) in t.iter_mut().zip(BLK_DEPTHS) {
        for (cell, &size) in row.iter_mut().zip(&BLK_SIZES) {
            let pass = Pass {
                bytes,
                size,
                depth: depth as usize,
            };
            let write = pass.run(&file, Direction::Write).map_err(err)?;
            let read = pass.run(&file, Direction::Read).map_err(err)?;
            *cell = Some(Rates { write, read });
        }
    }
    Ok(t)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Write,
    Read,
}

/// One sequential pass: `bytes` in `size` requests, `depth` in flight.
#[derive(Clone, Copy)]
struct Pass {
    bytes: u64,
    size: usize,
    depth: usize,
}

impl Pass {
    /// Bytes per second (a write pass includes its fdatasync).
    fn run(&self, file: &File, direction: Direction) -> io::Result<f64> {
        let mut ring = IoUring::new(64)?;
        // Requests in flight use the buffer's slots in turn (the data is
        // not checked); 4 KiB-aligned for O_DIRECT.
        let mut buf = vec![0x5au8; self.size * self.depth + 4096];
        let start_at = buf.as_ptr().align_offset(4096);
        let base = buf[start_at..].as_mut_ptr();
        let count = self.bytes.div_ceil(self.size as u64);
        let (mut submitted, mut done) = (0u64, 0u64);
        let start = Instant::now();
        while done < count {
            while submitted < count && submitted - done < self.depth as u64 {
                let offset = submitted * self.size as u64;
                let len = (self.bytes - offset).min(self.size as u64) as u32;
                let slot = (submitted % self.depth as u64) as usize * self.size;
                // SAFETY: slot + len <= size * depth, inside `buf` past the aligned start.
                let ptr = unsafe { base.add(slot) };
                let fd = types::Fd(file.as_raw_fd());
                let sqe = match direction {
                    Direction::Write => opcode::Write::new(fd, ptr, len).offset(offset).build(),
                    Direction::Read => opcode::Read::new(fd, ptr, len).offset(offset).build(),
                }
                .user_data(u64::from(len));
                // SAFETY: `buf` and `file` outlive the pass, which reaps every
                // submitted request before returning.
                while unsafe { ring.submission().push(&sqe) }.is_err() {
                    ring.submit()?;
                }
                submitted += 1;
            }
            ring.submit_and_wait(1)?;
            let results: Vec<(i32, u64)> = ring
                .completion()
                .map(|c| (c.result(), c.user_data()))
                .collect();
            for (result, wanted) in results {
                done += 1;
                if i64::from(result) != wanted as i64 {
                    // Reap the rest before `buf` goes away.
                    while done < submitted {
                        ring.submit_and_wait(1)?;
                        done += ring.completion().count() as u64;
                    }
                    return Err(if result < 0 {
                        io::Error::from_raw_os_error(-result)
                    } else {
                        io::Error::other("short transfer")
                    });
                }
            }
        }
        if direction == Direction::Write {
            file.sync_data()?;
        }
        Ok(self.bytes as f64 / start.elapsed().as_secs_f64())
    }
}

fn print_table(mib: u64, rows: &[(&'static str, Table)]) {
    println!(
        "\ndisk table: {mib} MiB loop device (--direct-io=on), sequential, median of {ROUNDS} \
         rounds, MB/s and % of native (flint file goes through the host page cache):"
    );
    for (what, pick) in [
        ("write (+FLUSH)", (|r: &Rates| r.write) as fn(&Rates) -> f64),
        ("read", |r: &Rates| r.read),
    ] {
        print!("  {what:<15} {:>3}", "qd");
        for (name, _) in rows {
            print!(" {name:>22}");
        }
        println!();
        for (d, depth) in BLK_DEPTHS.iter().enumerate() {
            for (i, size) in BLK_SIZES.iter().enumerate() {
                let label = if *size >= 1 << 20 {
                    format!("{} MiB", size >> 20)
                } else {
                    format!("{} KiB", size >> 10)
                };
                print!("  {label:<15} {depth:>3}");
                let native = rows[0].1[d][i].as_ref().map(pick);
                for (_, table) in rows {
                    match (table[d][i].as_ref().map(pick), native) {
                        (Some(v), Some(n)) => {
                            print!(" {:>12.1} ({:>5.1} %)", v / 1e6, 100.0 * v / n)
                        }
                        _ => print!(" {:>22}", "failed"),
                    }
                }
                println!();
            }
        }
    }
}
