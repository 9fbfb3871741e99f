//! `fs` pools: a block device holding a filesystem, mounted on the target directory while the
//! pool runs. Volumes are files in the mounted directory, exactly as in a dir pool.
//!
//! pool-build makes the target directory; with `--overwrite` it also runs mkfs, with
//! `--no-overwrite` it runs mkfs only when blkid finds nothing on the device (libvirt's
//! virStorageBackendMakeFileSystem).

use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::mount::{self, MountEntry, MountState};
use super::{blkid, dir, exec, BuildFlags};
use crate::storage::{PoolDef, StorageError};

/// The filesystem types libvirt's fs pool accepts in `<format type=…>`.
pub const FORMATS: &[&str] = &[
    "auto", "ext2", "ext3", "ext4", "ufs", "iso9660", "udf", "gfs", "gfs2", "vfat", "hfs+", "xfs",
    "ocfs2", "vmfs",
];

/// The device and format of an fs pool, validated as libvirt does before mounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsSource {
    pub device: String,
    pub format: String,
}

pub fn source(def: &PoolDef) -> Result<FsSource, StorageError> {
    let devices = def.source_devices();
    let device = match devices.as_slice() {
        [] => return Err(StorageError::Internal("missing source device".into())),
        [d] => d.clone(),
        _ => {
            return Err(StorageError::Unsupported(
                "expected exactly 1 device for the storage pool".into(),
            ))
        }
    };
    let format = def.source_format().unwrap_or_else(|| "auto".into());
    if !FORMATS.contains(&format.as_str()) {
        return Err(StorageError::Unsupported(format!(
            "unknown filesystem format type '{format}' for pool '{}'",
            def.name()
        )));
    }
    Ok(FsSource { device, format })
}

/// The filesystem pool-build makes: `auto` cannot be passed to mkfs, so it means ext4.
pub fn mkfs_format(format: &str) -> &str {
    if format == "auto" {
        "ext4"
    } else {
        format
    }
}

/// `mkfs -t TYPE [force] DEVICE`: each mkfs spells "overwrite what is there" differently, and
/// without it mkfs.xfs refuses and mkfs.ext* asks on a terminal we do not have.
pub fn mkfs_argv(format: &str, device: &str) -> Vec<String> {
    let mut v = exec::argv(&["mkfs", "-t", format]);
    match format {
        "xfs" => v.push("-f".into()),
        "ext2" | "ext3" | "ext4" => v.push("-F".into()),
        "vfat" => v.push("-I".into()),
        _ => {}
    }
    v.push(device.into());
    v
}

pub fn mount_argv(def: &PoolDef, src: &FsSource) -> Vec<String> {
    mount::mount_argv(
        Some(&src.format),
        &[],
        &src.device,
        &def.target_path().unwrap_or_default(),
    )
}

pub fn build(def: &PoolDef, flags: BuildFlags) -> Result<(), StorageError> {
    dir::build(def, false)?;
    if !flags.overwrite && !flags.no_overwrite {
        return Ok(());
    }
    let src = source(def)?;
    if !Path::new(&src.device).exists() {
        return Err(StorageError::OperationInvalid(format!(
            "Source device {} does not exist when formatting pool '{}'",
            src.device,
            def.name()
        )));
    }
    let format = mkfs_format(&src.format);
    if flags.no_overwrite {
        blkid::check_empty(&src.device, format, &blkid::probe(&src.device)?)?;
    }
    exec::run(&mkfs_argv(format, &src.device)).map(|_| ())
}

/// How the mount table shows this device: by device number, so any alias of the device node
/// (a /dev/disk/by-* link, a second node) is recognised.
fn device_matcher(device: &str) -> Result<impl Fn(&MountEntry) -> bool, StorageError> {
    let meta = std::fs::metadata(device).map_err(StorageError::io(
        "cannot open source device",
        Path::new(device),
    ))?;
    if !meta.file_type().is_block_device() {
        return Err(StorageError::OperationInvalid(format!(
            "source device '{device}' is not a block device"
        )));
    }
    let rdev = meta.rdev();
    let want = (libc::major(rdev), libc::minor(rdev));
    Ok(move |e: &MountEntry| e.dev == want)
}

fn mount_state(def: &PoolDef, src: &FsSource) -> Result<MountState, StorageError> {
    let is_source = device_matcher(&src.device)?;
    let target = mount::canonical_target(&def.target_path().unwrap_or_default());
    mount::state(&mount::mounts()?, &src.device, &is_source, &target)
}

/// Mounts the device on the target (nothing to do when it is mounted there already).
pub fn start(def: &PoolDef) -> Result<(), StorageError> {
    let src = source(def)?;
    dir::check(def)?;
    mount::start_pool(mount_state(def, &src), &mount_argv(def, &src))
}

/// Unmounts the target if this pool's source is mounted there.
pub fn stop(def: &PoolDef) -> Result<(), StorageError> {
    let src = source(def)?;
    mount::stop_pool(
        mount_state(def, &src),
        &def.target_path().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(source: &str) -> PoolDef {
        PoolDef::parse(&format!(
            "<pool type='fs'><name>f</name><source>{source}</source><target><path>/mnt</path></target></pool>"
        ))
        .unwrap()
    }

    #[test]
    fn mkfs_command_lines() {
        assert_eq!(
            mkfs_argv("ext4", "/dev/loop0"),
            ["mkfs", "-t", "ext4", "-F", "/dev/loop0"]
        );
        assert_eq!(
            mkfs_argv("xfs", "/dev/sdb"),
            ["mkfs", "-t", "xfs", "-f", "/dev/sdb"]
        );
        assert_eq!(
            mkfs_argv("vfat", "/dev/sdb"),
            ["mkfs", "-t", "vfat", "-I", "/dev/sdb"]
        );
        assert_eq!(
            mkfs_argv("udf", "/dev/sdb"),
            ["mkfs", "-t", "udf", "/dev/sdb"]
        );
        assert_eq!(mkfs_format("auto"), "ext4");
        assert_eq!(mkfs_format("xfs"), "xfs");
    }

    #[test]
    fn mount_command_line_like_libvirt() {
        // libvirt's tests/storagepoolxml2argvdata/pool-fs-linux.argv
        let p = pool("<device path='/dev/sda6'/><format type='ext3'/>");
        let src = source(&p).unwrap();
        assert_eq!(
            mount_argv(&p, &src).join(" "),
            "mount -o nodev,nosuid,noexec -t ext3 /dev/sda6 /mnt"
        );
        let p = pool("<device path='/dev/sda6'/>");
        assert_eq!(
            mount_argv(&p, &source(&p).unwrap()).join(" "),
            "mount -o nodev,nosuid,noexec -t auto /dev/sda6 /mnt"
        );
    }

    #[test]
    fn source_is_validated() {
        let e = |s: &str| source(&pool(s)).unwrap_err().to_string();
        assert_eq!(e(""), "internal error: missing source device");
        assert_eq!(
            e("<device path='/a'/><device path='/b'/>"),
            "unsupported configuration: expected exactly 1 device for the storage pool"
        );
        assert_eq!(
            e("<device path='/a'/><format type='nfs'/>"),
            "unsupported configuration: unknown filesystem format type 'nfs' for pool 'f'"
        );
    }
}
