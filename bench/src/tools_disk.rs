//! The guest's tools disk: Debian's fio and iperf3 with every shared library they need, on a small ext4
//! image that both VMMs give the guest read-only (serial `tools`).
//!
//! A disk rather than the initramfs because fio links ~64 libraries (~80 MB, LAB.md): in the initramfs every
//! boot would unpack them (and the boot-time figures would measure that); from a disk the guest reads only
//! the pages it runs.

use std::path::{Path, PathBuf};

use ironvirt_lab::{binaries, ext4, tools};

/// Host paths of the guest tools, with the Debian package to install when one is missing.
pub fn guest_tools() -> Result<Vec<(PathBuf, String)>, String> {
    let mut out = Vec::new();
    for (tool, package) in [("fio", "fio"), ("iperf3", "iperf3")] {
        let path = tools::which(tool, package)
            .map_err(|e| format!("{e} (scripts/install-deps.sh installs the benchmark's tools)"))?;
        out.push((path, tool.to_string()));
    }
    Ok(out)
}

/// Builds `image` from the tools; `scratch` is a directory it may fill and delete.
pub fn build(image: &Path, scratch: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(scratch);
    binaries::install_flat(&guest_tools()?, scratch)
        .map_err(|e| format!("collecting fio and iperf3 with their libraries: {e}"))?;
    let bytes = dir_size(scratch);
    // ext4's metadata and journal need room beyond the files; 32 MiB covers them for an image this size.
    let mib = bytes.div_ceil(1 << 20) * 5 / 4 + 32;
    let result = ext4::make_image(scratch, mib, image)
        .map_err(|e| format!("making the tools disk {}: {e}", image.display()));
    let _ = std::fs::remove_dir_all(scratch);
    result
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += dir_size(&entry.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}
