//! Opens arbitrary bytes as a qcow2 image (read-only, then read-write) and does I/O on it.
//! The logic lives in `ironvirt_devices::block::fuzz` so the main test suite runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ironvirt_devices::block::fuzz::qcow2_open_and_io(data);
});
