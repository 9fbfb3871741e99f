//! `ironvirt` monitoring and resource commands against running tiny guests, and the console.

mod cli;
mod support;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cli::*;

#[test]
fn vcpu_and_cpu_figures_come_from_the_running_vm() {
    let h = Host::new("cli-vcpus");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("busy", &kernel, 2);
    h.run(&["define", xml.to_str().unwrap()]).ok();

    // Inactive: configuration only.
    assert_eq!(
        h.run(&["vcpucount", "busy"]).ok().stdout,
        "maximum      config         2\ncurrent      config         2\n\n"
    );
    h.run(&["start", "busy"]).ok();
    assert_eq!(
        h.run(&["vcpucount", "busy"]).ok().stdout,
        "maximum      config         2\nmaximum      live           2\ncurrent      config         2\ncurrent      live           2\n\n"
    );
    assert_eq!(
        h.run(&["vcpucount", "busy", "--maximum", "--live"])
            .ok()
            .stdout,
        "2\n\n"
    );
    std::thread::sleep(Duration::from_millis(200));

    let info = h.run(&["vcpuinfo", "busy"]).ok().stdout;
    let blocks: Vec<&str> = info.trim_end().split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{info}");
    assert!(
        blocks[0].starts_with("VCPU:           0\nCPU:            "),
        "{info}"
    );
    assert!(
        blocks[1].contains("State:          running\nCPU time:       "),
        "{info}"
    );
    // The guest spins, so its vCPUs have used CPU time.
    let secs: f64 = blocks[0]
        .lines()
        .find_map(|l| l.strip_prefix("CPU time:       "))
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .unwrap();
    assert!(secs > 0.0, "{info}");

    let pins = h.run(&["vcpupin", "busy"]).ok().stdout;
    assert!(
        pins.starts_with(" VCPU   CPU Affinity\n----------------------\n 0      "),
        "{pins}"
    );
    h.run(&["vcpupin", "busy", "1", "0"]).ok();
    let pins = h.run(&["vcpupin", "busy", "--vcpu", "1"]).ok().stdout;
    assert_eq!(
        pins,
        " VCPU   CPU Affinity\n----------------------\n 1      0\n\n"
    );
    let info = h.run(&["vcpuinfo", "busy", "--pretty"]).ok().stdout;
    let vcpu1 = info.split("\n\n").nth(1).unwrap_or_default();
    assert!(
        vcpu1.ends_with("CPU Affinity:   0\n") || vcpu1.ends_with("CPU Affinity:   0"),
        "{info}"
    );

    let stats = h.run(&["cpu-stats", "busy", "--total"]).ok().stdout;
    assert!(stats.starts_with("Total:\n\tcpu_time    "), "{stats}");
    assert!(
        stats.contains("\tuser_time   ") && stats.contains("\tsystem_time "),
        "{stats}"
    );

    let ds = h.run(&["domstats", "busy"]).ok().stdout;
    for key in [
        "Domain: 'busy'\n",
        "  state.state=1\n  state.reason=1\n",
        "  cpu.time=",
        "  balloon.current=32768\n  balloon.maximum=32768\n",
        "  vcpu.current=2\n  vcpu.maximum=2\n",
        "  vcpu.1.time=",
        "  net.count=0\n",
        "  block.count=0\n",
    ] {
        assert!(ds.contains(key), "{key:?} missing from\n{ds}");
    }
    let ds = h.run(&["domstats", "--state", "busy"]).ok().stdout;
    assert_eq!(ds, "Domain: 'busy'\n  state.state=1\n  state.reason=1\n\n");

    let info = h.run(&["dominfo", "busy"]).ok().stdout;
    assert!(info.contains("\nCPU time:       "), "{info}");
    let mem = h.run(&["dommemstat", "busy"]).ok().stdout;
    assert!(mem.starts_with("actual 32768\nrss "), "{mem}");

    // Live changes need hotplug, and a balloon this domain lacks: clear errors. Config changes work.
    let r = h.run(&["setvcpus", "busy", "1", "--live"]).fails();
    assert!(r.stderr.contains("Operation not supported: changing the vCPU count of a running domain needs vCPU hotplug"), "{}", r.stderr);
    let r = h.run(&["setmem", "busy", "16M"]).fails();
    assert!(
        r.stderr.contains("without the balloon device"),
        "{}",
        r.stderr
    );
    h.run(&["setvcpus", "busy", "1", "--config"]).ok();
    h.run(&["setmem", "busy", "16M", "--config"]).ok();
    let cfg = h.run(&["dumpxml", "--inactive", "busy"]).ok().stdout;
    assert!(
        cfg.contains("<vcpu placement='static' current='1'>2</vcpu>"),
        "{cfg}"
    );
    assert!(
        cfg.contains("<currentMemory unit='KiB'>16384</currentMemory>"),
        "{cfg}"
    );
    let r = h.run(&["setvcpus", "busy", "3", "--config"]).fails();
    assert!(
        r.stderr.contains(
            "requested vcpus is greater than max allowable vcpus for the persistent domain: 3 > 2"
        ),
        "{}",
        r.stderr
    );
    h.run(&["setvcpus", "busy", "4", "--config", "--maximum"])
        .ok();
    h.run(&["setmaxmem", "busy", "64M", "--config"]).ok();
    let cfg = h.run(&["dumpxml", "--inactive", "busy"]).ok().stdout;
    assert!(
        cfg.contains("<vcpu placement='static' current='1'>4</vcpu>"),
        "{cfg}"
    );
    assert!(cfg.contains("<memory unit='KiB'>65536</memory>"), "{cfg}");
    // The running VM keeps its live definition.
    assert_eq!(
        h.run(&["vcpucount", "busy", "--active", "--live"])
            .ok()
            .stdout,
        "2\n\n"
    );

    // No disks or NICs run yet: virsh's empty tables.
    assert_eq!(
        h.run(&["domblklist", "busy"]).ok().stdout,
        " Target   Source\n------------------\n\n"
    );
    assert_eq!(
        h.run(&["domiflist", "busy"]).ok().stdout,
        " Interface   Type   Source   Model   MAC\n------------------------------------------\n\n"
    );
    let r = h.run(&["domifstat", "busy", "vnet0"]).fails();
    assert!(
        r.stderr.contains("'vnet0' is not a known interface"),
        "{}",
        r.stderr
    );
    h.run(&["destroy", "busy"]).ok();
}

