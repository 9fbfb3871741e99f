//! Compressed cluster payloads: raw deflate ("zlib" in qcow2 terms, no zlib header) and zstd.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::header::CompressionType;

/// Decompresses `input` into exactly `out.len()` bytes. The input may carry trailing padding (it is
/// read in whole sectors), which is ignored.
pub fn decompress(kind: CompressionType, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    match kind {
        CompressionType::Zlib => inflate(input, out),
        CompressionType::Zstd => unzstd(input, out),
    }
}

fn inflate(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut d = Decompress::new(false);
    loop {
        let (i, o) = (d.total_in() as usize, d.total_out() as usize);
        if o == out.len() {
            return Ok(());
        }
        let status = d
            .decompress(&input[i..], &mut out[o..], FlushDecompress::Finish)
            .map_err(|e| format!("deflate data is invalid: {e}"))?;
        let progressed = d.total_in() as usize != i || d.total_out() as usize != o;
        match status {
            Status::StreamEnd if (d.total_out() as usize) < out.len() => {
                return Err(format!(
                    "deflate stream ends after {} of {} bytes",
                    d.total_out(),
                    out.len()
                ))
            }
            _ if !progressed => {
                return Err(format!(
                    "deflate stream truncated after {} of {} bytes",
                    d.total_out(),
                    out.len()
                ))
            }
            _ => {}
        }
    }
}

fn unzstd(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
    let mut dec = Decoder::new().map_err(|e| format!("zstd: {e}"))?;
    let mut inb = InBuffer::around(input);
    let mut produced = 0usize;
    loop {
        let mut outb = OutBuffer::around(&mut out[produced..]);
        let before_in = inb.pos();
        let hint = dec
            .run(&mut inb, &mut outb)
            .map_err(|e| format!("zstd data is invalid: {e}"))?;
        let n = outb.pos();
        produced += n;
        if produced == out.len() {
            return Ok(());
        }
        // A finished frame (hint 0) that is short, or no progress at all, means truncated data.
        if hint == 0 || (n == 0 && inb.pos() == before_in) {
            return Err(format!(
                "zstd stream ends after {produced} of {} bytes",
                out.len()
            ));
        }
    }
}

/// Compresses one cluster with raw deflate; `None` if the result would not be smaller.
pub fn deflate(data: &[u8]) -> Option<Vec<u8>> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len());
    match c.compress_vec(data, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) if out.len() < data.len() => Some(out),
        _ => None,
    }
}

/// Compresses one cluster with zstd; `None` if the result would not be smaller.
pub fn zstd_compress(data: &[u8]) -> Option<Vec<u8>> {
    let out = zstd::bulk::compress(data, 3).ok()?;
    (out.len() < data.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_padding() {
        let data: Vec<u8> = (0..65536u32)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let mut z = deflate(&data).unwrap();
        z.extend_from_slice(&[0xaa; 300]);
        let mut out = vec![0u8; data.len()];
        decompress(CompressionType::Zlib, &z, &mut out).unwrap();
        assert_eq!(out, data);
        let mut z = zstd_compress(&data).unwrap();
        z.extend_from_slice(&[0; 300]);
        decompress(CompressionType::Zstd, &z, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut out = vec![0u8; 4096];
        assert!(decompress(CompressionType::Zlib, &[0xff; 100], &mut out).is_err());
        assert!(decompress(CompressionType::Zstd, &[0xff; 100], &mut out).is_err());
        assert!(decompress(CompressionType::Zlib, &[], &mut out).is_err());
        assert!(decompress(CompressionType::Zstd, &[], &mut out).is_err());
    }
}
