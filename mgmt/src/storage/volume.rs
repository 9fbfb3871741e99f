//! Volumes. In file pools (dir, fs, netfs) every regular file in the target directory is a
//! volume, named by its file name and keyed by its path; creation, resizing and cloning use our
//! own block code. Logical pools hand their volumes to [`backend::logical`] (lvm2).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ironvirt_devices::block::ImageFormat;

use super::backend::{logical, Backend};
use super::driver::{PoolRecord, StorageDriver};
use super::image::{self, CreateSpec};
use super::progress;
use super::vol_xml::VolDef;
use super::StorageError;

/// A volume's backing store as `vol-dumpxml` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingInfo {
    pub path: String,
    pub format: Option<String>,
    pub perms: Option<(u32, u32, u32)>,
}

/// Everything the volume commands print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolInfo {
    pub name: String,
    pub key: String,
    pub path: String,
    pub pool: String,
    /// `file` (libvirt's volume type for images in directories).
    pub vol_type: String,
    pub format: String,
    pub capacity: u64,
    pub allocation: u64,
    pub physical: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub compat: Option<String>,
    pub cluster_size: Option<u64>,
    pub lazy_refcounts: bool,
    pub backing: Option<BackingInfo>,
}

impl VolInfo {
    pub(crate) fn read(pool: &str, path: &Path) -> Result<VolInfo, StorageError> {
        let meta = std::fs::metadata(path).map_err(StorageError::io("cannot stat volume", path))?;
        let s = image::inspect(path)?;
        let backing = s.backing.map(|(p, format)| BackingInfo {
            perms: std::fs::metadata(&p)
                .ok()
                .map(|m| (m.mode(), m.uid(), m.gid())),
            path: p,
            format,
        });
        Ok(VolInfo {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            key: path.display().to_string(),
            path: path.display().to_string(),
            pool: pool.to_string(),
            vol_type: "file".into(),
            format: s.format.to_string(),
            capacity: s.capacity,
            allocation: s.allocation,
            physical: s.physical,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            atime: (meta.atime(), meta.atime_nsec()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            compat: s.compat,
            cluster_size: s.cluster_size,
            lazy_refcounts: s.lazy_refcounts,
            backing,
        })
    }

    pub fn block_format(&self) -> Result<ImageFormat, StorageError> {
        // A logical volume has no format of its own: its bytes are the disk.
        if self.format.is_empty() && self.vol_type == "block" {
            return Ok(ImageFormat::Raw);
        }
        image::block_format(&self.format)
    }
}

/// What `vol-create-as` (or a `<volume>` document) asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolCreate {
    pub name: String,
    pub capacity: u64,
    pub allocation: Option<u64>,
    /// raw (default) or qcow2.
    pub format: Option<String>,
    /// A volume name in the same pool, a key or a path.
    pub backing: Option<String>,
    pub backing_format: Option<String>,
    pub prealloc_metadata: bool,
    pub compat: Option<String>,
    pub cluster_size: Option<u64>,
    pub lazy_refcounts: bool,
}

impl VolCreate {
    /// A `<volume>` document for `vol-create` (capacity required, as libvirt requires it).
    pub fn from_xml(xml: &str) -> Result<VolCreate, StorageError> {
        Self::parse(xml, true)
    }

    /// A `<volume>` document for `vol-create-from`, where libvirt lets the capacity default to
    /// the input volume's (a missing capacity reads as 0 here).
    pub fn from_xml_for_copy(xml: &str) -> Result<VolCreate, StorageError> {
        Self::parse(xml, false)
    }

    fn parse(xml: &str, need_capacity: bool) -> Result<VolCreate, StorageError> {
        let def = VolDef::parse(xml)?;
        if def.has_encryption() {
            return Err(StorageError::Unsupported(
                "encrypted volumes are not supported".into(),
            ));
        }
        let backing = def.backing();
        let capacity = match def.capacity()? {
            Some(c) => c,
            None if !need_capacity => 0,
            None => return Err(StorageError::Invalid("missing capacity element".into())),
        };
        Ok(VolCreate {
            name: def.name().to_string(),
            capacity,
            allocation: def.allocation()?,
            format: def.format(),
            backing_format: backing.as_ref().and_then(|b| b.1.clone()),
            backing: backing.map(|b| b.0),
            prealloc_metadata: false,
            // libvirt's volume parser: a <features> element implies compat 1.1.
            compat: def
                .compat()
                .or_else(|| def.has_features().then(|| "1.1".to_string())),
            cluster_size: def.cluster_size()?,
            lazy_refcounts: def.lazy_refcounts(),
        })
    }

