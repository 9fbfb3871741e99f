//! A tiny guest sends and receives frames through virtio-net and a TAP device, inside a network namespace this
//! test creates (nothing touches the machine's own interfaces): host → guest UDP, guest → host UDP, traffic
//! counters, and a link-down the guest observes in its config space.

#[path = "support/mod.rs"]
mod support;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use ironvirt_vmm::{
    BootConfig, CpuTopology, LifecycleAction, NetAttach, NetConfig, SerialConfig, Vm, VmConfig,
    VmExit,
};
use support::virtio::*;
use support::*;

const MIB: u64 = 1 << 20;
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const HOST_MAC: &str = "02:00:00:00:00:01";
const TAP: &str = "ivtap0";
const RX: u32 = 0;
const TX: u32 = 1;
const RX_BUFS: u32 = 0x28_0000;
const TX_FRAME: u32 = 0x29_0000;
const VNET_HDR: usize = 12;
const F_MAC: u32 = 1 << 5;
const F_STATUS: u32 = 1 << 16;

/// An Ethernet/IPv4/UDP frame from the guest (10.99.0.2) to the host (10.99.0.1), port 7777.
fn guest_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
        10,
        99,
        0,
        2,
        10,
        99,
        0,
        1,
    ];
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let folded = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&folded.to_be_bytes());
    f.extend_from_slice(&ip);
    let udp_len = (8 + payload.len()) as u16;
    f.extend_from_slice(&7777u16.to_be_bytes());
    f.extend_from_slice(&7777u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    f.extend_from_slice(payload);
    f
}

fn guest() -> Vec<u8> {
    let mut d = Driver::new(2);
    d.check(
        |a| a.cmp(dword_ptr(MMIO + 8), 1u32).unwrap(),
        "net device ok\n",
        "device id BAD\n",
    );
    d.setup(F_MAC | F_STATUS);
    d.check(
        |a| {
            a.cmp(
                dword_ptr(MMIO + 0x100),
                u32::from_le_bytes([0x52, 0x54, 0, 0x12]),
            )
            .unwrap()
        },
        "mac ok\n",
        "mac BAD\n",
    );
    // Four 2 KiB receive buffers.
    for i in 0..4u32 {
        d.desc(RX, i, u64::from(RX_BUFS + i * 0x800), 0x800, WRITE, 0);
        d.a().mov(word_ptr(avail_ring(RX) + 4 + 2 * i), i).unwrap();
    }
    d.a().mov(word_ptr(avail_ring(RX) + 2), 4u32).unwrap();
    d.reg_write(0x50, RX);
    d.g.print("ready\n");
    // Wait (bounded) for a frame; the UDP payload starts after the vnet header and 42 bytes of headers.
    d.a().mov(ecx, 400_000_000u32).unwrap();
    let mut poll = d.a().create_label();
    let mut got = d.a().create_label();
    d.a().set_label(&mut poll).unwrap();
    d.a().cmp(word_ptr(used_ring(RX) + 2), 0u32).unwrap();
    d.a().jne(got).unwrap();
    d.a().pause().unwrap();
    d.a().dec(ecx).unwrap();
    d.a().jnz(poll).unwrap();
    d.a().set_label(&mut got).unwrap();
    let payload_at = RX_BUFS + (VNET_HDR + 42) as u32;
    d.check(
        |a| {
            a.cmp(dword_ptr(payload_at), u32::from_le_bytes(*b"PING"))
                .unwrap()
        },
        "received ok\n",
        "received BAD\n",
    );
    // Send: 12 zero bytes of vnet header, then the frame the host test placed in the image.
    let frame_len = (VNET_HDR + guest_frame(b"PONG-FROM-GUEST").len()) as u32;
    d.desc(TX, 0, u64::from(TX_FRAME), frame_len, 0, 0);
    d.submit_and_wait(TX);
    d.g.print("sent\n");
    // Wait for the host to take the link down.
    d.a().mov(ecx, 400_000_000u32).unwrap();
    let mut link = d.a().create_label();
    let mut down = d.a().create_label();
    d.a().set_label(&mut link).unwrap();
    d.a().test(word_ptr(MMIO + 0x106), 1u32).unwrap();
    d.a().jz(down).unwrap();
    d.a().pause().unwrap();
    d.a().dec(ecx).unwrap();
    d.a().jnz(link).unwrap();
    d.a().set_label(&mut down).unwrap();
    d.check(
        |a| a.cmp(word_ptr(MMIO + 0x106), 0u32).unwrap(),
        "link down seen\n",
        "link still up\n",
    );
    d.g.power_off();
    let mut image = d.g.assemble(LOAD_ADDR);
    // The frame to send lives in the image at TX_FRAME.
    let offset = (u64::from(TX_FRAME) - LOAD_ADDR) as usize;
    assert!(image.len() <= offset);
    image.resize(offset, 0);
    image.extend_from_slice(&[0u8; VNET_HDR]);
    image.extend_from_slice(&guest_frame(b"PONG-FROM-GUEST"));
    image
}

