//! The VM's disks: virtio-blk devices on virtio-mmio transports.
//!
//! Images are opened once, when the VM is created (so a missing or locked image fails `start`, and the lock is
//! held for the VM's whole life); each boot gets fresh transports bound to that boot's memory and KVM VM, with
//! the queue-notify register backed by a KVM ioeventfd and the interrupt by an irqfd.

use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;
use ironvirt_devices::block::{self, OpenOptions};
use ironvirt_devices::bus::{lock, Bus};
use ironvirt_devices::virtio::balloon::{Balloon, BalloonShared, BalloonStats, PAGE_SIZE};
use ironvirt_devices::virtio::block::{Block, BlockConfig};
use ironvirt_devices::virtio::mmio::{MmioTransport, MMIO_WINDOW, QUEUE_NOTIFY_OFFSET};
use ironvirt_devices::virtio::VirtioDevice;
use ironvirt_firmware::layout::VIRTIO_MMIO_BASE;
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::config::{BootConfig, DiskConfig, NetAttach, NetConfig, VmConfig};
use crate::VmError;
use ironvirt_devices::net::macvtap;
use ironvirt_devices::net::netlink::MacvlanMode;
use ironvirt_devices::net::tap::Tap;
use ironvirt_devices::virtio::net::{Net, NetShared, NetStats};
use std::sync::atomic::Ordering;

/// IOAPIC pins for virtio-mmio devices: 0 and 2 are the PIT, 4 COM1, 5 the GED; ISA conventions reserve the
/// rest below 10 for legacy devices a guest may still probe.
const VIRTIO_GSIS: std::ops::RangeInclusive<u32> = 10..=23;

/// Where one virtio-mmio device lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioSlot {
    pub base: u64,
    pub gsi: u32,
}

/// The MMIO windows and interrupt lines of `count` devices, in order.
pub fn mmio_slots(count: usize) -> Result<Vec<MmioSlot>, VmError> {
    let gsis: Vec<u32> = VIRTIO_GSIS.collect();
    if count > gsis.len() {
        return Err(VmError::Unsupported(format!(
            "{count} virtio devices requested, at most {} are supported",
            gsis.len()
        )));
    }
    Ok((0..count)
        .map(|i| MmioSlot {
            base: VIRTIO_MMIO_BASE + i as u64 * MMIO_WINDOW,
            gsi: gsis[i],
        })
        .collect())
}

/// Every virtio device of a VM, in MMIO slot order: disks, interfaces, then the balloon.
/// A disk's target name and its device.
pub type NamedDisk = (String, Arc<Mutex<Block>>);

pub struct VirtioDevices {
    pub disks: Vec<NamedDisk>,
    pub nets: Vec<NetHandle>,
    pub balloon: Option<BalloonHandle>,
    /// The same devices as the transports see them.
    pub all: Vec<Arc<Mutex<dyn VirtioDevice>>>,
    /// The same devices as the event loop sees them.
    pub subscribers: Vec<Arc<Mutex<dyn MutEventSubscriber + Send>>>,
}

/// The control side of the balloon.
#[derive(Clone)]
pub struct BalloonHandle {
    pub shared: Arc<Mutex<BalloonShared>>,
    request: Arc<EventFd>,
    memory_bytes: u64,
}

impl BalloonHandle {
    /// Asks the guest to leave itself `current_bytes` of memory.
    pub fn set_current_memory(&self, current_bytes: u64) -> Result<(), VmError> {
        if current_bytes > self.memory_bytes {
            return Err(VmError::Unsupported(format!(
                "cannot set memory higher than max memory ({current_bytes} > {} bytes)",
                self.memory_bytes
            )));
        }
        let pages = (self.memory_bytes - current_bytes) / PAGE_SIZE;
        lock(&self.shared).target_pages = u32::try_from(pages).unwrap_or(u32::MAX);
        self.request.write(1).map_err(VmError::EventFd)
    }

