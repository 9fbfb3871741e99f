//! Raw backend, cache modes (O_DIRECT bouncing, tmpfs refusal) and QEMU-compatible locking.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ironvirt_devices::block::{
    self, qcow2, BlockError, CacheMode, ImageFormat, OpenOptions, Preallocation,
};

const MODES: [CacheMode; 5] = [
    CacheMode::None,
    CacheMode::Writethrough,
    CacheMode::Writeback,
    CacheMode::Directsync,
    CacheMode::Unsafe,
];

fn with_cache(format: ImageFormat, cache: CacheMode) -> OpenOptions {
    OpenOptions {
        cache,
        ..opts(format)
    }
}

#[test]
fn raw_differential_all_cache_modes() {
    let seed = seed("raw_differential");
    for cache in MODES {
        let dir = tempdir();
        let img = dir.path().join("d.raw");
        // Not a multiple of 4096: O_DIRECT tail handling must not change the disk size.
        let size = (3 << 20) + 1536;
        let mut rng = Rng::new(seed ^ cache as u64);
        let mut mirror = pattern(&mut rng, size);
        write_file(&img, &mirror);
        let mut d = block::open(&img, &with_cache(ImageFormat::Raw, cache)).unwrap();
        assert_eq!(d.size(), size as u64);
        for _ in 0..150 {
            random_op(&mut rng, d.as_mut(), &mut mirror, 100_000);
        }
        d.write_at(&[7; 700], size as u64 - 700).unwrap();
        mirror[size - 700..].fill(7);
        assert_same(&format!("raw {cache}"), &read_all(d.as_mut()), &mirror);
        d.flush().unwrap();
        drop(d);
        assert_eq!(
            std::fs::metadata(&img).unwrap().len(),
            size as u64,
            "{cache}: size kept"
        );
        assert_same(
            &format!("raw {cache} on disk"),
            &std::fs::read(&img).unwrap(),
            &mirror,
        );
    }
}

#[test]
fn qcow2_all_cache_modes() {
    let seed = seed("qcow2_cache_modes");
    for cache in MODES {
        for bits in [9u32, 16] {
            let dir = tempdir();
            let img = dir.path().join("d.qcow2");
            let size = 4u64 << 20;
            qcow2::create(
                &img,
                &qcow2::CreateOptions {
                    size,
                    cluster_bits: bits,
                    ..Default::default()
                },
            )
            .unwrap();
            let mut rng = Rng::new(seed ^ cache as u64 ^ u64::from(bits));
            let mut mirror = vec![0u8; size as usize];
            let mut d = block::open(&img, &with_cache(ImageFormat::Qcow2, cache)).unwrap();
            for _ in 0..80 {
                random_op(&mut rng, d.as_mut(), &mut mirror, 150_000);
            }
            assert_same(&format!("qcow2 {cache}"), &read_all(d.as_mut()), &mirror);
            drop(d);
            check(&img, false);
            let m = dir.path().join("m.raw");
            write_file(&m, &mirror);
            compare(&img, &m);
        }
    }
}

#[test]
fn odirect_refused_on_tmpfs() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("no /dev/shm; skipping");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let img = dir.path().join("t.raw");
    write_file(&img, &[0; 8192]);
    // tmpfs learned O_DIRECT in Linux 6.6; there the open simply works.
    {
        use std::os::unix::fs::OpenOptionsExt;
        if std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&img)
            .is_ok()
        {
            eprintln!(
                "this kernel's tmpfs supports O_DIRECT; checking that cache='none' works there"
            );
            let mut d = block::open(&img, &with_cache(ImageFormat::Raw, CacheMode::None)).unwrap();
            d.write_at(&[5; 100], 10).unwrap();
            drop(d);
            assert_eq!(std::fs::read(&img).unwrap()[10..110], [5; 100]);
            return;
        }
    }
    for cache in [CacheMode::None, CacheMode::Directsync] {
        let err = block::open(&img, &with_cache(ImageFormat::Raw, cache))
            .err()
            .expect("O_DIRECT on tmpfs");
        assert!(
            matches!(err, BlockError::DirectIoUnsupported { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("cache='{cache}' needs O_DIRECT"))
                && msg.contains(img.to_str().unwrap()),
            "{msg}"
        );
    }
    // The page-cache modes are fine there.
    block::open(&img, &with_cache(ImageFormat::Raw, CacheMode::Writeback)).unwrap();
}

