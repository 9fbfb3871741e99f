//! A virtual machine: built from a [`VmConfig`], booted, and rebuilt on reset as `on_reboot` says.
//!
//! What outlives a boot — the console and its input pump, the CMOS (its RAM is battery-backed), the power
//! button — is created once in [`Vm::new`]. Everything the guest can dirty — KVM VM, memory, vCPUs — is
//! created fresh for each boot by [`Machine::build`], so a reboot starts from a clean platform.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use ironvirt_devices::bus::{lock, Bus, BusDevice};
use ironvirt_devices::legacy::{self, AcpiPmDevice, BootTimer, Cmos, Ged, SerialDevice, I8042};
use ironvirt_devices::virtio::mmio::MMIO_WINDOW;
use ironvirt_devices::{EventFdTrigger, GuestRequest, GuestRequestSink};
use ironvirt_firmware::{acpi as fwacpi, e820, layout};
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::{cpuid, lapic, msrs, regs, topology::ApicLayout};
use crate::config::{LifecycleAction, VmConfig};
use crate::console::{ConsoleBackend, SerialInput};
use crate::run_control::{RunControl, RunControlError};
use crate::vcpu::{MachineEvent, VcpuContext, VcpuThread};
use crate::virtio_devices::{BalloonHandle, NetHandle, VirtioDevices};
use crate::{boot, VmError};
use ironvirt_devices::virtio::balloon::BalloonStats;
use ironvirt_devices::virtio::block::{Block, BlockStats};

/// Where KVM keeps its per-VM TSS and identity map on Intel hosts: just below the BIOS, inside the MMIO hole.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
const VCPU_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// How a VM's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest powered off and `on_poweroff` said destroy.
    PoweredOff,
    /// The guest rebooted and `on_reboot` said destroy.
    RebootDestroyed,
    /// The guest crashed and `on_crash` said destroy; the text says what happened.
    Crashed(String),
    /// [`VmHandle::stop`] was called.
    Stopped,
}

/// Controls a running [`Vm`] from another thread.
#[derive(Clone)]
pub struct VmHandle {
    events: Sender<MachineEvent>,
    ged: Arc<Mutex<Ged>>,
    control: Arc<RunControl>,
    balloon: Option<BalloonHandle>,
    reboot_requested: Arc<AtomicBool>,
    /// Weak, so a handle kept by another thread never keeps an image open after the VM is gone (qcow2
    /// images are closed cleanly when their device is dropped).
    disks: Vec<(String, Weak<Mutex<Block>>)>,
    nets: Vec<NetHandle>,
}

impl VmHandle {
    /// Ends the VM as if its power cord were pulled; [`Vm::run`] returns [`VmExit::Stopped`].
    pub fn stop(&self) {
        let _ = self.events.send(MachineEvent::Stop);
    }

    /// Presses the guest's ACPI power button (an orderly shutdown for guests that handle it).
    pub fn press_power_button(&self) -> std::io::Result<()> {
        lock(&self.ged).press_power_button()
    }

    /// Stops the vCPUs; returns once none of them runs guest code.
    pub fn pause(&self) -> Result<(), RunControlError> {
        self.control.pause(PAUSE_DEADLINE)
    }

    pub fn resume(&self) {
        self.control.resume();
    }

    pub fn is_paused(&self) -> bool {
        self.control.is_paused()
    }

    /// Kernel thread ids of the vCPU threads (by vCPU index) of the current boot; `None` for a vCPU that
    /// has not started yet.
    pub fn vcpu_tids(&self) -> Vec<Option<i32>> {
        self.control.vcpu_tids()
    }

    /// Asks the guest, through the balloon, to make do with `current_bytes` of memory (`setmem --live`).
    pub fn set_memory(&self, current_bytes: u64) -> Result<(), VmError> {
        self.balloon()?.set_current_memory(current_bytes)
    }

    /// The guest's memory as the balloon sees it: what it has now, and its last statistics (asking it for
    /// fresh ones, which arrive shortly after).
    pub fn memory_stats(&self) -> Result<(u64, BalloonStats), VmError> {
        let b = self.balloon()?;
        b.request_stats()?;
        Ok((b.actual_bytes(), b.stats()))
    }

