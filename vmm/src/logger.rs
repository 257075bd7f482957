//! A minimal `log` backend: `flint: LEVEL: message` lines on stderr.
//!
//! Kept in-tree because flint needs one sink and one level, set once at start.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger;

/// Crates that report a guest's misbehaviour at error level, with no rate
/// limit (virtio-queue logs every out-of-range used-ring write): their
/// messages count as debug, so a hostile guest cannot flood stderr.
const GUEST_DRIVEN_TARGETS: &[&str] = &["virtio_queue"];

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let level = if GUEST_DRIVEN_TARGETS
            .iter()
            .any(|t| metadata.target().starts_with(t))
        {
            Level::Debug
        } else {
            metadata.level()
        };
        level <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            eprintln!("flint: {level}: {}", record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Install the logger at `level`; later calls only change the level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
