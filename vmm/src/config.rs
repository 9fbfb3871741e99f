//! What a VM is made of, independent of how it was described (domain XML, an embedding program, a test).
//!
//! `mgmt` turns a libvirt domain into a [`VmConfig`]; the VMM validates it once more at start so that an
//! embedder gets the same errors as the CLI.

use std::path::PathBuf;

/// Everything the VMM needs to build and boot one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Domain name, used in logs and thread names.
    pub name: String,
    /// Domain UUID in canonical textual form (8-4-4-4-12 lowercase hex).
    pub uuid: String,
    /// Guest RAM in bytes (`<memory>`; the balloon, later, works below it from `<currentMemory>`).
    pub memory_bytes: u64,
    /// `<currentMemory>` in bytes; equal to `memory_bytes` when absent.
    pub current_memory_bytes: u64,
    /// vCPUs online at boot (`<vcpu current=…>`, or the `<vcpu>` value).
    pub vcpus: u32,
    /// Maximum vCPUs (`<vcpu>` value); CPUs between `vcpus` and this are described to the guest as
    /// present-but-disabled so hotplug can use them later.
    pub max_vcpus: u32,
    /// `<cpu><topology>`; when absent, `sockets = max_vcpus`, one die, one core, one thread.
    pub topology: CpuTopology,
    pub boot: BootConfig,
    pub on_poweroff: LifecycleAction,
    pub on_reboot: LifecycleAction,
    pub on_crash: LifecycleAction,
    /// The guest's first 16550 UART (COM1); `None` leaves COM1 absent.
    pub serial: Option<SerialConfig>,
    /// virtio-blk disks, in the order the guest should see them (vda, vdb, ...).
    pub disks: Vec<DiskConfig>,
    /// Also describe the virtio-mmio devices on the kernel command line (`virtio_mmio.device=…`), for guest
    /// kernels built with VIRTIO_MMIO_CMDLINE_DEVICES but without ACPI. They are always in the DSDT; a kernel
    /// with both would see each device twice, so this is off by default.
    pub virtio_mmio_on_cmdline: bool,
    /// `<memballoon model='virtio'>`.
    pub balloon: Option<BalloonConfig>,
    /// virtio-net interfaces, in `<interface>` order.
    pub interfaces: Vec<NetConfig>,
    /// An in-kernel i8254 PIT (`<timer name='pit' present='yes'/>`). Off by default: Linux does not use it on
    /// a hardware-reduced ACPI platform, and creating and destroying it costs several kernel RCU grace
    /// periods, most of a small VM's launch time.
    pub pit: bool,
}

/// One `<interface>`: a virtio-net device over a TAP device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// `<mac address>`.
    pub mac: [u8; 6],
    /// `<target dev>`: the TAP's name; `None` lets the kernel number one `vnet%d`, as libvirt does.
    pub tap_name: Option<String>,
    /// Where the TAP goes on the host.
    pub attach: NetAttach,
    /// `<mtu size>`.
    pub mtu: Option<u16>,
    /// `<link state>`: false starts the link down.
    pub link_up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetAttach {
    /// `type='ethernet'`: the TAP alone; whoever manages the host side configures it.
    Ethernet,
    /// `type='bridge'` (or a network's bridge): the TAP is enslaved to this Linux bridge.
    Bridge(String),
    /// `type='direct'`: a macvtap device on the host NIC `dev` (made for the VM, removed with it),
    /// in `mode` (`bridge`, `vepa`, `private` or `passthrough`).
    Direct { dev: String, mode: String },
}

/// A virtio-balloon device: how `setmem --live` takes memory back, and where `dommemstat` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BalloonConfig {
    /// `<stats period=…>` in seconds: how often the guest is asked for statistics (None or 0: on demand).
    pub stats_period: Option<u32>,
    /// `<driver deflate_on_oom='on'>`.
    pub deflate_on_oom: bool,
}

pub use ironvirt_devices::block::{BackingSpec, CacheMode, ImageFormat};

/// One `<disk>`: a virtio-blk device over a raw or qcow2 image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// `<target dev=…>`, for messages and statistics.
    pub target: String,
    /// The image file or block device.
    pub path: PathBuf,
    pub format: ImageFormat,
    /// `<readonly/>`, or a cdrom.
    pub read_only: bool,
    pub cache: CacheMode,
    /// `<driver discard='unmap'>`.
    pub discard_unmap: bool,
    /// `<serial>`, reported to the guest as the disk's ID.
    pub serial: Option<String>,
    /// `<backingStore>` chain, overriding what the image header says.
    pub backing: Option<BackingSpec>,
    /// `<shareable/>`: other VMs may have the image open too (QEMU then takes shared locks only).
    pub shareable: bool,
}

/// CPU topology as libvirt describes it; `sockets * dies * cores * threads` must equal `max_vcpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

impl CpuTopology {
    /// libvirt's default for a domain without `<topology>`: one socket per vCPU.
    pub fn flat(vcpus: u32) -> Self {
        CpuTopology {
            sockets: vcpus,
            dies: 1,
            cores: 1,
            threads: 1,
        }
    }

    pub fn total(&self) -> u64 {
        u64::from(self.sockets)
            * u64::from(self.dies)
            * u64::from(self.cores)
            * u64::from(self.threads)
    }
}

/// Direct kernel boot (`<os><kernel>`, `<initrd>`, `<cmdline>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// A bzImage, or an ELF vmlinux (booted through its PVH entry when it has one).
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// libvirt's `on_poweroff` / `on_reboot` / `on_crash` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleAction {
    Destroy,
    Restart,
    Preserve,
    RenameRestart,
    CoredumpDestroy,
    CoredumpRestart,
}

impl LifecycleAction {
    /// The libvirt spelling, for messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            LifecycleAction::Destroy => "destroy",
            LifecycleAction::Restart => "restart",
            LifecycleAction::Preserve => "preserve",
            LifecycleAction::RenameRestart => "rename-restart",
            LifecycleAction::CoredumpDestroy => "coredump-destroy",
            LifecycleAction::CoredumpRestart => "coredump-restart",
        }
    }
}

/// Where COM1's bytes go and come from (libvirt `<serial type=…>` / `<console type=…>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialConfig {
    /// A new pseudo-terminal; its path is logged (and reported to the manager).
    Pty,
    /// Output appended (or truncated, `append = false`) to a file; no input.
    File { path: PathBuf, append: bool },
    /// A UNIX stream socket: `listen = true` binds and serves one client at a time (libvirt `mode='bind'`),
    /// otherwise connects to an existing listener (`mode='connect'`).
    Unix { path: PathBuf, listen: bool },
    /// This process's stdin and stdout.
    Stdio,
}
