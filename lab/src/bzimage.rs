//! Extracting the ELF `vmlinux` from a Debian bzImage, so the lab can test the PVH/ELF boot path with
//! exactly the kernel it also boots as a bzImage.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use crate::tools::{self, ToolError};

/// Offsets in the x86 boot protocol's setup header (Documentation/arch/x86/boot.rst).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
/// The LZ4 "legacy" frame magic that the kernel's lz4 compressor writes.
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];

#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not a bzImage: {1}")]
    NotBzImage(String, &'static str),
    #[error("the payload of {path} is not LZ4-compressed (magic {magic:02x?}); only LZ4 kernels are supported")]
    NotLz4 { path: String, magic: Vec<u8> },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("`lz4 -d` did not produce an ELF file from {0}: {1}")]
    NotElf(String, String),
}

/// The byte range of the compressed kernel inside a bzImage.
pub fn payload_range(image: &[u8]) -> Result<std::ops::Range<usize>, &'static str> {
    let u32_at = |off: usize| -> Option<u32> {
        image
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if image.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
        return Err("no `HdrS` setup header magic");
    }
    // setup_sects == 0 means 4 for historical reasons.
    let setup_sects = match image[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let offset = u32_at(PAYLOAD_OFFSET).ok_or("truncated setup header")? as usize;
    let length = u32_at(PAYLOAD_LENGTH).ok_or("truncated setup header")? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    let end = start
        .checked_add(length)
        .ok_or("payload length overflows")?;
    if length == 0 || end > image.len() {
        return Err("payload range lies outside the file");
    }
    Ok(start..end)
}

/// Writes the decompressed ELF kernel of `bzimage` to `out` (via `lz4`).
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<(), BzImageError> {
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| BzImageError::Io { path, source }
    };
    let image = fs::read(bzimage).map_err(io_err(bzimage))?;
    let name = bzimage.display().to_string();
    let range = payload_range(&image).map_err(|why| BzImageError::NotBzImage(name.clone(), why))?;
    let payload = &image[range];
    if payload[..4] != LZ4_LEGACY_MAGIC {
        return Err(BzImageError::NotLz4 {
            path: name,
            magic: payload[..4].to_vec(),
        });
    }
    let compressed = out.with_extension("lz4");
    fs::write(&compressed, payload).map_err(io_err(&compressed))?;
    // lz4 exits non-zero because the kernel appends its size after the frame: judge the output instead.
    let res = tools::output(
        Command::new("lz4")
            .arg("-d")
            .arg("-f")
            .arg("-q")
            .arg(&compressed)
            .arg(out),
    )?;
    let _ = fs::remove_file(&compressed);
    let head = fs::read(out)
        .map(|d| d.get(..4).map(<[u8]>::to_vec).unwrap_or_default())
        .unwrap_or_default();
    if head != b"\x7fELF" {
        return Err(BzImageError::NotElf(
            name,
            String::from_utf8_lossy(&res.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_payload_range() {
        let mut img = vec![0u8; 8192];
        img[SETUP_SECTS] = 3;
        img[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        img[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&0x100u32.to_le_bytes());
        img[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&0x200u32.to_le_bytes());
        assert_eq!(payload_range(&img), Ok(2048 + 0x100..2048 + 0x300));
    }

    #[test]
    fn rejects_garbage() {
        assert!(payload_range(&[0u8; 100]).is_err());
        let mut img = vec![0u8; 1024];
        img[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        img[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&0x10000u32.to_le_bytes());
        assert!(payload_range(&img).is_err());
    }
}
