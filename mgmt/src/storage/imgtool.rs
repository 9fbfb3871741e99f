//! `ironvirt img`: the qemu-img workflow for raw and qcow2 (create, info), with qemu-img's own
//! output formats so scripts parsing them keep working.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ironvirt_devices::block::{qcow2, ImageFormat};

use super::image::{self, CreateSpec};
use super::StorageError;

/// qemu's size_to_str: binary units, switching up once the value reaches 1000, "%0.3g".
pub fn qemu_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let x = bytes as f64 * 1024.0 / 1000.0;
    let e = if x < 1.0 {
        0
    } else {
        x.log2().floor() as i64 + 1
    };
    let i = (((e - 1) / 10).max(0) as usize).min(UNITS.len() - 1);
    let v = bytes as f64 / (1u64 << (i * 10)) as f64;
    format!("{} {}", g3(v), UNITS[i])
}

/// printf's "%0.3g" for the values size_to_str produces (0 or 0.977..999.x).
fn g3(v: f64) -> String {
    let decimals = if v == 0.0 || v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        3
    };
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    s
}

/// qemu's path_combine: a relative backing name is relative to the image's directory as the
/// image was named.
fn full_backing(image: &str, backing: &str) -> String {
    if backing.starts_with('/') {
        return backing.to_string();
    }
    match image.rfind('/') {
        Some(i) => format!("{}{backing}", &image[..=i]),
        None => backing.to_string(),
    }
}

/// The icount of each snapshot (qemu >= 5 records it in the extra data; -1 means none), in
/// table order. The block layer does not keep it, so the table is read here directly.
fn snapshot_icounts(path: &Path) -> Vec<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut hdr = [0u8; 72];
    if f.read_exact_at(&mut hdr, 0).is_err() {
        return Vec::new();
    }
    let be32 = |b: &[u8], o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let be64 = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_be_bytes(a)
    };
    let count = be32(&hdr, 60);
    let mut pos = be64(&hdr, 64);
    let mut out = Vec::new();
    for _ in 0..count.min(65536) {
        let mut e = [0u8; 40];
        if f.read_exact_at(&mut e, pos).is_err() {
            break;
        }
        let id_len = u64::from(u16::from_be_bytes([e[12], e[13]]));
        let name_len = u64::from(u16::from_be_bytes([e[14], e[15]]));
        let extra = u64::from(be32(&e, 36));
        let mut icount = None;
        if extra >= 24 {
            let mut b = [0u8; 8];
            if f.read_exact_at(&mut b, pos + 40 + 16).is_ok() {
                let v = u64::from_be_bytes(b);
                icount = (v != u64::MAX).then_some(v);
            }
        }
        out.push(icount);
        pos = (pos + 40 + extra + id_len + name_len).next_multiple_of(8);
    }
    out
}

