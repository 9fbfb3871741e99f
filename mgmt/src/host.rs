//! Facts about the host: `hostname`, `nodeinfo`, `capabilities`, `version`.

use std::collections::BTreeSet;

/// `nodeinfo`'s figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub model: String,
    pub cpus: u32,
    pub mhz: u32,
    pub nodes: u32,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    pub memory_kib: u64,
}

/// One online host CPU and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpu {
    pub id: u32,
    pub socket: u32,
    pub core: u32,
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Parses `/proc/cpuinfo`: one entry per processor (missing topology fields count as socket 0,
/// core = processor number, as in a VM that does not report them).
pub fn parse_cpuinfo(text: &str) -> (Vec<HostCpu>, u32) {
    let mut cpus = Vec::new();
    let mut mhz = 0u32;
    for block in text.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let Some(id) = field("processor").and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        if mhz == 0 {
            mhz = field("cpu MHz")
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |f| f as u32);
        }
        cpus.push(HostCpu {
            id,
            socket: field("physical id")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            core: field("core id").and_then(|v| v.parse().ok()).unwrap_or(id),
        });
    }
    (cpus, mhz)
}

fn meminfo_total_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn numa_nodes() -> u32 {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("node").is_some_and(|rest| {
                        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                    })
                })
                .count() as u32
        })
        .unwrap_or(0)
        .max(1)
}

pub fn host_cpus() -> Vec<HostCpu> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (cpus, _) = parse_cpuinfo(&text);
    if cpus.is_empty() {
        (0..crate::driver::stats::host_cpus())
            .map(|id| HostCpu {
                id,
                socket: 0,
                core: id,
            })
            .collect()
    } else {
        cpus
    }
}

pub fn node_info() -> NodeInfo {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (parsed, mhz) = parse_cpuinfo(&text);
    let cpus = if parsed.is_empty() {
        host_cpus()
    } else {
        parsed
    };
    let nodes = numa_nodes();
    let sockets: BTreeSet<u32> = cpus.iter().map(|c| c.socket).collect();
    let cores: BTreeSet<(u32, u32)> = cpus.iter().map(|c| (c.socket, c.core)).collect();
    let n = cpus.len().max(1) as u32;
    let sockets_n = (sockets.len() as u32).max(1);
    // libvirt reports sockets per NUMA node.
    let sockets_per_node = (sockets_n / nodes).max(1);
    let cores_per_socket = ((cores.len() as u32) / sockets_n).max(1);
    let threads = (n / (sockets_n * cores_per_socket)).max(1);
    NodeInfo {
        model: std::env::consts::ARCH.to_string(),
        cpus: n,
        mhz,
        nodes,
        sockets: sockets_per_node,
        cores: cores_per_socket,
        threads,
        memory_kib: meminfo_total_kib(),
    }
}

/// The host UUID libvirt derives from /etc/machine-id (32 hex digits).
fn host_uuid() -> String {
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    uuid::Uuid::parse_str(id.trim())
        .map(|u| u.hyphenated().to_string())
        .unwrap_or_else(|_| "00000000-0000-0000-0000-000000000000".into())
}

/// `capabilities`: libvirt's capabilities document for this host and the one guest kind we run.
pub fn capabilities(emulator: &str) -> String {
    let info = node_info();
    let cpus = host_cpus();
    let mut s = String::new();
    s.push_str("<capabilities>\n\n  <host>\n");
    s.push_str(&format!("    <uuid>{}</uuid>\n", host_uuid()));
    s.push_str("    <cpu>\n");
    s.push_str(&format!("      <arch>{}</arch>\n", info.model));
    s.push_str(&format!(
        "      <topology sockets='{}' dies='1' clusters='1' cores='{}' threads='{}'/>\n",
        info.sockets, info.cores, info.threads
    ));
    s.push_str("    </cpu>\n");
    s.push_str("    <power_management/>\n    <iommu support='no'/>\n");
    s.push_str("    <topology>\n");
    s.push_str(&format!("      <cells num='{}'>\n", 1));
    s.push_str("        <cell id='0'>\n");
    s.push_str(&format!(
        "          <memory unit='KiB'>{}</memory>\n",
        info.memory_kib
    ));
    s.push_str(&format!("          <cpus num='{}'>\n", cpus.len()));
    for c in &cpus {
        let siblings: Vec<String> = cpus
            .iter()
            .filter(|o| o.socket == c.socket && o.core == c.core)
            .map(|o| o.id.to_string())
            .collect();
        s.push_str(&format!(
            "            <cpu id='{}' socket_id='{}' die_id='0' cluster_id='0' core_id='{}' siblings='{}'/>\n",
            c.id,
            c.socket,
            c.core,
            siblings.join(",")
        ));
    }
    s.push_str("          </cpus>\n        </cell>\n      </cells>\n    </topology>\n");
    s.push_str("    <secmodel>\n      <model>none</model>\n      <doi>0</doi>\n    </secmodel>\n");
    s.push_str("  </host>\n\n  <guest>\n    <os_type>hvm</os_type>\n");
    s.push_str(&format!(
        "    <arch name='{}'>\n      <wordsize>64</wordsize>\n",
        info.model
    ));
    s.push_str(&format!(
        "      <emulator>{}</emulator>\n",
        crate::xml::tree::escape_text(emulator)
    ));
    s.push_str("      <domain type='kvm'/>\n    </arch>\n");
    s.push_str("    <features>\n      <acpi default='on' toggle='no'/>\n      <apic default='on' toggle='no'/>\n      <cpuselection/>\n    </features>\n");
    s.push_str("  </guest>\n\n</capabilities>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_topology() {
        let text = "processor\t: 0\ncpu MHz\t\t: 2596.144\nphysical id\t: 0\ncore id\t\t: 0\n\n\
                    processor\t: 1\nphysical id\t: 0\ncore id\t\t: 0\n\n\
                    processor\t: 2\nphysical id\t: 0\ncore id\t\t: 1\n\n";
        let (cpus, mhz) = parse_cpuinfo(text);
        assert_eq!(mhz, 2596);
        assert_eq!(cpus.len(), 3);
        assert_eq!(
            cpus[2],
            HostCpu {
                id: 2,
                socket: 0,
                core: 1
            }
        );
    }
}