    fn balloon(&self) -> Result<&BalloonHandle, VmError> {
        self.balloon.as_ref().ok_or_else(|| {
            VmError::Unsupported(
                "the domain has no memory balloon device (<memballoon model='virtio'>)".into(),
            )
        })
    }

    /// I/O counters of every disk, by target name.
    pub fn block_stats(&self) -> Vec<(String, BlockStats)> {
        self.disks
            .iter()
            .filter_map(|(t, d)| d.upgrade().map(|d| (t.clone(), lock(&d).stats())))
            .collect()
    }

    /// The interfaces (TAP names, MACs, counters, link state), in `<interface>` order.
    pub fn interfaces(&self) -> &[NetHandle] {
        &self.nets
    }

    /// libvirt's ACPI reboot: presses the power button, and when the guest has powered off boots it again in
    /// this same VM (console, disks and their locks stay as they are).
    pub fn reboot(&self) -> std::io::Result<()> {
        self.reboot_requested.store(true, Ordering::Release);
        self.press_power_button()
    }

    /// Resets the machine at once, without the guest's cooperation; it boots again.
    pub fn reset(&self) {
        let _ = self.events.send(MachineEvent::HostReset);
    }
}

const PAUSE_DEADLINE: Duration = Duration::from_secs(5);

/// A device an embedder (or a test) adds to the machine, at a fixed port or MMIO range.
struct ExtraDevice {
    mmio: bool,
    base: u64,
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

pub struct Vm {
    config: VmConfig,
    kvm: Kvm,
    supported_cpuid: CpuId,
    process_start: Instant,
    events_tx: Sender<MachineEvent>,
    events_rx: Receiver<MachineEvent>,
    serial: Option<(Arc<Mutex<SerialDevice>>, EventFd)>,
    virtio: VirtioDevices,
    cmos: Arc<Mutex<Cmos>>,
    ged: Arc<Mutex<Ged>>,
    ged_irq: EventFd,
    boot_timer: Arc<Mutex<BootTimer>>,
    extra: Vec<ExtraDevice>,
    event_loop: Option<EventLoop>,
    pty_path: Option<std::path::PathBuf>,
    control: Arc<RunControl>,
    /// Set by `VmHandle::reboot`: the next guest power-off boots the guest again.
    reboot_requested: Arc<AtomicBool>,
}

struct EventLoop {
    stop: Arc<AtomicBool>,
    wake: EventFd,
    thread: JoinHandle<()>,
}

impl Vm {
    /// Validates `config`, opens `/dev/kvm` and the console. `process_start` is when the embedding process
    /// started, for the boot timer.
    pub fn new(config: VmConfig, process_start: Instant) -> Result<Self, VmError> {
        crate::validate::validate(&config)?;
        let kvm = Kvm::new().map_err(VmError::KvmOpen)?;
        let supported_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| VmError::Kvm("KVM_GET_SUPPORTED_CPUID", e))?;
        let (events_tx, events_rx) = channel();

        let mut event_manager: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
            EventManager::new().map_err(|e| VmError::EventLoop(e.to_string()))?;
        let mut serial = None;
        let mut pty_path = None;
        if let Some(serial_config) = &config.serial {
            let backend = ConsoleBackend::open(serial_config)?;
            pty_path = backend.pty_path.clone();
            if let Some(p) = &pty_path {
                // The same words QEMU uses, which libvirt-era tooling greps for.
                eprintln!(
                    "char device redirected to {} (label charserial0)",
                    p.display()
                );
            }
            let irq = EventFd::new(EFD_NONBLOCK).map_err(VmError::EventFd)?;
            let drained = EventFd::new(EFD_NONBLOCK).map_err(VmError::EventFd)?;
            let device = Arc::new(Mutex::new(SerialDevice::new(
                EventFdTrigger(irq.try_clone().map_err(VmError::EventFd)?),
                drained.try_clone().map_err(VmError::EventFd)?,
                backend.output,
            )));
            if let Some(source) = backend.input {
                let input =
                    SerialInput::new(device.clone(), drained, source).map_err(VmError::EventFd)?;
                event_manager.add_subscriber(Arc::new(Mutex::new(input)));
            }
            serial = Some((device, irq));
        }
        let virtio = VirtioDevices::open(&config)?;
        for sub in &virtio.subscribers {
            event_manager.add_subscriber(sub.clone());
        }
        let event_loop = Some(EventLoop::spawn(event_manager)?);