#[test]
fn console_shows_guest_output_and_detaches_on_ctrl_bracket() {
    let h = Host::new("cli-console");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("talk", &kernel, 1);
    h.run(&["define", xml.to_str().unwrap()]).ok();
    h.run(&["start", "talk"]).ok();
    let mut child = h
        .command()
        .args(["console", "talk"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    // The guest echoes what it receives: type until the echo comes back.
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(b"hello-console\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // A second session is refused while this one is attached.
    let r = h.run(&["console", "talk"]).fails();
    assert!(
        r.stderr
            .contains("Active console session exists for this domain"),
        "{}",
        r.stderr
    );
    stdin.write_all(&[0x1d]).unwrap();
    stdin.flush().unwrap();
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    assert!(status.success(), "{out}");
    assert!(
        out.starts_with("Connected to domain 'talk'\nEscape character is ^] (Ctrl + ])\n"),
        "{out:?}"
    );
    assert!(out.contains("hello-console"), "{out:?}");
    h.run(&["destroy", "talk"]).ok();
}

#[test]
fn console_of_a_shut_off_domain_fails() {
    let h = Host::new("cli-console-off");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("off", &kernel, 1);
    h.run(&["define", xml.to_str().unwrap()]).ok();
    let r = h.run(&["console", "off"]).fails();
    assert_eq!(
        r.stderr,
        "error: Requested operation is not valid: domain is not running\n"
    );
}
