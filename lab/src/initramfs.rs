//! Building the L2 (guest) and L1 (lab VM) initramfs images as uncompressed newc cpio archives.
//!
//! Layout inside both: busybox at `/bin/busybox` with applet symlinks, modules flat in
//! `/lib/modules/lab/` with their load order in `/etc/lab-modules`, and an `/init` script.
//! L1 additionally holds `/lab/` (payload, helper functions, L2 kernel + initramfs) and the binaries
//! to run with their shared libraries.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::artifacts::Artifacts;
use crate::binaries;
use crate::cpio::{CpioError, CpioWriter};
use crate::modules::{self, ModuleError, ModuleIndex};
use crate::tools::{self, ToolError};

/// The standard start of an L2 `/init` (mounts, module loading); see [`L2Initramfs::with_prelude`].
pub const L2_PRELUDE: &str = include_str!("sh/l2-prelude.sh");
const L1_INIT: &str = include_str!("sh/l1-init.sh");
/// The payload helpers (`lab_vm_start`, `lab_marker`, ...). Public so a payload can also run outside the lab
/// (the benchmark's host path sources the same file), with `LAB_D` pointing at a directory of its own.
pub const L1_FUNCTIONS: &str = include_str!("sh/functions.sh");

/// Where things land inside L1 (the payload's view).
pub mod l1_paths {
    pub const BZIMAGE: &str = "/lab/l2/bzImage";
    pub const VMLINUX: &str = "/lab/l2/vmlinux";
    pub const L2_INITRD: &str = "/lab/l2/initrd.cpio";
    pub const QEMU: &str = "/usr/bin/qemu-system-x86_64";
    /// QEMU's firmware directory, to pass with `-L`.
    pub const QEMU_DATA: &str = "/usr/share/qemu-lab";
    /// The microvm firmware to pass with `-bios`: qboot boots a PVH kernel from fw_cfg by itself.
    pub const QEMU_BIOS: &str = "/usr/share/qemu-lab/qboot.rom";
    pub const PAYLOAD: &str = "/lab/payload.sh";
}

/// Firmware for QEMU's microvm machine. QEMU 10's default `bios-microvm.bin` (Debian: SeaBIOS) cannot
/// boot a `-kernel` with `x-option-roms=off` and ends in "No bootable device"; qboot can, so L1
/// payloads pass `-bios $LAB_QEMU_BIOS`.
const QEMU_MICROVM_FIRMWARE: &[&str] = &["qboot.rom"];
const QEMU_FIRMWARE_DIRS: &[&str] = &["/usr/share/qemu", "/usr/share/seabios", "/usr/share/qboot"];

/// Where this machine's QEMU firmware file `name` is (e.g. `qboot.rom`), if installed.
pub fn host_qemu_firmware(name: &str) -> Option<PathBuf> {
    QEMU_FIRMWARE_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error(transparent)]
    Cpio(#[from] CpioError),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("binary {0} does not exist (build it first, or pass the right path)")]
    MissingBinary(String),
    #[error(
        "QEMU was requested in L1 but {0} is missing: install the Debian package qemu-system-x86"
    )]
    MissingQemu(String),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InitramfsError {
    let path = path.display().to_string();
    move |source| InitramfsError::Io { op, path, source }
}

/// Contents of an extra file.
#[derive(Debug, Clone)]
pub enum FileSource {
    Bytes(Vec<u8>),
    Host(PathBuf),
}

/// A file to place in an initramfs.
#[derive(Debug, Clone)]
pub struct ExtraFile {
    /// Absolute path inside the initramfs.
    pub path: String,
    pub mode: u32,
    pub source: FileSource,
}

impl ExtraFile {
    pub fn text(path: &str, mode: u32, text: impl Into<String>) -> Self {
        ExtraFile {
            path: path.into(),
            mode,
            source: FileSource::Bytes(text.into().into_bytes()),
        }
    }
    pub fn host(path: &str, mode: u32, host: impl Into<PathBuf>) -> Self {
        ExtraFile {
            path: path.into(),
            mode,
            source: FileSource::Host(host.into()),
        }
    }
}

type Writer = CpioWriter<BufWriter<File>>;

/// Creates `out` atomically: builds into a temporary sibling and renames it when complete.
fn write_archive(
    out: &Path,
    fill: impl FnOnce(&mut Writer) -> Result<(), InitramfsError>,
) -> Result<(), InitramfsError> {
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    }
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        let mut w = CpioWriter::new(BufWriter::with_capacity(1 << 20, f));
        fill(&mut w)?;
        w.finish()?;
        fs::rename(&tmp, out).map_err(io_err("renaming into", out))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Base skeleton: mount points and busybox with its applet links.
