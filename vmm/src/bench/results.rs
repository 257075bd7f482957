//! The `--json` file of `flint bench` (schema `flint-bench/1`, documented
//! in the README's Benchmark section): metadata, every raw sample per
//! phase with its summary, each run's marks, the peers, `--concurrent` and
//! `--compare` results; and reading one back as a `--compare` baseline.

use std::path::Path;

use super::args::GuestSpec;
use super::json::{Json, JsonError};
use super::phases::{samples_json, RunSample, Series, PHASES};

/// The `schema` value of the files this version writes and reads.
pub const SCHEMA: &str = "flint-bench/1";

/// Why a baseline cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Unreadable file.
    #[error("--compare {0}: cannot read it")]
    Read(String, #[source] std::io::Error),
    /// Not JSON.
    #[error("--compare {0}: not a flint bench JSON file")]
    Parse(String, #[source] JsonError),
    /// JSON of another kind or version.
    #[error("--compare {0}: schema is {1:?}, expected {SCHEMA:?}")]
    Schema(String, String),
}

/// What the metadata records about this session.
pub struct Meta<'a> {
    /// The guest.
    pub guest: &'a GuestSpec,
    /// Measured runs per contestant.
    pub runs: u64,
    /// Warm-up runs per contestant.
    pub warmup: u64,
    /// flint runs that failed.
    pub failures: usize,
    /// `--debug-delay-ms`.
    pub debug_delay_ms: u64,
}

/// The metadata object.
pub fn metadata(m: &Meta<'_>) -> Json {
    let g = m.guest;
    let initrd = g
        .initrd
        .as_ref()
        .map_or(Json::Null, |p| Json::str(p.display().to_string()));
    Json::obj([
        ("flint_version", Json::str(env!("CARGO_PKG_VERSION"))),
        ("date", Json::str(utc_now())),
        ("host_cpu", Json::str(cpu_model())),
        ("host_cpus", Json::Num(host_cpus() as f64)),
        ("kernel", Json::str(g.kernel_name.as_str())),
        ("initrd", initrd),
        ("cmdline", Json::str(g.full_cmdline())),
        ("mem_mib", Json::Num(g.mem as f64)),
        ("vcpus", Json::Num(f64::from(g.vcpus))),
        ("runs", Json::Num(m.runs as f64)),
        ("warmup", Json::Num(m.warmup as f64)),
        ("failures", Json::Num(m.failures as f64)),
        ("debug_delay_ms", Json::Num(m.debug_delay_ms as f64)),
    ])
}

/// The `phases` object: each phase's samples and summary, µs.
pub fn phases_json(s: &Series) -> Json {
    Json::obj(
        PHASES
            .iter()
            .map(|p| (p.key, samples_json(s.samples(p.key)))),
    )
}

/// The whole file, from its parts (`null` for what this session did not do).
pub struct Document {
    /// [`metadata`].
    pub metadata: Json,
    /// flint's runs.
    pub flint: Series,
    /// One entry per peer.
    pub peers: Json,
    /// `--concurrent`, or null.
    pub concurrent: Json,
    /// `--compare`, or null.
    pub comparison: Json,
}

impl Document {
    /// The JSON value of the file.
    pub fn to_json(&self) -> Json {
        Json::obj([
            ("schema", Json::str(SCHEMA)),
            (
                "units",
                Json::obj([("time", Json::str("us")), ("memory", Json::str("KiB"))]),
            ),
            ("metadata", self.metadata.clone()),
            ("phases", phases_json(&self.flint)),
            ("peak_rss_kib", samples_json(&self.flint.rss_kib)),
            (
                "runs",
                Json::Arr(self.flint.runs.iter().map(RunSample::to_json).collect()),
            ),
            ("peers", self.peers.clone()),
            ("concurrent", self.concurrent.clone()),
            ("comparison", self.comparison.clone()),
        ])
    }
}

/// A baseline read back: flint's series and the metadata.
pub struct Baseline {
    /// The file, as given.
    pub path: String,
    /// Its `metadata`.
    pub metadata: Json,
    /// Its samples and runs.
    pub series: Series,
}

/// Read a `--json` file written by this or a compatible version.
pub fn read_baseline(path: &Path) -> Result<Baseline, BaselineError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| BaselineError::Read(name.clone(), e))?;
    let doc = Json::parse(&text).map_err(|e| BaselineError::Parse(name.clone(), e))?;
    let schema = doc.get("schema").and_then(Json::as_str).unwrap_or("none");
    if schema != SCHEMA {
        return Err(BaselineError::Schema(name, schema.to_string()));
    }
    let phases = doc.get("phases").map_or(&[][..], Json::members);
    let samples = |v: &Json| v.get("samples").map(Json::numbers).unwrap_or_default();
    let series = Series {
        runs: match doc.get("runs") {
            Some(Json::Arr(runs)) => runs.iter().map(RunSample::from_json).collect(),
            _ => Vec::new(),
        },
        phases: phases
            .iter()
            .map(|(k, v)| (k.clone(), samples(v)))
            .collect(),
        rss_kib: doc.get("peak_rss_kib").map(samples).unwrap_or_default(),
    };
    Ok(Baseline {
        path: name,
        metadata: doc.get("metadata").cloned().unwrap_or(Json::Null),
        series,
    })
}

/// Write `doc` to `path`.
pub fn write(path: &Path, doc: &Document) -> Result<(), String> {
    std::fs::write(path, doc.to_json().pretty())
        .map_err(|e| format!("--json {}: {e}", path.display()))
}

/// The host CPU's model name from /proc/cpuinfo.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// CPUs this process may run on.
pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Now, as `YYYY-MM-DDThh:mm:ssZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Seconds since the epoch as an RFC 3339 UTC time (days to civil date
/// by Howard Hinnant's algorithm).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn a_written_document_reads_back_as_a_baseline() {
        let runs: Vec<RunSample> = (0..3)
            .map(|i| RunSample::external(100.0 + f64::from(i), 2048.0))
            .collect();
        let doc = Document {
            metadata: Json::obj([("runs", Json::Num(3.0))]),
            flint: Series::of(&runs),
            peers: Json::Arr(Vec::new()),
            concurrent: Json::Null,
            comparison: Json::Null,
        };
        let dir = std::env::temp_dir().join(format!("flint-results-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.json");
        write(&path, &doc).unwrap();
        let b = read_baseline(&path).unwrap();
        assert_eq!(b.series.samples("whole_process"), [100.0, 101.0, 102.0]);
        assert_eq!(b.series.runs.len(), 3);
        assert_eq!(b.series.rss_kib, [2048.0; 3]);
        std::fs::write(&path, "{\"schema\":\"other/2\"}").unwrap();
        assert!(matches!(
            read_baseline(&path),
            Err(BaselineError::Schema(..))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
