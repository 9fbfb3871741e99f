//! A minimal writer for the "newc" cpio format, the one the Linux kernel unpacks as an initramfs.
//!
//! Only what an initramfs needs: directories, regular files and symlinks. Device nodes are left out on
//! purpose: the inits mount devtmpfs. Output is uncompressed because decompressing under TCG is slow,
//! and archives may be concatenated (the kernel unpacks them one after the other).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Writing an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error(
        "invalid archive path {0:?}: paths must be relative-looking names without `..` or NUL"
    )]
    BadPath(String),
    #[error("{path:?} is {size} bytes, more than newc's 4 GiB limit per file")]
    TooLarge { path: String, size: u64 },
    #[error("reading {path}: {source}")]
    Source {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("writing the archive: {0}")]
    Io(#[from] io::Error),
}

/// Streams a newc archive into `W`. Parent directories are created implicitly (mode 0755) so callers
/// can add `lib/modules/x.ko` without listing `lib` and `lib/modules` first.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    dirs: BTreeSet<String>,
    entries: BTreeSet<String>,
}

/// Normalizes an archive path: strips leading `/` and `./`, rejects `..` and empty names.
fn normalize(path: &str) -> Result<String, CpioError> {
    let trimmed = path.trim_start_matches('/');
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(CpioError::BadPath(path.to_string())),
            p => parts.push(p),
        }
    }
    if parts.is_empty() || path.contains('\0') {
        return Err(CpioError::BadPath(path.to_string()));
    }
    Ok(parts.join("/"))
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
            dirs: BTreeSet::new(),
            entries: BTreeSet::new(),
        }
    }

    fn pad(&mut self, align: u64) -> io::Result<()> {
        let rem = self.written % align;
        if rem != 0 {
            let zeros = [0u8; 512];
            let n = (align - rem) as usize;
            self.out.write_all(&zeros[..n])?;
            self.written += n as u64;
        }
        Ok(())
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        // Fields: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check.
        // mtime 0 keeps archives reproducible.
        let hdr = format!(
            "{MAGIC}{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.write_all(hdr.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.written += hdr.len() as u64 + name.len() as u64 + 1;
        self.pad(4)
    }

    fn ensure_parents(&mut self, name: &str) -> Result<(), CpioError> {
        let mut prefix = String::new();
        let comps: Vec<&str> = name.split('/').collect();
        for comp in &comps[..comps.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if !self.dirs.contains(&prefix) {
                self.header(&prefix, S_IFDIR | 0o755, 2, 0)?;
                self.dirs.insert(prefix.clone());
            }
        }
        Ok(())
    }

    /// Adds a directory (and its parents).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        let name = normalize(path)?;
        if self.dirs.contains(&name) {
            return Ok(());
        }
        self.ensure_parents(&name)?;
        self.header(&name, S_IFDIR | (mode & 0o7777), 2, 0)?;
        self.dirs.insert(name);
        Ok(())
    }

    /// Adds a regular file with the given contents.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), CpioError> {
        let name = normalize(path)?;
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge {
            path: name.clone(),
            size: data.len() as u64,
        })?;
        self.ensure_parents(&name)?;
        self.header(&name, S_IFREG | (mode & 0o7777), 1, size)?;
        self.out.write_all(data)?;
        self.written += u64::from(size);
        self.pad(4)?;
        self.entries.insert(name);
        Ok(())
    }

    /// Adds a regular file copied from the host file `src` (streamed, so large binaries are fine).
    pub fn file_from(&mut self, path: &str, mode: u32, src: &Path) -> Result<(), CpioError> {
        let name = normalize(path)?;
        let source = |e| CpioError::Source {
            path: src.display().to_string(),
            source: e,
        };
        let f = File::open(src).map_err(source)?;
        let len = f.metadata().map_err(source)?.len();
        let size = u32::try_from(len).map_err(|_| CpioError::TooLarge {
            path: name.clone(),
            size: len,
        })?;
        self.ensure_parents(&name)?;
        self.header(&name, S_IFREG | (mode & 0o7777), 1, size)?;
        // Copy exactly `size` bytes: a file growing while we read must not corrupt the archive.
        let copied = io::copy(&mut f.take(u64::from(size)), &mut self.out)?;
        if copied != u64::from(size) {
            return Err(source(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            )));
        }
        self.written += copied;
        self.pad(4)?;
        self.entries.insert(name);
        Ok(())
    }

    /// Adds a symlink `path` -> `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        let name = normalize(path)?;
        let size = u32::try_from(target.len()).map_err(|_| CpioError::BadPath(target.into()))?;
        self.ensure_parents(&name)?;
        self.header(&name, S_IFLNK | 0o777, 1, size)?;
        self.out.write_all(target.as_bytes())?;
        self.written += u64::from(size);
        self.pad(4)?;
        self.entries.insert(name);
        Ok(())
    }

    /// True if a file or symlink was already added at `path`.
    pub fn contains(&self, path: &str) -> bool {
        normalize(path)
            .map(|n| self.entries.contains(&n) || self.dirs.contains(&n))
            .unwrap_or(false)
    }

    /// Writes the trailer (padded to 512 bytes, so archives concatenate cleanly) and returns the sink.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.header(TRAILER, 0, 1, 0)?;
        self.pad(512)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(hdr: &[u8], idx: usize) -> u32 {
        let s = std::str::from_utf8(&hdr[6 + idx * 8..6 + idx * 8 + 8]).unwrap();
        u32::from_str_radix(s, 16).unwrap()
    }

    #[test]
    fn layout_matches_newc() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("/bin/hello", 0o755, b"hi\n").unwrap();
        let buf = w.finish().unwrap();
        // First entry: implicit directory "bin".
        assert_eq!(&buf[..6], b"070701");
        assert_eq!(field(&buf, 1), S_IFDIR | 0o755);
        assert_eq!(&buf[110..113], b"bin");
        // Header + "bin\0" = 114 bytes, padded to 116.
        let second = &buf[116..];
        assert_eq!(field(second, 1), S_IFREG | 0o755);
        assert_eq!(field(second, 6), 3);
        assert_eq!(field(second, 11), "bin/hello".len() as u32 + 1);
        // name ends at 110+10 = 120 -> padded to 120; data follows.
        assert_eq!(&second[120..123], b"hi\n");
        assert_eq!(buf.len() % 512, 0);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("TRAILER!!!"));
    }

    #[test]
    fn rejects_parent_components() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(matches!(
            w.file("../etc/x", 0o644, b""),
            Err(CpioError::BadPath(_))
        ));
        assert!(matches!(w.dir("/", 0o755), Err(CpioError::BadPath(_))));
    }

    #[test]
    fn symlink_and_dedup_dirs() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("a/b", 0o700).unwrap();
        w.dir("a/b", 0o700).unwrap();
        w.symlink("a/b/sh", "/bin/busybox").unwrap();
        assert!(w.contains("/a/b/sh"));
        let buf = w.finish().unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert_eq!(text.matches("a/b\0").count(), 1);
        assert!(text.contains("/bin/busybox"));
    }
}