fn add_base(w: &mut Writer, busybox: &Path) -> Result<(), InitramfsError> {
    for d in ["proc", "sys", "dev", "tmp", "run", "root", "etc", "mnt"] {
        w.dir(d, 0o755)?;
    }
    w.file_from("bin/busybox", 0o755, busybox)?;
    let list = tools::run_text(Command::new(busybox).arg("--list-full"))?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // Never let an applet link replace busybox itself (LAB.md: `busybox --install` pitfall).
        if applet == "bin/busybox" || w.contains(applet) {
            continue;
        }
        w.symlink(applet, "/bin/busybox")?;
    }
    Ok(())
}

/// Adds the modules `names` (with dependencies) and `/etc/lab-modules` listing their load order.
fn add_modules(w: &mut Writer, modules_dir: &Path, names: &[&str]) -> Result<(), InitramfsError> {
    let index = ModuleIndex::load(modules_dir)?;
    let mut order = String::new();
    for m in index.resolve(names)? {
        let file = m
            .rel_path
            .rsplit('/')
            .next()
            .unwrap_or(&m.rel_path)
            .to_string();
        w.file_from(&format!("lib/modules/lab/{file}"), 0o644, &m.path)?;
        order.push_str(&file);
        order.push('\n');
    }
    w.file("etc/lab-modules", 0o644, order.as_bytes())?;
    Ok(())
}

fn add_extra(w: &mut Writer, files: &[ExtraFile]) -> Result<(), InitramfsError> {
    for f in files {
        match &f.source {
            FileSource::Bytes(b) => w.file(&f.path, f.mode, b)?,
            FileSource::Host(p) => w.file_from(&f.path, f.mode, p)?,
        }
    }
    Ok(())
}

/// Host binaries staged for an archive: stripped copies plus every shared library `ldd` lists.
struct StagedBinaries {
    copies: Vec<(PathBuf, String)>,
    libs: Vec<PathBuf>,
}

impl StagedBinaries {
    /// Resolves libraries before anything is written, so a missing binary fails fast.
    fn stage(binaries: &[(PathBuf, String)], scratch: &Path) -> Result<Self, InitramfsError> {
        let mut libs: Vec<PathBuf> = Vec::new();
        let mut copies = Vec::new();
        for (i, (host, dest)) in binaries.iter().enumerate() {
            if !host.is_file() {
                return Err(InitramfsError::MissingBinary(host.display().to_string()));
            }
            for lib in binaries::shared_libraries(host)? {
                if !libs.contains(&lib) {
                    libs.push(lib);
                }
            }
            let copy = binaries::stripped_copy(host, &scratch.join(format!("{i}")));
            copies.push((copy, dest.clone()));
        }
        Ok(StagedBinaries { copies, libs })
    }

    fn write(&self, w: &mut Writer) -> Result<(), InitramfsError> {
        for (copy, dest) in &self.copies {
            w.file_from(dest, 0o755, copy)?;
        }
        for lib in &self.libs {
            // Archive the library's contents at the path the loader will look for (ldd's path),
            // even when that path is a symlink on the host.
            let dest = lib.to_string_lossy();
            if !w.contains(&dest) {
                w.file_from(&dest, 0o755, lib)?;
            }
        }
        Ok(())
    }
}

/// The guest initramfs: busybox, the virtio modules, `/init`, extra files, host binaries.
#[derive(Debug, Clone)]
pub struct L2Initramfs {
    /// The complete `/init` script.
    pub init: String,
    pub modules: Vec<String>,
    pub extra_files: Vec<ExtraFile>,
    /// Host binaries to install (host path, path in the guest), with their shared libraries.
    pub binaries: Vec<(PathBuf, String)>,
}

impl L2Initramfs {
    /// An initramfs whose `/init` is exactly `init`.
    pub fn new(init: impl Into<String>) -> Self {
        L2Initramfs {
            init: init.into(),
            modules: modules::L2_MODULES.iter().map(|s| s.to_string()).collect(),
            extra_files: Vec::new(),
            binaries: Vec::new(),
        }
    }

    /// An initramfs whose `/init` is [`L2_PRELUDE`] (mounts, modules) followed by `body`.
    pub fn with_prelude(body: &str) -> Self {
        Self::new(format!("{L2_PRELUDE}\n{body}\n"))
    }

