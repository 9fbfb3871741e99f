//! Block backend micro-benchmarks: sequential (1 MiB) and 4 KiB random reads and writes through
//! the raw and qcow2 backends (cache='writeback', 64 MiB images under a temp dir), plus sequential
//! allocating writes into a fresh qcow2 image. Compare qcow2 against raw for the format's overhead.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ironvirt_devices::block::{
    self, qcow2, BlockBackend, CacheMode, ImageFormat, OpenOptions, Preallocation,
};

const SIZE: u64 = 64 << 20;
const SEQ: usize = 1 << 20;
const RAND: usize = 4096;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn opts(format: ImageFormat) -> OpenOptions {
    OpenOptions {
        format,
        read_only: false,
        cache: CacheMode::Writeback,
        discard_unmap: true,
        backing: None,
        lock: true,
    }
}

fn fill(d: &mut dyn BlockBackend) {
    let mut buf = vec![0u8; SEQ];
    let mut rng = Rng(0x1234_5678);
    for off in (0..SIZE).step_by(SEQ) {
        for b in buf.chunks_mut(8) {
            b.copy_from_slice(&rng.next().to_le_bytes());
        }
        d.write_at(&buf, off).unwrap();
    }
    d.flush().unwrap();
}

fn make(dir: &Path, format: ImageFormat) -> Box<dyn BlockBackend> {
    let path = dir.join(format!("bench.{format}"));
    match format {
        ImageFormat::Raw => block::raw::create(&path, SIZE, Preallocation::Off).unwrap(),
        ImageFormat::Qcow2 => qcow2::create(
            &path,
            &qcow2::CreateOptions {
                size: SIZE,
                ..Default::default()
            },
        )
        .unwrap(),
    }
    let mut d = block::open(&path, &opts(format)).unwrap();
    fill(d.as_mut());
    d
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("ironvirt-bench-")
        .tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let mut g = c.benchmark_group("block");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for format in [ImageFormat::Raw, ImageFormat::Qcow2] {
        let mut d = make(dir.path(), format);
        let mut buf = vec![0x5au8; SEQ];

        g.throughput(Throughput::Bytes(SEQ as u64));
        let mut off = 0u64;
        g.bench_function(BenchmarkId::new("seq_read_1M", format), |b| {
            b.iter(|| {
                d.read_at(&mut buf, off).unwrap();
                off = (off + SEQ as u64) % SIZE;
            })
        });
        g.bench_function(BenchmarkId::new("seq_write_1M", format), |b| {
            b.iter(|| {
                d.write_at(&buf, off).unwrap();
                off = (off + SEQ as u64) % SIZE;
            })
        });

        g.throughput(Throughput::Bytes(RAND as u64));
        let mut rng = Rng(42);
        g.bench_function(BenchmarkId::new("rand_read_4K", format), |b| {
            b.iter(|| {
                let off = (rng.next() % (SIZE / RAND as u64)) * RAND as u64;
                d.read_at(&mut buf[..RAND], off).unwrap();
            })
        });
        g.bench_function(BenchmarkId::new("rand_write_4K", format), |b| {
            b.iter(|| {
                let off = (rng.next() % (SIZE / RAND as u64)) * RAND as u64;
                d.write_at(&buf[..RAND], off).unwrap();
            })
        });
        d.flush().unwrap();
    }

    // Writes that allocate: a fresh image (or a fresh sparse raw file) per batch of 16 MiB.
    g.throughput(Throughput::Bytes(16 << 20));
    for format in [ImageFormat::Raw, ImageFormat::Qcow2] {
        let buf = vec![0x6bu8; SEQ];
        let mut n = 0;
        g.bench_function(BenchmarkId::new("alloc_write_16M", format), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let path = dir.path().join(format!("alloc-{n}.{format}"));
                    match format {
                        ImageFormat::Raw => {
                            block::raw::create(&path, 16 << 20, Preallocation::Off).unwrap()
                        }
                        ImageFormat::Qcow2 => qcow2::create(
                            &path,
                            &qcow2::CreateOptions {
                                size: 16 << 20,
                                ..Default::default()
                            },
                        )
                        .unwrap(),
                    }
                    let mut d = block::open(&path, &opts(format)).unwrap();
                    let t = Instant::now();
                    for off in (0..16u64 << 20).step_by(SEQ) {
                        d.write_at(&buf, off).unwrap();
                    }
                    d.flush().unwrap();
                    total += t.elapsed();
                    drop(d);
                    let _ = std::fs::remove_file(&path);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(block_benches, benches);
criterion_main!(block_benches);
