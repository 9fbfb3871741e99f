//! Per-vCPU CPUID: what KVM supports, with this vCPU's APIC ID and the configured topology written in.
//!
//! Guests derive their CPU map from these leaves (Linux: leaf 0xB/0x1F when present, leaf 1 and 4 or AMD's
//! 0x8000_0008/0x8000_001E otherwise), so every leaf that encodes topology must agree with the MADT.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

use super::topology::ApicLayout;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
const LEAF_AMD_SIZE_IDS: u32 = 0x8000_0008;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

/// CPUID level types for leaves 0xB/0x1F.
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    #[error("could not build the CPUID table for vCPU {vcpu}: {source}")]
    Table {
        vcpu: u32,
        source: vmm_sys_util::fam::Error,
    },
}

/// Builds vCPU `vcpu_index`'s CPUID from KVM's supported set.
pub fn vcpu_cpuid(
    supported: &CpuId,
    vcpu_index: u32,
    layout: &ApicLayout,
) -> Result<CpuId, CpuidError> {
    let apic_id = layout.apic_id(vcpu_index);
    let logical = layout.logical_per_package();
    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .filter(|e| e.function != LEAF_EXT_TOPOLOGY && e.function != LEAF_V2_EXT_TOPOLOGY)
        .copied()
        .collect();
    let has_v2_topology = supported
        .as_slice()
        .iter()
        .any(|e| e.function == LEAF_V2_EXT_TOPOLOGY);

    for e in entries.iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | (logical.min(255) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if logical > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE_PARAMS => {
                // EAX[31:26]: cores per package - 1; EAX[25:14]: logical CPUs sharing this cache - 1.
                let cache_level = (e.eax >> 5) & 0x7;
                let sharing = if cache_level >= 3 {
                    logical
                } else {
                    layout.threads_per_core
                };
                e.eax = (e.eax & 0x3fff)
                    | ((layout.cores_per_package.saturating_sub(1) & 0x3f) << 26)
                    | ((sharing.saturating_sub(1) & 0xfff) << 14);
            }
            LEAF_AMD_SIZE_IDS => {
                // ECX[15:12]: APIC ID bits used for the core/thread part; ECX[7:0]: threads per package - 1.
                e.ecx = (e.ecx & !0xf0ff)
                    | ((layout.package_shift() & 0xf) << 12)
                    | (logical.saturating_sub(1) & 0xff);
            }
            LEAF_AMD_EXT_APIC_ID => {
                e.eax = apic_id;
                // EBX[15:8]: threads per compute unit - 1; EBX[7:0]: compute unit (core) id.
                let core_id = (apic_id >> layout.thread_bits) & ((1 << layout.core_bits) - 1);
                e.ebx =
                    ((layout.threads_per_core.saturating_sub(1) & 0xff) << 8) | (core_id & 0xff);
                // ECX[7:0]: node id = package.
                e.ecx = (e.ecx & !0xff) | ((apic_id >> layout.package_shift()) & 0xff);
            }
            _ => {}
        }
    }

    let topology_leaf =
        |function: u32, index: u32, eax: u32, ebx: u32, level_type: u32| kvm_cpuid_entry2 {
            function,
            index,
            flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            eax,
            ebx,
            ecx: (level_type << 8) | index,
            edx: apic_id,
            ..Default::default()
        };
    let functions: &[u32] = if has_v2_topology {
        &[LEAF_EXT_TOPOLOGY, LEAF_V2_EXT_TOPOLOGY]
    } else {
        &[LEAF_EXT_TOPOLOGY]
    };
    for &f in functions {
        entries.push(topology_leaf(
            f,
            0,
            layout.thread_bits,
            layout.threads_per_core,
            LEVEL_SMT,
        ));
        entries.push(topology_leaf(
            f,
            1,
            layout.package_shift(),
            logical,
            LEVEL_CORE,
        ));
        // Subleaf 2 ends the enumeration (level type 0).
        entries.push(topology_leaf(f, 2, 0, 0, 0));
    }

    CpuId::from_entries(&entries).map_err(|source| CpuidError::Table {
        vcpu: vcpu_index,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CpuTopology;

    fn supported() -> CpuId {
        let leaf = |function, eax, ebx, ecx, edx| kvm_cpuid_entry2 {
            function,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        };
        CpuId::from_entries(&[
            leaf(0, 0x1f, 0, 0, 0),
            leaf(1, 0x800f12, 0xffff_1234, 0, 0),
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 0,
                edx: 77,
                ..Default::default()
            },
            leaf(0x8000_0008, 0, 0, 0xffff_ffff, 0),
        ])
        .unwrap()
    }

    #[test]
    fn leaf1_and_0xb_carry_the_apic_id() {
        let layout = ApicLayout::new(&CpuTopology {
            sockets: 1,
            dies: 1,
            cores: 2,
            threads: 2,
        });
        let c = vcpu_cpuid(&supported(), 3, &layout).unwrap();
        let leaf1 = c.as_slice().iter().find(|e| e.function == 1).unwrap();
        assert_eq!(leaf1.ebx >> 24, 3);
        assert_eq!((leaf1.ebx >> 16) & 0xff, 4);
        assert_eq!(leaf1.ebx & 0xffff, 0x1234);
        assert_ne!(leaf1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(leaf1.edx & EDX_HTT, 0);
        let xb: Vec<_> = c.as_slice().iter().filter(|e| e.function == 0xb).collect();
        assert_eq!(xb.len(), 3);
        assert!(xb.iter().all(|e| e.edx == 3));
        assert_eq!(
            (xb[0].eax, xb[0].ebx, (xb[0].ecx >> 8) & 0xff),
            (1, 2, LEVEL_SMT)
        );
        assert_eq!(
            (xb[1].eax, xb[1].ebx, (xb[1].ecx >> 8) & 0xff),
            (2, 4, LEVEL_CORE)
        );
        let amd = c
            .as_slice()
            .iter()
            .find(|e| e.function == 0x8000_0008)
            .unwrap();
        assert_eq!(amd.ecx & 0xff, 3);
        assert_eq!((amd.ecx >> 12) & 0xf, 2);
    }
}