#[test]
fn raw_create_preallocation() {
    let dir = tempdir();
    for (pre, allocated) in [
        (Preallocation::Off, false),
        (Preallocation::Metadata, false),
        (Preallocation::Falloc, true),
        (Preallocation::Full, true),
    ] {
        let img = dir.path().join(format!("{pre:?}.raw"));
        block::raw::create(&img, 2 << 20, pre).unwrap();
        let m = std::fs::metadata(&img).unwrap();
        assert_eq!(m.len(), 2 << 20);
        assert_eq!(m.blocks() * 512 >= 2 << 20, allocated, "{pre:?}");
        let mut d = open_ro(&img, ImageFormat::Raw);
        assert!(read_all(d.as_mut()).iter().all(|&b| b == 0));
    }
}

#[test]
fn read_only_refuses_writes_and_ranges_are_checked() {
    let dir = tempdir();
    let img = dir.path().join("r.raw");
    write_file(&img, &[1; 4096]);
    let mut d = open_ro(&img, ImageFormat::Raw);
    assert!(d.read_only());
    assert!(matches!(
        d.write_at(&[0; 512], 0),
        Err(BlockError::ReadOnly(_))
    ));
    let mut buf = [0u8; 512];
    assert!(matches!(
        d.read_at(&mut buf, 3800),
        Err(BlockError::OutOfRange { .. })
    ));
    assert!(matches!(
        d.read_at(&mut buf, u64::MAX - 10),
        Err(BlockError::OutOfRange { .. })
    ));
    let q = dir.path().join("q.qcow2");
    qcow2::create(
        &q,
        &qcow2::CreateOptions {
            size: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let mut d = open_ro(&q, ImageFormat::Qcow2);
    assert!(matches!(
        d.write_zeroes(0, 512, true),
        Err(BlockError::ReadOnly(_))
    ));
    assert!(matches!(
        d.read_at(&mut buf, (1 << 20) - 100),
        Err(BlockError::OutOfRange { .. })
    ));
}

fn spawn_qemu_io(args: &[&str], img: &std::path::Path) -> Child {
    Command::new("qemu-io")
        .args(args)
        .args(["-c", "sleep 20000"])
        .arg(img)
        .stdout(Stdio::null())
        .spawn()
        .expect("qemu-io")
}

/// Waits until qemu-io holds its locks on `img` (seen in /proc/locks; probing with an open of our own
/// would race with qemu-io's start), then opens `img` with `o`, which must fail as locked.
fn wait_locked(img: &std::path::Path, o: &OpenOptions) -> BlockError {
    let ino = std::fs::metadata(img).unwrap().ino();
    let t = Instant::now();
    let needle = format!(":{ino} 100 ");
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .contains(&needle)
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "qemu-io never locked {}",
            img.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    match block::open(img, o) {
        Err(e @ BlockError::Locked { .. }) => e,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("{o:?}: opened {} while qemu-io holds it", img.display()),
    }
}

#[test]
fn locking_interoperates_with_qemu() {
    for fmt in [ImageFormat::Raw, ImageFormat::Qcow2] {
        let dir = tempdir();
        let img = dir.path().join("l.img");
        match fmt {
            ImageFormat::Raw => block::raw::create(&img, 1 << 20, Preallocation::Off).unwrap(),
            ImageFormat::Qcow2 => qcow2::create(
                &img,
                &qcow2::CreateOptions {
                    size: 1 << 20,
                    ..Default::default()
                },
            )
            .unwrap(),
        }
        let f = fmt.as_str();

        // We write: a QEMU writer is refused; for qcow2 even qemu-img info is (QEMU's raw driver
        // shares everything with readers); -U is always fine.
        let d = open_rw(&img, fmt);
        let o = Command::new("qemu-io")
            .args(["-f", f, "-c", "write 0 512"])
            .arg(&img)
            .output()
            .unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !o.status.success() && out.contains("lock"),
            "qemu-io must not write while we do: {out}"
        );
        if fmt == ImageFormat::Qcow2 {
            let o = qemu_img(&["info", "-f", f, s(&img)]);
            assert!(
                !o.status.success(),
                "qemu-img info must fail while we write"
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("Failed to get shared \"write\" lock"), "{err}");
        }
        qemu_img_ok(&["info", "-U", "-f", f, s(&img)]);
        // Another writer or reader of ours is refused too; lock=false bypasses.
        let e = block::open(&img, &opts(fmt)).err().expect("second writer");
        assert!(
            e.to_string()
                .contains("is in use by another process (locked)"),
            "{e}"
        );
        let mut ro = opts(fmt);
        ro.read_only = true;
        assert!(matches!(
            block::open(&img, &ro),
            Err(BlockError::Locked { .. })
        ));
        ro.lock = false;
        block::open(&img, &ro).unwrap();
        drop(d);
        qemu_img_ok(&["info", "-f", f, s(&img)]);

        // Two readers share.
        let mut ro = opts(fmt);
        ro.read_only = true;
        let r1 = block::open(&img, &ro).unwrap();
        let r2 = block::open(&img, &ro).unwrap();
        assert!(
            block::open(&img, &opts(fmt)).is_err(),
            "readers keep writers out"
        );
        drop((r1, r2));

        // qemu-io writes: we can neither write nor read.
        let mut child = spawn_qemu_io(&["-f", f], &img);
        let e = wait_locked(&img, &opts(fmt));
        assert!(e.to_string().contains(s(&img)), "{e}");
        if fmt == ImageFormat::Qcow2 {
            // QEMU's qcow2 driver refuses to share writing, so readers are kept out too.
            assert!(matches!(
                block::open(&img, &ro),
                Err(BlockError::Locked { .. })
            ));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        open_rw(&img, fmt);

        // qemu-io reads: we may read but not write (QEMU's raw driver shares writing with readers).
        if fmt == ImageFormat::Raw {
            continue;
        }
        let mut child = spawn_qemu_io(&["-r", "-f", f], &img);
        wait_locked(&img, &opts(fmt));
        block::open(&img, &ro).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn backing_files_are_read_locked() {
    let dir = tempdir();
    let base = dir.path().join("base.raw");
    write_file(&base, &[3; 65536]);
    let top = dir.path().join("top.qcow2");
    qcow2::create(
        &top,
        &qcow2::CreateOptions {
            size: 65536,
            backing: Some((base.clone(), ImageFormat::Raw)),
            ..Default::default()
        },
    )
    .unwrap();
    let _d = open_rw(&top, ImageFormat::Qcow2);
    // Nobody may write the backing file under us.
    assert!(matches!(
        block::open(&base, &opts(ImageFormat::Raw)),
        Err(BlockError::Locked { .. })
    ));
    let o = qemu_img(&["info", "-f", "raw", s(&base)]);
    assert!(o.status.success(), "readers of the backing file are fine");
}

#[test]
fn create_refuses_images_in_use() {
    let dir = tempdir();
    let img = dir.path().join("busy.qcow2");
    qcow2::create(
        &img,
        &qcow2::CreateOptions {
            size: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let mut d = open_rw(&img, ImageFormat::Qcow2);
    d.write_at(&[1; 512], 0).unwrap();
    let e = qcow2::create(
        &img,
        &qcow2::CreateOptions {
            size: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, BlockError::Locked { .. }), "{e}");
    assert!(matches!(
        block::raw::create(&img, 4096, Preallocation::Off),
        Err(BlockError::Locked { .. })
    ));
    let mut buf = [0u8; 512];
    d.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [1; 512], "the image in use was left alone");
}