        let ged_irq = EventFd::new(EFD_NONBLOCK).map_err(VmError::EventFd)?;
        let ged = Arc::new(Mutex::new(Ged::new(EventFdTrigger(
            ged_irq.try_clone().map_err(VmError::EventFd)?,
        ))));
        let name = config.name.clone();
        let boot_timer = Arc::new(Mutex::new(BootTimer::new(
            process_start,
            Box::new(move |elapsed| {
                eprintln!(
                    "ironvirt-vmm: domain {name}: guest boot completed {:.3} ms after process start",
                    elapsed.as_secs_f64() * 1000.0
                )
            }),
        )));
        Ok(Vm {
            config,
            kvm,
            supported_cpuid,
            process_start,
            events_tx,
            events_rx,
            serial,
            cmos: Arc::new(Mutex::new(Cmos::new())),
            virtio,
            ged,
            ged_irq,
            boot_timer,
            extra: Vec::new(),
            event_loop,
            pty_path,
            control: Arc::new(RunControl::default()),
            reboot_requested: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The pseudo-terminal the serial console is on, for `<serial type='pty'>`.
    pub fn pty_path(&self) -> Option<&std::path::Path> {
        self.pty_path.as_deref()
    }

    pub fn handle(&self) -> VmHandle {
        VmHandle {
            events: self.events_tx.clone(),
            ged: self.ged.clone(),
            control: self.control.clone(),
            balloon: self.virtio.balloon.clone(),
            reboot_requested: self.reboot_requested.clone(),
            disks: self
                .virtio
                .disks
                .iter()
                .map(|(t, d)| (t.clone(), Arc::downgrade(d)))
                .collect(),
            nets: self.virtio.nets.clone(),
        }
    }

    /// Adds a device at `[base, base + len)` of the MMIO space (for embedders and tests).
    pub fn add_mmio_device(&mut self, base: u64, len: u64, device: Arc<Mutex<dyn BusDevice>>) {
        self.extra.push(ExtraDevice {
            mmio: true,
            base,
            len,
            device,
        });
    }

    /// Adds a device at ports `[base, base + len)`.
    pub fn add_pio_device(&mut self, base: u16, len: u16, device: Arc<Mutex<dyn BusDevice>>) {
        self.extra.push(ExtraDevice {
            mmio: false,
            base: u64::from(base),
            len: u64::from(len),
            device,
        });
    }

    /// Boots the guest and runs it until it is powered off, destroyed or stopped, rebooting as the lifecycle
    /// actions say.
    pub fn run(&mut self) -> Result<VmExit, VmError> {
        let mut boot_number = 0;
        loop {
            let machine = Machine::build(self, boot_number)?;
            boot_number += 1;
            let event = machine.run(&self.events_rx);
            if event == MachineEvent::Guest(GuestRequest::PowerOff) {
                // The guest went down: a button press it never acknowledged is not replayed to the next boot
                // (a press that arrives while the machine is being rebuilt still is).
                lock(&self.ged).reset();
            }
            let action = match &event {
                MachineEvent::Stop => return Ok(VmExit::Stopped),
                MachineEvent::HostReset => {
                    log::info!("domain {}: reset by the host", self.config.name);
                    continue;
                }
                MachineEvent::Guest(GuestRequest::PowerOff)
                    if self.reboot_requested.swap(false, Ordering::AcqRel) =>
                {
                    // Always on stderr (the domain's log): managers and users look for it there.
                    eprintln!(
                        "ironvirt-vmm: domain {}: rebooting after the guest's shutdown",
                        self.config.name
                    );
                    continue;
                }
                MachineEvent::Guest(GuestRequest::PowerOff) => {
                    (self.config.on_poweroff, VmExit::PoweredOff)
                }
                MachineEvent::Guest(GuestRequest::Reset) => {
                    (self.config.on_reboot, VmExit::RebootDestroyed)
                }
                MachineEvent::Crash(why) => {
                    eprintln!(
                        "ironvirt-vmm: domain {}: guest crashed: {why}",
                        self.config.name
                    );
                    (self.config.on_crash, VmExit::Crashed(why.clone()))
                }
            };
            match action {
                (LifecycleAction::Restart, _) => {
                    log::info!("domain {}: restarting the guest", self.config.name);
                    continue;
                }
                (_, exit) => return Ok(exit),
            }
        }
    }

    fn request_sink(&self) -> GuestRequestSink {
        let tx = Mutex::new(self.events_tx.clone());
        Arc::new(move |req| {
            let _ = lock(&tx).send(MachineEvent::Guest(req));
        })
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(el) = self.event_loop.take() {
            el.stop();
        }
        crate::console::terminal::restore();
    }
}

/// Wakes the event loop so it notices the stop flag at once.
struct Waker(EventFd);

impl MutEventSubscriber for Waker {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.0, EventSet::IN)) {
            log::error!("event loop: cannot watch its wake-up event: {e}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.read();
    }
}

impl EventLoop {
    fn spawn(
        mut manager: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>,
    ) -> Result<Self, VmError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let wake = EventFd::new(EFD_NONBLOCK).map_err(VmError::EventFd)?;
        manager.add_subscriber(Arc::new(Mutex::new(Waker(
            wake.try_clone().map_err(VmError::EventFd)?,
        ))));
        let thread = std::thread::Builder::new()
            .name("event-loop".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Acquire) {
                    if let Err(e) = manager.run() {
                        log::error!("event loop failed: {e}");
                        break;
                    }
                }
            })
            .map_err(|e| VmError::EventLoop(e.to_string()))?;
        Ok(EventLoop { stop, wake, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.write(1);
        let _ = self.thread.join();
    }
}

/// One boot's worth of KVM state.
struct Machine {
    control: Arc<RunControl>,
    _vm_fd: VmFd,
    _memory: GuestMemoryMmap,
    vcpus: Vec<VcpuThread>,
    stop: Arc<AtomicBool>,
}

impl Machine {
    fn build(vm: &Vm, boot_number: u32) -> Result<Self, VmError> {
        let config = &vm.config;
        let vm_fd = vm
            .kvm
            .create_vm()
            .map_err(|e| VmError::Kvm("KVM_CREATE_VM", e))?;
        // Intel needs these two pages reserved; AMD and software KVMs ignore them.
        if let Err(e) = vm_fd.set_tss_address(KVM_TSS_ADDRESS) {
            log::debug!("KVM_SET_TSS_ADDR: {e}");
        }
        if let Err(e) = vm_fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS) {
            log::debug!("KVM_SET_IDENTITY_MAP_ADDR: {e}");
        }
        vm_fd
            .create_irq_chip()
            .map_err(|e| VmError::Kvm("KVM_CREATE_IRQCHIP", e))?;
        // The irqchip's I/O-bus registrations leave kernel SRCU callbacks pending, and destroying the VM waits
        // for them (srcu_barrier), a normal grace period of ~10 ms. Registering guest memory afterwards runs
        // an expedited grace period on the same SRCU that retires them at once: a tiny guest's launch-to-exit
        // went from ~19 ms to ~12 ms with this order.
        let memory = crate::memory::create(config.memory_bytes)?;
        register_memory(&vm_fd, &memory)?;
        if config.pit {
            let pit = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            vm_fd
                .create_pit2(pit)
                .map_err(|e| VmError::Kvm("KVM_CREATE_PIT2", e))?;
        }

