//! L1 and L2 table entries (the guest-to-host cluster map) and their encoding.

/// Host offset bits of L1 and standard L2 entries (bits 9-55).
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// The cluster's refcount is exactly one, so it may be written in place.
pub const COPIED: u64 = 1 << 63;
pub const COMPRESSED: u64 = 1 << 62;
/// v3: the cluster reads as zeroes.
pub const ZERO: u64 = 1;

const L1_RESERVED: u64 = !(OFFSET_MASK | COPIED);
const L2_RESERVED: u64 = !(OFFSET_MASK | COPIED | COMPRESSED | ZERO);

/// One decoded L2 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Entry {
    /// Reads from the backing file, or zeroes without one.
    Unallocated,
    /// Reads as zeroes. `host` is non-zero for a preallocated zero cluster.
    Zero {
        host: u64,
        copied: bool,
    },
    Normal {
        host: u64,
        copied: bool,
    },
    /// `host` is a byte offset; the data spans `sectors` 512-byte sectors starting at the one holding it.
    Compressed {
        host: u64,
        sectors: u64,
    },
}

impl L2Entry {
    pub fn decode(raw: u64, cluster_bits: u32, version: u32) -> Result<L2Entry, String> {
        if raw & COMPRESSED != 0 {
            if raw & COPIED != 0 {
                return Err(format!("compressed L2 entry {raw:#x} has the copied flag"));
            }
            let x = 62 - (cluster_bits - 8);
            let host = raw & ((1u64 << x) - 1);
            let extra = (raw >> x) & ((1u64 << (cluster_bits - 8)) - 1);
            if host == 0 {
                return Err(format!("compressed L2 entry {raw:#x} points at offset 0"));
            }
            return Ok(L2Entry::Compressed {
                host,
                sectors: extra + 1,
            });
        }
        if raw & L2_RESERVED != 0 {
            return Err(format!("L2 entry {raw:#x} has reserved bits set"));
        }
        let host = raw & OFFSET_MASK;
        let copied = raw & COPIED != 0;
        if raw & ZERO != 0 {
            if version < 3 {
                return Err(format!(
                    "L2 entry {raw:#x} uses the zero flag in a version 2 image"
                ));
            }
            return Ok(L2Entry::Zero { host, copied });
        }
        if host == 0 {
            // QEMU writes the copied flag on some unallocated entries; they are still unallocated.
            return Ok(L2Entry::Unallocated);
        }
        Ok(L2Entry::Normal { host, copied })
    }

    pub fn encode_compressed(host: u64, len: u64, cluster_bits: u32) -> u64 {
        let x = 62 - (cluster_bits - 8);
        let extra = ((host + len - 1) >> 9) - (host >> 9);
        COMPRESSED | (extra << x) | host
    }
}

/// Decodes an L1 entry to the L2 table offset (0 = no table) and its copied flag.
pub fn decode_l1(raw: u64) -> Result<(u64, bool), String> {
    if raw & L1_RESERVED != 0 {
        return Err(format!("L1 entry {raw:#x} has reserved bits set"));
    }
    Ok((raw & OFFSET_MASK, raw & COPIED != 0))
}

pub fn read_be_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_be_bytes(a)
        })
        .collect()
}

pub fn write_be_u64s(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_roundtrip() {
        for bits in 9..=21 {
            let e = L2Entry::encode_compressed(0x12345 * 512 + 17, 700, bits);
            match L2Entry::decode(e, bits, 3).unwrap() {
                L2Entry::Compressed { host, sectors } => {
                    assert_eq!(host, 0x12345 * 512 + 17);
                    assert_eq!(sectors, 2);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn v2_zero_flag_refused() {
        assert!(L2Entry::decode(0x10000 | ZERO, 16, 2).is_err());
        assert_eq!(
            L2Entry::decode(0x10000 | ZERO, 16, 3).unwrap(),
            L2Entry::Zero {
                host: 0x10000,
                copied: false
            }
        );
        assert!(L2Entry::decode(0x10002, 16, 3).is_err());
        assert_eq!(
            L2Entry::decode(COPIED, 16, 3).unwrap(),
            L2Entry::Unallocated
        );
    }
}
