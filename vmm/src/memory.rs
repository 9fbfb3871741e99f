//! Guest RAM: anonymous mappings laid out around the 32-bit MMIO hole.

use ironvirt_firmware::layout;
use vm_memory::GuestMemoryMmap;

use crate::VmError;

pub fn create(memory_bytes: u64) -> Result<GuestMemoryMmap, VmError> {
    let regions = layout::ram_regions(memory_bytes).map_err(|e| VmError::Memory(e.to_string()))?;
    GuestMemoryMmap::from_ranges(&regions).map_err(|e| {
        VmError::Memory(format!(
            "cannot allocate {memory_bytes} bytes of guest memory: {e}"
        ))
    })
}