    /// Asks the guest for fresh statistics (they arrive asynchronously).
    pub fn request_stats(&self) -> Result<(), VmError> {
        self.request.write(1).map_err(VmError::EventFd)
    }

    /// Memory the guest has now, after what it gave to the balloon.
    pub fn actual_bytes(&self) -> u64 {
        let given = u64::from(lock(&self.shared).actual_pages) * PAGE_SIZE;
        self.memory_bytes.saturating_sub(given)
    }

    pub fn stats(&self) -> BalloonStats {
        lock(&self.shared).stats.clone()
    }
}

impl VirtioDevices {
    pub fn open(config: &VmConfig) -> Result<Self, VmError> {
        let mut devices = VirtioDevices {
            disks: open_disks(&config.disks)?,
            nets: Vec::new(),
            balloon: None,
            all: Vec::new(),
            subscribers: Vec::new(),
        };
        for (_, d) in &devices.disks {
            devices.all.push(d.clone());
            devices.subscribers.push(d.clone());
        }
        for (i, n) in config.interfaces.iter().enumerate() {
            let dev = open_net(n).map_err(|reason| VmError::Net { index: i, reason })?;
            let handle = NetHandle {
                tap: dev.tap_name().to_string(),
                mac: n.mac,
                shared: dev.shared(),
                link_evt: Arc::new(dev.link_evt().map_err(VmError::EventFd)?),
            };
            let dev = Arc::new(Mutex::new(dev));
            devices.all.push(dev.clone());
            devices.subscribers.push(dev);
            devices.nets.push(handle);
        }
        if let Some(b) = &config.balloon {
            let dev =
                Balloon::new(true, b.deflate_on_oom, b.stats_period).map_err(VmError::EventFd)?;
            let handle = BalloonHandle {
                shared: dev.shared(),
                request: Arc::new(dev.request_evt().map_err(VmError::EventFd)?),
                memory_bytes: config.memory_bytes,
            };
            // libvirt starts a guest with the balloon already inflated down to <currentMemory>.
            let start_pages = config
                .memory_bytes
                .saturating_sub(config.current_memory_bytes)
                / PAGE_SIZE;
            lock(&handle.shared).target_pages = u32::try_from(start_pages).unwrap_or(u32::MAX);
            let dev = Arc::new(Mutex::new(dev));
            devices.all.push(dev.clone());
            devices.subscribers.push(dev);
            devices.balloon = Some(handle);
        }
        Ok(devices)
    }
}

/// The control side of one interface.
#[derive(Clone)]
pub struct NetHandle {
    /// The TAP device's name on the host.
    pub tap: String,
    pub mac: [u8; 6],
    shared: Arc<NetShared>,
    link_evt: Arc<EventFd>,
}

impl NetHandle {
    pub fn stats(&self) -> NetStats {
        *lock(&self.shared.stats)
    }

    pub fn link_up(&self) -> bool {
        self.shared.link_up.load(Ordering::SeqCst)
    }

    /// Changes the link state the guest sees (`domif-setlink`).
    pub fn set_link(&self, up: bool) -> Result<(), VmError> {
        self.shared.link_up.store(up, Ordering::SeqCst);
        self.link_evt.write(1).map_err(VmError::EventFd)
    }
}

fn open_net(n: &NetConfig) -> Result<Net, String> {
    let tap = match &n.attach {
        NetAttach::Direct { dev, mode } => {
            let mode =
                MacvlanMode::parse(mode).ok_or_else(|| format!("unknown macvtap mode '{mode}'"))?;
            macvtap::open(n.tap_name.as_deref(), dev, mode, n.mac).map_err(|e| e.to_string())?
        }
        _ => Tap::open(n.tap_name.as_deref().unwrap_or("vnet%d")).map_err(|e| e.to_string())?,
    };
    tap.up(n.mtu.map(u32::from)).map_err(|e| e.to_string())?;
    if let NetAttach::Bridge(bridge) = &n.attach {
        tap.attach_to_bridge(bridge).map_err(|e| e.to_string())?;
    }
    Net::new(tap, n.mac, n.mtu, n.link_up).map_err(|e| e.to_string())
}

