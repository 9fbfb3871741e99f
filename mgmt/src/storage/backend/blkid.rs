//! "Is there something on this device?" — libvirt asks libblkid before `pool-build` formats a
//! device (fs) or turns it into an LVM physical volume (logical) without `--overwrite`. We ask
//! the blkid tool the same question in low-level probe mode (`-p`: read the device itself,
//! never blkid's cache).

use super::exec;
use crate::storage::StorageError;

/// What blkid found at the start of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Nothing,
    /// A filesystem or other superblock (`TYPE=`): ext4, xfs, LVM2_member, swap…
    Signature(String),
    /// A partition table (`PTTYPE=`): dos, gpt…
    PartitionTable(String),
}

pub fn probe_argv(device: &str) -> Vec<String> {
    exec::argv(&["blkid", "-p", "-o", "export", device])
}

/// Reads `blkid -p -o export` (exit status 2 means "nothing found").
pub fn parse_probe(device: &str, code: Option<i32>, stdout: &str) -> Result<Probe, StorageError> {
    match code {
        Some(2) => return Ok(Probe::Nothing),
        // blkid's "ambivalent result": several signatures, as libvirt's "additional probes".
        Some(8) => {
            return Err(StorageError::ProbeFailed(format!(
                "Found additional probes to run on device '{device}', probing may be incorrect"
            )))
        }
        Some(0) => {}
        _ => {
            return Err(StorageError::ProbeFailed(format!(
                "Failed to probe device '{device}' (blkid exit status {})",
                code.unwrap_or(-1)
            )))
        }
    }
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    Ok(match (value("TYPE"), value("PTTYPE")) {
        (Some(t), _) => Probe::Signature(t),
        (None, Some(p)) => Probe::PartitionTable(p),
        (None, None) => Probe::Nothing,
    })
}

pub fn probe(device: &str) -> Result<Probe, StorageError> {
    let (f, _) = exec::run_any(&probe_argv(device))?;
    parse_probe(device, f.code, &f.stdout)
}

/// libvirt's `virStorageBackendDeviceIsEmpty(device, format, writelabel=true)`: building on
/// the device is allowed only when nothing is there; its messages tell the user what was found.
pub fn check_empty(device: &str, format: &str, found: &Probe) -> Result<(), StorageError> {
    match found {
        Probe::Nothing => Ok(()),
        Probe::Signature(t) | Probe::PartitionTable(t) if t == format => {
            Err(StorageError::PoolBuilt(format!(
                "Device '{device}' already formatted using '{format}'"
            )))
        }
        Probe::Signature(t) | Probe::PartitionTable(t) => Err(StorageError::PoolBuilt(format!(
            "Device '{device}' formatted cannot overwrite using '{format}', requires build --overwrite (it holds '{t}')"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv() {
        assert_eq!(
            probe_argv("/dev/loop3"),
            ["blkid", "-p", "-o", "export", "/dev/loop3"]
        );
    }

    #[test]
    fn parses_blkid_answers() {
        let ext4 = "DEVNAME=/dev/loop0\nUUID=1b2c\nVERSION=1.0\nTYPE=ext4\nUSAGE=filesystem\n";
        assert_eq!(
            parse_probe("/d", Some(0), ext4).unwrap(),
            Probe::Signature("ext4".into())
        );
        assert_eq!(
            parse_probe("/d", Some(0), "DEVNAME=/d\nPTUUID=ab\nPTTYPE=dos\n").unwrap(),
            Probe::PartitionTable("dos".into())
        );
        assert_eq!(parse_probe("/d", Some(2), "").unwrap(), Probe::Nothing);
        assert!(parse_probe("/d", Some(8), "").is_err());
        assert!(parse_probe("/d", Some(4), "").is_err());
    }

    #[test]
    fn empty_check_like_libvirt() {
        assert!(check_empty("/d", "ext4", &Probe::Nothing).is_ok());
        assert_eq!(
            check_empty("/d", "ext4", &Probe::Signature("ext4".into()))
                .unwrap_err()
                .to_string(),
            "Storage pool already built: Device '/d' already formatted using 'ext4'"
        );
        assert_eq!(
            check_empty("/d", "LVM2_member", &Probe::Signature("xfs".into()))
                .unwrap_err()
                .to_string(),
            "Storage pool already built: Device '/d' formatted cannot overwrite using 'LVM2_member', requires build --overwrite (it holds 'xfs')"
        );
    }
}
