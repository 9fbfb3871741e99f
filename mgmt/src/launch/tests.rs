use std::path::PathBuf;

use ironvirt_vmm::{CacheMode, CpuTopology, ImageFormat, LifecycleAction, SerialConfig};

use super::*;

/// A runnable domain; `extra` goes before `<os>`, `os_extra` inside it, `devices` inside `<devices>`.
fn doc(extra: &str, os_extra: &str, devices: &str) -> String {
    format!(
        "<domain type='kvm'>\n  <name>vm1</name>\n  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>\n  \
         <memory unit='MiB'>512</memory>\n{extra}\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n    \
         <kernel>/boot/vmlinuz</kernel>{os_extra}\n  </os>\n  <devices>{devices}</devices>\n</domain>"
    )
}

fn config(xml: &str) -> Result<VmConfig, LaunchError> {
    vm_config(&Domain::parse(xml).expect("valid domain"))
}

fn refused(xml: &str) -> String {
    config(xml).expect_err("should be refused").to_string()
}

fn unsupported(xml: &str) -> String {
    let message = refused(xml);
    assert!(
        message.starts_with("unsupported configuration: "),
        "{message}"
    );
    message
}

#[test]
fn minimal_domain() {
    let c = config(&doc("", "", "")).unwrap();
    assert_eq!(c.name, "vm1");
    assert_eq!(c.uuid, "c7a5fdbd-edaf-9455-926a-d65c16db1809");
    assert_eq!(c.memory_bytes, 512 << 20);
    assert_eq!(c.current_memory_bytes, 512 << 20);
    assert_eq!((c.vcpus, c.max_vcpus), (1, 1));
    assert_eq!(c.topology, CpuTopology::flat(1));
    assert_eq!(c.boot.kernel, PathBuf::from("/boot/vmlinuz"));
    assert_eq!(c.boot.initrd, None);
    assert_eq!(c.boot.cmdline, "");
    assert_eq!(c.on_poweroff, LifecycleAction::Destroy);
    assert_eq!(c.on_reboot, LifecycleAction::Restart);
    assert_eq!(c.on_crash, LifecycleAction::Destroy);
    assert_eq!(c.serial, None);
}

#[test]
fn full_conversion() {
    let c = config(&doc(
        "<currentMemory unit='MiB'>256</currentMemory><vcpu current='2'>4</vcpu>\
         <cpu><topology sockets='2' cores='2' threads='1'/></cpu>\
         <on_poweroff>restart</on_poweroff><on_reboot>destroy</on_reboot><on_crash>restart</on_crash>",
        "<initrd>/boot/initrd.img</initrd><cmdline>console=ttyS0</cmdline>",
        "<emulator>/usr/bin/qemu-system-x86_64</emulator><controller type='pci' model='pci-root'/>\
         <input type='mouse' bus='ps2'/><input type='keyboard'/><memballoon model='none'/>",
    ))
    .unwrap();
    assert_eq!(c.current_memory_bytes, 256 << 20);
    assert_eq!((c.vcpus, c.max_vcpus), (2, 4));
    assert_eq!(
        c.topology,
        CpuTopology {
            sockets: 2,
            dies: 1,
            cores: 2,
            threads: 1
        }
    );
    assert_eq!(c.boot.initrd, Some(PathBuf::from("/boot/initrd.img")));
    assert_eq!(c.boot.cmdline, "console=ttyS0");
    assert_eq!(c.on_poweroff, LifecycleAction::Restart);
    assert_eq!(c.on_reboot, LifecycleAction::Destroy);
    assert_eq!(c.on_crash, LifecycleAction::Restart);
}