    pub fn build(&self, artifacts: &Artifacts, out: &Path) -> Result<(), InitramfsError> {
        let scratch = out.with_extension("bin.d");
        fs::create_dir_all(&scratch).map_err(io_err("creating", &scratch))?;
        let staged = StagedBinaries::stage(&self.binaries, &scratch)?;
        let result = write_archive(out, |w| {
            add_base(w, &artifacts.busybox.path)?;
            let names: Vec<&str> = self.modules.iter().map(String::as_str).collect();
            add_modules(w, &artifacts.kernel.modules_dir, &names)?;
            staged.write(w)?;
            w.file("init", 0o755, self.init.as_bytes())?;
            w.file("bin/boot-timer", 0o755, &crate::boot_timer::elf())?;
            add_extra(w, &self.extra_files)
        });
        let _ = fs::remove_dir_all(&scratch);
        result
    }
}

/// The lab VM's initramfs.
#[derive(Debug, Clone, Default)]
pub struct L1Initramfs {
    /// Shell script run after KVM is up (sourced with the helpers of `sh/functions.sh` available).
    pub payload: String,
    /// Host binaries to install: (host path, path inside L1), with their shared libraries.
    pub binaries: Vec<(PathBuf, String)>,
    /// The guest initramfs, installed as [`l1_paths::L2_INITRD`].
    pub l2_initramfs: Option<PathBuf>,
    /// Install the host's QEMU and microvm firmware (about 60 MB: slower L1 boot).
    pub include_qemu: bool,
    /// Also load tun/bridge/veth/nftables modules.
    pub network_modules: bool,
    /// Load the virtio-pci disk modules, for runs with `L1Config::drives`.
    pub storage_modules: bool,
    /// More kernel modules to load (with their dependencies), e.g. `dm-mod` for LVM.
    pub extra_modules: Vec<String>,
    pub extra_files: Vec<ExtraFile>,
}

impl L1Initramfs {
    pub fn new(payload: impl Into<String>) -> Self {
        L1Initramfs {
            payload: payload.into(),
            ..Default::default()
        }
    }

    /// Writes the archive to `out`; `scratch` holds stripped binary copies.
    pub fn build(&self, artifacts: &Artifacts, out: &Path) -> Result<(), InitramfsError> {
        let scratch = out.with_extension("bin.d");
        fs::create_dir_all(&scratch).map_err(io_err("creating", &scratch))?;
        let mut binaries = self.binaries.clone();
        if self.include_qemu {
            let qemu = PathBuf::from(l1_paths::QEMU);
            if !qemu.is_file() {
                return Err(InitramfsError::MissingQemu(qemu.display().to_string()));
            }
            binaries.push((qemu, l1_paths::QEMU.to_string()));
        }
        let staged = StagedBinaries::stage(&binaries, &scratch)?;
        let result = write_archive(out, |w| {
            add_base(w, &artifacts.busybox.path)?;
            let mut mods: Vec<&str> = modules::L1_KVM_MODULES.to_vec();
            if self.network_modules {
                mods.extend_from_slice(modules::L1_NET_MODULES);
            }
            if self.storage_modules {
                mods.extend_from_slice(modules::L1_STORAGE_MODULES);
            }
            mods.extend(self.extra_modules.iter().map(String::as_str));
            add_modules(w, &artifacts.kernel.modules_dir, &mods)?;
            staged.write(w)?;
            let mut env = String::new();
            if self.include_qemu {
                for name in QEMU_MICROVM_FIRMWARE {
                    if let Some(src) = host_qemu_firmware(name) {
                        w.file_from(&format!("{}/{name}", l1_paths::QEMU_DATA), 0o644, &src)?;
                    }
                }
                env.push_str(&format!(
                    "export LAB_QEMU_DATA={} LAB_QEMU_BIOS={}\n",
                    l1_paths::QEMU_DATA,
                    l1_paths::QEMU_BIOS
                ));
            }
            w.file_from(l1_paths::BZIMAGE, 0o644, &artifacts.kernel.bzimage)?;
            w.file_from(l1_paths::VMLINUX, 0o644, &artifacts.kernel.vmlinux)?;
            env.push_str(&format!(
                "export LAB_L2_BZIMAGE={} LAB_L2_VMLINUX={}\n",
                l1_paths::BZIMAGE,
                l1_paths::VMLINUX
            ));
            if let Some(initrd) = &self.l2_initramfs {
                w.file_from(l1_paths::L2_INITRD, 0o644, initrd)?;
                env.push_str(&format!("export LAB_L2_INITRD={}\n", l1_paths::L2_INITRD));
            }
            w.file("lab/env", 0o644, env.as_bytes())?;
            w.file("lab/functions.sh", 0o644, L1_FUNCTIONS.as_bytes())?;
            w.file(l1_paths::PAYLOAD, 0o755, self.payload.as_bytes())?;
            w.file("init", 0o755, L1_INIT.as_bytes())?;
            add_extra(w, &self.extra_files)
        });
        let _ = fs::remove_dir_all(&scratch);
        result
    }
}
