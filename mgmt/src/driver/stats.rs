//! Figures from a running VM (vCPU threads, CPU time) and vCPU pinning.

use ironvirt_vmm::control::{Request, Value, VcpuInfo};

use super::{Connection, DomainRecord, DriverError};

/// CPU time of a running domain.
#[derive(Debug, Clone, Default)]
pub struct CpuStats {
    pub user_ns: u64,
    pub system_ns: u64,
    pub vcpus: Vec<VcpuInfo>,
}

impl CpuStats {
    /// What libvirt reports as the domain's `cpu_time`: all CPU time of the VM process.
    pub fn total_ns(&self) -> u64 {
        self.user_ns + self.system_ns
    }

    pub fn vcpu_ns(&self) -> u64 {
        self.vcpus.iter().map(|v| v.time_ns).sum()
    }
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_i64)
        .and_then(|i| u64::try_from(i).ok())
        .unwrap_or(0)
}

impl Connection {
    /// vCPU threads of a running domain (`vcpuinfo`, `vcpupin`, `domstats --vcpu`).
    pub fn vcpu_info(&self, r: &DomainRecord) -> Result<Vec<VcpuInfo>, DriverError> {
        if !r.is_active() {
            return Err(DriverError::NotRunning);
        }
        let reply = self.control(&r.name)?.call(&Request::QueryVcpus)?;
        Ok(reply
            .get("vcpus")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(VcpuInfo::from_value).collect())
            .unwrap_or_default())
    }

    pub fn cpu_stats(&self, r: &DomainRecord) -> Result<CpuStats, DriverError> {
        if !r.is_active() {
            return Err(DriverError::NotRunning);
        }
        let mut c = self.control(&r.name)?;
        let t = c.call(&Request::QueryCpuStats)?;
        let vcpus = self.vcpu_info(r)?;
        Ok(CpuStats {
            user_ns: u64_field(&t, "user_ns"),
            system_ns: u64_field(&t, "system_ns"),
            vcpus,
        })
    }

    /// Pins a running domain's vCPU thread to `cpus` (host CPU numbers).
    pub fn pin_vcpu_live(
        &self,
        r: &DomainRecord,
        vcpu: u32,
        cpus: &[u32],
    ) -> Result<(), DriverError> {
        if !r.is_active() {
            return Err(DriverError::NotRunning);
        }
        if vcpu >= r.def.vcpus().current {
            return Err(DriverError::InvalidArg(format!(
                "vcpu {vcpu} is out of range of live cpu count {}",
                r.def.vcpus().current
            )));
        }
        let host = host_cpus();
        if let Some(bad) = cpus.iter().find(|&&c| c >= host) {
            return Err(DriverError::InvalidArg(format!(
                "CPU {bad} is out of range: the host has {host} CPUs"
            )));
        }
        self.control(&r.name)?.call(&Request::SetVcpuAffinity {
            vcpu,
            cpus: cpus.to_vec(),
        })?;
        Ok(())
    }
}

/// Number of host CPUs (configured, as libvirt's affinity maps count them).
pub fn host_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    u32::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}