#[test]
fn hypervisor_and_boot_refusals() {
    let m = unsupported(&doc("", "", "").replace("type='kvm'", "type='qemu'"));
    assert!(m.contains("domain type 'qemu'"), "{m}");
    let m = unsupported(&doc("", "", "").replace("arch='x86_64'", "arch='aarch64'"));
    assert!(m.contains("architecture 'aarch64'"), "{m}");
    let m = unsupported(&doc("", "", "").replace(">hvm<", ">linux<"));
    assert!(m.contains("OS type 'linux'"), "{m}");
    assert_eq!(
        unsupported(&doc("", "", "").replace("<kernel>/boot/vmlinuz</kernel>", "")),
        "unsupported configuration: booting without <kernel> (firmware/disk boot) is not supported yet"
    );
    let m = unsupported(&doc(
        "",
        "<loader readonly='yes' type='pflash'>/x/OVMF.fd</loader>",
        "",
    ));
    assert!(m.contains("firmware"), "{m}");
    let m = unsupported(&doc(
        "<vcpu>4</vcpu><cpu><topology sockets='1' clusters='2' cores='2' threads='1'/></cpu>",
        "",
        "",
    ));
    assert!(m.contains("clusters='2'"), "{m}");
}

#[test]
fn relative_paths_are_refused() {
    assert_eq!(
        refused(&doc("", "", "").replace("/boot/vmlinuz", "vmlinuz")),
        "invalid argument: <kernel> path 'vmlinuz' must be absolute"
    );
    assert_eq!(
        refused(&doc("", "<initrd>boot/initrd</initrd>", "")),
        "invalid argument: <initrd> path 'boot/initrd' must be absolute"
    );
    let m = refused(&doc(
        "",
        "",
        "<serial type='file'><source path='log.txt'/></serial>",
    ));
    assert!(m.contains("'log.txt' must be absolute"), "{m}");
}

#[test]
fn lifecycle_refusals() {
    for (element, action) in [
        ("on_poweroff", "preserve"),
        ("on_reboot", "rename-restart"),
        ("on_crash", "coredump-destroy"),
        ("on_crash", "coredump-restart"),
        ("on_crash", "preserve"),
    ] {
        let m = unsupported(&doc(&format!("<{element}>{action}</{element}>"), "", ""));
        assert!(m.contains(&format!("{element} action '{action}'")), "{m}");
    }
}

#[test]
fn serial_types() {
    let serial = |devices: &str| config(&doc("", "", devices)).unwrap().serial;
    assert_eq!(serial("<serial type='pty'/>"), Some(SerialConfig::Pty));
    assert_eq!(serial("<serial type='stdio'/>"), Some(SerialConfig::Stdio));
    assert_eq!(
        serial("<serial type='file'><source path='/tmp/c.log'/></serial>"),
        Some(SerialConfig::File {
            path: "/tmp/c.log".into(),
            append: false
        })
    );
    assert_eq!(
        serial("<serial type='file'><source path='/tmp/c.log' append='on'/></serial>"),
        Some(SerialConfig::File {
            path: "/tmp/c.log".into(),
            append: true
        })
    );
    assert_eq!(
        serial(
            "<serial type='unix'><source mode='bind' path='/tmp/s'/><target port='0'/></serial>"
        ),
        Some(SerialConfig::Unix {
            path: "/tmp/s".into(),
            listen: true
        })
    );
    assert_eq!(
        serial("<serial type='unix'><source mode='connect' path='/tmp/s'/></serial>"),
        Some(SerialConfig::Unix {
            path: "/tmp/s".into(),
            listen: false
        })
    );
    for t in ["tcp", "udp", "null", "vc", "spicevmc"] {
        let m = unsupported(&doc("", "", &format!("<serial type='{t}'/>")));
        assert!(m.contains(&format!("serial type '{t}'")), "{m}");
    }
}

#[test]
fn console_semantics() {
    let serial = |devices: &str| config(&doc("", "", devices)).unwrap().serial;
    // Only a console: it becomes COM1.
    assert_eq!(serial("<console type='pty'/>"), Some(SerialConfig::Pty));
    assert_eq!(
        serial("<console type='pty'><target type='serial' port='0'/></console>"),
        Some(SerialConfig::Pty)
    );
    // A serial console is a second view of the first serial; the serial's backend wins.
    assert_eq!(
        serial("<serial type='stdio'/><console type='pty'><target type='serial'/></console>"),
        Some(SerialConfig::Stdio)
    );
    let m = unsupported(&doc(
        "",
        "",
        "<console type='pty'><target type='virtio'/></console>",
    ));
    assert!(m.contains("target type 'virtio'"), "{m}");
    let m = unsupported(&doc("", "", "<serial type='pty'/><serial type='pty'/>"));
    assert!(m.contains("2 <serial> ports"), "{m}");
    let m = unsupported(&doc(
        "",
        "",
        "<serial type='pty'><target type='pci-serial'/></serial>",
    ));
    assert!(m.contains("'pci-serial'"), "{m}");
    let m = unsupported(&doc(
        "",
        "",
        "<serial type='pty'><target port='1'/></serial>",
    ));
    assert!(m.contains("serial port 1"), "{m}");
}