        let layout = ApicLayout::new(&config.topology);
        let apic_ids: Vec<u32> = (0..config.vcpus).map(|i| layout.apic_id(i)).collect();
        let mut platform = fwacpi::AcpiPlatform::new(apic_ids.clone());
        platform.max_vcpus = config.max_vcpus;
        platform.hotplug_apic_ids = (config.vcpus..config.max_vcpus)
            .map(|i| layout.apic_id(i))
            .collect();
        platform.serial = config.serial.is_some();
        platform.virtio_mmio = crate::virtio_devices::mmio_slots(vm.virtio.all.len())?
            .iter()
            .map(|slot| fwacpi::VirtioMmioDevice {
                base: slot.base,
                size: MMIO_WINDOW,
                gsi: slot.gsi,
            })
            .collect();
        let rsdp = fwacpi::write_acpi_tables(&memory, &platform)
            .map_err(|e| VmError::Firmware(e.to_string()))?;
        ironvirt_firmware::reset_vector::write_reset_vector(&memory)
            .map_err(|e| VmError::Firmware(format!("reset vector: {e}")))?;
        let e820 =
            e820::e820_map(config.memory_bytes).map_err(|e| VmError::Firmware(e.to_string()))?;
        let boot_config = crate::virtio_devices::with_cmdline_devices(
            &config.boot,
            vm.virtio.all.len(),
            config.virtio_mmio_on_cmdline,
        )?;
        let entry = boot::load(&memory, &boot_config, &e820, rsdp)?;
        regs::write_boot_tables(&memory, &entry)?;

