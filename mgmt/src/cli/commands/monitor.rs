//! vCPU and memory: vcpuinfo, vcpucount, vcpupin, cpu-stats, domstats, dommemstat, setvcpus,
//! setmem, setmaxmem.

use super::cmd;
use super::domain::lookup;
use crate::cli::format::{key_value, Table};
use crate::cli::spec::{argv, data, flag, int, opt_data, Args};
use crate::cli::{CmdError, CmdResult, Command, Ctl, Group};
use crate::driver::stats::host_cpus;
use crate::driver::{ChangeScope, DomainRecord};
use crate::xml::domain::parse_bitmap;
use crate::xml::units::{parse_scaled, DefaultUnit};

/// Host CPUs as virsh's affinity map: `y` for usable, `-` for not.
fn affinity_map(cpus: &[u32]) -> String {
    (0..host_cpus())
        .map(|c| if cpus.contains(&c) { 'y' } else { '-' })
        .collect()
}

/// `0-3,6` from a CPU list.
pub fn ranges(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

fn all_host_cpus() -> Vec<u32> {
    (0..host_cpus()).collect()
}

/// The configured pinning of vCPU `v` (`<cputune><vcpupin>`, else `<vcpu cpuset>`, else all).
fn config_affinity(r: &DomainRecord, v: u32) -> Vec<u32> {
    let def = r.inactive_def();
    let pinned = def
        .document()
        .root
        .child("cputune")
        .into_iter()
        .flat_map(|t| t.children_named("vcpupin"))
        .find(|p| p.attr("vcpu") == Some(v.to_string().as_str()))
        .and_then(|p| p.attr("cpuset").map(str::to_string));
    pinned
        .or_else(|| def.vcpus().cpuset.clone())
        .and_then(|s| parse_bitmap(&s).ok())
        .unwrap_or_else(all_host_cpus)
}

fn scope(a: &Args) -> Result<ChangeScope, CmdError> {
    if a.flag("current") && (a.flag("live") || a.flag("config")) {
        let other = if a.flag("live") { "live" } else { "config" };
        return Err(CmdError::msg(format!(
            "Options --current and --{other} are mutually exclusive"
        )));
    }
    Ok(ChangeScope {
        live: a.flag("live"),
        config: a.flag("config"),
    })
}

pub const VCPUINFO: Command = cmd(
    "vcpuinfo",
    Group::Domain,
    "detailed domain vcpu information",
    "Returns basic information about the domain virtual CPUs.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("pretty", "return human readable output"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let mut blocks = Vec::new();
        if r.is_active() {
            for v in ctl.conn()?.vcpu_info(&r)? {
                let mut s = String::new();
                s.push_str(&key_value("VCPU", &v.index.to_string(), 15));
                s.push_str(&key_value(
                    "CPU",
                    &v.cpu.map_or("N/A".into(), |c| c.to_string()),
                    15,
                ));
                s.push_str(&key_value(
                    "State",
                    if v.tid.is_some() {
                        "running"
                    } else {
                        "offline"
                    },
                    15,
                ));
                s.push_str(&key_value(
                    "CPU time",
                    &format!("{:.1}s", v.time_ns as f64 / 1e9),
                    15,
                ));
                let aff = if a.flag("pretty") {
                    ranges(&v.affinity)
                } else {
                    affinity_map(&v.affinity)
                };
                s.push_str(&key_value("CPU Affinity", &aff, 15));
                blocks.push(s);
            }
        } else {
            for v in 0..r.def.vcpus().current {
                let mut s = String::new();
                s.push_str(&key_value("VCPU", &v.to_string(), 15));
                s.push_str(&key_value("CPU", "N/A", 15));
                s.push_str(&key_value("State", "N/A", 15));
                s.push_str(&key_value("CPU time", "N/A", 15));
                let cpus = config_affinity(&r, v);
                let aff = if a.flag("pretty") {
                    ranges(&cpus)
                } else {
                    affinity_map(&cpus)
                };
                s.push_str(&key_value("CPU Affinity", &aff, 15));
                blocks.push(s);
            }
        }
        ctl.print(&blocks.join("\n"));
        Ok(())
    },
);