/// "YYYY-MM-DD HH:MM:SS" in local time, as qemu prints snapshot dates.
fn local_date(sec: u32) -> String {
    let t = libc::time_t::from(sec);
    // SAFETY: localtime_r fills the zeroed struct we own from a time value we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return String::new();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// qemu's snapshot table ("Snapshot list:" and its rows), or nothing without snapshots.
pub fn snapshot_table(filename: &str) -> Result<String, StorageError> {
    let path = Path::new(filename);
    if image::probe(path)?.0 != "qcow2" {
        return Ok(String::new());
    }
    let q = qcow2::info(path)?;
    Ok(snapshot_rows(&q, &snapshot_icounts(path)))
}

fn snapshot_rows(q: &qcow2::ImageInfo, icounts: &[Option<u64>]) -> String {
    if q.snapshots.is_empty() {
        return String::new();
    }
    let mut s = String::from("Snapshot list:\n");
    s.push_str(&format!(
        "{:<7} {:<16} {:>8} {:>19} {:>15} {:>10}\n",
        "ID", "TAG", "VM_SIZE", "DATE", "VM_CLOCK", "ICOUNT"
    ));
    for (i, sn) in q.snapshots.iter().enumerate() {
        let secs = sn.vm_clock_nsec / 1_000_000_000;
        let clock = format!(
            "{:04}:{:02}:{:02}.{:03}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            (sn.vm_clock_nsec / 1_000_000) % 1000
        );
        let icount = icounts
            .get(i)
            .copied()
            .flatten()
            .map(|v| v.to_string())
            .unwrap_or_default();
        s.push_str(&format!(
            "{:<7} {:<16} {:>8} {:>19} {:>15} {:>10}\n",
            sn.id,
            sn.name,
            qemu_size(sn.vm_state_size),
            local_date(sn.date_sec),
            clock,
            icount
        ));
    }
    s
}

fn snapshots_json(q: &qcow2::ImageInfo, icounts: &[Option<u64>]) -> String {
    if q.snapshots.is_empty() {
        return String::new();
    }
    let mut items = Vec::new();
    for (i, sn) in q.snapshots.iter().enumerate() {
        let mut m = String::from("        {\n");
        if let Some(ic) = icounts.get(i).copied().flatten() {
            m.push_str(&format!("            \"icount\": {ic},\n"));
        }
        m.push_str(&format!(
            "            \"vm-clock-nsec\": {},\n            \"name\": {},\n            \"date-sec\": {},\n            \"date-nsec\": {},\n            \"vm-clock-sec\": {},\n            \"id\": {},\n            \"vm-state-size\": {}\n        }}",
            sn.vm_clock_nsec % 1_000_000_000,
            json_str(&sn.name),
            sn.date_sec,
            sn.date_nsec,
            sn.vm_clock_nsec / 1_000_000_000,
            json_str(&sn.id),
            sn.vm_state_size
        ));
        items.push(m);
    }
    format!("    \"snapshots\": [\n{}\n    ],\n", items.join(",\n"))
}

/// Everything `info` prints.
struct Info {
    filename: String,
    format: ImageFormat,
    virtual_size: u64,
    actual: u64,
    length: u64,
    q: Option<qcow2::ImageInfo>,
}

fn read(filename: &str) -> Result<Info, StorageError> {
    let path = Path::new(filename);
    let meta = std::fs::metadata(path).map_err(StorageError::io("Could not open", path))?;
    let (fmt, _) = image::probe(path)?;
    let q = if fmt == "qcow2" {
        Some(qcow2::info(path)?)
    } else {
        None
    };
    // qemu sees files in whole 512-byte sectors: the length it reports is rounded up.
    let length = meta.len().div_ceil(512) * 512;
    Ok(Info {
        filename: filename.to_string(),
        format: if q.is_some() {
            ImageFormat::Qcow2
        } else {
            ImageFormat::Raw
        },
        virtual_size: q.as_ref().map_or(length, |q| q.virtual_size),
        actual: meta.blocks() * 512,
        length,
        q,
    })
}

/// `qemu-img info FILE` (human output).
pub fn info_text(filename: &str) -> Result<String, StorageError> {
    let i = read(filename)?;
    let mut s = format!(
        "image: {}\nfile format: {}\nvirtual size: {} ({} bytes)\ndisk size: {}\n",
        i.filename,
        i.format,
        qemu_size(i.virtual_size),
        i.virtual_size,
        qemu_size(i.actual)
    );
    if let Some(q) = &i.q {
        s.push_str(&format!("cluster_size: {}\n", q.cluster_size));
        if let Some(b) = &q.backing_file {
            let full = full_backing(&i.filename, b);
            if &full == b {
                s.push_str(&format!("backing file: {b}\n"));
            } else {
                s.push_str(&format!("backing file: {b} (actual path: {full})\n"));
            }
            if let Some(f) = &q.backing_format {
                s.push_str(&format!("backing file format: {f}\n"));
            }
        }
        s.push_str(&snapshot_rows(q, &snapshot_icounts(Path::new(&i.filename))));
        s.push_str("Format specific information:\n");
        let v3 = q.version >= 3;
        s.push_str(&format!(
            "    compat: {}\n    compression type: {}\n",
            if v3 { "1.1" } else { "0.10" },
            q.compression_type.as_str()
        ));
        if v3 {
            s.push_str(&format!("    lazy refcounts: {}\n", q.lazy_refcounts));
        }
        s.push_str(&format!("    refcount bits: {}\n", q.refcount_bits));
        if v3 {
            s.push_str(&format!(
                "    corrupt: {}\n    extended l2: false\n",
                q.corrupt
            ));
        }
    }
    s.push_str(&format!(
        "Child node '/file':\n    filename: {}\n    protocol type: file\n    file length: {} ({} bytes)\n    disk size: {}\n",
        i.filename,
        qemu_size(i.length),
        i.length,
        qemu_size(i.actual)
    ));
    Ok(s)
}

/// A JSON string literal as QEMU's JSON writer quotes it.
pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `qemu-img info --output json FILE`, member for member in qemu's order and layout.
pub fn info_json(filename: &str) -> Result<String, StorageError> {
    let i = read(filename)?;
    let name = json_str(&i.filename);
    let mut s = format!(
        "{{\n    \"children\": [\n        {{\n            \"name\": \"file\",\n            \"info\": {{\n                \"children\": [\n                ],\n                \"virtual-size\": {},\n                \"filename\": {name},\n                \"format\": \"file\",\n                \"actual-size\": {},\n                \"format-specific\": {{\n                    \"type\": \"file\",\n                    \"data\": {{\n                    }}\n                }},\n                \"dirty-flag\": false\n            }}\n        }}\n    ],\n",
        i.length, i.actual
    );
    if let Some(q) = &i.q {
        s.push_str(&snapshots_json(
            q,
            &snapshot_icounts(Path::new(&i.filename)),
        ));
    }
    let backing = i.q.as_ref().and_then(|q| q.backing_file.clone());
    if let Some(f) = i.q.as_ref().and_then(|q| q.backing_format.clone()) {
        if backing.is_some() {
            s.push_str(&format!(
                "    \"backing-filename-format\": {},\n",
                json_str(&f)
            ));
        }
    }
    s.push_str(&format!(
        "    \"virtual-size\": {},\n    \"filename\": {name},\n",
        i.virtual_size
    ));
    if let Some(q) = &i.q {
        s.push_str(&format!("    \"cluster-size\": {},\n", q.cluster_size));
    }
    s.push_str(&format!(
        "    \"format\": \"{}\",\n    \"actual-size\": {},\n",
        i.format, i.actual
    ));
    if let Some(q) = &i.q {
        let v3 = q.version >= 3;
        s.push_str(
            "    \"format-specific\": {\n        \"type\": \"qcow2\",\n        \"data\": {\n",
        );
        s.push_str(&format!(
            "            \"compat\": \"{}\",\n            \"compression-type\": \"{}\",\n",
            if v3 { "1.1" } else { "0.10" },
            q.compression_type.as_str()
        ));
        if v3 {
            s.push_str(&format!(
                "            \"lazy-refcounts\": {},\n            \"refcount-bits\": {},\n            \"corrupt\": {},\n            \"extended-l2\": false\n",
                q.lazy_refcounts, q.refcount_bits, q.corrupt
            ));
        } else {
            s.push_str(&format!(
                "            \"refcount-bits\": {}\n",
                q.refcount_bits
            ));
        }
        s.push_str("        }\n    },\n");
        if let Some(b) = &backing {
            s.push_str(&format!(
                "    \"full-backing-filename\": {},\n    \"backing-filename\": {},\n",
                json_str(&full_backing(&i.filename, b)),
                json_str(b)
            ));
        }
        s.push_str(&format!("    \"dirty-flag\": {}\n}}\n", q.dirty));
    } else {
        s.push_str("    \"dirty-flag\": false\n}\n");
    }
    Ok(s)
}

/// `qemu-img create` arguments, already split from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateArgs {
    pub format: Option<String>,
    pub backing: Option<String>,
    pub backing_format: Option<String>,
    /// `-o key=value,…`.
    pub options: Vec<(String, String)>,
    pub filename: String,
    pub size: Option<u64>,
}