        let (pio, mut mmio) = build_buses(vm, &vm_fd)?;
        crate::virtio_devices::attach(&vm.virtio.all, &vm_fd, &memory, &mut mmio)?;

        let stop = Arc::new(AtomicBool::new(false));
        let mut vcpus = Vec::with_capacity(apic_ids.len());
        let mut machine_vcpus = Vec::new();
        for (index, apic_id) in apic_ids.iter().enumerate() {
            let index = index as u32;
            let vcpu = vm_fd
                .create_vcpu(u64::from(*apic_id))
                .map_err(|e| VmError::Kvm("KVM_CREATE_VCPU", e))?;
            let cpuid = cpuid::vcpu_cpuid(&vm.supported_cpuid, index, &layout)?;
            vcpu.set_cpuid2(&cpuid)
                .map_err(|e| VmError::Kvm("KVM_SET_CPUID2", e))?;
            let boot_msrs =
                msrs::boot_msrs().map_err(|e| VmError::Firmware(format!("MSR list: {e:?}")))?;
            let set = vcpu
                .set_msrs(&boot_msrs)
                .map_err(|e| VmError::Kvm("KVM_SET_MSRS", e))?;
            if set != boot_msrs.as_slice().len() {
                let failed = msrs::boot_msr_entries()
                    .get(set)
                    .map(|m| m.index)
                    .unwrap_or(0);
                log::debug!("vCPU {index}: KVM accepted {set} boot MSRs; MSR {failed:#x} refused");
            }
            vcpu.set_fpu(&regs::boot_fpu())
                .map_err(|e| VmError::Kvm("KVM_SET_FPU", e))?;
            let mut lapic_state = vcpu
                .get_lapic()
                .map_err(|e| VmError::Kvm("KVM_GET_LAPIC", e))?;
            lapic::set_lint(&mut lapic_state);
            vcpu.set_lapic(&lapic_state)
                .map_err(|e| VmError::Kvm("KVM_SET_LAPIC", e))?;
            if index == 0 {
                regs::setup_boot_vcpu(&vcpu, &entry)?;
            }
            machine_vcpus.push((index, vcpu));
        }
        for (index, vcpu) in machine_vcpus {
            let ctx = VcpuContext {
                index,
                pio: pio.clone(),
                mmio: mmio.clone(),
                stop: stop.clone(),
                events: vm.events_tx.clone(),
                control: vm.control.clone(),
                process_start: (index == 0 && boot_number == 0).then_some(vm.process_start),
            };
            let thread =
                VcpuThread::spawn(format!("vcpu{index}"), vcpu, ctx).map_err(VmError::Thread)?;
            vcpus.push(thread);
        }
        vm.control
            .register_threads(vcpus.iter().map(VcpuThread::pthread).collect());
        log::debug!(
            "domain {}: {} vCPUs started {:?} after process start",
            config.name,
            vcpus.len(),
            vm.process_start.elapsed()
        );
        Ok(Machine {
            control: vm.control.clone(),
            _vm_fd: vm_fd,
            _memory: memory,
            vcpus,
            stop,
        })
    }

