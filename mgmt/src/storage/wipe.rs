//! `vol-wipe --algorithm`: the overwrite patterns libvirt delegates to scrub(1) (`scrub -f -p ALG`),
//! done here with our own writes so nothing has to be installed. Each pass covers the whole file,
//! is written in 1 MiB chunks and synced before the next one starts, so the overwrite has reached
//! the disk pass by pass; a pass that scrub verifies is read back and compared.
//!
//! Pass sequences, as scrub(1)'s manual documents them:
//! - nnsa: NNSA Policy Letter NAP-14.1-C (XVI.8): random, random, 0x00, verify.
//! - dod: DoD 5220.22-M 8-306 (d) — a character, its complement, a random character — with the
//!   random pass first as scrub does: random, 0x00, 0xff, verify.
//! - bsi: the German BSI's 9 passes: 0xff, 0xfe, 0xfd, 0xfb, 0xf7, 0xef, 0xdf, 0xbf, 0x7f.
//! - gutmann: the 35 passes of Gutmann, "Secure Deletion of Data from Magnetic and Solid-State
//!   Memory" (1996): 4 random, the 27 fixed patterns of its table, 4 random.
//! - schneier: Schneier, "Applied Cryptography" (1996): 0x00, 0xff, then 5 random.
//! - pfitzner7 / pfitzner33: Roy Pfitzner's 7 / 33 random passes.
//! - random: one random pass.
//!
//! Random data comes from the kernel (getrandom). scrub also stamps its own "already scrubbed"
//! signature at the start of the file; that is scrub bookkeeping, not part of a pattern, and is
//! not written here.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::backend::logical;
use super::driver::StorageDriver;
use super::{StorageError, VolInfo};

/// One pass over the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Random,
    /// A byte pattern repeated from the start of the file.
    Fixed(&'static [u8]),
    /// Read back and compare with the previous (fixed) pass.
    Verify,
}

use Pass::{Fixed as F, Random as R, Verify as V};

const GUTMANN: [Pass; 35] = [
    R,
    R,
    R,
    R,
    F(&[0x55]),
    F(&[0xaa]),
    F(&[0x92, 0x49, 0x24]),
    F(&[0x49, 0x24, 0x92]),
    F(&[0x24, 0x92, 0x49]),
    F(&[0x00]),
    F(&[0x11]),
    F(&[0x22]),
    F(&[0x33]),
    F(&[0x44]),
    F(&[0x55]),
    F(&[0x66]),
    F(&[0x77]),
    F(&[0x88]),
    F(&[0x99]),
    F(&[0xaa]),
    F(&[0xbb]),
    F(&[0xcc]),
    F(&[0xdd]),
    F(&[0xee]),
    F(&[0xff]),
    F(&[0x92, 0x49, 0x24]),
    F(&[0x49, 0x24, 0x92]),
    F(&[0x24, 0x92, 0x49]),
    F(&[0x6d, 0xb6, 0xdb]),
    F(&[0xb6, 0xdb, 0x6d]),
    F(&[0xdb, 0x6d, 0xb6]),
    R,
    R,
    R,
    R,
];

/// The passes of a scrub algorithm, or None for a name libvirt does not hand to scrub.
pub fn passes(algorithm: &str) -> Option<Vec<Pass>> {
    Some(match algorithm {
        "nnsa" => vec![R, R, F(&[0x00]), V],
        "dod" => vec![R, F(&[0x00]), F(&[0xff]), V],
        "bsi" => [0xffu8, 0xfe, 0xfd, 0xfb, 0xf7, 0xef, 0xdf, 0xbf, 0x7f]
            .iter()
            .map(|b| F(std::slice::from_ref(b)))
            .collect(),
        "gutmann" => GUTMANN.to_vec(),
        "schneier" => vec![F(&[0x00]), F(&[0xff]), R, R, R, R, R],
        "pfitzner7" => vec![R; 7],
        "pfitzner33" => vec![R; 33],
        "random" => vec![R],
        _ => return None,
    })
}

