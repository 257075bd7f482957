//! `flint run --config FILE`: a VM from flint's TOML or from a Firecracker
//! JSON file, booted with the probe, which reports what it was given;
//! command-line options winning over the file; mistakes named.

mod common;

use std::path::Path;

use common::*;

/// The probe's ELF next to the config file, so relative paths are tested.
fn stage(dir: &Path) {
    std::fs::write(dir.join("probe.elf"), probe_elf()).unwrap();
    std::fs::write(dir.join("disk.img"), pseudo_random(1 << 20, 3)).unwrap();
}

#[test]
fn a_toml_file_describes_the_vm_and_the_command_line_wins() {
    require_kvm();
    let dir = scratch("config-toml");
    stage(&dir);
    let cfg = dir.join("vm.toml");
    std::fs::write(
        &cfg,
        "kernel = \"probe.elf\"\nmem = 96\ncmdline = \"probe.virtio=1 probe.exit=9\"\n\
         disk = [\"path=disk.img,ro,id=FROM-TOML\"]\n",
    )
    .unwrap();
    let out = flint_run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, Some(9), "{out}");
    assert!(
        out.probe_line("virtio-blk dev=1 id=")
            .contains("id=FROM-TOML"),
        "{out}"
    );
    assert!(
        out.probe_line("virtio-blk dev=1 capacity=")
            .contains(" ro=1 "),
        "{out}"
    );
    let ram = probe_u64(out.probe_line("mem total_ram="), "total_ram");
    assert!(ram > 90 << 20 && ram <= 96 << 20, "{ram}");
    // The command line's --cmdline replaces the file's; its --disk follows.
    let extra = dir.join("extra.img");
    std::fs::write(&extra, vec![0u8; 1 << 20]).unwrap();
    let out = flint_run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--cmdline",
        "probe.virtio=1 probe.exit=4",
        "--disk",
        &format!("path={},id=FROM-CLI", extra.display()),
    ]);
    assert_eq!(out.code, Some(4), "{out}");
    assert!(
        out.probe_line("virtio-blk dev=2 id=")
            .contains("id=FROM-CLI"),
        "{out}"
    );
}

#[test]
fn a_firecracker_config_boots_the_same_vm() {
    require_kvm();
    let dir = scratch("config-fc");
    stage(&dir);
    let cfg = dir.join("vm_config.json");
    std::fs::write(
        &cfg,
        r#"{
  "boot-source": {"kernel_image_path": "probe.elf", "boot_args": "probe.virtio=1 probe.exit=5"},
  "drives": [{"drive_id": "rootfs", "path_on_host": "disk.img", "is_root_device": true, "is_read_only": false}],
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 64},
  "logger": {"log_path": "/dev/null"},
  "metrics": {"metrics_path": "/dev/null"}
}"#,
    )
    .unwrap();
    let out = flint_run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, Some(5), "{out}");
    assert!(
        out.stderr
            .contains("ignoring Firecracker sections flint does not use: logger, metrics"),
        "{out}"
    );
    assert!(
        out.probe_line("virtio-blk dev=1 id=").contains("id=rootfs"),
        "{out}"
    );
    assert!(
        out.stdout.contains(" root=/dev/vda rw"),
        "Firecracker names the root drive\n{out}"
    );
}

#[test]
fn config_mistakes_exit_125_naming_the_file_and_key() {
    require_kvm();
    let dir = scratch("config-bad");
    let cfg = dir.join("vm.toml");
    std::fs::write(&cfg, "memory = 64\n").unwrap();
    let out = flint_run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(
        out.stderr.contains("vm.toml") && out.stderr.contains("memory"),
        "{out}"
    );
    let out = flint_run(&["--config", "/nonexistent/vm.toml"]);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("/nonexistent/vm.toml"), "{out}");
}