    /// Waits for the first event that ends this boot, then stops every vCPU.
    fn run(self, events: &Receiver<MachineEvent>) -> MachineEvent {
        // The sender lives in `Vm`, so the channel cannot disconnect while we wait.
        let event = events.recv().unwrap_or(MachineEvent::Stop);
        log::info!("stopping the vCPUs: {event:?}");
        self.stop.store(true, Ordering::Release);
        // Nobody may kick these threads once they can be joined; parked ones must see the stop.
        self.control.register_threads(Vec::new());
        self.control.wake_all();
        for vcpu in self.vcpus {
            vcpu.stop_and_join(VCPU_STOP_DEADLINE);
        }
        // Other vCPUs may have reported the same shutdown; those reports belong to this boot.
        while let Ok(e) = events.try_recv() {
            if e == MachineEvent::Stop {
                return e;
            }
        }
        event
    }
}

fn register_memory(vm_fd: &VmFd, memory: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in memory.iter().enumerate() {
        let region_desc = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the mapping backing `region` lives in `Machine::_memory`, which outlives the VM fd's use of it
        // (the vCPUs are joined before `Machine` is dropped), and the slots do not overlap.
        unsafe { vm_fd.set_user_memory_region(region_desc) }
            .map_err(|e| VmError::Kvm("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    Ok(())
}

fn build_buses(vm: &Vm, vm_fd: &VmFd) -> Result<(Bus, Bus), VmError> {
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let sink = vm.request_sink();
    let insert = |bus: &mut Bus, dev: Arc<Mutex<dyn BusDevice>>, base: u64, len: u64| {
        bus.insert(dev, base, len)
            .map_err(|e| VmError::Device(e.to_string()))
    };
    if let Some((serial, irq)) = &vm.serial {
        vm_fd
            .register_irqfd(irq, layout::COM1_GSI)
            .map_err(|e| VmError::Kvm("KVM_IRQFD", e))?;
        insert(
            &mut pio,
            serial.clone(),
            u64::from(layout::COM1_PORT),
            u64::from(layout::COM1_PORT_LEN),
        )?;
    }
    insert(
        &mut pio,
        Arc::new(Mutex::new(I8042::new(sink.clone()))),
        u64::from(legacy::i8042::I8042_BASE),
        u64::from(legacy::i8042::I8042_LEN),
    )?;
    insert(
        &mut pio,
        vm.cmos.clone(),
        u64::from(legacy::cmos::CMOS_BASE),
        u64::from(legacy::cmos::CMOS_LEN),
    )?;
    let pm = AcpiPmDevice::new(layout::ACPI_S5_SLP_TYP, layout::ACPI_RESET_VALUE, sink);
    insert(
        &mut pio,
        Arc::new(Mutex::new(pm)),
        u64::from(layout::ACPI_SLEEP_CONTROL_PORT),
        legacy::acpi_pm::ACPI_PM_LEN,
    )?;
    vm_fd
        .register_irqfd(&vm.ged_irq, layout::GED_GSI)
        .map_err(|e| VmError::Kvm("KVM_IRQFD", e))?;
    insert(
        &mut pio,
        vm.ged.clone(),
        u64::from(layout::GED_STATUS_PORT),
        1,
    )?;
    insert(
        &mut pio,
        vm.boot_timer.clone(),
        u64::from(legacy::boot_timer::BOOT_TIMER_PORT),
        1,
    )?;
    for extra in &vm.extra {
        let bus = if extra.mmio { &mut mmio } else { &mut pio };
        insert(bus, extra.device.clone(), extra.base, extra.len)?;
    }
    Ok((pio, mmio))
}
