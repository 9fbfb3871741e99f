//! The store side of the network driver (nothing here touches the host's networking).

use super::*;
use crate::store::Env;
use crate::uri::Scope;

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn store(tag: &str) -> (Tmp, Networks) {
    let dir = std::env::temp_dir().join(format!("ironvirt-net-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = Env {
        root: Some(dir.clone()),
        is_root: true,
        ..Env::default()
    };
    let nets = Networks::open(&env.paths(Scope::System)).unwrap();
    (Tmp(dir), nets)
}

const ISO: &str = "<network><name>iso</name><ip address='10.77.0.1' prefix='24'><dhcp>\
    <range start='10.77.0.10' end='10.77.0.20'/></dhcp></ip></network>";

#[test]
fn default_network_is_defined_on_first_use_only() {
    let (_t, nets) = store("default");
    let r = nets.lookup("default").unwrap();
    assert!(!r.active && r.persistent && !r.autostart);
    assert_eq!(r.def.bridge_name(), Some("virbr0"));
    assert_eq!(r.def.forward.mode, ForwardMode::Nat);
    assert_eq!(r.def.ips[0].ranges[0].start.to_string(), "192.168.122.2");
    nets.undefine("default").unwrap();
    // Reopening the same store does not bring it back.
    let again = Networks {
        config: nets.config.clone(),
        run: nets.run.clone(),
        state: nets.state.clone(),
    };
    assert!(matches!(
        again.lookup("default"),
        Err(NetworkError::NoNetwork { .. })
    ));
}

#[test]
fn define_fills_bridge_and_keeps_it_on_redefine() {
    let (_t, nets) = store("define");
    let r = nets.define(ISO).unwrap();
    let bridge = r.def.bridge_name().unwrap().to_string();
    assert_ne!(bridge, "virbr0", "virbr0 belongs to the default network");
    let mac = r.def.mac.clone().unwrap();
    let again = nets.define(ISO).unwrap();
    assert_eq!(again.uuid, r.uuid);
    assert_eq!(again.def.bridge_name(), Some(bridge.as_str()));
    assert_eq!(again.def.mac.as_deref(), Some(mac.as_str()));
    assert_eq!(nets.lookup(&r.uuid).unwrap().name, "iso");
    // Another network may not take the same bridge.
    let clash = format!("<network><name>other</name><bridge name='{bridge}'/></network>");
    assert!(matches!(
        nets.define(&clash),
        Err(NetworkError::BridgeInUse(_))
    ));
    // Same name, other uuid.
    let e = nets
        .define(
            "<network><name>iso</name><uuid>11111111-2222-3333-4444-555555555555</uuid></network>",
        )
        .unwrap_err();
    assert!(e.to_string().contains("already exists with uuid"), "{e}");
}

#[test]
fn autostart_undefine_and_errors() {
    let (_t, nets) = store("auto");
    nets.define(ISO).unwrap();
    nets.set_autostart("iso", true).unwrap();
    assert!(nets.lookup("iso").unwrap().autostart);
    nets.set_autostart("iso", false).unwrap();
    assert!(!nets.lookup("iso").unwrap().autostart);
    assert_eq!(
        nets.destroy("iso").unwrap_err().to_string(),
        "Requested operation is not valid: network 'iso' is not active"
    );
    nets.undefine("iso").unwrap();
    assert_eq!(
        nets.lookup("iso").unwrap_err().to_string(),
        "Network not found: no network with matching name 'iso'"
    );
}

#[test]
fn update_dhcp_hosts_in_config() {
    let (_t, nets) = store("update");
    nets.define(ISO).unwrap();
    let cfg = UpdateScope {
        live: false,
        config: true,
    };
    let host = "<host mac='52:54:00:00:00:07' name='seven' ip='10.77.0.7'/>";
    nets.update_dhcp_host("iso", UpdateCommand::AddLast, None, host, cfg)
        .unwrap();
    let r = nets.lookup("iso").unwrap();
    assert_eq!(r.def.ips[0].hosts.len(), 1);
    assert_eq!(r.def.ips[0].hosts[0].name.as_deref(), Some("seven"));
    let e = nets
        .update_dhcp_host("iso", UpdateCommand::AddLast, None, host, cfg)
        .unwrap_err();
    assert!(e.to_string().contains("existing dhcp host entry"), "{e}");
    let modified = "<host mac='52:54:00:00:00:07' name='seven' ip='10.77.0.8'/>";
    nets.update_dhcp_host("iso", UpdateCommand::Modify, None, modified, cfg)
        .unwrap();
    let r = nets.lookup("iso").unwrap();
    assert_eq!(r.def.ips[0].hosts[0].ip.unwrap().to_string(), "10.77.0.8");
    nets.update_dhcp_host("iso", UpdateCommand::Delete, None, modified, cfg)
        .unwrap();
    assert!(nets.lookup("iso").unwrap().def.ips[0].hosts.is_empty());
    // --live on an inactive network.
    let live = UpdateScope {
        live: true,
        config: false,
    };
    assert!(matches!(
        nets.update_dhcp_host("iso", UpdateCommand::AddLast, None, host, live),
        Err(NetworkError::NotActive(_))
    ));
}
