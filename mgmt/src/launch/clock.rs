//! `<clock>`: which platform timers the guest gets.
//!
//! ironvirt's platform is hardware-reduced ACPI, on which Linux never programs the legacy PIT (it skips the
//! timer set-up and uses the local APIC timer with kvmclock), so the in-kernel PIT is left out unless the
//! domain asks for it: besides being unused, KVM's PIT costs a kernel thread and several RCU grace periods
//! at VM creation and teardown, which is most of a small VM's launch time.

use crate::xml::Domain;

use super::LaunchError;

/// Whether the guest gets an i8254 PIT: only with `<timer name='pit' present='yes'/>`. libvirt leaves a timer
/// without `present` to the hypervisor's default, which here is no PIT; tickpolicy is accepted and left to
/// KVM's default (missed ticks are reinjected).
pub(super) fn pit(domain: &Domain) -> Result<bool, LaunchError> {
    let Some(clock) = domain.document().root.child("clock") else {
        return Ok(false);
    };
    let mut pit = false;
    for timer in clock.elements().filter(|e| e.name == "timer") {
        match (timer.attr("name"), timer.attr("present")) {
            (Some("pit"), Some(present)) => pit = present == "yes",
            // kvmclock and the TSC are always there and the RTC is emulated; an HPET there is not.
            (Some("hpet"), Some("yes")) => {
                return Err(LaunchError::unsupported(
                    "timer 'hpet' is not supported: the platform has no HPET (drop it or use present='no')",
                ))
            }
            _ => {}
        }
    }
    Ok(pit)
}
