//! Per-thread CPU accounting and affinity from procfs and the scheduler, for the vCPU queries.

use super::protocol::VcpuInfo;

/// Nanoseconds per clock tick (`/proc/*/stat` counts in ticks).
fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// The fields of a `stat` file after the command name (which may itself contain spaces and parens).
fn stat_fields(text: &str) -> Vec<&str> {
    text.rfind(')')
        .map(|i| text[i + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

pub(super) fn vcpu_info(index: u32, tid: Option<i32>) -> VcpuInfo {
    let mut info = VcpuInfo {
        index,
        tid,
        cpu: None,
        time_ns: 0,
        affinity: Vec::new(),
    };
    let Some(tid) = tid else { return info };
    let task = format!("/proc/self/task/{tid}");
    if let Ok(stat) = std::fs::read_to_string(format!("{task}/stat")) {
        let f = stat_fields(&stat);
        // After the name: state is field 3 of the file, so index 0 here; utime 14 → 11, stime 15 → 12,
        // processor 39 → 36.
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        info.time_ns = (ticks(11) + ticks(12)) * tick_ns();
        info.cpu = f.get(36).and_then(|s| s.parse().ok());
    }
    // schedstat's first field is the exact on-CPU time in ns, where the kernel keeps it.
    if let Ok(schedstat) = std::fs::read_to_string(format!("{task}/schedstat")) {
        if let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
        {
            info.time_ns = ns;
        }
    }
    info.affinity = get_affinity(tid).unwrap_or_default();
    info
}

fn get_affinity(tid: i32) -> std::io::Result<Vec<u32>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .map(|c| c as u32)
            .collect())
    }
}

pub(super) fn set_affinity(tid: i32, cpus: &[u32]) -> std::io::Result<()> {
    if cpus.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an empty CPU set would leave the vCPU nowhere to run",
        ));
    }
    // SAFETY: as above; CPU_SET is bounds-checked against CPU_SETSIZE first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c as usize >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("host CPU {c} is out of range"),
                ));
            }
            libc::CPU_SET(c as usize, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// User and system CPU time of this whole process, in nanoseconds.
pub(super) fn process_times_ns() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0, 0);
    };
    let f = stat_fields(&stat);
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) * tick_ns(), ticks(12) * tick_ns())
}