    /// What libvirt reserves: the given allocation, else (no `<allocation>`) the whole capacity
    /// — "if omitted when creating a volume, the volume will be fully allocated".
    pub fn effective_allocation(&self) -> u64 {
        self.allocation.unwrap_or(self.capacity)
    }

    /// The qcow2 version libvirt asks qemu-img for: `<compat>` if given, else 0.10
    /// (storageBackendCreateQemuImgOpts adds `compat=0.10` when the volume names none).
    /// Options that only qcow2 has are refused for other formats, as libvirt refuses them.
    pub fn qcow2_v2(&self, format: ImageFormat) -> Result<bool, StorageError> {
        if format != ImageFormat::Qcow2 {
            if self.compat.is_some() {
                return Err(StorageError::Unsupported(
                    "compatibility option only available with qcow2".into(),
                ));
            }
            if self.lazy_refcounts {
                return Err(StorageError::Unsupported(
                    "format features only available with qcow2".into(),
                ));
            }
            return Ok(false);
        }
        let v2 = match self.compat.as_deref() {
            None | Some("0.10") => true,
            Some("1.1") => false,
            Some(other) => {
                return Err(StorageError::Unsupported(format!(
                    "qcow2 compat level '{other}' is not supported (use 0.10 or 1.1)"
                )))
            }
        };
        if v2 && self.lazy_refcounts {
            return Err(StorageError::Unsupported(
                "lazy_refcounts not supported with compat level 0.10".into(),
            ));
        }
        Ok(v2)
    }
}

impl VolCreate {
    /// The XML virsh builds from `vol-create-as` options (`--print-xml`).
    pub fn to_xml(&self) -> String {
        let mut s = format!(
            "<volume>\n  <name>{}</name>\n  <capacity>{}</capacity>\n",
            crate::xml::tree::escape_text(&self.name),
            self.capacity
        );
        if let Some(a) = self.allocation {
            s.push_str(&format!("  <allocation>{a}</allocation>\n"));
        }
        if let Some(f) = &self.format {
            s.push_str(&format!(
                "  <target>\n    <format type='{}'/>\n  </target>\n",
                crate::xml::tree::escape_text(f)
            ));
        }
        if let Some(b) = &self.backing {
            s.push_str(&format!(
                "  <backingStore>\n    <path>{}</path>\n",
                crate::xml::tree::escape_text(b)
            ));
            if let Some(f) = &self.backing_format {
                s.push_str(&format!(
                    "    <format type='{}'/>\n",
                    crate::xml::tree::escape_text(f)
                ));
            }
            s.push_str("  </backingStore>\n");
        }
        s.push_str("</volume>\n");
        s
    }
}

/// Volume names are file names in the pool directory.
pub(super) fn check_name(name: &str) -> Result<(), StorageError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(StorageError::InvalidArg(format!(
            "volume name '{name}' cannot contain '/'"
        )));
    }
    Ok(())
}

/// Where `vol-upload`/`vol-download` start and how much they move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    pub offset: u64,
    /// 0 means "to the end".
    pub length: u64,
    pub sparse: bool,
}

/// The size of a volume file or block device (a block device's metadata says 0).
fn byte_len(f: &File, path: &Path) -> Result<u64, StorageError> {
    let meta = f
        .metadata()
        .map_err(StorageError::io("cannot stat", path))?;
    if meta.file_type().is_block_device() {
        let mut f = f;
        return f
            .seek(SeekFrom::End(0))
            .map_err(StorageError::io("cannot size", path));
    }
    Ok(meta.len())
}