const CHUNK: usize = 1 << 20;

fn fill_random(buf: &mut [u8], path: &Path) -> Result<(), StorageError> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the kernel writes at most the given length into our buffer.
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(StorageError::io("cannot get random data to wipe", path)(e));
        }
        got += n as usize;
    }
    Ok(())
}

/// Fills `buf` with `pattern` as it lies at file offset `off`.
fn fill_fixed(buf: &mut [u8], pattern: &[u8], off: u64) {
    let k = pattern.len() as u64;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern[((off + i as u64) % k) as usize];
    }
}

/// Runs `passes` over the first `len` bytes of `path`.
pub fn overwrite(path: &Path, len: u64, passes: &[Pass]) -> Result<(), StorageError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(StorageError::io("cannot open volume", path))?;
    let mut buf = vec![0u8; CHUNK];
    let mut last: Option<&'static [u8]> = None;
    for pass in passes {
        match *pass {
            Pass::Verify => verify(&f, path, len, last, &mut buf)?,
            p => {
                let mut off = 0u64;
                while off < len {
                    let n = (len - off).min(CHUNK as u64) as usize;
                    match p {
                        Pass::Fixed(pat) => fill_fixed(&mut buf[..n], pat, off),
                        _ => fill_random(&mut buf[..n], path)?,
                    }
                    f.write_all_at(&buf[..n], off)
                        .map_err(StorageError::io("cannot wipe volume", path))?;
                    off += n as u64;
                }
                f.sync_all()
                    .map_err(StorageError::io("cannot sync volume", path))?;
                last = match p {
                    Pass::Fixed(pat) => Some(pat),
                    _ => None,
                };
            }
        }
    }
    Ok(())
}

fn verify(
    f: &File,
    path: &Path,
    len: u64,
    pattern: Option<&[u8]>,
    buf: &mut [u8],
) -> Result<(), StorageError> {
    let Some(pat) = pattern else {
        return Ok(());
    };
    let mut want = vec![0u8; buf.len()];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], off)
            .map_err(StorageError::io("cannot read back wiped volume", path))?;
        fill_fixed(&mut want[..n], pat, off);
        if buf[..n] != want[..n] {
            return Err(StorageError::Invalid(format!(
                "{}: verification after wiping failed near offset {off}",
                path.display()
            )));
        }
        off += n as u64;
    }
    Ok(())
}

/// `vol-wipe` with the default "zero" algorithm on a volume file, as libvirt 10.7's
/// storageBackendVolWipeLocalFile does it, whatever the file's format:
/// - a sparse file (fewer blocks on disk than its length needs) is truncated to 0 and extended
///   back to its length, so it reads as zeroes and holds no data blocks;
/// - any other file gets zeroes written over it from the start, then a data sync, so its blocks
///   stay allocated (libvirt writes the allocation's worth of bytes, which can run past the end
///   of a file whose length is not a multiple of the block size; we stop at the end of the file
///   so the volume keeps its length).
///
/// A qcow2 image is not recreated: its header goes with everything else, exactly as with
/// libvirt, so the volume afterwards is a raw volume of the file's old length full of zeroes.
pub fn zero_file(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(StorageError::io(
            "Failed to open storage volume with path",
            path,
        ))?;
    let meta = f.metadata().map_err(StorageError::io(
        "Failed to stat storage volume with path",
        path,
    ))?;
    let len = meta.len();
    if meta.is_file() && meta.blocks() < len / 512 {
        f.set_len(0)
            .and_then(|_| f.set_len(len))
            .map_err(StorageError::io(
                "Failed to truncate volume with path",
                path,
            ))?;
        return Ok(());
    }
    let want = (meta.blocks() * 512).min(len);
    let zeros = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < want {
        let n = (want - off).min(CHUNK as u64) as usize;
        f.write_all_at(&zeros[..n], off).map_err(StorageError::io(
            "Failed to write to storage volume with path",
            path,
        ))?;
        off += n as u64;
    }
    f.sync_data().map_err(StorageError::io(
        "cannot sync data to volume with path",
        path,
    ))
}

