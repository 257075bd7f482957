//! flint's option parsers: `--disk`, `--net` and `--console` (vmm's
//! FromStr impls), `--cpuid-mask` (guest_boot::cpuid::parse_mask), MAC
//! addresses (virtio_devices::MacAddr) and a whole `flint` command line
//! through clap and `RunConfig::try_from`.
//!
//! Input: a selector byte (modulo 6: `0` disk, `1` net, `2` console, `3`
//! cpuid mask, `4` MAC, `5` command line), then the text (lossy UTF-8;
//! for the command line, arguments separated by NUL bytes, which no
//! argument can hold). The corpus files are plain text: `0path=disk.img,ro`.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use clap::Parser;
use virtio_devices::MacAddr;
use vmm::cli::{Cli, Command};
use vmm::config::devices::{CacheMode, ConsoleMode, DiskConfig, DiskMode, NetConfig};
use vmm::config::RunConfig;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 6 {
        0 => disk(&text),
        1 => net(&text),
        2 => {
            let _ = text.parse::<ConsoleMode>();
        }
        3 => cpuid_mask(&text),
        4 => mac(&text),
        _ => command_line(rest),
    }
});

fn disk(spec: &str) {
    let Ok(d) = spec.parse::<DiskConfig>() else {
        return;
    };
    assert!(!d.path.as_os_str().is_empty(), "{spec:?}: empty path");
    assert!(d.id.as_ref().is_none_or(|id| id.len() <= 20), "{spec:?}");
    if let DiskMode::Passthrough(_) = d.mode {
        assert_eq!(d.cache, CacheMode::Direct, "{spec:?}");
    }
}

fn net(spec: &str) {
    let Ok(n) = spec.parse::<NetConfig>() else {
        return;
    };
    assert!(
        (1..=15).contains(&n.tap.len()) && !n.tap.contains('/'),
        "{spec:?}"
    );
    assert!(n.mac.is_none_or(|m| m[0] & 1 == 0), "{spec:?}: multicast");
}

fn cpuid_mask(list: &str) {
    let Ok(mask) = guest_boot::cpuid::parse_mask(list) else {
        return;
    };
    let all = guest_boot::cpuid::with_dependents(&mask);
    assert!(mask.iter().all(|f| all.contains(f)), "{list:?}");
    for (i, f) in mask.iter().enumerate() {
        assert!(!mask[..i].contains(f), "{list:?}: {} twice", f.name);
    }
}

fn mac(s: &str) {
    let Ok(m) = s.parse::<MacAddr>() else {
        return;
    };
    let shown = m.to_string();
    assert!(shown.eq_ignore_ascii_case(s), "{s:?} shown as {shown}");
    assert_eq!(shown.parse::<MacAddr>().ok(), Some(m), "{s:?}");
}

fn command_line(args: &[u8]) {
    let argv = std::iter::once(OsString::from("flint")).chain(
        args.split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec())),
    );
    let Ok(cli) = Cli::try_parse_from(argv) else {
        return;
    };
    if let Command::Run(run) = cli.command {
        let _ = RunConfig::try_from(*run);
    }
}
