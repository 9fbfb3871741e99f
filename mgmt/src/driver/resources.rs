//! `setvcpus`, `setmem`, `setmaxmem` and `vcpupin --config`: changes to the persistent definition
//! (live changes need vCPU hotplug and a balloon, which the VMM does not have yet).

use super::{Connection, DomainRecord, DriverError};
use crate::xml::tree::Element;
use crate::xml::Domain;

/// Which definitions a change applies to (virsh's `--live`, `--config`, `--current`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    pub live: bool,
    pub config: bool,
}

impl Scope {
    /// `--current` (or no flag) means the live definition of a running domain, else the config.
    pub fn resolve(self, active: bool) -> Result<Scope, DriverError> {
        let s = if !self.live && !self.config {
            Scope {
                live: active,
                config: !active,
            }
        } else {
            self
        };
        if s.live && !active {
            return Err(DriverError::NotRunning);
        }
        Ok(s)
    }
}

fn edit(def: &Domain, f: impl FnOnce(&mut Element)) -> Result<Domain, DriverError> {
    let mut doc = def.document().clone();
    f(&mut doc.root);
    Ok(Domain::from_document(doc)?)
}

fn set_kib(root: &mut Element, name: &str, kib: u64, after: &[&str]) {
    if root.child(name).is_none() {
        root.insert_after(Element::new(name), after);
    }
    if let Some(el) = root.child_mut(name) {
        el.set_attr("unit", "KiB");
        el.set_text(kib.to_string());
    }
}

impl Connection {
    fn persistent(&self, r: &DomainRecord) -> Result<Domain, DriverError> {
        r.config.clone().ok_or_else(|| {
            DriverError::Invalid("transient domains do not have any persistent config".into())
        })
    }

    /// `setvcpus COUNT`: vCPUs online at boot (or, with `maximum`, the maximum).
    pub fn set_vcpus(
        &self,
        key: &str,
        count: u32,
        maximum: bool,
        scope: Scope,
    ) -> Result<DomainRecord, DriverError> {
        let r = self.lookup(key)?;
        if count == 0 {
            return Err(DriverError::InvalidArg(
                "Invalid number of virtual CPUs: 0".into(),
            ));
        }
        let scope = scope.resolve(r.is_active())?;
        if scope.live {
            return Err(DriverError::Unsupported(
                "changing the vCPU count of a running domain needs vCPU hotplug, which ironvirt does not have yet: use --config".into(),
            ));
        }
        let def = self.persistent(&r)?;
        let vcpus = def.vcpus().clone();
        let new = edit(&def, |root| {
            if root.child("vcpu").is_none() {
                let mut v = Element::with_text("vcpu", "1");
                v.set_attr("placement", "static");
                root.insert_after(v, &["currentMemory", "memory"]);
            }
            let Some(el) = root.child_mut("vcpu") else {
                return;
            };
            let (max, current) = if maximum {
                (count, vcpus.current.min(count))
            } else {
                (vcpus.max, count)
            };
            el.set_text(max.to_string());
            if current < max {
                el.set_attr("current", current.to_string());
            } else {
                el.remove_attr("current");
            }
        })?;
        if !maximum && count > vcpus.max {
            return Err(DriverError::InvalidArg(format!(
                "requested vcpus is greater than max allowable vcpus for the persistent domain: {count} > {}",
                vcpus.max
            )));
        }
        self.redefine(&r.name, &new)
    }

    /// `setmem SIZE` (KiB): memory the guest gets at boot (`<currentMemory>`).
    pub fn set_memory(
        &self,
        key: &str,
        kib: u64,
        scope: Scope,
    ) -> Result<DomainRecord, DriverError> {
        let r = self.lookup(key)?;
        let scope = scope.resolve(r.is_active())?;
        if kib == 0 {
            return Err(DriverError::InvalidArg(
                "memory size must be greater than 0".into(),
            ));
        }
        if scope.live {
            let max_kib = r.def.memory().memory_bytes / 1024;
            if kib > max_kib {
                return Err(DriverError::InvalidArg(
                    "cannot set memory higher than max memory".into(),
                ));
            }
            let has_balloon = r
                .def
                .devices()
                .any(|d| d.name == "memballoon" && d.attr("model") == Some("virtio"));
            if !has_balloon {
                // libvirt's words, plus what to add: a live change goes through the guest's balloon driver.
                return Err(DriverError::Invalid(
                    "Unable to change memory of active domain without the balloon device and guest OS balloon driver (add <memballoon model='virtio'> to the definition)".into(),
                ));
            }
            self.balloon(&r, kib * 1024)?;
            if !scope.config {
                return Ok(r);
            }
        }
        let def = self.persistent(&r)?;
        let max_kib = def.memory().memory_bytes / 1024;
        if kib > max_kib {
            return Err(DriverError::InvalidArg(
                "cannot set memory higher than max memory".into(),
            ));
        }
        if kib == 0 {
            return Err(DriverError::InvalidArg(
                "memory size must be greater than 0".into(),
            ));
        }
        let new = edit(&def, |root| {
            set_kib(root, "currentMemory", kib, &["memory"])
        })?;
        self.redefine(&r.name, &new)
    }

    /// `setmaxmem SIZE` (KiB): the boot-time maximum (`<memory>`); `<currentMemory>` follows it
    /// down.
    pub fn set_max_memory(
        &self,
        key: &str,
        kib: u64,
        scope: Scope,
    ) -> Result<DomainRecord, DriverError> {
        let r = self.lookup(key)?;
        let scope = scope.resolve(r.is_active())?;
        if scope.live {
            return Err(DriverError::Unsupported(
                "cannot resize the maximum memory on an active domain".into(),
            ));
        }
        if kib == 0 {
            return Err(DriverError::InvalidArg(
                "memory size must be greater than 0".into(),
            ));
        }
        let def = self.persistent(&r)?;
        let current_kib = def.memory().current_bytes / 1024;
        let new = edit(&def, |root| {
            set_kib(
                root,
                "memory",
                kib,
                &["description", "title", "uuid", "name"],
            );
            if current_kib > kib {
                set_kib(root, "currentMemory", kib, &["memory"]);
            }
        })?;
        self.redefine(&r.name, &new)
    }

    /// `vcpupin --config`: records the pinning in `<cputune><vcpupin>`.
    pub fn pin_vcpu_config(
        &self,
        key: &str,
        vcpu: u32,
        cpuset: &str,
    ) -> Result<DomainRecord, DriverError> {
        let r = self.lookup(key)?;
        let def = self.persistent(&r)?;
        if vcpu >= def.vcpus().max {
            return Err(DriverError::InvalidArg(format!(
                "vcpu {vcpu} is out of range of persistent cpu count {}",
                def.vcpus().max
            )));
        }
        let new = edit(&def, |root| {
            if root.child("cputune").is_none() {
                root.insert_after(
                    Element::new("cputune"),
                    &["vcpus", "vcpu", "currentMemory", "memory"],
                );
            }
            let Some(tune) = root.child_mut("cputune") else {
                return;
            };
            let v = vcpu.to_string();
            tune.children.retain(|n| {
                !matches!(n, crate::xml::Node::Element(e) if e.name == "vcpupin" && e.attr("vcpu") == Some(v.as_str()))
            });
            let mut pin = Element::new("vcpupin");
            pin.set_attr("vcpu", v);
            pin.set_attr("cpuset", cpuset);
            tune.insert_after(pin, &["vcpupin"]);
        })?;
        self.redefine(&r.name, &new)
    }
}
