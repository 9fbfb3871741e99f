//! DHCP leases, read from the network's dnsmasq lease file (`EXPIRY MAC IP HOSTNAME CLIENTID` per
//! IPv4 lease, `*` for an absent field; IPv6 leases follow a `duid` line as
//! `EXPIRY IAID IP HOSTNAME DUID`).

use std::net::IpAddr;

use super::xml::Network;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Seconds since the epoch; 0 for an infinite lease.
    pub expiry: i64,
    /// Lower case; `None` for an IPv6 lease (dnsmasq records the IAID there).
    pub mac: Option<String>,
    pub ip: IpAddr,
    /// The prefix of the network's `<ip>` holding the address.
    pub prefix: u8,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
}

/// The leases in `text` that have not expired at `now` and fall into one of `net`'s subnets.
pub fn parse(text: &str, net: &Network, now: i64) -> Vec<Lease> {
    let field = |s: &str| (s != "*" && !s.is_empty()).then(|| s.to_string());
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[0] == "duid" {
            continue;
        }
        let (Ok(expiry), Ok(ip)) = (f[0].parse::<i64>(), f[2].parse::<IpAddr>()) else {
            continue;
        };
        if expiry != 0 && expiry < now {
            continue;
        }
        let Some(def) = net.ips.iter().find(|d| d.contains(ip)) else {
            continue;
        };
        out.push(Lease {
            expiry,
            mac: ip.is_ipv4().then(|| f[1].to_lowercase()),
            ip,
            prefix: def.prefix,
            hostname: field(f[3]),
            client_id: f.get(4).and_then(|s| field(s)),
        });
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` in local time, as virsh prints lease expiry times.
pub fn format_time(secs: i64) -> String {
    // SAFETY: localtime_r fills the tm we pass; time_t is i64 on the platforms we build for.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t: libc::time_t = secs as libc::time_t;
        if libc::localtime_r(&t, &mut tm).is_null() {
            return secs.to_string();
        }
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_file() {
        let net = Network::parse(
            "<network><name>n</name><ip address='10.1.0.1' prefix='24'/>\
             <ip family='ipv6' address='fd00::1' prefix='64'/></network>",
        )
        .unwrap();
        let text = "2000000000 52:54:00:AA:BB:CC 10.1.0.50 guest 01:52:54:00:aa:bb:cc\n\
                    100 52:54:00:00:00:01 10.1.0.51 * *\n\
                    0 52:54:00:00:00:02 10.1.0.52 * *\n\
                    2000000000 52:54:00:00:00:03 10.9.0.5 * *\n\
                    duid 00:01:00:01:aa\n\
                    2000000000 1234 fd00::20 * 00:01:00:01\n";
        let l = parse(text, &net, 1_000_000);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].mac.as_deref(), Some("52:54:00:aa:bb:cc"));
        assert_eq!(l[0].prefix, 24);
        assert_eq!(l[0].hostname.as_deref(), Some("guest"));
        assert_eq!(l[1].expiry, 0);
        assert_eq!(l[1].hostname, None);
        assert_eq!(l[2].ip.to_string(), "fd00::20");
        assert_eq!(l[2].prefix, 64);
        assert_eq!(l[2].mac, None);
    }
}