/// A network namespace that is deleted when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("ivtest-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("running ip");
        assert!(
            out.status.success(),
            "this test needs root and iproute2 to create a network namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // IPv6 autoconfiguration would send the guest router solicitations before the test's own frame.
        for key in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            let _ = Command::new("ip")
                .args(["netns", "exec", &name, "sysctl", "-qw", key])
                .status();
        }
        Netns(name)
    }

    /// Moves the calling thread into the namespace (network namespaces are per thread).
    fn enter(&self) {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.0)).unwrap();
        // SAFETY: setns on a namespace file we just opened; it only affects this thread.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "ip"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn tiny_guest_exchanges_frames_over_virtio_net() {
    let ns = Netns::new();
    let dir = scratch_dir("virtio-net");
    let kernel = write_file(&dir, "guest.elf", &pvh_elf(&guest()));
    let log = dir.join("serial.log");
    let config = VmConfig {
        name: "net".into(),
        uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
        memory_bytes: 64 * MIB,
        current_memory_bytes: 64 * MIB,
        vcpus: 1,
        max_vcpus: 1,
        topology: CpuTopology::flat(1),
        boot: BootConfig {
            kernel,
            initrd: None,
            cmdline: String::new(),
        },
        on_poweroff: LifecycleAction::Destroy,
        on_reboot: LifecycleAction::Destroy,
        on_crash: LifecycleAction::Destroy,
        serial: Some(SerialConfig::File {
            path: log.clone(),
            append: false,
        }),
        disks: Vec::new(),
        virtio_mmio_on_cmdline: false,
        balloon: None,
        interfaces: vec![NetConfig {
            mac: GUEST_MAC,
            tap_name: Some(TAP.into()),
            attach: NetAttach::Ethernet,
            mtu: None,
            link_up: true,
        }],
        pit: false,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let ns_name = ns.0.clone();
    let runner = std::thread::spawn(move || {
        Netns(ns_name.clone()).enter_and_forget();
        let mut vm = Vm::new(config, Instant::now()).expect("creating the VM (and its TAP)");
        tx.send(vm.handle()).unwrap();
        vm.run()
    });
    let handle = rx.recv().expect("the VM thread failed to start the VM");
    assert_eq!(handle.interfaces()[0].tap, TAP);
    let console = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the guest's driver", || console().contains("ready\n"));

    ns.ip(&["link", "set", TAP, "address", HOST_MAC]);
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", TAP]);
    ns.ip(&[
        "neigh",
        "replace",
        "10.99.0.2",
        "lladdr",
        "52:54:00:12:34:56",
        "dev",
        TAP,
    ]);
    ns.enter();
    let sock = UdpSocket::bind("10.99.0.1:7777").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.send_to(b"PING-FROM-HOST", "10.99.0.2:7777").unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("no datagram from the guest");
    assert_eq!(&buf[..n], b"PONG-FROM-GUEST");
    assert_eq!(from.to_string(), "10.99.0.2:7777");
    wait_for("the guest's send", || console().contains("sent\n"));

    let nic = &handle.interfaces()[0];
    let stats = nic.stats();
    assert!(stats.rx_packets >= 1 && stats.tx_packets >= 1, "{stats:?}");
    assert!(
        stats.rx_bytes >= 42 + 14 && stats.tx_bytes >= 42 + 15,
        "{stats:?}"
    );
    assert!(nic.link_up());
    nic.set_link(false).unwrap();
    assert_eq!(runner.join().unwrap().unwrap(), VmExit::PoweredOff);
    assert_eq!(
        console(),
        "net device ok\nfeatures ok\nmac ok\nready\nreceived ok\nsent\nlink down seen\n"
    );
    drop(ns);
}

impl Netns {
    /// Enters the namespace without taking ownership of its deletion.
    fn enter_and_forget(self) {
        self.enter();
        std::mem::forget(self);
    }
}
