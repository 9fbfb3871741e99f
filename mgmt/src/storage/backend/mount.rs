//! Mounting for the fs and netfs pools: the mount table (`/proc/self/mountinfo`), libvirt's
//! mount and umount command lines, and the "is it mounted, and by whom" check that keeps
//! pool-start from stacking mounts or grabbing a source mounted somewhere else.

use std::path::Path;

use super::exec;
use crate::storage::StorageError;

/// libvirt mounts pool sources with these options on Linux (storage_util.c): a pool holds disk
/// images, never device nodes or programs to run.
pub const DEFAULT_OPTIONS: &str = "nodev,nosuid,noexec";

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `st_dev` of the mounted filesystem (for a block device source, its device number).
    pub dev: (u32, u32),
    pub target: String,
    pub fstype: String,
    pub source: String,
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` (see proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        // Optional fields end at a lone "-"; fstype and source follow it.
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 3 {
            continue;
        }
        let Some((maj, min)) = fields[2].split_once(':') else {
            continue;
        };
        let (Ok(maj), Ok(min)) = (maj.parse(), min.parse()) else {
            continue;
        };
        out.push(MountEntry {
            dev: (maj, min),
            target: unescape(fields[4]),
            fstype: unescape(fields[sep + 1]),
            source: unescape(fields[sep + 2]),
        });
    }
    out
}

/// The current mount table of this process's mount namespace.
pub fn mounts() -> Result<Vec<MountEntry>, StorageError> {
    let p = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(p).map_err(StorageError::io("cannot read mount list", p))?;
    Ok(parse_mountinfo(&text))
}

/// `mount -o nodev,nosuid,noexec[,extra…] [-t TYPE] SOURCE TARGET`, in libvirt's order.
pub fn mount_argv(
    fstype: Option<&str>,
    extra: &[String],
    source: &str,
    target: &str,
) -> Vec<String> {
    let mut opts = DEFAULT_OPTIONS.to_string();
    for o in extra {
        opts.push(',');
        opts.push_str(o);
    }
    let mut v = exec::argv(&["mount", "-o", &opts]);
    if let Some(t) = fstype {
        v.extend(exec::argv(&["-t", t]));
    }
    v.extend(exec::argv(&[source, target]));
    v
}

pub fn umount_argv(target: &str) -> Vec<String> {
    exec::argv(&["umount", target])
}

/// Where a pool's source stands in the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    NotMounted,
    /// The pool's source is mounted on its target already.
    Mounted,
}

/// Decides from the mount table whether `source` (as recognised by `is_source`) is mounted on
/// `target`; refuses a target that something else is mounted on, and a source mounted elsewhere
/// (mounting it twice would let two pools write one filesystem).
pub fn state(
    entries: &[MountEntry],
    source: &str,
    is_source: &dyn Fn(&MountEntry) -> bool,
    target: &str,
) -> Result<MountState, StorageError> {
    // The last mount on a directory is the one that shows there.
    if let Some(top) = entries.iter().rev().find(|e| e.target == target) {
        if is_source(top) {
            return Ok(MountState::Mounted);
        }
        return Err(StorageError::OperationInvalid(format!(
            "Target '{target}' is already mounted by '{}' ({})",
            top.source, top.fstype
        )));
    }
    if let Some(e) = entries.iter().find(|e| is_source(e)) {
        return Err(StorageError::OperationInvalid(format!(
            "Source '{source}' is already mounted on '{}'",
            e.target
        )));
    }
    Ok(MountState::NotMounted)
}

/// The target as the mount table shows it (symlinks resolved), falling back to the path as
/// written when it does not exist.
pub fn canonical_target(target: &str) -> String {
    std::fs::canonicalize(target)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| target.to_string())
}

/// Starts a mounted pool (fs, netfs): mounts its source with `argv` unless `state` says it is mounted on the
/// target already.
pub fn start_pool(
    state: Result<MountState, StorageError>,
    argv: &[String],
) -> Result<(), StorageError> {
    if state? == MountState::Mounted {
        return Ok(());
    }
    exec::run(argv).map(|_| ())
}

/// Stops a mounted pool: unmounts `target` if the pool's own source is mounted there. Not mounted, or
/// mounted elsewhere by someone else, leaves nothing of ours to unmount.
pub fn stop_pool(
    state: Result<MountState, StorageError>,
    target: &str,
) -> Result<(), StorageError> {
    match state {
        Ok(MountState::Mounted) => exec::run(&umount_argv(target)).map(|_| ()),
        Ok(MountState::NotMounted) | Err(StorageError::OperationInvalid(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n\
        80 22 7:3 / /srv/my\\040pool rw,nosuid,nodev,noexec,relatime shared:40 - ext4 /dev/loop3 rw\n\
        81 22 0:55 / /mnt/nfs rw,relatime shared:41 - nfs4 server:/export rw,vers=4.2\n\
        garbage line\n";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[1],
            MountEntry {
                dev: (7, 3),
                target: "/srv/my pool".into(),
                fstype: "ext4".into(),
                source: "/dev/loop3".into()
            }
        );
        assert_eq!(m[2].source, "server:/export");
    }

    #[test]
    fn mount_command_lines_like_libvirt() {
        // tests/storagepoolxml2argvdata/pool-fs-linux.argv
        assert_eq!(
            mount_argv(Some("ext3"), &[], "/dev/sda6", "/mnt").join(" "),
            "mount -o nodev,nosuid,noexec -t ext3 /dev/sda6 /mnt"
        );
        assert_eq!(
            mount_argv(None, &["nfsvers=3".into()], "h:/x", "/mnt").join(" "),
            "mount -o nodev,nosuid,noexec,nfsvers=3 h:/x /mnt"
        );
        assert_eq!(umount_argv("/mnt"), ["umount", "/mnt"]);
    }

    #[test]
    fn mount_state() {
        let m = parse_mountinfo(INFO);
        let loop3 = |e: &MountEntry| e.dev == (7, 3);
        assert_eq!(
            state(&m, "/dev/loop3", &loop3, "/srv/my pool").unwrap(),
            MountState::Mounted
        );
        assert_eq!(
            state(&m, "/dev/loop3", &loop3, "/srv/other").unwrap_err().to_string(),
            "Requested operation is not valid: Source '/dev/loop3' is already mounted on '/srv/my pool'"
        );
        let loop4 = |e: &MountEntry| e.dev == (7, 4);
        assert_eq!(
            state(&m, "/dev/loop4", &loop4, "/mnt/nfs").unwrap_err().to_string(),
            "Requested operation is not valid: Target '/mnt/nfs' is already mounted by 'server:/export' (nfs4)"
        );
        assert_eq!(
            state(&m, "/dev/loop4", &loop4, "/srv/new").unwrap(),
            MountState::NotMounted
        );
    }
}
