//! `<interface>` → [`NetConfig`]: virtio-net over a TAP device, alone (`ethernet`) or on a Linux bridge.

use ironvirt_vmm::{NetAttach, NetConfig};

use super::LaunchError;
use crate::xml::tree::Element;
use crate::xml::Domain;

pub(super) fn net_configs(domain: &Domain) -> Result<Vec<NetConfig>, LaunchError> {
    domain
        .devices()
        .filter(|d| d.name == "interface")
        .enumerate()
        .map(|(i, el)| interface(i, el))
        .collect()
}

/// libvirt keeps these prefixes for names it generates; a `<target dev>` using one is replaced.
const GENERATED_PREFIXES: [&str; 3] = ["vnet", "macvtap", "macvlan"];

fn unsupported(index: usize, what: String) -> LaunchError {
    LaunchError::unsupported(format!("interface {index}: {what}"))
}

fn interface(index: usize, el: &Element) -> Result<NetConfig, LaunchError> {
    let kind = el.attr("type").unwrap_or_default();
    let attach = match kind {
        "ethernet" => NetAttach::Ethernet,
        "bridge" => {
            let bridge = el
                .child("source")
                .and_then(|s| s.attr("bridge"))
                .ok_or_else(|| {
                    LaunchError::Invalid(format!(
                        "interface {index}: type='bridge' needs <source bridge=…>"
                    ))
                })?;
            NetAttach::Bridge(bridge.to_string())
        }
        // The domain driver fills in the bridge of the (active) network at start, as libvirt's
        // live XML shows it; without it the network was never resolved.
        "network" => {
            let source = el.child("source");
            let network = source.and_then(|s| s.attr("network")).unwrap_or_default();
            match source.and_then(|s| s.attr("bridge")) {
                Some(bridge) => NetAttach::Bridge(bridge.to_string()),
                None => {
                    return Err(unsupported(
                        index,
                        format!(
                            "network '{network}' was not resolved to a bridge: start the domain with ironvirt, which looks the network up"
                        ),
                    ))
                }
            }
        }
        "direct" => {
            let source = el.child("source");
            let dev = source.and_then(|s| s.attr("dev")).ok_or_else(|| {
                LaunchError::Invalid(format!(
                    "interface {index}: type='direct' needs <source dev=…>"
                ))
            })?;
            // libvirt's default macvtap mode is vepa.
            let mode = source.and_then(|s| s.attr("mode")).unwrap_or("vepa");
            if !matches!(mode, "vepa" | "bridge" | "private" | "passthrough") {
                return Err(LaunchError::Invalid(format!(
                    "Unknown mode '{mode}' in interface <source> element"
                )));
            }
            NetAttach::Direct {
                dev: dev.to_string(),
                mode: mode.to_string(),
            }
        }
        other => {
            return Err(unsupported(
                index,
                format!(
                    "interface type '{other}' is not supported (only network, bridge, ethernet and direct)"
                ),
            ))
        }
    };
    if let Some(model) = el.child("model").and_then(|m| m.attr("type")) {
        if model != "virtio" {
            return Err(unsupported(
                index,
                format!("NIC model '{model}' is not supported (only virtio)"),
            ));
        }
    }
    let mac = match el.child("mac").and_then(|m| m.attr("address")) {
        Some(text) => parse_mac(text)
            .ok_or_else(|| LaunchError::Invalid(format!("unable to parse mac address '{text}'")))?,
        None => generate_mac(),
    };
    let tap_name = el
        .child("target")
        .and_then(|t| t.attr("dev"))
        .filter(|name| !GENERATED_PREFIXES.iter().any(|p| name.starts_with(p)))
        .map(str::to_string);
    let mtu = match el.child("mtu").and_then(|m| m.attr("size")) {
        Some(size) => Some(
            size.parse::<u16>()
                .ok()
                .filter(|m| *m >= 68)
                .ok_or_else(|| LaunchError::Invalid(format!("malformed mtu size '{size}'")))?,
        ),
        None => None,
    };
    let link_up = match el.child("link").and_then(|l| l.attr("state")) {
        None | Some("up") => true,
        Some("down") => false,
        Some(other) => {
            return Err(LaunchError::Invalid(format!(
                "unknown interface link state '{other}'"
            )))
        }
    };
    Ok(NetConfig {
        mac,
        tap_name,
        attach,
        mtu,
        link_up,
    })
}

/// `aa:bb:cc:dd:ee:ff`, case-insensitive, as libvirt's virMacAddrParse accepts.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A random address in QEMU/KVM's 52:54:00 prefix, as libvirt generates.
pub fn generate_mac() -> [u8; 6] {
    let r = uuid::Uuid::new_v4();
    let b = r.as_bytes();
    [0x52, 0x54, 0x00, b[0], b[1], b[2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("52:54:00:AB:cd:0f"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 0x0f])
        );
        assert_eq!(parse_mac("52:54:00:ab:cd"), None);
        assert_eq!(parse_mac("52:54:00:ab:cd:xyz"), None);
        assert_eq!(
            format_mac(&[0x52, 0x54, 0, 1, 2, 0xff]),
            "52:54:00:01:02:ff"
        );
        assert_eq!(generate_mac()[..3], [0x52, 0x54, 0]);
    }
}
