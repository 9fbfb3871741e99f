//! The header and extension parser alone (fast: no files).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ironvirt_devices::block::qcow2::header::Header::parse(std::path::Path::new("fuzz"), data);
});