#[test]
fn devices() {
    for (dev, name) in [
        (
            "<disk type='network' device='disk'><source protocol='nbd' name='x'/><target dev='vda' bus='virtio'/></disk>",
            "disk 'vda': disk type 'network' is not supported",
        ),
        (
            "<interface type='user'/>",
            "interface type 'user' is not supported",
        ),
        (
            "<rng model='virtio'/>",
            "<rng> devices are not supported yet",
        ),
        (
            "<graphics type='vnc'/>",
            "<graphics> devices are not supported yet",
        ),
        ("<video/>", "<video> devices are not supported yet"),
        (
            "<memballoon model='xen'/>",
            "<memballoon model='xen'> is not supported",
        ),
        (
            "<input type='tablet' bus='usb'/>",
            "<input type='tablet' bus='usb'> devices are not supported yet",
        ),
    ] {
        let m = unsupported(&doc("", "", dev));
        assert!(m.contains(name), "{m}");
    }
}

#[test]
fn disks_in_target_order_with_driver_options() {
    let c = config(&doc(
        "",
        "",
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\
         <source file='/img/b.qcow2'/><backingStore type='file'><format type='raw'/><source file='/img/base.raw'/>\
         <backingStore/></backingStore><target dev='vdb' bus='virtio'/><serial>SER-B</serial><shareable/></disk>\
         <disk type='block' device='disk'><source dev='/dev/sdz'/><target dev='vda'/><readonly/></disk>\
         <disk type='file' device='cdrom'><source file='/img/x.iso'/><target dev='vdaa' bus='virtio'/></disk>",
    ))
    .unwrap();
    let targets: Vec<&str> = c.disks.iter().map(|d| d.target.as_str()).collect();
    assert_eq!(targets, ["vda", "vdb", "vdaa"]);
    let (a, b, cd) = (&c.disks[0], &c.disks[1], &c.disks[2]);
    assert_eq!(a.path, std::path::PathBuf::from("/dev/sdz"));
    assert!(a.read_only && a.format == ImageFormat::Raw && a.cache == CacheMode::Writeback);
    assert_eq!(
        (b.format, b.cache, b.discard_unmap, b.shareable),
        (ImageFormat::Qcow2, CacheMode::None, true, true)
    );
    assert_eq!(b.serial.as_deref(), Some("SER-B"));
    let backing = b.backing.as_ref().unwrap();
    assert_eq!(
        (backing.path.to_str(), backing.format),
        (Some("/img/base.raw"), ImageFormat::Raw)
    );
    assert!(backing.backing.is_none());
    assert!(cd.read_only, "a cdrom is a read-only disk");
}

#[test]
fn disks_refused() {
    let disk = |inner: &str| {
        doc(
            "",
            "",
            &format!("<disk type='file' device='disk'>{inner}</disk>"),
        )
    };
    assert!(
        unsupported(&disk("<source file='/a'/><target dev='sda' bus='sata'/>"))
            .contains("bus 'sata'")
    );
    assert!(unsupported(&disk("<source file='/a'/><target dev='sda'/>")).contains("bus 'scsi'"));
    assert!(unsupported(&disk("<target dev='vda'/>")).contains("without media"));
    assert!(unsupported(&disk(
        "<driver type='vmdk'/><source file='/a'/><target dev='vda'/>"
    ))
    .contains("'vmdk'"));
    assert!(
        refused(&disk("<source file='rel.img'/><target dev='vda'/>")).contains("must be absolute")
    );
    // A disk without a target, and duplicate targets, are refused at define (Domain::parse) already, as
    // libvirt does; launch never sees them.
    assert!(Domain::parse(&disk("<source file='/a'/>")).is_err());
    let two = doc(
        "",
        "",
        "<disk type='file'><source file='/a'/><target dev='vda'/></disk><disk type='file'><source file='/b'/><target dev='vda'/></disk>",
    );
    assert!(Domain::parse(&two).is_err());
    assert!(unsupported(&doc(
        "",
        "",
        "<disk type='volume'><source pool='p' volume='v'/><target dev='vda'/></disk>"
    ))
    .contains("type 'volume'"));
}