/// Whether a pool keeps its volumes as files in its target directory.
pub(super) fn file_pool(r: &PoolRecord) -> bool {
    Backend::of(&r.def).map_or(true, Backend::file_volumes)
}

impl StorageDriver {
    /// The pool record of a volume (for the backend of its pool).
    fn pool_of(&self, v: &VolInfo) -> Result<PoolRecord, StorageError> {
        self.active(&v.pool)
    }

    /// The volumes of an active pool, sorted by name.
    pub fn volumes(&self, pool: &str) -> Result<Vec<VolInfo>, StorageError> {
        let r = self.active(pool)?;
        if !file_pool(&r) {
            return logical::volumes(&r.def);
        }
        let dir = r.target();
        let mut out = Vec::new();
        let entries =
            std::fs::read_dir(&dir).map_err(StorageError::io("cannot open directory", &dir))?;
        for e in entries.flatten() {
            let path = e.path();
            // Files that vanish or cannot be read while we list are skipped, as libvirt does.
            if path.is_file() {
                if let Ok(v) = VolInfo::read(r.name(), &path) {
                    out.push(v);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A volume by name in `pool`, or (without a pool, or when the name is not found) by key
    /// or path in any active pool — virsh's `--pool` semantics.
    pub fn volume(&self, pool: Option<&str>, vol: &str) -> Result<VolInfo, StorageError> {
        if let Some(p) = pool {
            let r = self.active(p)?;
            if !file_pool(&r) && !vol.contains('/') {
                return logical::volumes(&r.def)?
                    .into_iter()
                    .find(|v| v.name == vol || v.key == vol)
                    .ok_or_else(|| StorageError::NoVolume {
                        kind: "name",
                        value: vol.to_string(),
                    });
            }
            if !vol.contains('/') {
                let path = r.target().join(vol);
                if path.is_file() {
                    return VolInfo::read(r.name(), &path);
                }
                return Err(StorageError::NoVolume {
                    kind: "name",
                    value: vol.to_string(),
                });
            }
        }
        let want = Path::new(vol);
        for r in self.list()?.into_iter().filter(PoolRecord::is_active) {
            if !file_pool(&r) {
                // By path, or by key (the LV's UUID); an unreadable group is skipped.
                if let Ok(vols) = logical::volumes(&r.def) {
                    if let Some(v) = vols.into_iter().find(|v| v.path == vol || v.key == vol) {
                        return Ok(v);
                    }
                }
                continue;
            }
            if want.parent() == Some(r.target().as_path()) && want.is_file() {
                return VolInfo::read(r.name(), want);
            }
        }
        Err(StorageError::NoVolume {
            kind: if vol.contains('/') { "key" } else { "path" },
            value: vol.to_string(),
        })
    }

    fn backing_of(
        &self,
        pool: &PoolRecord,
        spec: &VolCreate,
    ) -> Result<Option<(PathBuf, ImageFormat)>, StorageError> {
        let Some(b) = &spec.backing else {
            return Ok(None);
        };
        let path = if b.contains('/') {
            PathBuf::from(b)
        } else {
            pool.target().join(b)
        };
        if !path.exists() {
            return Err(StorageError::InvalidArg(format!(
                "backing volume '{b}' does not exist"
            )));
        }
        let format = match &spec.backing_format {
            Some(f) => image::block_format(f)?,
            None => image::block_format(image::probe(&path)?.0)?,
        };
        Ok(Some((path, format)))
    }

    /// `vol-create-as` / `vol-create`.
    pub fn create_volume(&self, pool: &str, spec: &VolCreate) -> Result<VolInfo, StorageError> {
        let _g = self.lock()?;
        let r = self.active(pool)?;
        check_name(&spec.name)?;
        if !file_pool(&r) {
            return self.create_lv(&r, spec);
        }
        let path = r.target().join(&spec.name);
        if path.exists() {
            return Err(StorageError::VolumeExists(spec.name.clone()));
        }
        let format = image::block_format(spec.format.as_deref().unwrap_or("raw"))?;
        let cs = CreateSpec {
            format,
            capacity: spec.capacity,
            allocation: Some(spec.effective_allocation()),
            backing: self.backing_of(&r, spec)?,
            prealloc_metadata: spec.prealloc_metadata,
            compat_v2: spec.qcow2_v2(format)?,
            cluster_size: spec.cluster_size,
            lazy_refcounts: spec.lazy_refcounts,
        };
        if let Err(e) = image::create(&path, &cs) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        VolInfo::read(r.name(), &path)
    }

    /// A logical volume: raw bytes on a device, so only the sizes and a backing LV (a
    /// snapshot) apply.
    pub(super) fn create_lv(
        &self,
        r: &PoolRecord,
        spec: &VolCreate,
    ) -> Result<VolInfo, StorageError> {
        if let Some(f) = spec.format.as_deref().filter(|f| *f != "raw") {
            return Err(StorageError::Unsupported(format!(
                "logical volumes are raw block devices; format '{f}' is not supported in pool '{}'",
                r.name()
            )));
        }
        if spec.prealloc_metadata {
            return Err(StorageError::Unsupported(
                "metadata preallocation is not supported for block volumes".into(),
            ));
        }
        if logical::volumes(&r.def)?
            .iter()
            .any(|v| v.name == spec.name)
        {
            return Err(StorageError::VolumeExists(spec.name.clone()));
        }
        let backing = match &spec.backing {
            None => None,
            Some(b) => Some(
                logical::volumes(&r.def)?
                    .into_iter()
                    .find(|v| v.name == *b || v.path == *b)
                    .ok_or_else(|| {
                        StorageError::InvalidArg(format!("backing volume '{b}' does not exist"))
                    })?
                    .path,
            ),
        };
        logical::create_volume(
            &r.def,
            &spec.name,
            spec.capacity,
            spec.allocation,
            backing.as_deref(),
        )
    }

    /// `vol-delete`. `in_use` says whether a running domain has the path open.
    pub fn delete_volume(
        &self,
        pool: Option<&str>,
        vol: &str,
        in_use: &dyn Fn(&Path) -> bool,
    ) -> Result<VolInfo, StorageError> {
        let _g = self.lock()?;
        let v = self.volume(pool, vol)?;
        if in_use(Path::new(&v.path)) {
            return Err(StorageError::Invalid(format!(
                "Requested operation is not valid: storage volume '{}' is in use by a running domain",
                v.name
            )));
        }
        if v.vol_type == "block" {
            logical::delete_volume(&v.path)?;
        } else {
            std::fs::remove_file(&v.path)
                .map_err(StorageError::io("cannot unlink file", Path::new(&v.path)))?;
        }
        Ok(v)
    }

    /// `vol-resize`: `capacity` is the new size, or what to add with `delta`.
    pub fn resize_volume(
        &self,
        pool: Option<&str>,
        vol: &str,
        capacity: u64,
        delta: bool,
        shrink: bool,
        allocate: bool,
    ) -> Result<VolInfo, StorageError> {
        let _g = self.lock()?;
        let v = self.volume(pool, vol)?;
        let new = if delta {
            if shrink {
                v.capacity.checked_sub(capacity)
            } else {
                v.capacity.checked_add(capacity)
            }
            .ok_or_else(|| {
                StorageError::InvalidArg(format!(
                    "can't shrink capacity below zero for volume '{}'",
                    v.name
                ))
            })?
        } else {
            capacity
        };
        if new < v.capacity && !shrink {
            return Err(StorageError::InvalidArg(
                "Can't shrink capacity below current capacity unless shrink flag explicitly specified".into(),
            ));
        }
        if new < v.allocation && !shrink && v.format == "raw" {
            return Err(StorageError::InvalidArg(
                "Can't shrink capacity below current allocation".into(),
            ));
        }
        if new == 0 {
            return Err(StorageError::InvalidArg(
                "Can't shrink capacity to zero".into(),
            ));
        }
        if v.vol_type == "block" {
            return logical::resize_volume(&self.pool_of(&v)?.def, &v, new);
        }
        image::resize(Path::new(&v.path), new, allocate)?;
        VolInfo::read(&v.pool, Path::new(&v.path))
    }

    /// `vol-upload`: writes `input`'s bytes into the volume file at `t.offset` (the file as
    /// stored, whatever its format — as libvirt does).
    pub fn upload(
        &self,
        pool: Option<&str>,
        vol: &str,
        input: &mut dyn Read,
        t: Transfer,
    ) -> Result<u64, StorageError> {
        self.upload_with_progress(pool, vol, input, t, 0, &mut progress::none())
    }

    /// [`StorageDriver::upload`], telling `progress` the bytes moved so far out of `expected`
    /// (what the caller knows of the input's length; 0 if unknown).
    pub fn upload_with_progress(
        &self,
        pool: Option<&str>,
        vol: &str,
        input: &mut dyn Read,
        t: Transfer,
        expected: u64,
        progress: progress::Report,
    ) -> Result<u64, StorageError> {
        let v = self.volume(pool, vol)?;
        let path = PathBuf::from(&v.path);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(StorageError::io("cannot open volume", &path))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = t.offset;
        let mut done = 0u64;
        progress(0, expected);
        loop {
            let want = if t.length > 0 {
                (t.length - done).min(buf.len() as u64) as usize
            } else {
                buf.len()
            };
            if want == 0 {
                break;
            }
            let n = match input.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StorageError::io("cannot read input for", &path)(e)),
            };
            // --sparse: zero runs are left as holes instead of written.
            if !(t.sparse && buf[..n].iter().all(|b| *b == 0)) {
                f.write_all_at(&buf[..n], off)
                    .map_err(StorageError::io("cannot write volume", &path))?;
            }
            off += n as u64;
            done += n as u64;
            progress(done, expected.max(done));
        }
        let len = byte_len(&f, &path)?;
        let is_file = f.metadata().is_ok_and(|m| m.is_file());
        if off > len && is_file {
            // A trailing hole still extends the file, so the bytes read back as zeroes.
            f.set_len(off)
                .map_err(StorageError::io("cannot extend", &path))?;
        }
        f.sync_all()
            .map_err(StorageError::io("cannot sync", &path))?;
        Ok(done)
    }

    /// `vol-download`: the volume file's bytes from `t.offset` into `out`. With `sparse` and a
    /// seekable output file, zero runs become holes.
    pub fn download(
        &self,
        pool: Option<&str>,
        vol: &str,
        out: &mut File,
        t: Transfer,
    ) -> Result<u64, StorageError> {
        self.download_with_progress(pool, vol, out, t, &mut progress::none())
    }

    /// [`StorageDriver::download`], telling `progress` the bytes moved out of the total.
    pub fn download_with_progress(
        &self,
        pool: Option<&str>,
        vol: &str,
        out: &mut File,
        t: Transfer,
        progress: progress::Report,
    ) -> Result<u64, StorageError> {
        let v = self.volume(pool, vol)?;
        let path = PathBuf::from(&v.path);
        let f = File::open(&path).map_err(StorageError::io("cannot open volume", &path))?;
        let len = byte_len(&f, &path)?;
        let end = if t.length > 0 {
            (t.offset.saturating_add(t.length)).min(len)
        } else {
            len
        };
        let mut buf = vec![0u8; 1 << 20];
        let mut off = t.offset.min(end);
        let mut done = 0u64;
        let mut holes = false;
        progress(0, end - off);
        while off < end {
            let n = (end - off).min(buf.len() as u64) as usize;
            f.read_exact_at(&mut buf[..n], off)
                .map_err(StorageError::io("cannot read volume", &path))?;
            if t.sparse && buf[..n].iter().all(|b| *b == 0) {
                out.seek(SeekFrom::Current(n as i64))
                    .map_err(StorageError::io("cannot seek output of", &path))?;
                holes = true;
            } else {
                out.write_all(&buf[..n])
                    .map_err(StorageError::io("cannot write output of", &path))?;
                holes = false;
            }
            off += n as u64;
            done += n as u64;
            progress(done, end - t.offset.min(end));
        }
        if holes {
            let pos = out
                .stream_position()
                .map_err(StorageError::io("cannot seek output of", &path))?;
            out.set_len(pos)
                .map_err(StorageError::io("cannot extend output of", &path))?;
        }
        Ok(done)
    }
}
