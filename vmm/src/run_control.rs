//! Pausing and resuming the vCPUs of a running VM from another thread.
//!
//! vCPU threads check [`RunControl`] between KVM_RUN calls; `pause` kicks every registered vCPU thread out of
//! KVM_RUN and returns once all of them are parked, so a paused VM executes no guest code at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use ironvirt_devices::bus::lock;

use crate::vcpu::kick_thread;

#[derive(Default)]
pub struct RunControl {
    paused: Mutex<bool>,
    wake: Condvar,
    parked: AtomicUsize,
    /// pthread ids of the current boot's vCPU threads, for kicking.
    threads: Mutex<Vec<libc::pthread_t>>,
    /// Kernel thread ids of the vCPU threads by vCPU index, for CPU accounting and affinity.
    tids: Mutex<Vec<Option<i32>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunControlError {
    #[error("the vCPUs did not pause within {0:?}")]
    PauseTimeout(Duration),
}

impl RunControl {
    pub fn register_threads(&self, threads: Vec<libc::pthread_t>) {
        *lock(&self.threads) = threads;
    }

    /// Records the calling thread as vCPU `index`.
    pub fn register_vcpu_tid(&self, index: u32) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let mut tids = lock(&self.tids);
        let i = index as usize;
        if tids.len() <= i {
            tids.resize(i + 1, None);
        }
        tids[i] = Some(tid);
    }

    /// Thread ids of the vCPUs of the current boot, by vCPU index.
    pub fn vcpu_tids(&self) -> Vec<Option<i32>> {
        lock(&self.tids).clone()
    }

    pub fn is_paused(&self) -> bool {
        *lock(&self.paused)
    }

    /// Stops every vCPU from running guest code; returns once they are all parked.
    pub fn pause(&self, deadline: Duration) -> Result<(), RunControlError> {
        *lock(&self.paused) = true;
        let start = Instant::now();
        loop {
            let threads = lock(&self.threads).clone();
            if self.parked.load(Ordering::Acquire) >= threads.len() {
                return Ok(());
            }
            if start.elapsed() > deadline {
                return Err(RunControlError::PauseTimeout(deadline));
            }
            for t in &threads {
                kick_thread(*t);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn resume(&self) {
        *lock(&self.paused) = false;
        self.wake.notify_all();
    }

    /// Wakes parked vCPUs without resuming, so they can notice a stop request.
    pub fn wake_all(&self) {
        let _guard = lock(&self.paused);
        self.wake.notify_all();
    }

    /// Called by a vCPU thread between runs: blocks while the VM is paused, unless `stopping` says to quit.
    pub fn park_while_paused(&self, stopping: impl Fn() -> bool) {
        let mut paused = lock(&self.paused);
        if !*paused {
            return;
        }
        self.parked.fetch_add(1, Ordering::AcqRel);
        while *paused && !stopping() {
            paused = self.wake.wait(paused).unwrap_or_else(|p| p.into_inner());
        }
        self.parked.fetch_sub(1, Ordering::AcqRel);
    }
}
