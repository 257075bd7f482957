//! Host input reaches the guest through the UART: flint's event loop reads
//! stdin and queues it into the 8250's receive FIFO; the probe
//! (`probe.echo=1`) polls LSR bit 0 and reads RBR until '\n', then prints
//! `probe: echo line=<bytes>` (or `probe: echo timeout got=<n>` after ~5 s).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

const CMDLINE: &str = "probe.echo=1 probe.exit=6";

fn echo_command() -> Command {
    let mut cmd = Command::new(flint_bin());
    cmd.args(["run", "--timeout", "30", "--cmdline", CMDLINE]);
    cmd
}

/// Runs the echo probe with `input` written to flint's stdin right after
/// the spawn (long before the guest polls), then stdin closed.
fn echo_with_input(input: &[u8]) -> Outcome {
    let mut child = echo_command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flint");
    // Far below the pipe's capacity: this never waits for flint.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).expect("write flint's stdin");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for flint");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The probe's lines in order: ready, then `last`, then the exit line.
fn assert_echo_sequence(out: &Outcome, last: &str) {
    assert_eq!(out.code, Some(6), "{out}");
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("probe: echo") || l.starts_with("probe: exit"))
        .collect();
    assert_eq!(
        lines,
        ["probe: echo ready", last, "probe: exit status=6"],
        "{out}"
    );
}

#[test]
fn a_line_on_stdin_reaches_the_guest() {
    require_kvm();
    let out = echo_with_input(b"hello from the host\n");
    assert_eq!(
        out.probe_line("echo line="),
        "probe: echo line=hello from the host",
        "{out}"
    );
    assert_echo_sequence(&out, "probe: echo line=hello from the host");
}

#[test]
fn a_line_longer_than_the_uart_fifo_arrives_intact() {
    require_kvm();
    // 200 printable bytes, no '\n': three FIFO-fulls and then some.
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let line: Vec<u8> = pseudo_random(200, 0x5eed)
        .iter()
        .map(|b| alphabet[usize::from(b % 64)])
        .collect();
    let mut input = line.clone();
    input.push(b'\n');
    let out = echo_with_input(&input);
    let expected = format!("probe: echo line={}", String::from_utf8(line).unwrap());
    assert_eq!(out.probe_line("echo line="), expected, "{out}");
    assert_echo_sequence(&out, &expected);
}

#[test]
fn input_written_while_the_guest_polls_reaches_it() {
    require_kvm();
    // Wait until the guest announces it polls, then type a line.
    let out = flint_run_typing_after(
        &["--timeout", "30", "--cmdline", CMDLINE],
        "probe: echo ready",
        b"typed late\n",
    );
    assert_echo_sequence(&out, "probe: echo line=typed late");
}

#[test]
fn stdin_at_eof_makes_the_guest_time_out_and_exit() {
    require_kvm();
    // `common::run` gives flint a null stdin.
    let out = flint_run(&["--timeout", "30", "--cmdline", CMDLINE]);
    assert_eq!(
        out.probe_line("echo timeout"),
        "probe: echo timeout got=0",
        "{out}"
    );
    assert_echo_sequence(&out, "probe: echo timeout got=0");
}

#[test]
fn a_partial_line_then_eof_times_out_with_the_bytes_counted() {
    require_kvm();
    let out = echo_with_input(b"no newline");
    assert_echo_sequence(&out, "probe: echo timeout got=10");
}
