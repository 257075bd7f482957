//! Host twin of the probe's `probe.workload=<N>`: runs the same workload
//! source (images/probe/src/workload.rs) natively, so guest and host runs can
//! be compared. Usage: `workload <N>`; prints
//! `workload iterations=<N> cycles=<rdtsc delta> ns=<wall> result=0x<hex>`,
//! where `result` equals the probe's for the same N.

#[path = "../../probe/src/workload.rs"]
mod workload;

use std::process::ExitCode;
use std::time::Instant;

fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads the time-stamp counter; it has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    let Some(iterations) = arg.as_deref().and_then(|a| a.parse::<u64>().ok()) else {
        eprintln!("usage: workload <iterations>");
        return ExitCode::from(2);
    };
    let mut ws = Box::new(workload::Workspace::new());
    let wall = Instant::now();
    let start = rdtsc();
    let result = workload::run(&mut ws, iterations);
    let cycles = rdtsc().wrapping_sub(start);
    let ns = wall.elapsed().as_nanos();
    println!("workload iterations={iterations} cycles={cycles} ns={ns} result=0x{result:x}");
    ExitCode::SUCCESS
}