#[test]
fn virtio_mmio_on_the_command_line_is_opt_in_through_metadata() {
    assert!(!config(&doc("", "", "")).unwrap().virtio_mmio_on_cmdline);
    let meta = "<metadata><iv:vmm xmlns:iv='https://ironvirt.dev/xmlns/domain/1.0'><iv:virtio-mmio-cmdline/></iv:vmm></metadata>";
    assert!(config(&doc(meta, "", "")).unwrap().virtio_mmio_on_cmdline);
    let other_ns =
        "<metadata><x:vmm xmlns:x='urn:other'><x:virtio-mmio-cmdline/></x:vmm></metadata>";
    assert!(
        !config(&doc(other_ns, "", ""))
            .unwrap()
            .virtio_mmio_on_cmdline
    );
}

#[test]
fn memballoon_virtio() {
    assert_eq!(config(&doc("", "", "")).unwrap().balloon, None);
    let c = config(&doc(
        "",
        "",
        "<memballoon model='virtio' autodeflate='on'><stats period='10'/></memballoon>",
    ))
    .unwrap();
    assert_eq!(
        c.balloon,
        Some(ironvirt_vmm::BalloonConfig {
            stats_period: Some(10),
            deflate_on_oom: true
        })
    );
    assert!(unsupported(&doc(
        "",
        "",
        "<memballoon model='virtio' freePageReporting='on'/>"
    ))
    .contains("freePageReporting"));
    assert!(refused(&doc(
        "",
        "",
        "<memballoon model='virtio'><stats period='x'/></memballoon>"
    ))
    .contains("period"));
}

#[test]
fn interfaces() {
    let c = config(&doc(
        "",
        "",
        "<interface type='bridge'><mac address='52:54:00:aa:bb:cc'/><source bridge='br0'/><target dev='tap-x'/>\
         <model type='virtio'/><mtu size='9000'/><link state='down'/></interface>\
         <interface type='ethernet'><target dev='vnet7'/></interface>",
    ))
    .unwrap();
    assert_eq!(c.interfaces.len(), 2);
    let (a, b) = (&c.interfaces[0], &c.interfaces[1]);
    assert_eq!(a.mac, [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
    assert_eq!(a.attach, ironvirt_vmm::NetAttach::Bridge("br0".into()));
    assert_eq!(
        (a.tap_name.as_deref(), a.mtu, a.link_up),
        (Some("tap-x"), Some(9000), false)
    );
    assert_eq!(b.attach, ironvirt_vmm::NetAttach::Ethernet);
    assert_eq!(
        b.tap_name, None,
        "vnet names are generated by the kernel, as libvirt does"
    );
    assert_eq!(b.mac[..3], [0x52, 0x54, 0]);
    let e1000 = doc(
        "",
        "",
        "<interface type='ethernet'><model type='e1000'/></interface>",
    );
    assert!(unsupported(&e1000).contains("NIC model 'e1000'"));
    assert!(refused(&doc("", "", "<interface type='bridge'/>")).contains("<source bridge"));
    assert!(refused(&doc(
        "",
        "",
        "<interface type='ethernet'><mac address='zz'/></interface>"
    ))
    .contains("mac address"));
}

#[test]
fn pit_only_when_asked_for() {
    let pit = |clock: &str| config(&doc(clock, "", "")).unwrap().pit;
    assert!(!pit(""));
    assert!(!pit(
        "<clock offset='utc'><timer name='pit' tickpolicy='delay'/></clock>"
    ));
    assert!(!pit(
        "<clock offset='utc'><timer name='pit' present='no'/></clock>"
    ));
    assert!(pit("<clock offset='utc'><timer name='pit' present='yes'/><timer name='hpet' present='no'/></clock>"));
    let m = unsupported(&doc(
        "<clock offset='utc'><timer name='hpet' present='yes'/></clock>",
        "",
        "",
    ));
    assert!(m.contains("timer 'hpet'"), "{m}");
}
