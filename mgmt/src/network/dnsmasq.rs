//! DHCP and DNS for a virtual network, the way libvirt serves them: one dnsmasq per network, bound
//! to the network's bridge only, configured by a generated file, with static hosts in a hosts file
//! that a SIGHUP reloads (so `net-update` needs no restart) and leases in a lease file that outlives
//! the process (so a guest keeps its address when the network restarts).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::xml::{IpDef, Network};
use super::NetworkError;
use crate::store::write_atomic;

/// Where dnsmasq is looked for when `$IRONVIRT_DNSMASQ` does not say.
const DNSMASQ_PATHS: &[&str] = &["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"];

/// The files of one network's dnsmasq.
pub struct DnsmasqFiles {
    pub conf: PathBuf,
    pub hosts: PathBuf,
    pub addn_hosts: PathBuf,
    pub pid: PathBuf,
    /// Keyed by the bridge, as libvirt keys its status file: it survives restarts of the network.
    pub leases: PathBuf,
}

impl DnsmasqFiles {
    pub fn new(state_dir: &Path, run_dir: &Path, name: &str, bridge: &str) -> DnsmasqFiles {
        DnsmasqFiles {
            conf: state_dir.join(format!("{name}.conf")),
            hosts: state_dir.join(format!("{name}.hostsfile")),
            addn_hosts: state_dir.join(format!("{name}.addnhosts")),
            pid: run_dir.join(format!("{name}.pid")),
            leases: state_dir.join(format!("{bridge}.leases")),
        }
    }

    /// Removes the runtime files (not the leases).
    pub fn remove_runtime(&self) {
        for p in [&self.conf, &self.hosts, &self.addn_hosts, &self.pid] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Whether the network needs a dnsmasq at all: libvirt runs one for any network with an IPv4
/// address unless both DHCP and DNS are off.
pub fn needed(net: &Network) -> bool {
    let has_v4 = net.ips.iter().any(IpDef::is_ipv4);
    has_v4 && (net.dns.enable || net.dhcp_ipv4().is_some())
}

pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("IRONVIRT_DNSMASQ").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    DNSMASQ_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("dnsmasq"))
}

/// The unprivileged user dnsmasq switches to: `dnsmasq` or `nobody` when the system has them and
/// they can reach the hosts files in `dir` (it reads them after dropping privileges); otherwise
/// (a minimal system such as the lab's initramfs, or a private store) it stays root.
fn run_user(dir: &Path) -> &'static str {
    use std::os::unix::fs::PermissionsExt;
    let reachable = dir.ancestors().all(|d| {
        std::fs::metadata(d)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    });
    if !reachable {
        return "root";
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let has = |u: &str| passwd.lines().any(|l| l.split(':').next() == Some(u));
    if has("dnsmasq") {
        "dnsmasq"
    } else if has("nobody") {
        "nobody"
    } else {
        "root"
    }
}

/// `dhcp-hostsfile` lines: `mac,ip,name` (IPv4) or `id:DUID,[ip],name` (IPv6).
pub fn hosts_file(net: &Network) -> String {
    let mut s = String::new();
    for ip in &net.ips {
        for h in &ip.hosts {
            let mut parts: Vec<String> = Vec::new();
            if let Some(m) = &h.mac {
                parts.push(m.to_lowercase());
            } else if let Some(id) = &h.id {
                parts.push(format!("id:{id}"));
            }
            if let Some(a) = h.ip {
                parts.push(match a {
                    IpAddr::V6(_) => format!("[{a}]"),
                    IpAddr::V4(_) => a.to_string(),
                });
            }
            if let Some(n) = &h.name {
                parts.push(n.clone());
            }
            if let Some(l) = h.lease_secs {
                parts.push(if l == 0 {
                    "infinite".into()
                } else {
                    l.to_string()
                });
            }
            s.push_str(&parts.join(","));
            s.push('\n');
        }
    }
    s
}

/// `addn-hosts` lines from `<dns><host>`: `ip name…`.
pub fn addn_hosts(net: &Network) -> String {
    let mut s = String::new();
    for h in &net.dns.hosts {
        if !h.hostnames.is_empty() {
            let _ = writeln!(s, "{}\t{}", h.ip, h.hostnames.join("\t"));
        }
    }
    s
}

