//! One thread per vCPU: runs KVM_RUN, dispatches port and MMIO exits to the buses, and turns guest-initiated
//! stops (triple fault, KVM system events, internal errors) into [`MachineEvent`]s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ironvirt_devices::bus::Bus;
use ironvirt_devices::GuestRequest;
use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// What ends one boot of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineEvent {
    /// The guest asked for power-off or reset.
    Guest(GuestRequest),
    /// The guest (or KVM on its behalf) hit something it cannot continue from.
    Crash(String),
    /// The host asked the VMM to stop (a `VmHandle`).
    Stop,
    /// The host asked for a hard reset (`virsh reset`): the guest boots again whatever `on_reboot` says.
    HostReset,
}

/// The signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn ignore_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Interrupts `thread`'s KVM_RUN (if it is in one).
pub fn kick_thread(thread: libc::pthread_t) {
    // SAFETY: pthread_kill with a thread id of a vCPU thread that has not been joined yet (threads are
    // unregistered from RunControl before they are joined) and a signal whose handler is installed.
    unsafe { libc::pthread_kill(thread, kick_signal()) };
}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An interrupted KVM_RUN returns EINTR; the handler itself has nothing to do.
        if let Err(e) = register_signal_handler(kick_signal(), ignore_kick) {
            log::error!("cannot install the vCPU kick signal handler: {e}");
        }
    });
}

pub struct VcpuThread {
    handle: JoinHandle<()>,
}

impl VcpuThread {
    pub fn pthread(&self) -> libc::pthread_t {
        use std::os::unix::thread::JoinHandleExt;
        self.handle.as_pthread_t()
    }
}

pub struct VcpuContext {
    pub index: u32,
    pub pio: Bus,
    pub mmio: Bus,
    pub stop: Arc<AtomicBool>,
    pub events: Sender<MachineEvent>,
    pub control: Arc<crate::run_control::RunControl>,
    /// When the process started, for the start-up time benchmarks read (logged at the first KVM_RUN of the
    /// boot vCPU; `None` after the first boot).
    pub process_start: Option<std::time::Instant>,
}

impl VcpuThread {
    pub fn spawn(name: String, vcpu: VcpuFd, ctx: VcpuContext) -> std::io::Result<Self> {
        install_kick_handler();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(vcpu, ctx))?;
        Ok(VcpuThread { handle })
    }

    /// Kicks the thread out of KVM_RUN until it notices the stop flag, then joins it.
    pub fn stop_and_join(self, deadline: Duration) {
        let start = Instant::now();
        // A kick that lands just before KVM_RUN is lost, so keep kicking until the thread is gone.
        while !self.handle.is_finished() && start.elapsed() < deadline {
            let _ = self.handle.kill(kick_signal());
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.handle.is_finished() {
            let _ = self.handle.join();
        } else {
            log::error!("a vCPU thread did not stop within {deadline:?}; abandoning it");
        }
    }
}

fn run(mut vcpu: VcpuFd, ctx: VcpuContext) {
    ctx.control.register_vcpu_tid(ctx.index);
    run_until_stop(&mut vcpu, &ctx);
    if log::log_enabled!(log::Level::Debug) {
        let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
        let (cs, cr0) = vcpu
            .get_sregs()
            .map(|s| (s.cs.base, s.cr0))
            .unwrap_or((0, 0));
        let mp = vcpu.get_mp_state().map(|m| m.mp_state).unwrap_or(u32::MAX);
        log::debug!(
            "vCPU {} stopped at rip {rip:#x} (cs base {cs:#x}, cr0 {cr0:#x}, mp_state {mp})",
            ctx.index
        );
    }
}

fn run_until_stop(vcpu: &mut VcpuFd, ctx: &VcpuContext) {
    let send = |e| {
        let _ = ctx.events.send(e);
    };
    if let Some(start) = ctx.process_start {
        log::info!(
            "first KVM_RUN {:.3} ms after process start",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
    while !ctx.stop.load(Ordering::Acquire) {
        ctx.control
            .park_while_paused(|| ctx.stop.load(Ordering::Acquire));
        if ctx.stop.load(Ordering::Acquire) {
            break;
        }
        match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if !ctx.pio.read(u64::from(port), data) {
                    // An empty ISA bus floats high.
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                if !ctx.pio.write(u64::from(port), data) {
                    log::trace!(
                        "vCPU {}: write to unclaimed port {port:#x} ignored",
                        ctx.index
                    );
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !ctx.mmio.read(addr, data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if !ctx.mmio.write(addr, data) {
                    log::trace!(
                        "vCPU {}: write to unclaimed MMIO address {addr:#x} ignored",
                        ctx.index
                    );
                }
            }
            // A triple fault: PCs reset on it, and so does KVM's userspace convention.
            Ok(VcpuExit::Shutdown) => {
                send(MachineEvent::Guest(GuestRequest::Reset));
                break;
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                let event = match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => MachineEvent::Guest(GuestRequest::PowerOff),
                    KVM_SYSTEM_EVENT_RESET => MachineEvent::Guest(GuestRequest::Reset),
                    KVM_SYSTEM_EVENT_CRASH => {
                        MachineEvent::Crash("the guest reported a crash".into())
                    }
                    other => MachineEvent::Crash(format!("unexpected KVM system event {other}")),
                };
                send(event);
                break;
            }
            // With the in-kernel irqchip HLT stays in the kernel; without it there is nothing to wake us.
            Ok(VcpuExit::Hlt) => {
                send(MachineEvent::Crash(format!(
                    "vCPU {} halted with interrupts unhandled",
                    ctx.index
                )));
                break;
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                send(MachineEvent::Crash(format!(
                    "KVM could not enter vCPU {} (hardware entry failure reason {reason:#x} on host CPU {cpu})",
                    ctx.index
                )));
                break;
            }
            Ok(VcpuExit::InternalError) => {
                // SAFETY: KVM filled the `internal` member of the exit union for a KVM_EXIT_INTERNAL_ERROR exit.
                let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                send(MachineEvent::Crash(format!(
                    "KVM internal error on vCPU {} (suberror {suberror}, rip {rip:#x}): the guest ran an \
                     instruction this host's KVM cannot emulate",
                    ctx.index
                )));
                break;
            }
            Ok(VcpuExit::Intr) | Ok(VcpuExit::IrqWindowOpen) => {}
            Ok(other) => {
                send(MachineEvent::Crash(format!(
                    "vCPU {}: unexpected KVM exit {other:?}",
                    ctx.index
                )));
                break;
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
            }
            Err(e) => {
                send(MachineEvent::Crash(format!(
                    "KVM_RUN failed on vCPU {}: {e}",
                    ctx.index
                )));
                break;
            }
        }
    }
}
