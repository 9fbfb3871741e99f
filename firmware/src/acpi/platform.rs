//! The description of the platform the ACPI tables are generated from, and
//! its validation.

use crate::acpi::AcpiError;
use crate::layout::{COM1_GSI, GED_GSI, IOAPIC_NUM_PINS, MMIO_HOLE_END, MMIO_HOLE_START};

/// The most vCPUs (present plus hot-pluggable) the tables can describe.
///
/// 4096 x2APIC entries (16 bytes each) still fit the 128 KiB ACPI area; the
/// cap mostly keeps a typo in a configuration from allocating gigabytes.
pub const MAX_VCPUS: u32 = 4096;

/// How many virtio-mmio devices the DSDT can name (`V000`..`VFFF`).
pub const MAX_VIRTIO_MMIO_DEVICES: usize = 0x1000;

/// The OEM identification stamped into every table header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OemIds {
    /// OEM ID (6 bytes, space padded).
    pub oem_id: [u8; 6],
    /// OEM table ID (8 bytes, space padded).
    pub oem_table_id: [u8; 8],
    /// OEM revision.
    pub oem_revision: u32,
}

impl Default for OemIds {
    fn default() -> Self {
        Self {
            oem_id: *b"IRNVRT",
            oem_table_id: *b"IRONVIRT",
            oem_revision: 1,
        }
    }
}

/// A virtio-mmio device to describe in the DSDT (`_HID "LNRO0005"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioDevice {
    /// Guest physical base of its register window (must lie in the 32-bit MMIO hole).
    pub base: u64,
    /// Size of its register window in bytes.
    pub size: u64,
    /// The GSI it interrupts on (edge-triggered, active-high).
    pub gsi: u32,
}

/// Everything the ACPI tables describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiPlatform {
    /// APIC IDs of the vCPUs present at boot, in vCPU index order (the index is
    /// the ACPI processor UID).
    pub apic_ids: Vec<u32>,
    /// Total vCPUs the guest may ever have. Those beyond `apic_ids.len()` are
    /// listed as disabled but online-capable (hot-pluggable), with APIC IDs
    /// counting up from the highest boot APIC ID + 1 and UIDs continuing the
    /// vCPU indices.
    pub max_vcpus: u32,
    /// APIC IDs for the hot-pluggable vCPUs (those from `apic_ids.len()` up to `max_vcpus`), when the VMM's
    /// topology fixes them; empty means "count up from the highest boot APIC ID + 1".
    pub hotplug_apic_ids: Vec<u32>,
    /// Describe COM1 (0x3f8, IRQ 4) in the DSDT.
    pub serial: bool,
    /// virtio-mmio devices, in order: the n-th gets `_UID` n.
    pub virtio_mmio: Vec<VirtioMmioDevice>,
    /// OEM identification for the table headers.
    pub oem: OemIds,
}

impl AcpiPlatform {
    /// A platform with the given boot vCPUs, no hot-pluggable vCPUs, COM1, no
    /// virtio-mmio devices and the default OEM ids.
    pub fn new(apic_ids: Vec<u32>) -> Self {
        let max_vcpus = u32::try_from(apic_ids.len()).unwrap_or(u32::MAX);
        Self {
            apic_ids,
            max_vcpus,
            hotplug_apic_ids: Vec::new(),
            serial: true,
            virtio_mmio: Vec::new(),
            oem: OemIds::default(),
        }
    }

    /// Checks the description for what the tables cannot express.
    pub fn validate(&self) -> Result<(), AcpiError> {
        self.cpus().map(|_| ())?;
        if self.virtio_mmio.len() > MAX_VIRTIO_MMIO_DEVICES {
            return Err(AcpiError::TooManyVirtioDevices {
                count: self.virtio_mmio.len(),
                max: MAX_VIRTIO_MMIO_DEVICES,
            });
        }
        for (index, dev) in self.virtio_mmio.iter().enumerate() {
            let in_hole = dev
                .base
                .checked_add(dev.size)
                .is_some_and(|end| dev.base >= MMIO_HOLE_START && end <= MMIO_HOLE_END);
            if dev.size == 0 || !in_hole {
                return Err(AcpiError::BadVirtioMmioWindow {
                    index,
                    base: dev.base,
                    size: dev.size,
                });
            }
            // GSI 0 and 2 are the PIT (IRQ0 is overridden to GSI 2); the GED
            // and COM1 lines are ours. Edge interrupts cannot be shared safely.
            let taken = [0, 2, GED_GSI, COM1_GSI];
            if dev.gsi >= IOAPIC_NUM_PINS || taken.contains(&dev.gsi) {
                return Err(AcpiError::BadVirtioMmioGsi {
                    index,
                    gsi: dev.gsi,
                });
            }
        }
        Ok(())
    }

    /// Every possible vCPU: the boot ones (enabled) then the hot-pluggable ones.
    pub fn cpus(&self) -> Result<Vec<Cpu>, AcpiError> {
        let boot = self.apic_ids.len();
        if boot == 0 {
            return Err(AcpiError::NoVcpus);
        }
        if self.max_vcpus > MAX_VCPUS {
            return Err(AcpiError::TooManyVcpus {
                count: self.max_vcpus,
                max: MAX_VCPUS,
            });
        }
        let max = self.max_vcpus as usize;
        if max < boot {
            return Err(AcpiError::MaxVcpusBelowBootVcpus {
                max_vcpus: self.max_vcpus,
                boot_vcpus: boot,
            });
        }
        let mut sorted = self.apic_ids.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(AcpiError::DuplicateApicId(w[0]));
        }
        // Non-empty was checked above, so a last element exists.
        let highest = sorted.last().copied().unwrap_or(0);

