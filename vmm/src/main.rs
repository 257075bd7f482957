//! The `flint` binary: parse options, build and run the VM, write the boot
//! report, and exit with a code that says how the guest ended.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{CommandFactory, FromArgMatches};
use vmm::cli::{Cli, Command, RunArgs};
use vmm::config::{KernelSource, ReportSink, RunConfig};
use vmm::exit::{VmOutcome, EXIT_FLINT_ERROR};
use vmm::report::{BootTimeline, Phase, ReportInfo};

fn main() -> ExitCode {
    let main_entered = vmm::time::monotonic_ns();
    let start = Instant::now();
    // One malloc arena: a thread's first allocation otherwise maps (and
    // trims) a 64 MiB arena of its own, on the boot's critical path.
    // SAFETY: mallopt only changes allocator tuning; no allocation is in flight.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_FLINT_ERROR } else { 0 });
        }
    };
    match cli.command {
        Command::Run(mut args) => {
            let run_matches = matches.subcommand_matches("run");
            match run_matches.map(|m| vmm::cli::apply_config_file(&mut args, m)) {
                Some(Err(e)) => {
                    eprintln!("flint: error: {e}");
                    return ExitCode::from(EXIT_FLINT_ERROR);
                }
                Some(Ok(ignored)) if !ignored.is_empty() => eprintln!(
                    "flint: warning: --config: ignoring Firecracker sections flint does not use: {}",
                    ignored.join(", ")
                ),
                _ => {}
            }
            ExitCode::from(run(*args, main_entered, start))
        }
        Command::Bench(args) => ExitCode::from(vmm::bench::run(*args)),
    }
}

fn run(args: RunArgs, main_entered: u64, start: Instant) -> u8 {
    vmm::logger::init(args.log_level);
    let mut cfg = match RunConfig::try_from(args) {
        Ok(cfg) => cfg,
        Err(e) => return fail(&e),
    };
    if let Err(e) = vmm::oneshot::disks::attach(&mut cfg) {
        return fail(&e);
    }
    // Opened now: once the event loop's seccomp filter is on, flint opens no file.
    let report_out = match cfg.boot_report.as_ref().map(ReportOut::open).transpose() {
        Ok(out) => out,
        Err(e) => return fail(&e),
    };
    let timeline = Arc::new(BootTimeline::default());
    timeline.mark_at(Phase::MainEntered, main_entered);
    if !cfg.debug_delay.is_zero() {
        std::thread::sleep(cfg.debug_delay);
    }
    let vm = match vmm::builder::build(&cfg, timeline.clone()) {
        Ok(vm) => vm,
        Err(e) => return fail(&e),
    };
    let format = vm.boot.format.name();
    let deadline = cfg.timeout.map(|t| start + t);
    let (outcome, output_ends_line, disks) = {
        let _terminal = vmm::terminal::enter_raw_mode();
        match vm.run(deadline) {
            Ok(done) => (done.outcome, done.output_ends_line, done.disks),
            Err(e) => (VmOutcome::HostError(e.to_string()), true, Vec::new()),
        }
    };
    match &outcome {
        VmOutcome::Crash(what) => eprintln!("flint: guest crashed: {what}"),
        VmOutcome::Timeout => eprintln!(
            "flint: guest timed out after {:.3} s (--timeout)",
            start.elapsed().as_secs_f64()
        ),
        VmOutcome::HostError(what) => eprintln!("flint: error: {what}"),
        VmOutcome::GuestStatus(s) if *s > vmm::exit::MAX_GUEST_STATUS => {
            eprintln!("flint: guest exit status {s} is above 122 (codes 123-125 are flint's); exiting 122")
        }
        VmOutcome::PowerOff | VmOutcome::Reset if cfg.oneshot.is_some() => eprintln!(
            "flint: the guest stopped without an exit status: its kernel panicked or its init \
             died (--verbose shows the kernel's messages); exiting 123"
        ),
        _ => {}
    }
    let code = match outcome {
        // flint-init always writes the command's status; anything else is a crash.
        VmOutcome::PowerOff | VmOutcome::Reset if cfg.oneshot.is_some() => vmm::exit::EXIT_CRASH,
        _ => outcome.exit_code(),
    };
    if let Some(out) = report_out {
        let kernel = match &cfg.kernel {
            KernelSource::EmbeddedProbe => "embedded probe".to_string(),
            KernelSource::File(p) => p.display().to_string(),
        };
        let json = timeline.to_json(&ReportInfo {
            kernel: &kernel,
            kernel_format: format,
            outcome: &outcome,
            disks: &disks,
        });
        if let Err(e) = out.write(&json, output_ends_line) {
            eprintln!("flint: error: cannot write the boot report: {e}");
            vmm::teardown::exit_detached(EXIT_FLINT_ERROR);
        }
    }
    // Leave without waiting for KVM to destroy the VM (see teardown.rs).
    vmm::teardown::exit_detached(code)
}

/// Where the boot report goes, already open.
enum ReportOut {
    Stdout,
    File(std::fs::File, PathBuf),
}

impl ReportOut {
    /// Create (or truncate) the report file now; stdout needs nothing.
    fn open(sink: &ReportSink) -> std::io::Result<Self> {
        match sink {
            ReportSink::Stdout => Ok(ReportOut::Stdout),
            ReportSink::File(path) => std::fs::File::create(path)
                .map(|f| ReportOut::File(f, path.clone()))
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("--boot-report {}: {e}", path.display()))
                }),
        }
    }

    fn write(self, json: &str, output_ends_line: bool) -> std::io::Result<()> {
        match self {
            ReportOut::Stdout => {
                let mut out = std::io::stdout().lock();
                // The report gets a line of its own even after a guest that did not end its last line.
                let sep = if output_ends_line { "" } else { "\n" };
                writeln!(out, "{sep}{json}")?;
                out.flush()
            }
            ReportOut::File(mut file, path) => file
                .write_all(format!("{json}\n").as_bytes())
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
}

fn fail(e: &dyn std::error::Error) -> u8 {
    eprintln!("flint: error: {}", vmm::exit::error_chain(e));
    EXIT_FLINT_ERROR
}