pub const VCPUCOUNT: Command = cmd(
    "vcpucount",
    Group::Domain,
    "domain vcpu counts",
    "Returns the number of virtual CPUs used by the domain.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("maximum", "get maximum count of vcpus"),
        flag("active", "get number of currently active vcpus"),
        flag("live", "get value from running domain"),
        flag("config", "get value to be used on next boot"),
        flag("current", "get value according to current domain state"),
        flag(
            "guest",
            "retrieve vcpu count from the guest instead of the hypervisor",
        ),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        if a.flag("maximum") && a.flag("active") {
            return Err(CmdError::msg(
                "Options --maximum and --active are mutually exclusive",
            ));
        }
        if a.flag("guest") {
            return Err(CmdError::msg(
                "argument unsupported: --guest needs a guest agent, which ironvirt does not have yet",
            ));
        }
        let s = scope(a)?;
        let cfg = r.inactive_def().vcpus().clone();
        let live = r.def.vcpus().clone();
        let value = |max: bool, live_scope: bool| -> Result<u32, CmdError> {
            if live_scope && !r.is_active() {
                return Err(CmdError::msg(
                    "Requested operation is not valid: domain is not running",
                ));
            }
            let v = if live_scope { &live } else { &cfg };
            Ok(if max { v.max } else { v.current })
        };
        let stat_given = a.flag("maximum") || a.flag("active");
        let scope_given = s.live || s.config || a.flag("current");
        if stat_given && scope_given {
            let live_scope = s.live || (a.flag("current") && r.is_active());
            ctl.print(&format!("{}\n", value(a.flag("maximum"), live_scope)?));
            return Ok(());
        }
        let stats: Vec<(bool, &str)> = match (a.flag("maximum"), a.flag("active")) {
            (true, _) => vec![(true, "maximum")],
            (_, true) => vec![(false, "current")],
            _ => vec![(true, "maximum"), (false, "current")],
        };
        let scopes: Vec<(bool, &str)> = if s.config {
            vec![(false, "config")]
        } else if s.live || (a.flag("current") && r.is_active()) {
            vec![(true, "live")]
        } else if a.flag("current") {
            vec![(false, "config")]
        } else if r.is_active() {
            vec![(false, "config"), (true, "live")]
        } else {
            vec![(false, "config")]
        };
        let mut out = String::new();
        for (max, sname) in &stats {
            for (live_scope, lname) in &scopes {
                out.push_str(&format!(
                    "{sname:<12} {lname:<12} {:>3}\n",
                    value(*max, *live_scope)?
                ));
            }
        }
        ctl.print(&out);
        Ok(())
    },
);

