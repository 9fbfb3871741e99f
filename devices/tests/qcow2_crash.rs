//! Crash test: a writer process (this test binary, re-executed) is SIGKILLed at random moments.
//! After each kill the image opens, `qemu-img check` finds no corruption (leaks are allowed, exit
//! 3), and everything flushed before the kill reads back.
//!
//! The child applies a deterministic op sequence and records, after each flush, the index of the
//! last op that flush covered. The parent replays the sequence up to there; bytes touched by the ops
//! that may have run after it are "unknown" and not compared.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ironvirt_devices::block::qcow2::{self, CreateOptions};
use ironvirt_devices::block::{self, BlockBackend, CacheMode, ImageFormat};

const CHILD_ENV: &str = "IRONVIRT_CRASH_CHILD";
const SIZE: u64 = 16 << 20;
const FLUSH_EVERY: u64 = 8;

#[derive(Debug, Clone, Copy)]
enum Op {
    Write { off: u64, len: u64, seed: u64 },
    Discard { off: u64, len: u64 },
    Zeroes { off: u64, len: u64, unmap: bool },
}

impl Op {
    fn range(self) -> (u64, u64) {
        match self {
            Op::Write { off, len, .. } | Op::Discard { off, len } | Op::Zeroes { off, len, .. } => {
                (off, len)
            }
        }
    }
}

fn gen_op(rng: &mut Rng) -> Op {
    let off = rng.below(SIZE);
    let len = (rng.below(256 << 10) + 1).min(SIZE - off);
    match rng.below(8) {
        0 => Op::Discard { off, len },
        1 => Op::Zeroes {
            off,
            len,
            unmap: rng.below(2) == 0,
        },
        _ => Op::Write {
            off,
            len,
            seed: rng.next(),
        },
    }
}

fn data(seed: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    Rng::new(seed).fill(&mut v);
    v
}

fn apply(op: Op, d: &mut dyn BlockBackend) {
    match op {
        Op::Write { off, len, seed } => d.write_at(&data(seed, len), off).unwrap(),
        Op::Discard { off, len } => d.discard(off, len).unwrap(),
        Op::Zeroes { off, len, unmap } => d.write_zeroes(off, len, unmap).unwrap(),
    }
}

fn apply_mirror(op: Op, m: &mut [u8]) {
    let (off, len) = op.range();
    let r = off as usize..(off + len) as usize;
    match op {
        Op::Write { seed, .. } => m[r].copy_from_slice(&data(seed, len)),
        _ => m[r].fill(0),
    }
}

/// The child: runs ops forever (until killed), recording flushed progress.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when re-executed by `crash_*` below.
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let img = Path::new(parts[0]);
    let seed: u64 = parts[1].parse().unwrap();
    let progress = PathBuf::from(parts[2]);
    let cache: CacheMode = parts[3].parse().unwrap();
    let mut o = opts(ImageFormat::Qcow2);
    o.cache = cache;
    let mut d = block::open(img, &o).unwrap();
    let mut rng = Rng::new(seed);
    let tmp = progress.with_extension("tmp");
    for i in 0u64.. {
        apply(gen_op(&mut rng), d.as_mut());
        if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
            d.flush().unwrap();
            std::fs::write(&tmp, i.to_string()).unwrap();
            std::fs::rename(&tmp, &progress).unwrap();
        }
    }
}

fn crash_rounds(version: u32, bits: u32, lazy: bool, cache: CacheMode, rounds: u32) {
    let seed = seed(&format!("crash v{version} bits{bits} lazy{lazy} {cache}"));
    let dir = tempdir();
    let dir = dir.path();
    let img = dir.join("c.qcow2");
    qcow2::create(
        &img,
        &CreateOptions {
            size: SIZE,
            version,
            cluster_bits: bits,
            lazy_refcounts: lazy,
            ..Default::default()
        },
    )
    .unwrap();
    let mut mirror = vec![0u8; SIZE as usize];
    let mut timer = Rng::new(seed);
    for round in 0..rounds {
        let rseed = seed.wrapping_add(u64::from(round) * 7919);
        let progress = dir.join("progress");
        let _ = std::fs::remove_file(&progress);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(
                CHILD_ENV,
                format!("{}|{rseed}|{}|{cache}", img.display(), progress.display()),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + timer.below(400)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child should have been killed, not {status}"
        );

        // No corruption (leaks are fine), whatever the moment of the kill.
        check(&img, true);

        let flushed: Option<u64> = std::fs::read_to_string(&progress)
            .ok()
            .map(|s| s.trim().parse().unwrap());
        let mut rng = Rng::new(rseed);
        let mut unknown = vec![false; SIZE as usize];
        let done = flushed.map_or(0, |k| k + 1);
        for _ in 0..done {
            apply_mirror(gen_op(&mut rng), &mut mirror);
        }
        // Ops after the last recorded flush may have run in part: at most the next batch, plus the
        // batch whose progress note was not written yet.
        for _ in 0..2 * FLUSH_EVERY + 1 {
            let (off, len) = gen_op(&mut rng).range();
            unknown[off as usize..(off + len) as usize].fill(true);
        }
        let mut d = open_ro(&img, ImageFormat::Qcow2);
        let got = read_all(d.as_mut());
        drop(d);
        if let Some(i) = (0..SIZE as usize).find(|&i| !unknown[i] && got[i] != mirror[i]) {
            panic!(
                "round {round} (flushed through op {flushed:?}): byte {i:#x} is {:#x}, want {:#x}",
                got[i], mirror[i]
            );
        }
        eprintln!("round {round}: killed after op {flushed:?} was flushed; image consistent");
        mirror = got;
    }
    // Our writable open repairs a dirty (lazy refcounts) image; after a clean close the only
    // thing qemu-img may still find is leaked clusters.
    let was_dirty = qcow2::info(&img).unwrap().dirty;
    assert!(
        !was_dirty || lazy,
        "only lazy refcounts leave the dirty bit set"
    );
    let mut d = open_rw(&img, ImageFormat::Qcow2);
    d.write_at(&[1; 4096], 0).unwrap();
    mirror[..4096].fill(1);
    drop(d);
    assert!(!qcow2::info(&img).unwrap().dirty);
    // A repaired (rebuilt) image has no leaks either.
    check(&img, !was_dirty);
    let m = dir.join("m.raw");
    write_file(&m, &mirror);
    compare(&img, &m);
}

#[test]
fn crash_v3_64k() {
    crash_rounds(3, 16, false, CacheMode::Writeback, 5);
}

#[test]
fn crash_v3_lazy_refcounts() {
    crash_rounds(3, 16, true, CacheMode::Writeback, 4);
}

#[test]
fn crash_v2_4k_direct() {
    crash_rounds(2, 12, false, CacheMode::None, 4);
}