/// The configuration file, laid out like libvirt's.
pub fn config(net: &Network, files: &DnsmasqFiles, bridge: &str) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "##WARNING:  THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
         ##OVERWRITTEN AND LOST.  Changes to this configuration should be made using:\n\
         ##    ironvirt net-edit {name}\n\
         ## or other application using the ironvirt API.\n\
         ##\n## dnsmasq conf file created by ironvirt\n",
        name = net.name()
    );
    c.push_str("strict-order\n");
    let _ = writeln!(
        c,
        "user={}",
        run_user(files.hosts.parent().unwrap_or(Path::new("/")))
    );
    let _ = writeln!(c, "pid-file={}", files.pid.display());
    if let Some((domain, local_only)) = &net.domain {
        let _ = writeln!(c, "domain={domain}");
        if *local_only {
            let _ = writeln!(c, "local=/{domain}/");
        }
        c.push_str("expand-hosts\n");
    }
    if net.dns.forward_plain_names == Some(false) {
        c.push_str("domain-needed\nlocal=//\n");
    }
    let mut have_plain_forwarder = false;
    for f in &net.dns.forwarders {
        match (&f.domain, f.addr) {
            (Some(d), Some(a)) => {
                let _ = writeln!(c, "server=/{d}/{a}");
            }
            (Some(d), None) => {
                let _ = writeln!(c, "server=/{d}/#");
            }
            (None, Some(a)) => {
                have_plain_forwarder = true;
                let _ = writeln!(c, "server={a}");
            }
            (None, None) => {}
        }
    }
    if have_plain_forwarder {
        c.push_str("no-resolv\n");
    }
    if !net.dns.enable {
        c.push_str("port=0\n");
    }
    // Listen on the bridge only, and follow its addresses as they come and go.
    c.push_str("except-interface=lo\nbind-dynamic\n");
    let _ = writeln!(c, "interface={bridge}");
    let mut dhcp_hosts = 0u64;
    for ip in &net.ips {
        if !ip.dhcp {
            continue;
        }
        for r in &ip.ranges {
            let mut line = format!("dhcp-range={},{}", r.start, r.end);
            match ip.netmask() {
                Some(m) => {
                    let _ = write!(line, ",{m}");
                }
                None => {
                    let _ = write!(line, ",{}", ip.prefix);
                }
            }
            if let Some(l) = r.lease_secs {
                let _ = write!(
                    line,
                    ",{}",
                    if l == 0 {
                        "infinite".into()
                    } else {
                        l.to_string()
                    }
                );
            }
            let _ = writeln!(c, "{line}");
            dhcp_hosts += range_size(r.start, r.end);
        }
        // Static hosts only: dnsmasq needs a range in "static" mode to answer them.
        if ip.ranges.is_empty() && !ip.hosts.is_empty() {
            let _ = writeln!(c, "dhcp-range={},static", ip.network());
        }
        dhcp_hosts += ip.hosts.len() as u64;
        if let Some(b) = &ip.bootp {
            match &b.server {
                Some(s) => {
                    let _ = writeln!(c, "dhcp-boot={},,{s}", b.file);
                }
                None => {
                    let _ = writeln!(c, "dhcp-boot={}", b.file);
                }
            }
        }
        if let Some(root) = &ip.tftp_root {
            let _ = writeln!(c, "enable-tftp\ntftp-root={root}");
        }
    }
    if dhcp_hosts > 0 {
        c.push_str("dhcp-no-override\ndhcp-authoritative\n");
        let _ = writeln!(c, "dhcp-lease-max={dhcp_hosts}");
        let _ = writeln!(c, "dhcp-hostsfile={}", files.hosts.display());
        let _ = writeln!(c, "dhcp-leasefile={}", files.leases.display());
    }
    // An isolated network has no way out: its guests get no default route (as with libvirt).
    if dhcp_hosts > 0 && net.forward.mode == super::xml::ForwardMode::None {
        c.push_str("dhcp-option=3\n");
    }
    if let Some(mtu) = net.mtu {
        let _ = writeln!(c, "dhcp-option=option:mtu,{mtu}");
    }
    let _ = writeln!(c, "addn-hosts={}", files.addn_hosts.display());
    c
}

fn range_size(start: IpAddr, end: IpAddr) -> u64 {
    match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => u64::from(u32::from(e).saturating_sub(u32::from(s))) + 1,
        (IpAddr::V6(s), IpAddr::V6(e)) => {
            u64::try_from(u128::from(e).saturating_sub(u128::from(s)) + 1).unwrap_or(u64::MAX)
        }
        _ => 0,
    }
}

