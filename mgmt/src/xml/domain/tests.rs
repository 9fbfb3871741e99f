use super::*;
use ironvirt_vmm::LifecycleAction;

/// A minimal domain with `extra` spliced in before `<os>` and `os_extra` inside `<os>`.
fn doc(extra: &str, os_extra: &str) -> String {
    format!(
        "<domain type='kvm'>\n  <name>vm1</name>\n  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>\n  \
         <memory unit='MiB'>512</memory>\n{extra}\n  <os>\n    <type arch='x86_64'>hvm</type>{os_extra}\n  </os>\n</domain>"
    )
}

fn err(xml: &str) -> String {
    Domain::parse(xml)
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn defaults() {
    let d = Domain::parse(&doc("", "")).unwrap();
    assert_eq!(d.domain_type(), "kvm");
    assert_eq!(d.name(), "vm1");
    assert_eq!(d.id(), None);
    assert_eq!(d.memory().memory_bytes, 512 << 20);
    assert_eq!(d.memory().current_bytes, 512 << 20);
    assert_eq!(d.vcpus().max, 1);
    assert_eq!(d.vcpus().current, 1);
    assert!(d.cpu().is_none());
    let lc = d.lifecycle();
    assert_eq!(lc.on_poweroff, LifecycleAction::Destroy);
    assert_eq!(lc.on_reboot, LifecycleAction::Restart);
    assert_eq!(lc.on_crash, LifecycleAction::Destroy);
    assert_eq!(d.os().os_type, "hvm");
    assert_eq!(d.os().arch.as_deref(), Some("x86_64"));
}

#[test]
fn missing_uuid_is_generated_and_written() {
    let xml =
        "<domain type='kvm'><name>a</name><memory>1024</memory><os><type>hvm</type></os></domain>";
    let d = Domain::parse(xml).unwrap();
    let out = d.to_xml();
    assert!(out.contains(&format!(
        "  <name>a</name>\n  <uuid>{}</uuid>\n",
        d.uuid_string()
    )));
    let again = Domain::parse(&out).unwrap();
    assert_eq!(again.uuid(), d.uuid());
}

#[test]
fn uuid_forms() {
    for form in [
        "C7A5FDBDEDAF9455926AD65C16DB1809",
        " c7a5fdbd-edaf-9455-926a-d65c16db1809 ",
        "c7a5fdbdedaf-9455-926a-d65c16db1809",
    ] {
        let xml = doc("", "").replace("c7a5fdbd-edaf-9455-926a-d65c16db1809", form);
        let d = Domain::parse(&xml).unwrap();
        assert_eq!(d.uuid_string(), "c7a5fdbd-edaf-9455-926a-d65c16db1809");
        assert!(d
            .to_xml()
            .contains("<uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>"));
    }
    for bad in [
        "zzz",
        "c7a5fdbd-edaf-9455-926a-d65c16db18",
        "c7a5fdbd-edaf-9455-926a-d65c16db18091",
    ] {
        let xml = doc("", "").replace("c7a5fdbd-edaf-9455-926a-d65c16db1809", bad);
        assert_eq!(err(&xml), "internal error: malformed uuid element");
    }
}

#[test]
fn identity_errors() {
    assert_eq!(
        err(&doc("", "").replace("vm1", "")),
        "missing name information"
    );
    assert_eq!(
        err(&doc("", "").replace("<name>vm1</name>", "")),
        "missing name information"
    );
    assert_eq!(
        err(&doc("", "").replace("vm1", "a/b")),
        "XML error: name a/b cannot contain '/'"
    );
    assert_eq!(
        err(&doc("", "").replace(" type='kvm'", "")),
        "internal error: missing domain type attribute"
    );
    assert_eq!(
        err(&doc("", "").replace("type='kvm'", "type='foo'")),
        "unsupported configuration: invalid domain type foo"
    );
    assert!(err("<network/>").contains("unexpected root element <network>"));
}

#[test]
fn title_description_and_setters() {
    let mut d = Domain::parse(&doc("  <title>T &amp; t</title>", "")).unwrap();
    assert_eq!(d.title(), Some("T & t"));
    d.set_description(Some("about <this>"));
    d.set_title(None);
    d.set_name("vm2").unwrap();
    assert!(d.set_name("x/y").is_err());
    let again = Domain::parse(&d.to_xml()).unwrap();
    assert_eq!(again.title(), None);
    assert_eq!(again.description(), Some("about <this>"));
    assert_eq!(again.name(), "vm2");
}

#[test]
fn memory_units_and_current() {
    let xml = doc("", "").replace(
        "<memory unit='MiB'>512</memory>",
        "<memory unit='G'>2</memory><currentMemory unit='MiB'>1024</currentMemory>",
    );
    let d = Domain::parse(&xml).unwrap();
    assert_eq!(d.memory().memory_bytes, 2 << 30);
    assert_eq!(d.memory().current_bytes, 1 << 30);
    // Default unit is KiB; bytes round up to whole KiB.
    let d = Domain::parse(
        &doc("", "").replace("<memory unit='MiB'>512</memory>", "<memory>4</memory>"),
    )
    .unwrap();
    assert_eq!(d.memory().memory_bytes, 4096);
    let d = Domain::parse(&doc("", "").replace("unit='MiB'>512", "unit='b'>1000")).unwrap();
    assert_eq!(d.memory().memory_bytes, 1024);
    // As libvirt: a currentMemory above memory is clamped, not refused.
    let d = Domain::parse(&doc("<currentMemory unit='GiB'>4</currentMemory>", "")).unwrap();
    assert_eq!(d.memory().current_bytes, 512 << 20);
}

#[test]
fn memory_errors() {
    let no_mem =
        "XML error: Memory size must be specified via <memory> or in the <numa> configuration";
    assert_eq!(
        err(&doc("", "").replace("<memory unit='MiB'>512</memory>", "")),
        no_mem
    );
    assert_eq!(
        err(&doc("", "").replace("unit='MiB'>512", "unit='MiB'>0")),
        no_mem
    );
    assert_eq!(
        err(&doc("", "").replace("unit='MiB'>512", ">abc")),
        "XML error: Invalid value 'abc' for element or attribute './memory[1]'"
    );
    assert_eq!(
        err(&doc("", "").replace("unit='MiB'>512", "unit='EiB'>100")),
        "numerical overflow: value too large: 100EiB"
    );
    assert_eq!(
        err(&doc("", "").replace("unit='MiB'", "unit='XB'")),
        "invalid argument: unknown suffix 'XB'"
    );
}

#[test]
fn vcpus_and_topology() {
    let d = Domain::parse(&doc(
        "<vcpu placement='static' current='2' cpuset='0-3,^1'>4</vcpu>\
         <cpu mode='host-passthrough'><topology sockets='1' dies='1' cores='2' threads='2'/></cpu>",
        "",
    ))
    .unwrap();
    assert_eq!(d.vcpus().max, 4);
    assert_eq!(d.vcpus().current, 2);
    assert_eq!(d.vcpus().placement, Some(Placement::Static));
    assert_eq!(d.vcpus().cpuset.as_deref(), Some("0-3,^1"));
    let cpu = d.cpu().unwrap();
    assert_eq!(cpu.mode.as_deref(), Some("host-passthrough"));
    let t = cpu.topology.unwrap();
    assert_eq!(
        (t.sockets, t.dies, t.clusters, t.cores, t.threads),
        (1, 1, 1, 2, 2)
    );
    assert_eq!(parse_bitmap("0-3,^1,8").unwrap(), vec![0, 2, 3, 8]);
}

#[test]
fn vcpu_errors() {
    let cases = [
        ("<vcpu current='4'>2</vcpu>", "unsupported configuration: maximum vCPU count must not be less than current vCPU count"),
        ("<vcpu>x</vcpu>", "XML error: maximum vcpus count must be an integer"),
        ("<vcpu current='x'>2</vcpu>", "XML error: current vcpus count must be an integer"),
        ("<vcpu cpuset='aaa'>2</vcpu>", "invalid argument: Failed to parse bitmap 'aaa'"),
        ("<vcpu cpuset='3-1'>2</vcpu>", "invalid argument: Failed to parse bitmap '3-1'"),
        ("<vcpu placement='foo'>2</vcpu>", "XML error: Invalid value for attribute 'placement' in element 'vcpu': 'foo'."),
        ("<vcpu>2</vcpu><cpu><topology sockets='1' cores='1' threads='1'/></cpu>", "unsupported configuration: CPU topology doesn't match maximum vcpu count"),
        ("<vcpu>2</vcpu><cpu><topology sockets='2' cores='1'/></cpu>", "XML error: Missing required attribute 'threads' in element 'topology'"),
        ("<vcpu>2</vcpu><cpu><topology sockets='0' cores='1' threads='2'/></cpu>", "XML error: Invalid value for attribute 'sockets' in element 'topology': Zero is not permitted"),
        ("<cpu mode='weird'/>", "XML error: Invalid value for attribute 'mode' in element 'cpu': 'weird'."),
    ];
    for (extra, message) in cases {
        assert_eq!(err(&doc(extra, "")), message, "{extra}");
    }
    assert!(err(&doc("<vcpu>0</vcpu>", "")).contains("at least one vCPU"));
}

#[test]
fn os_boot() {
    let d = Domain::parse(&doc(
        "",
        "<kernel>/boot/vmlinuz</kernel><initrd>/boot/initrd</initrd><cmdline>console=ttyS0  quiet</cmdline><boot dev='hd'/><boot dev='network'/>",
    ))
    .unwrap();
    let os = d.os();
    assert_eq!(os.kernel.as_deref(), Some("/boot/vmlinuz"));
    assert_eq!(os.initrd.as_deref(), Some("/boot/initrd"));
    assert_eq!(os.cmdline.as_deref(), Some("console=ttyS0  quiet"));
    assert_eq!(os.boot_devices, ["hd", "network"]);
    assert_eq!(
        err(&doc("", "<boot dev='floppy'/>")),
        "XML error: unknown boot device 'floppy'"
    );
    assert_eq!(
        err(&doc("", "").replace("<type arch='x86_64'>hvm</type>", "")),
        "XML error: an os <type> must be specified"
    );
}

#[test]
fn lifecycle_actions() {
    let d = Domain::parse(&doc(
        "<on_poweroff>restart</on_poweroff><on_reboot>rename-restart</on_reboot><on_crash>coredump-destroy</on_crash>",
        "",
    ))
    .unwrap();
    let lc = d.lifecycle();
    assert_eq!(lc.on_poweroff, LifecycleAction::Restart);
    assert_eq!(lc.on_reboot, LifecycleAction::RenameRestart);
    assert_eq!(lc.on_crash, LifecycleAction::CoredumpDestroy);
    assert_eq!(
        err(&doc("<on_poweroff>foo</on_poweroff>", "")),
        "unsupported configuration: unknown on_poweroff action: foo"
    );
    assert_eq!(
        err(&doc("<on_poweroff>coredump-destroy</on_poweroff>", "")),
        "unsupported configuration: Lifecycle event 'poweroff' doesn't support 'coredump-destroy' action"
    );
    assert_eq!(
        err(&doc("<on_reboot>coredump-restart</on_reboot>", "")),
        "unsupported configuration: Lifecycle event 'reboot' doesn't support 'coredump-restart' action"
    );
}

#[test]
fn chardevs_and_devices() {
    let d = Domain::parse(&doc(
        "<devices><emulator>/usr/bin/qemu</emulator>\
         <serial type='file'><source path='/tmp/log' append='on'/><target type='isa-serial' port='0'/></serial>\
         <console><target type='serial'/></console><disk type='file'/></devices>",
        "",
    ))
    .unwrap();
    let s = &d.serials()[0];
    assert_eq!(s.kind, ChardevType::File);
    assert_eq!(s.source_path.as_deref(), Some("/tmp/log"));
    assert_eq!(s.source_append, Some(true));
    assert_eq!(s.target_type.as_deref(), Some("isa-serial"));
    assert_eq!(s.target_port, Some(0));
    assert_eq!(d.consoles()[0].kind, ChardevType::Pty);
    let names: Vec<_> = d.devices().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["emulator", "serial", "console", "disk"]);
    assert_eq!(
        err(&doc(
            "<devices><serial type='unix'><target type='pci-serial'/></serial></devices>",
            ""
        )),
        "internal error: Missing source path attribute for char device"
    );
    assert_eq!(
        err(&doc("<devices><serial type='bogus'/></devices>", "")),
        "XML error: unknown type presented to host for character device: bogus"
    );
    assert_eq!(
        err(&doc("<devices><disk><boot order='1'/></disk></devices>", "<boot dev='hd'/>")),
        "unsupported configuration: per-device boot elements cannot be used together with os/boot elements"
    );
}

#[test]
fn unknown_elements_survive() {
    let xml = doc(
        "  <qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:arg value='-x'/></qemu:commandline>\n  <!-- keep me -->",
        "",
    );
    let d = Domain::parse(&xml).unwrap();
    let out = d.to_xml();
    assert!(out.contains("<qemu:arg value='-x'/>"), "{out}");
    assert!(out.contains("<!-- keep me -->"), "{out}");
    let again = Domain::parse(&out).unwrap();
    assert!(again.document().root.same_content(&d.document().root));
}

#[test]
fn xml_errors_pass_through_with_position() {
    let e = Domain::parse("<domain type='kvm'>\n  <name>x</vcpu>\n</domain>").unwrap_err();
    assert_eq!(
        e.to_string(),
        "XML error at line 2, column 10: mismatched closing tag: expected </name>, found </vcpu>"
    );
}