        let mut cpus: Vec<Cpu> = self
            .apic_ids
            .iter()
            .enumerate()
            .map(|(uid, &apic_id)| Cpu {
                uid: uid as u32,
                apic_id,
                enabled: true,
            })
            .collect();
        for (n, uid) in (boot..max).enumerate() {
            let apic_id = match self.hotplug_apic_ids.get(n) {
                Some(&id) => id,
                None => highest
                    .checked_add(1 + n as u32)
                    .ok_or(AcpiError::ApicIdOverflow)?,
            };
            cpus.push(Cpu {
                uid: uid as u32,
                apic_id,
                enabled: false,
            });
        }
        let mut all: Vec<u32> = cpus.iter().map(|c| c.apic_id).collect();
        all.sort_unstable();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(AcpiError::DuplicateApicId(w[0]));
        }
        Ok(cpus)
    }

    /// The IOAPIC ID published in the MADT.
    ///
    /// IOAPIC and local APIC IDs live in separate spaces on x86_64, but some
    /// tools still warn on a clash, so this picks an 8-bit ID no vCPU uses,
    /// preferring the vCPU count (the convention of many VMMs). With 255 or more
    /// vCPUs in the xAPIC range no free ID exists and 0 is used.
    pub fn ioapic_id(&self) -> u8 {
        let used: Vec<u32> = match self.cpus() {
            Ok(cpus) => cpus.iter().map(|c| c.apic_id).collect(),
            Err(_) => self.apic_ids.clone(),
        };
        let start = used.len().min(254) as u32;
        (start..=254)
            .chain(0..start)
            .find(|id| !used.contains(id))
            .map_or(0, |id| id as u8)
    }
}

/// One possible vCPU as the MADT lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// ACPI processor UID (the vCPU index).
    pub uid: u32,
    /// Local APIC ID.
    pub apic_id: u32,
    /// Present at boot (else hot-pluggable).
    pub enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hotplug_cpus_continue_ids() {
        let mut p = AcpiPlatform::new(vec![0, 1]);
        p.max_vcpus = 4;
        let cpus = p.cpus().unwrap();
        assert_eq!(
            cpus,
            vec![
                Cpu {
                    uid: 0,
                    apic_id: 0,
                    enabled: true
                },
                Cpu {
                    uid: 1,
                    apic_id: 1,
                    enabled: true
                },
                Cpu {
                    uid: 2,
                    apic_id: 2,
                    enabled: false
                },
                Cpu {
                    uid: 3,
                    apic_id: 3,
                    enabled: false
                },
            ]
        );
        assert_eq!(p.ioapic_id(), 4);
    }

    #[test]
    fn rejects_bad_cpu_sets() {
        assert_eq!(AcpiPlatform::new(vec![]).cpus(), Err(AcpiError::NoVcpus));
        assert_eq!(
            AcpiPlatform::new(vec![3, 3]).cpus(),
            Err(AcpiError::DuplicateApicId(3))
        );
        let mut p = AcpiPlatform::new(vec![0, 1]);
        p.max_vcpus = 1;
        assert!(matches!(
            p.cpus(),
            Err(AcpiError::MaxVcpusBelowBootVcpus { .. })
        ));
        p.max_vcpus = MAX_VCPUS + 1;
        assert!(matches!(p.cpus(), Err(AcpiError::TooManyVcpus { .. })));
        let mut p = AcpiPlatform::new(vec![u32::MAX]);
        p.max_vcpus = 2;
        assert_eq!(p.cpus(), Err(AcpiError::ApicIdOverflow));
    }

    #[test]
    fn ioapic_id_avoids_cpu_ids() {
        let p = AcpiPlatform::new(vec![2, 0]);
        assert_eq!(p.ioapic_id(), 3);
        let all: Vec<u32> = (0..=254).collect();
        assert_eq!(AcpiPlatform::new(all).ioapic_id(), 0);
    }

    #[test]
    fn virtio_window_must_be_in_hole() {
        let mut p = AcpiPlatform::new(vec![0]);
        p.virtio_mmio.push(VirtioMmioDevice {
            base: 0xd000_0000,
            size: 0x1000,
            gsi: 6,
        });
        assert!(p.validate().is_ok());
        for (base, size) in [
            (0x1000, 0x1000),
            (0xd000_0000, 0),
            (u64::MAX, 2),
            (0xffff_f000, 0x2000),
        ] {
            p.virtio_mmio[0] = VirtioMmioDevice { base, size, gsi: 6 };
            assert!(
                matches!(
                    p.validate(),
                    Err(AcpiError::BadVirtioMmioWindow { index: 0, .. })
                ),
                "{base:#x}+{size:#x}"
            );
        }
        for gsi in [0, 2, 4, 5, 24] {
            p.virtio_mmio[0] = VirtioMmioDevice {
                base: 0xd000_0000,
                size: 0x1000,
                gsi,
            };
            assert!(
                matches!(
                    p.validate(),
                    Err(AcpiError::BadVirtioMmioGsi { index: 0, .. })
                ),
                "gsi {gsi}"
            );
        }
    }
}