pub const VCPUPIN: Command = cmd(
    "vcpupin",
    Group::Domain,
    "control or query domain vcpu affinity",
    "Pin domain VCPUs to host physical CPUs.",
    &[
        data("domain", "domain name, id or uuid"),
        int("vcpu", false, true, "vcpu number"),
        opt_data(
            "cpulist",
            "host cpu number(s) to set, or omit option to query",
        ),
        flag("config", "affect next boot"),
        flag("live", "affect running domain"),
        flag("current", "affect current domain"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let s = scope(a)?;
        let vcpu = match a.get("vcpu") {
            None => None,
            Some(v) => Some(v.parse::<u32>().map_err(|_| {
                CmdError::msg(format!(
                    "Numeric value '{v}' for <vcpu> option is malformed or out of range"
                ))
            })?),
        };
        let live_scope = s.live || (!s.config && r.is_active());
        if live_scope && !r.is_active() {
            return Err(CmdError::msg(
                "Requested operation is not valid: domain is not running",
            ));
        }
        let Some(list) = a.get("cpulist") else {
            let mut t = Table::new(&["VCPU", "CPU Affinity"]);
            if live_scope {
                for v in ctl.conn()?.vcpu_info(&r)? {
                    if vcpu.is_some_and(|want| want != v.index) {
                        continue;
                    }
                    t.row(vec![v.index.to_string(), ranges(&v.affinity)]);
                }
            } else {
                for v in 0..r.inactive_def().vcpus().max {
                    if vcpu.is_some_and(|want| want != v) {
                        continue;
                    }
                    t.row(vec![v.to_string(), ranges(&config_affinity(&r, v))]);
                }
            }
            let quiet = ctl.quiet;
            ctl.print(&t.render(quiet));
            return Ok(());
        };
        let Some(vcpu) = vcpu else {
            return Err(CmdError::msg("vcpupin: Missing vCPU number in pin mode."));
        };
        let cpus = if list == "r" {
            all_host_cpus()
        } else {
            parse_bitmap(list).map_err(|e| CmdError::msg(e.to_string()))?
        };
        let conn = ctl.conn()?;
        if live_scope {
            conn.pin_vcpu_live(&r, vcpu, &cpus)?;
        }
        if s.config || (!live_scope && !s.live) {
            conn.pin_vcpu_config(&r.name, vcpu, &ranges(&cpus))?;
        }
        Ok(())
    },
);

pub const CPU_STATS: Command = cmd(
    "cpu-stats",
    Group::Domain,
    "show domain cpu statistics",
    "Display per-CPU and total statistics about the domain's CPUs",
    &[
        data("domain", "domain name, id or uuid"),
        flag("total", "Show total statistics only"),
        int("start", false, false, "Show statistics from this CPU"),
        int("count", false, false, "Number of shown CPUs at most"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let fail = |e: &dyn std::fmt::Display| {
            CmdError::ctx(
                format!("Failed to retrieve CPU statistics for domain '{}'", r.name),
                e,
            )
        };
        if !a.flag("total") && (a.get("start").is_some() || a.get("count").is_some()) {
            return Err(fail(&"Operation not supported: per-CPU statistics need cgroup CPU accounting, which ironvirt does not do yet: use --total"));
        }
        let st = ctl.conn()?.cpu_stats(&r).map_err(|e| fail(&e))?;
        let line = |k: &str, ns: u64| format!("\t{k:<12}{:>20.9} seconds\n", ns as f64 / 1e9);
        let mut s = String::from("Total:\n");
        s.push_str(&line("cpu_time", st.total_ns()));
        s.push_str(&line("user_time", st.user_ns));
        s.push_str(&line("system_time", st.system_ns));
        ctl.print(&s);
        Ok(())
    },
);

pub const DOMSTATS: Command = cmd(
    "domstats",
    Group::Monitor,
    "get statistics about one or multiple domains",
    "Gets statistics about one or more (or all) domains",
    &[
        flag("state", "report domain state"),
        flag("cpu-total", "report domain physical cpu usage"),
        flag("balloon", "report domain balloon statistics"),
        flag("vcpu", "report domain virtual cpu information"),
        flag("interface", "report domain network interface information"),
        flag("block", "report domain block device statistics"),
        flag("perf", "report domain perf event statistics"),
        flag("iothread", "report domain IOThread information"),
        flag("memory", "report domain memory usage"),
        flag("dirtyrate", "report domain dirty rate information"),
        flag("vm", "report hypervisor-specific statistics"),
        flag("list-active", "list only active domains"),
        flag("list-inactive", "list only inactive domains"),
        flag("list-persistent", "list only persistent domains"),
        flag("list-transient", "list only transient domains"),
        flag("list-running", "list only running domains"),
        flag("list-paused", "list only paused domains"),
        flag("list-shutoff", "list only shutoff domains"),
        flag("list-other", "list only domains in other states"),
        flag("raw", "do not pretty-print the fields"),
        flag("enforce", "enforce requested stats parameters"),
        flag("backing", "add backing chain information to block stats"),
        flag("nowait", "report only stats that are accessible instantly"),
        argv("domain", "list of domains to get stats for"),
    ],
    domstats,
);

fn domstats(ctl: &mut Ctl, a: &Args) -> CmdResult {
    let groups = [
        "state",
        "cpu-total",
        "balloon",
        "vcpu",
        "interface",
        "block",
    ];
    let any = groups.iter().any(|g| a.flag(g));
    let want = |g: &str| !any || a.flag(g);
    let conn = ctl.conn()?;
    let records: Vec<DomainRecord> = if a.all("domain").is_empty() {
        conn.list()?
            .into_iter()
            .filter(|r| {
                let st = r.state;
                use crate::driver::State::*;
                (!a.flag("list-active") || r.is_active())
                    && (!a.flag("list-inactive") || !r.is_active())
                    && (!a.flag("list-persistent") || r.persistent)
                    && (!a.flag("list-transient") || !r.persistent)
                    && (!(a.flag("list-running")
                        || a.flag("list-paused")
                        || a.flag("list-shutoff"))
                        || (a.flag("list-running") && st == Running)
                        || (a.flag("list-paused") && st == Paused)
                        || (a.flag("list-shutoff") && st == ShutOff))
            })
            .collect()
    } else {
        let mut v = Vec::new();
        for key in a.all("domain") {
            v.push(
                conn.lookup(key)
                    .map_err(|_| CmdError::msg(format!("failed to get domain '{key}'")))?,
            );
        }
        v
    };
    // Interfaces come over the control socket through the iface module, which needs `ctl`; fetch them first.
    let mut ifaces = Vec::new();
    for r in &records {
        let live = if want("interface") && r.is_active() {
            super::iface::live_interfaces(ctl, r).unwrap_or_default()
        } else {
            Vec::new()
        };
        ifaces.push(live);
    }
    let conn = ctl.conn()?;
    let mut blocks = Vec::new();
    for (r, live_ifaces) in records.iter().zip(&ifaces) {
        let mut s = format!("Domain: '{}'\n", r.name);
        let mut p = |k: &str, v: String| s.push_str(&format!("  {k}={v}\n"));
        if want("state") {
            p("state.state", r.state.number().to_string());
            p("state.reason", r.reason.number().to_string());
        }
        let stats = if r.is_active() {
            conn.cpu_stats(r).ok()
        } else {
            None
        };
        if want("cpu-total") {
            if let Some(st) = &stats {
                p("cpu.time", st.total_ns().to_string());
                p("cpu.user", st.user_ns.to_string());
                p("cpu.system", st.system_ns.to_string());
            }
        }
        if want("balloon") {
            let m = r.def.memory();
            let balloon = if r.is_active() {
                conn.memory_stats(r).ok()
            } else {
                None
            };
            let current = balloon.as_ref().map_or(m.current_bytes, |b| b.actual_bytes);
            p("balloon.current", (current / 1024).to_string());
            p("balloon.maximum", (m.memory_bytes / 1024).to_string());
            if let Some(b) = &balloon {
                for (name, v) in b.libvirt_fields() {
                    p(&format!("balloon.{name}"), v.to_string());
                }
            }
            if let Some(rss) = r.pid.and_then(rss_kib) {
                p("balloon.rss", rss.to_string());
            }
            if let Some(b) = balloon.filter(|b| b.last_update > 0) {
                p("balloon.last-update", b.last_update.to_string());
            }
        }
        if want("vcpu") {
            let v = r.def.vcpus();
            p("vcpu.current", v.current.to_string());
            p("vcpu.maximum", v.max.to_string());
            if let Some(st) = &stats {
                for vi in &st.vcpus {
                    p(&format!("vcpu.{}.state", vi.index), "1".into());
                    p(&format!("vcpu.{}.time", vi.index), vi.time_ns.to_string());
                    p(&format!("vcpu.{}.wait", vi.index), "0".into());
                }
            }
        }
        if want("interface") {
            p("net.count", live_ifaces.len().to_string());
            for (i, iface) in live_ifaces.iter().enumerate() {
                p(&format!("net.{i}.name"), iface.name.clone());
                for (k, v) in iface.stats {
                    // rx_bytes → rx.bytes, rx_packets → rx.pkts, as libvirt names them.
                    let key = k.replacen('_', ".", 1).replace("packets", "pkts");
                    p(&format!("net.{i}.{key}"), v.to_string());
                }
            }
        }
        if want("block") {
            let disks = if r.is_active() {
                conn.block_stats(r).unwrap_or_default()
            } else {
                Vec::new()
            };
            p("block.count", disks.len().to_string());
            for (i, d) in disks.iter().enumerate() {
                p(&format!("block.{i}.name"), d.device.clone());
                p(&format!("block.{i}.rd.reqs"), d.rd_reqs.to_string());
                p(&format!("block.{i}.rd.bytes"), d.rd_bytes.to_string());
                p(&format!("block.{i}.wr.reqs"), d.wr_reqs.to_string());
                p(&format!("block.{i}.wr.bytes"), d.wr_bytes.to_string());
                p(&format!("block.{i}.fl.reqs"), d.flush_reqs.to_string());
            }
        }
        blocks.push(s);
    }
    ctl.print(&blocks.join("\n"));
    Ok(())
}

/// Resident memory of the VMM process, in KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub const DOMMEMSTAT: Command = cmd(
    "dommemstat",
    Group::Monitor,
    "get memory statistics for a domain",
    "Get memory statistics for a running domain.",
    &[
        data("domain", "domain name, id or uuid"),
        int(
            "period",
            false,
            false,
            "period in seconds to set collection",
        ),
        flag("config", "affect next boot"),
        flag("live", "affect running domain"),
        flag("current", "affect current domain"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        if a.get("period").is_some() {
            return Err(CmdError::ctx(
                "Unable to change balloon collection period.",
                "Operation not supported: changing the statistics period of a running balloon is not supported; set <stats period> in the definition",
            ));
        }
        if !r.is_active() {
            return Err(CmdError::ctx(
                "Failed to get memory statistics for domain",
                "Requested operation is not valid: domain is not running",
            ));
        }
        let has_balloon = r
            .def
            .devices()
            .any(|d| d.name == "memballoon" && d.attr("model") == Some("virtio"));
        let mut s = String::new();
        if has_balloon {
            let stats = ctl.conn()?.memory_stats(&r).map_err(|e| {
                CmdError::ctx("Failed to get memory statistics for domain", e.to_string())
            })?;
            // libvirt's order: the guest's figures around `actual`, then `rss` and `last_update`.
            let fields = stats.libvirt_fields();
            let (before, after): (Vec<_>, Vec<_>) = fields.iter().partition(|(name, _)| {
                !matches!(
                    *name,
                    "usable" | "disk_caches" | "hugetlb_pgalloc" | "hugetlb_pgfail"
                )
            });
            for (name, v) in before {
                s.push_str(&format!("{name} {v}\n"));
            }
            s.push_str(&format!("actual {}\n", stats.actual_bytes / 1024));
            for (name, v) in after.iter().filter(|(n, _)| *n == "usable") {
                s.push_str(&format!("{name} {v}\n"));
            }
            if stats.last_update > 0 {
                s.push_str(&format!("last_update {}\n", stats.last_update));
            }
            for (name, v) in after.iter().filter(|(n, _)| *n != "usable") {
                s.push_str(&format!("{name} {v}\n"));
            }
        } else {
            // Without a balloon, libvirt reports what the host knows: the balloon target and the RSS.
            s.push_str(&format!("actual {}\n", r.def.memory().current_bytes / 1024));
        }
        if let Some(rss) = r.pid.and_then(rss_kib) {
            s.push_str(&format!("rss {rss}\n"));
        }
        ctl.print(&s);
        Ok(())
    },
);

/// `setmem`/`setmaxmem` sizes: a number with an optional unit suffix, KiB by default.
fn parse_size(text: &str) -> Result<u64, CmdError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    parse_scaled(num, Some(unit).filter(|u| !u.is_empty()), DefaultUnit::KiB)
        .map(|bytes| bytes.div_ceil(1024))
        .map_err(|_| {
            CmdError::msg(format!(
                "Scaled numeric value '{text}' for <size> option is malformed or out of range"
            ))
        })
}

pub const SETVCPUS: Command = cmd(
    "setvcpus",
    Group::Domain,
    "change number of virtual CPUs",
    "Change the number of virtual CPUs in the guest domain.",
    &[
        data("domain", "domain name, id or uuid"),
        int("count", true, true, "number of virtual CPUs"),
        flag("maximum", "set maximum limit on next boot"),
        flag("config", "affect next boot"),
        flag("live", "affect running domain"),
        flag("current", "affect current domain"),
        flag("guest", "modify cpu state in the guest"),
        flag("hotpluggable", "make added vcpus hot(un)pluggable"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let text = a.get("count").unwrap_or_default();
        let count: u32 = text.parse().map_err(|_| {
            CmdError::msg(format!(
                "Numeric value '{text}' for <count> option is malformed or out of range"
            ))
        })?;
        let s = scope(a)?;
        if a.flag("maximum") && !s.config {
            return Err(CmdError::msg("--maximum must be used with --config"));
        }
        if a.flag("guest") {
            return Err(CmdError::msg(
                "argument unsupported: --guest needs a guest agent, which ironvirt does not have yet",
            ));
        }
        ctl.conn()?
            .set_vcpus(&r.name, count, a.flag("maximum"), s)?;
        Ok(())
    },
);

pub const SETMEM: Command = cmd(
    "setmem",
    Group::Domain,
    "change memory allocation",
    "Change the current memory allocation in the guest domain.",
    &[
        data("domain", "domain name, id or uuid"),
        data("size", "new memory size, as scaled integer (default KiB)"),
        flag("config", "affect next boot"),
        flag("live", "affect running domain"),
        flag("current", "affect current domain"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let kib = parse_size(a.get("size").unwrap_or_default())?;
        let s = scope(a)?;
        ctl.conn()?.set_memory(&r.name, kib, s)?;
        Ok(())
    },
);

pub const SETMAXMEM: Command = cmd(
    "setmaxmem",
    Group::Domain,
    "change maximum memory limit",
    "Change the maximum memory allocation limit in the guest domain.",
    &[
        data("domain", "domain name, id or uuid"),
        data(
            "size",
            "new maximum memory size, as scaled integer (default KiB)",
        ),
        flag("config", "affect next boot"),
        flag("live", "affect running domain"),
        flag("current", "affect current domain"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let kib = parse_size(a.get("size").unwrap_or_default())?;
        let s = scope(a)?;
        ctl.conn()?.set_max_memory(&r.name, kib, s)?;
        Ok(())
    },
);

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_ranges() {
        assert_eq!(super::ranges(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(super::ranges(&[]), "");
    }

    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("1024").unwrap(), 1024);
        assert_eq!(super::parse_size("2M").unwrap(), 2048);
        assert_eq!(super::parse_size("1GiB").unwrap(), 1 << 20);
        assert!(super::parse_size("x").is_err());
    }
}