/// qemu's size syntax: a number with an optional b/k/M/G/T/P/E suffix (powers of 1024).
pub fn parse_qemu_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let mult: u64 = match suffix {
        "" | "b" | "B" => 1,
        "k" | "K" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        "P" | "p" => 1 << 50,
        "E" | "e" => 1 << 60,
        _ => return None,
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    let v = f * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Creates the image and returns qemu-img's "Formatting …" line.
pub fn create(a: &CreateArgs) -> Result<String, StorageError> {
    let fmt = a.format.clone().unwrap_or_else(|| "raw".into());
    let format = image::block_format(&fmt)?;
    let opt = |k: &str| {
        a.options
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let backing = a.backing.clone().or_else(|| opt("backing_file"));
    let backing_fmt = a.backing_format.clone().or_else(|| opt("backing_fmt"));
    let bad = |m: String| StorageError::InvalidArg(m);
    let mut size = a.size;
    let mut backing_spec = None;
    if let Some(b) = &backing {
        if format == ImageFormat::Raw {
            return Err(bad("raw images cannot have a backing file".into()));
        }
        let Some(bf) = &backing_fmt else {
            return Err(bad("Backing file specified without backing format".into()));
        };
        let bformat = image::block_format(bf)?;
        let resolved = full_backing(&a.filename, b);
        if size.is_none() {
            let s = match bformat {
                ImageFormat::Qcow2 => qcow2::info(Path::new(&resolved))?.virtual_size,
                ImageFormat::Raw => std::fs::metadata(&resolved)
                    .map_err(StorageError::io(
                        "Could not open backing file",
                        Path::new(&resolved),
                    ))?
                    .len(),
            };
            size = Some(s);
        }
        backing_spec = Some((b.into(), bformat));
    }
    let size = size.ok_or_else(|| bad("Image creation needs a size parameter".into()))?;
    let cluster = match opt("cluster_size") {
        Some(c) => {
            Some(parse_qemu_size(&c).ok_or_else(|| bad(format!("Invalid cluster_size '{c}'")))?)
        }
        None => None,
    };
    let compat = opt("compat");
    let lazy = matches!(opt("lazy_refcounts").as_deref(), Some("on"));
    let prealloc = opt("preallocation");
    if let Some(p) = &prealloc {
        if !matches!(p.as_str(), "off" | "metadata" | "falloc" | "full") {
            return Err(bad(format!(
                "Parameter 'preallocation' does not accept value '{p}'"
            )));
        }
    }
    let path = Path::new(&a.filename);
    match format {
        ImageFormat::Raw => {
            let p = prealloc
                .as_deref()
                .unwrap_or("off")
                .parse()
                .unwrap_or_default();
            ironvirt_devices::block::raw::create(path, size, p)?;
        }
        ImageFormat::Qcow2 => {
            let spec = CreateSpec {
                format,
                capacity: size,
                allocation: None,
                backing: backing_spec,
                prealloc_metadata: false,
                compat_v2: compat.as_deref() == Some("0.10"),
                cluster_size: cluster,
                lazy_refcounts: lazy,
            };
            if let Some(p) = prealloc.as_deref().filter(|p| *p != "off") {
                let opts = qcow2::CreateOptions {
                    size: size.div_ceil(512) * 512,
                    version: if spec.compat_v2 { 2 } else { 3 },
                    cluster_bits: cluster.unwrap_or(65536).trailing_zeros(),
                    backing: spec.backing.clone(),
                    preallocation: p.parse().unwrap_or_default(),
                    lazy_refcounts: lazy,
                    ..qcow2::CreateOptions::default()
                };
                qcow2::create(path, &opts)?;
            } else {
                image::create(path, &spec)?;
            }
        }
    }
    let mut line = format!("Formatting '{}', fmt={fmt}", a.filename);
    match format {
        ImageFormat::Raw => {
            line.push_str(&format!(" size={size}"));
            if let Some(p) = &prealloc {
                line.push_str(&format!(" preallocation={p}"));
            }
        }
        ImageFormat::Qcow2 => {
            line.push_str(&format!(
                " cluster_size={} extended_l2=off",
                cluster.unwrap_or(65536)
            ));
            if let Some(p) = &prealloc {
                line.push_str(&format!(" preallocation={p}"));
            }
            line.push_str(&format!(" compression_type=zlib size={size}"));
            if let Some(c) = &compat {
                line.push_str(&format!(" compat={c}"));
            }
            if let Some(b) = &backing {
                line.push_str(&format!(" backing_file={b}"));
            }
            if let (Some(_), Some(f)) = (&backing, &backing_fmt) {
                line.push_str(&format!(" backing_fmt={f}"));
            }
            line.push_str(&format!(
                " lazy_refcounts={} refcount_bits=16",
                if lazy { "on" } else { "off" }
            ));
        }
    }
    line.push('\n');
    Ok(line)
}

/// `qemu-img convert [-f fmt] [-O fmt] [-c] SRC DST`: DST gets SRC's disk contents; zero
/// ranges stay unallocated; `compress` writes qcow2 clusters compressed.
pub fn convert(
    src: &str,
    src_format: Option<&str>,
    out_format: &str,
    compress: bool,
    dst: &str,
    progress: super::progress::Report,
) -> Result<(), StorageError> {
    let src_path = Path::new(src);
    let in_fmt = match src_format {
        Some(f) => image::block_format(f)?,
        None => image::block_format(image::probe(src_path)?.0)?,
    };
    let out = image::block_format(out_format)?;
    if compress && out != ImageFormat::Qcow2 {
        return Err(StorageError::Unsupported(format!(
            "Compression not supported for format '{out_format}'"
        )));
    }
    let size = match in_fmt {
        ImageFormat::Qcow2 => qcow2::info(src_path)?.virtual_size,
        ImageFormat::Raw => std::fs::metadata(src_path)
            .map_err(StorageError::io("Could not open", src_path))?
            .len(),
    };
    let spec = CreateSpec {
        format: out,
        capacity: size,
        allocation: None,
        backing: None,
        prealloc_metadata: false,
        compat_v2: false,
        cluster_size: None,
        lazy_refcounts: false,
    };
    let dst_path = Path::new(dst);
    let _ = std::fs::remove_file(dst_path);
    if !compress {
        return image::copy_with_progress(src_path, in_fmt, dst_path, &spec, progress);
    }
    use ironvirt_devices::block::{self, BlockBackend, OpenOptions};
    let mut input = block::open(
        src_path,
        &OpenOptions {
            format: in_fmt,
            read_only: true,
            ..OpenOptions::default()
        },
    )?;
    image::create(dst_path, &spec)?;
    let result = (|| {
        let mut output = qcow2::Qcow2::open(
            dst_path,
            &OpenOptions {
                format: ImageFormat::Qcow2,
                ..OpenOptions::default()
            },
        )?;
        let cs = output.cluster_size();
        let mut buf = vec![0u8; cs as usize];
        let total = output.size();
        let mut cluster = 0u64;
        progress(0, total);
        while cluster * cs < total {
            let n = (total - cluster * cs).min(cs) as usize;
            input.read_at(&mut buf[..n], cluster * cs)?;
            if buf[..n].iter().any(|b| *b != 0) {
                output.write_compressed(cluster, &buf[..n])?;
            }
            cluster += 1;
            progress((cluster * cs).min(total), total);
        }
        output.flush()?;
        output.close()?;
        Ok::<(), StorageError>(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst_path);
    }
    result
}

/// `qemu-img resize [--shrink] FILE [+|-]SIZE`.
pub fn resize(file: &str, size: &str, shrink: bool) -> Result<(), StorageError> {
    let path = Path::new(file);
    let current = match image::probe(path)?.0 {
        "qcow2" => qcow2::info(path)?.virtual_size,
        _ => std::fs::metadata(path)
            .map_err(StorageError::io("Could not open", path))?
            .len(),
    };
    let bad = || StorageError::InvalidArg("Invalid image size specified".into());
    let new = if let Some(d) = size.strip_prefix('+') {
        current.checked_add(parse_qemu_size(d).ok_or_else(bad)?)
    } else if let Some(d) = size.strip_prefix('-') {
        current.checked_sub(parse_qemu_size(d).ok_or_else(bad)?)
    } else {
        parse_qemu_size(size)
    }
    .ok_or_else(bad)?;
    if new < current && !shrink {
        return Err(StorageError::InvalidArg(
            "Use the --shrink option to perform a shrink operation.".into(),
        ));
    }
    image::resize(path, new, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_qemu() {
        assert_eq!(qemu_size(0), "0 B");
        assert_eq!(qemu_size(4096), "4 KiB");
        assert_eq!(qemu_size(197120), "192 KiB");
        assert_eq!(qemu_size(200704), "196 KiB");
        assert_eq!(qemu_size(1 << 30), "1 GiB");
        assert_eq!(qemu_size(10 << 20), "10 MiB");
        assert_eq!(qemu_size(1000), "0.977 KiB");
        assert_eq!(qemu_size(1536 << 20), "1.5 GiB");
        assert_eq!(parse_qemu_size("1G"), Some(1 << 30));
        assert_eq!(parse_qemu_size("512"), Some(512));
        assert_eq!(parse_qemu_size("1.5M"), Some(1536 << 10));
        assert_eq!(parse_qemu_size("3X"), None);
    }
}
