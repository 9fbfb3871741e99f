//! The kernel command line.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::boot::BootError;
use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};

/// Writes `cmdline` NUL-terminated at [`CMDLINE_START`].
///
/// Returns the number of bytes written, including the NUL: what
/// [`crate::boot::linux_boot_params`] takes as `cmdline_len`.
pub fn write_cmdline<M: GuestMemory>(mem: &M, cmdline: &str) -> Result<usize, BootError> {
    if let Some(pos) = cmdline.bytes().position(|b| b == 0) {
        return Err(BootError::CmdlineContainsNul(pos));
    }
    let len = cmdline.len() + 1;
    if len > CMDLINE_MAX_SIZE {
        return Err(BootError::CmdlineTooLong {
            len,
            max: CMDLINE_MAX_SIZE,
        });
    }
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|source| BootError::GuestMemory {
            what: "kernel command line",
            addr: CMDLINE_START,
            source,
        })?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn writes_nul_terminated() {
        let mem = mem();
        mem.write_slice(&[0xaa; 16], GuestAddress(CMDLINE_START))
            .unwrap();
        let n = write_cmdline(&mem, "console=ttyS0").unwrap();
        assert_eq!(n, 14);
        let mut buf = [0u8; 15];
        mem.read_slice(&mut buf, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&buf, b"console=ttyS0\0\xaa");
    }

    #[test]
    fn empty_is_just_nul() {
        assert_eq!(write_cmdline(&mem(), "").unwrap(), 1);
    }

    #[test]
    fn longest_fits_and_one_more_does_not() {
        let mem = mem();
        let max = "x".repeat(CMDLINE_MAX_SIZE - 1);
        assert_eq!(write_cmdline(&mem, &max).unwrap(), CMDLINE_MAX_SIZE);
        let err = write_cmdline(&mem, &format!("{max}x")).unwrap_err();
        assert!(matches!(
            err,
            BootError::CmdlineTooLong {
                len,
                max: CMDLINE_MAX_SIZE
            } if len == CMDLINE_MAX_SIZE + 1
        ));
    }

    #[test]
    fn nul_is_rejected() {
        let err = write_cmdline(&mem(), "a\0b").unwrap_err();
        assert!(matches!(err, BootError::CmdlineContainsNul(1)));
    }

    #[test]
    fn unmapped_memory_is_an_error() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let err = write_cmdline(&mem, "x").unwrap_err();
        assert!(matches!(
            err,
            BootError::GuestMemory {
                addr: CMDLINE_START,
                ..
            }
        ));
    }
}