/// Opens every disk's image.
fn open_disks(disks: &[DiskConfig]) -> Result<Vec<NamedDisk>, VmError> {
    disks
        .iter()
        .map(|d| {
            let opts = OpenOptions {
                format: d.format,
                read_only: d.read_only,
                cache: d.cache,
                discard_unmap: d.discard_unmap,
                backing: d.backing.clone(),
                // Shareable disks are meant to be open in several VMs at once: no exclusive write lock.
                lock: !d.shareable,
            };
            let backend = block::open(&d.path, &opts).map_err(|e| VmError::Disk {
                target: d.target.clone(),
                reason: e.to_string(),
            })?;
            let config = BlockConfig {
                serial: d.serial.clone(),
                discard: d.discard_unmap,
            };
            let dev = Block::new(backend, config).map_err(|e| VmError::Disk {
                target: d.target.clone(),
                reason: e.to_string(),
            })?;
            Ok((d.target.clone(), Arc::new(Mutex::new(dev))))
        })
        .collect()
}

/// Puts this boot's transports for `devices` on the MMIO bus.
pub fn attach(
    devices: &[Arc<Mutex<dyn VirtioDevice>>],
    vm_fd: &VmFd,
    memory: &GuestMemoryMmap,
    mmio: &mut Bus,
) -> Result<(), VmError> {
    for (device, slot) in devices.iter().zip(mmio_slots(devices.len())?) {
        // A reboot starts from a device the new guest has not configured yet.
        lock(device).reset();
        let irq = EventFd::new(EFD_NONBLOCK).map_err(VmError::EventFd)?;
        vm_fd
            .register_irqfd(&irq, slot.gsi)
            .map_err(|e| VmError::Kvm("KVM_IRQFD", e))?;
        let device = device.clone();
        let transport =
            MmioTransport::new(device, memory.clone(), irq).map_err(VmError::EventFd)?;
        for (evt, queue) in transport.queue_notifiers().map_err(VmError::EventFd)? {
            vm_fd
                .register_ioevent(
                    &evt,
                    &IoEventAddress::Mmio(slot.base + QUEUE_NOTIFY_OFFSET),
                    queue,
                )
                .map_err(|e| VmError::Kvm("KVM_IOEVENTFD", e))?;
        }
        mmio.insert(Arc::new(Mutex::new(transport)), slot.base, MMIO_WINDOW)
            .map_err(|e| VmError::Device(e.to_string()))?;
    }
    Ok(())
}

/// `boot` with `virtio_mmio.device=<size>@<base>:<gsi>` appended for each of `count` devices when `on_cmdline`.
pub fn with_cmdline_devices(
    boot: &BootConfig,
    count: usize,
    on_cmdline: bool,
) -> Result<BootConfig, VmError> {
    let mut boot = boot.clone();
    if on_cmdline {
        for slot in mmio_slots(count)? {
            if !boot.cmdline.is_empty() {
                boot.cmdline.push(' ');
            }
            boot.cmdline.push_str(&format!(
                "virtio_mmio.device=4K@{:#x}:{}",
                slot.base, slot.gsi
            ));
        }
    }
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_cmdline_devices() {
        let slots = mmio_slots(2).unwrap();
        assert_eq!(
            slots[1],
            MmioSlot {
                base: VIRTIO_MMIO_BASE + 0x1000,
                gsi: 11
            }
        );
        assert!(mmio_slots(15).is_err());
        let boot = BootConfig {
            kernel: "/k".into(),
            initrd: None,
            cmdline: "console=ttyS0".into(),
        };
        let with = with_cmdline_devices(&boot, 2, true).unwrap();
        assert_eq!(
            with.cmdline,
            "console=ttyS0 virtio_mmio.device=4K@0xd0000000:10 virtio_mmio.device=4K@0xd0001000:11"
        );
        assert_eq!(with_cmdline_devices(&boot, 2, false).unwrap(), boot);
    }
}
