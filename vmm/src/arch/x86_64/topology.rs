//! vCPU index → APIC ID, following the layout CPUID describes: thread, core and socket fields packed with
//! each field's width rounded up to a power of two, as real packages do.

use crate::config::CpuTopology;

/// Bits needed to number `n` items.
fn width(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApicLayout {
    pub threads_per_core: u32,
    /// Cores in one package (dies × cores).
    pub cores_per_package: u32,
    pub thread_bits: u32,
    pub core_bits: u32,
}

impl ApicLayout {
    pub fn new(topology: &CpuTopology) -> Self {
        let threads_per_core = topology.threads.max(1);
        let cores_per_package = topology.cores.max(1) * topology.dies.max(1);
        ApicLayout {
            threads_per_core,
            cores_per_package,
            thread_bits: width(threads_per_core),
            core_bits: width(cores_per_package),
        }
    }

    pub fn logical_per_package(&self) -> u32 {
        self.threads_per_core * self.cores_per_package
    }

    /// Shift from an APIC ID to its package (socket) number.
    pub fn package_shift(&self) -> u32 {
        self.thread_bits + self.core_bits
    }

    pub fn apic_id(&self, vcpu_index: u32) -> u32 {
        let thread = vcpu_index % self.threads_per_core;
        let core = (vcpu_index / self.threads_per_core) % self.cores_per_package;
        let package = vcpu_index / self.logical_per_package();
        (package << self.package_shift()) | (core << self.thread_bits) | thread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_topology_is_dense() {
        let l = ApicLayout::new(&CpuTopology::flat(4));
        assert_eq!(
            (0..4).map(|i| l.apic_id(i)).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn odd_core_counts_leave_gaps() {
        let l = ApicLayout::new(&CpuTopology {
            sockets: 2,
            dies: 1,
            cores: 3,
            threads: 2,
        });
        assert_eq!((l.thread_bits, l.core_bits), (1, 2));
        let ids: Vec<u32> = (0..12).map(|i| l.apic_id(i)).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
    }
}