impl StorageDriver {
    /// `vol-wipe` (the "zero" algorithm). File volumes: [`zero_file`]; logical volumes: zeroes
    /// over the whole device (a sparse LV is refused, as libvirt refuses it).
    pub fn wipe_volume(
        &self,
        pool: Option<&str>,
        vol: &str,
        in_use: &dyn Fn(&Path) -> bool,
    ) -> Result<VolInfo, StorageError> {
        let _g = self.lock()?;
        let v = self.volume(pool, vol)?;
        let path = PathBuf::from(&v.path);
        if in_use(&path) {
            return Err(StorageError::Invalid(format!(
                "Requested operation is not valid: storage volume '{}' is in use by a running domain",
                v.name
            )));
        }
        if v.vol_type == "block" {
            let r = self.active(&v.pool)?;
            logical::wipe_volume(&r.def, &v)?;
            return self.volume(Some(r.name()), &v.name);
        }
        zero_file(&path)?;
        VolInfo::read(&v.pool, &path)
    }

    /// `vol-wipe --algorithm ALG` for the algorithms libvirt runs scrub for: the volume's file is
    /// overwritten over its whole length, whatever its format (as scrub does to it).
    pub fn wipe_volume_with(
        &self,
        pool: Option<&str>,
        vol: &str,
        algorithm: &str,
        in_use: &dyn Fn(&Path) -> bool,
    ) -> Result<VolInfo, StorageError> {
        let Some(p) = passes(algorithm) else {
            return Err(StorageError::InvalidArg(format!(
                "unsupported wiping algorithm '{algorithm}'"
            )));
        };
        let _g = self.lock()?;
        let v = self.volume(pool, vol)?;
        let path = PathBuf::from(&v.path);
        if in_use(&path) {
            return Err(StorageError::Invalid(format!(
                "Requested operation is not valid: storage volume '{}' is in use by a running domain",
                v.name
            )));
        }
        // The length by seeking: a logical volume's metadata says 0 bytes.
        let len = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
            .map_err(StorageError::io("cannot size volume", &path))?;
        overwrite(&path, len, &p)?;
        if v.vol_type == "block" {
            return self.volume(Some(&v.pool), &v.name);
        }
        VolInfo::read(&v.pool, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_counts_as_scrub_documents() {
        for (alg, n) in [
            ("nnsa", 4),
            ("dod", 4),
            ("bsi", 9),
            ("gutmann", 35),
            ("schneier", 7),
            ("pfitzner7", 7),
            ("pfitzner33", 33),
            ("random", 1),
        ] {
            assert_eq!(passes(alg).map(|p| p.len()), Some(n), "{alg}");
        }
        assert_eq!(passes("zero"), None);
        assert_eq!(passes("trim"), None);
    }

    #[test]
    fn last_fixed_pattern_stays_and_verifies() {
        let dir = std::env::temp_dir().join(format!("ironvirt-wipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("v.img");
        let len = CHUNK as u64 + 1001;
        std::fs::write(&f, vec![0x42u8; len as usize]).unwrap();
        for (alg, last) in [("dod", 0xffu8), ("bsi", 0x7f), ("nnsa", 0x00)] {
            overwrite(&f, len, &passes(alg).unwrap()).unwrap();
            let data = std::fs::read(&f).unwrap();
            assert_eq!(data.len() as u64, len);
            assert!(data.iter().all(|b| *b == last), "{alg}");
        }
        // A three-byte pattern keeps its phase across chunk boundaries.
        overwrite(&f, len, &[F(&[0x92, 0x49, 0x24])]).unwrap();
        let data = std::fs::read(&f).unwrap();
        assert!(data.chunks(3).all(|c| c == &[0x92, 0x49, 0x24][..c.len()]));
        overwrite(&f, len, &[R]).unwrap();
        let data = std::fs::read(&f).unwrap();
        assert!(data.iter().filter(|b| **b == 0x92).count() < data.len() / 16);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
