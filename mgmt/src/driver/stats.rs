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

/// The balloon's view of a running guest (`dommemstat`).
#[derive(Debug, Clone, Default)]
pub struct MemoryStats {
    /// Memory the guest has now, in bytes.
    pub actual_bytes: u64,
    /// virtio-balloon statistics by tag (virtio 1.2 §5.5.6.3), as the guest last reported them.
    pub values: Vec<(u16, u64)>,
    pub last_update: u64,
}

impl MemoryStats {
    /// The statistics as libvirt's dommemstat names and scales them (memory in KiB, faults as counts), in
    /// libvirt's order, without `actual` and `rss` (the caller adds those).
    pub fn libvirt_fields(&self) -> Vec<(&'static str, u64)> {
        // (virtio tag, libvirt name, bytes → KiB?)
        const MAP: [(u16, &str, bool); 10] = [
            (0, "swap_in", true),
            (1, "swap_out", true),
            (2, "major_fault", false),
            (3, "minor_fault", false),
            (4, "unused", true),
            (5, "available", true),
            (6, "usable", true),
            (7, "disk_caches", true),
            (8, "hugetlb_pgalloc", false),
            (9, "hugetlb_pgfail", false),
        ];
        MAP.iter()
            .filter_map(|(tag, name, kib)| {
                let v = self.values.iter().find(|(t, _)| t == tag)?.1;
                Some((*name, if *kib { v / 1024 } else { v }))
            })
            .collect()
    }
}

/// One disk's counters (`domblkstat`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub device: String,
    pub rd_reqs: u64,
    pub rd_bytes: u64,
    pub wr_reqs: u64,
    pub wr_bytes: u64,
    pub flush_reqs: u64,
    pub errors: u64,
}

impl Connection {
    /// `setmem --live`: moves the balloon so the guest keeps `bytes`.
    pub fn balloon(&self, r: &DomainRecord, bytes: u64) -> Result<(), DriverError> {
        if !r.is_active() {
            return Err(DriverError::NotRunning);
        }
        self.control(&r.name)?.call(&Request::Balloon { bytes })?;
        Ok(())
    }

    pub fn memory_stats(&self, r: &DomainRecord) -> Result<MemoryStats, DriverError> {
        if !r.is_active() {
            return Err(DriverError::NotRunning);
        }
        let reply = self.control(&r.name)?.call(&Request::QueryBalloon)?;
        let values = match reply.get("stats") {
            Some(obj) => (0u16..16)
                .filter_map(|tag| {
                    obj.get(&tag.to_string())
                        .and_then(Value::as_i64)
                        .map(|v| (tag, v.max(0) as u64))
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(MemoryStats {
            actual_bytes: u64_field(&reply, "actual"),
            values,
            last_update: u64_field(&reply, "last_update"),
        })
    }

    pub fn block_stats(&self, r: &DomainRecord) -> Result<Vec<BlockStats>, DriverError> {
        if !r.is_active() {
            return Err(DriverError::NotRunning);
        }
        let reply = self.control(&r.name)?.call(&Request::QueryBlockstats)?;
        Ok(reply
            .get("disks")
            .and_then(Value::as_array)
            .unwrap_or_default()
            .iter()
            .map(|d| BlockStats {
                device: d
                    .get("device")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                rd_reqs: u64_field(d, "rd_reqs"),
                rd_bytes: u64_field(d, "rd_bytes"),
                wr_reqs: u64_field(d, "wr_reqs"),
                wr_bytes: u64_field(d, "wr_bytes"),
                flush_reqs: u64_field(d, "flush_reqs"),
                errors: u64_field(d, "errors"),
            })
            .collect())
    }
}