fn write(path: &Path, text: &str) -> Result<(), NetworkError> {
    write_atomic(path, text.as_bytes()).map_err(NetworkError::io("cannot write", path))
}

/// Writes the hosts files (start and `net-update`).
pub fn write_hosts(net: &Network, files: &DnsmasqFiles) -> Result<(), NetworkError> {
    write(&files.hosts, &hosts_file(net))?;
    write(&files.addn_hosts, &addn_hosts(net))
}

/// Writes the configuration and starts dnsmasq (it daemonizes once it listens, so an error in the
/// configuration comes back here, with dnsmasq's own message).
pub fn start(net: &Network, files: &DnsmasqFiles, bridge: &str) -> Result<(), NetworkError> {
    write_hosts(net, files)?;
    write(&files.conf, &config(net, files, bridge))?;
    if !files.leases.exists() {
        write(&files.leases, "")?;
    }
    let bin = binary();
    let out = Command::new(&bin)
        .arg(format!("--conf-file={}", files.conf.display()))
        .output()
        .map_err(|e| {
            NetworkError::Host(format!(
                "cannot run {}: {e} (install the dnsmasq-base package)",
                bin.display()
            ))
        })?;
    if !out.status.success() {
        return Err(NetworkError::Host(format!(
            "dnsmasq for network '{}' failed to start: {}",
            net.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn pid(files: &DnsmasqFiles) -> Option<i32> {
    std::fs::read_to_string(&files.pid)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// Whether `pid` is a dnsmasq using our configuration file (never signal a recycled pid).
fn is_ours(pid: i32, files: &DnsmasqFiles) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = format!("--conf-file={}", files.conf.display());
    cmdline.split(|b| *b == 0).any(|a| a == want.as_bytes())
}

/// Asks dnsmasq to re-read its hosts files.
pub fn reload(files: &DnsmasqFiles) {
    if let Some(pid) = pid(files).filter(|p| is_ours(*p, files)) {
        // SAFETY: kill has no memory-safety preconditions; the pid was checked to be ours.
        unsafe {
            libc::kill(pid, libc::SIGHUP);
        }
    }
}

/// Stops dnsmasq (SIGTERM, then SIGKILL after two seconds).
pub fn stop(files: &DnsmasqFiles) {
    let Some(pid) = pid(files).filter(|p| is_ours(*p, files)) else {
        return;
    };
    // SAFETY: as in `reload`.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while is_ours(pid, files) && !is_zombie(pid) {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_like_libvirt() {
        let net = Network::parse(
            "<network><name>default</name><forward mode='nat'/>\
             <bridge name='virbr0'/><domain name='example.org' localOnly='yes'/>\
             <dns><forwarder addr='8.8.8.8'/><host ip='192.168.122.5'><hostname>db</hostname>\
             <hostname>db2</hostname></host></dns>\
             <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>\
             <range start='192.168.122.2' end='192.168.122.254'/>\
             <host mac='52:54:00:AA:00:01' name='a' ip='192.168.122.10'/>\
             <bootp file='pxe.img'/></dhcp></ip></network>",
        )
        .unwrap();
        let files = DnsmasqFiles::new(Path::new("/s"), Path::new("/r"), "default", "virbr0");
        let c = config(&net, &files, "virbr0");
        for line in [
            "strict-order",
            "pid-file=/r/default.pid",
            "domain=example.org",
            "local=/example.org/",
            "expand-hosts",
            "server=8.8.8.8",
            "no-resolv",
            "except-interface=lo",
            "bind-dynamic",
            "interface=virbr0",
            "dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0",
            "dhcp-no-override",
            "dhcp-authoritative",
            "dhcp-lease-max=254",
            "dhcp-hostsfile=/s/default.hostsfile",
            "dhcp-leasefile=/s/virbr0.leases",
            "dhcp-boot=pxe.img",
            "addn-hosts=/s/default.addnhosts",
        ] {
            assert!(c.lines().any(|l| l == line), "missing {line} in\n{c}");
        }
        assert_eq!(hosts_file(&net), "52:54:00:aa:00:01,192.168.122.10,a\n");
        assert_eq!(addn_hosts(&net), "192.168.122.5\tdb\tdb2\n");
    }
}
