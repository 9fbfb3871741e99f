//! What a domain's `<interface type='network'>` means at start: the network's bridge (libvirt's
//! live XML shows it as `<source network='…' bridge='…'/>`), or for a macvtap network a `direct`
//! interface on the network's host device. The network must be active.

use super::xml::ForwardMode;
use super::{NetworkError, Networks};
use crate::store::Paths;
use crate::xml::tree::Element;
use crate::xml::Domain;

/// `def` with every `type='network'` interface resolved against the running networks.
pub fn resolve_interfaces(paths: &Paths, def: &Domain) -> Result<Domain, NetworkError> {
    let uses_networks = def
        .devices()
        .any(|d| d.name == "interface" && d.attr("type") == Some("network"));
    if !uses_networks {
        return Ok(def.clone());
    }
    let nets = Networks::open(paths)?;
    let mut doc = def.document().clone();
    let Some(devices) = doc.root.child_mut("devices") else {
        return Ok(def.clone());
    };
    for iface in devices
        .elements_mut()
        .filter(|d| d.name == "interface" && d.attr("type") == Some("network"))
    {
        resolve_one(&nets, iface)?;
    }
    Domain::from_document(doc).map_err(|e| NetworkError::Invalid(e.to_string()))
}

fn resolve_one(nets: &Networks, iface: &mut Element) -> Result<(), NetworkError> {
    let name = iface
        .child("source")
        .and_then(|s| s.attr("network"))
        .ok_or_else(|| {
            NetworkError::Invalid(
                "No <source> 'network' attribute specified with <interface type='network'/>".into(),
            )
        })?
        .to_string();
    let r = nets.lookup(&name)?;
    if !r.active {
        return Err(NetworkError::NotActive(name));
    }
    let net = &r.def;
    let macvtap_mode = match net.forward.mode {
        ForwardMode::Bridge if net.bridge_name().is_none() => Some("bridge"),
        ForwardMode::Private => Some("private"),
        ForwardMode::Vepa => Some("vepa"),
        ForwardMode::Passthrough => Some("passthrough"),
        _ => None,
    };
    let Some(source) = iface.child_mut("source") else {
        return Ok(());
    };
    match macvtap_mode {
        None => {
            let bridge = net.bridge_name().ok_or_else(|| {
                NetworkError::Unsupported(format!("network '{name}' has no bridge"))
            })?;
            source.set_attr("bridge", bridge);
        }
        Some(mode) => {
            let dev = net.forward.dev.clone().ok_or_else(|| {
                NetworkError::Unsupported(format!("network '{name}' has no host interface"))
            })?;
            // The guest gets a macvtap device: in the live definition the interface is what it
            // really is, a direct one.
            source.attributes.clear();
            source.set_attr("dev", dev);
            source.set_attr("mode", mode);
            iface.set_attr("type", "direct");
        }
    }
    Ok(())
}
