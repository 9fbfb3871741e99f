//! Domain XML parse and serialize for a large domain (every device kind libvirt's tests use, many disks and
//! interfaces), the work `define`, `dumpxml` and every CLI invocation that reads the store do.

use criterion::{criterion_group, criterion_main, Criterion};
use ironvirt_mgmt::xml::Domain;

fn large_domain() -> String {
    let mut devices = String::new();
    for i in 0..64 {
        let letter = |n: usize| -> String {
            let mut s = String::new();
            let mut n = n + 1;
            while n > 0 {
                n -= 1;
                s.insert(0, (b'a' + (n % 26) as u8) as char);
                n /= 26;
            }
            s
        };
        devices.push_str(&format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\
             <source file='/var/lib/ironvirt/images/disk{i}.qcow2'/><backingStore type='file'><format type='raw'/>\
             <source file='/var/lib/ironvirt/images/base{i}.raw'/></backingStore><target dev='vd{}' bus='virtio'/>\
             <serial>SERIAL-{i}</serial></disk>\n",
            letter(i)
        ));
        devices.push_str(&format!(
            "<interface type='bridge'><mac address='52:54:00:00:{:02x}:{:02x}'/><source bridge='br0'/>\
             <model type='virtio'/><mtu size='9000'/></interface>\n",
            i / 256,
            i % 256
        ));
    }
    format!(
        "<domain type='kvm'><name>large</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>\
         <title>A large domain</title><description>&lt;benchmark&gt;</description>\
         <memory unit='GiB'>16</memory><currentMemory unit='GiB'>8</currentMemory><vcpu current='8'>32</vcpu>\
         <cpu mode='host-passthrough'><topology sockets='2' dies='1' clusters='1' cores='8' threads='2'/></cpu>\
         <os><type arch='x86_64' machine='q35'>hvm</type><kernel>/boot/vmlinuz</kernel><initrd>/boot/initrd</initrd>\
         <cmdline>console=ttyS0 root=/dev/vda</cmdline></os><on_poweroff>destroy</on_poweroff>\
         <on_reboot>restart</on_reboot><on_crash>destroy</on_crash><devices>{devices}\
         <serial type='pty'><target port='0'/></serial><console type='pty'><target type='serial' port='0'/></console>\
         <memballoon model='virtio'><stats period='10'/></memballoon></devices></domain>"
    )
}

fn bench(c: &mut Criterion) {
    let xml = large_domain();
    let domain = Domain::parse(&xml).expect("the benchmark domain parses");
    c.bench_function("domain xml parse (64 disks + 64 nics)", |b| {
        b.iter(|| Domain::parse(&xml).unwrap())
    });
    c.bench_function("domain xml serialize (64 disks + 64 nics)", |b| {
        b.iter(|| domain.to_xml())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
