//! `ironvirt` end to end with tiny guests on this machine's /dev/kvm: every state transition and
//! error path of the domain lifecycle, through the real binaries and a hermetic store.

mod cli;
mod support;

use std::time::Duration;

use cli::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn define_start_suspend_resume_shutdown_destroy_undefine() {
    let h = Host::new("cli-lifecycle");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("tiny", &kernel, 2);
    let xml = xml.to_str().unwrap();

    let r = h.run(&["define", xml]).ok();
    assert_eq!(r.stdout, format!("Domain 'tiny' defined from {xml}\n\n"));
    assert_eq!(h.state("tiny"), "shut off (unknown)");
    let r = h.run(&["list", "--all"]).ok();
    assert_eq!(
        r.stdout,
        " Id   Name   State\n-----------------------\n -    tiny   shut off\n\n"
    );
    assert_eq!(
        h.run(&["list"]).ok().stdout,
        " Id   Name   State\n--------------------\n\n"
    );

    let r = h.run(&["start", "tiny"]).ok();
    assert_eq!(r.stdout, "Domain 'tiny' started\n\n");
    assert_eq!(h.state("tiny"), "running (booted)");
    assert_eq!(
        h.run(&["list"]).ok().stdout,
        " Id   Name   State\n----------------------\n 1    tiny   running\n\n"
    );
    assert_eq!(h.run(&["domid", "tiny"]).ok().stdout, "1\n\n");
    assert_eq!(h.run(&["domname", "1"]).ok().stdout, "tiny\n\n");
    let r = h.run(&["start", "tiny"]).fails();
    assert_eq!(r.stderr, "error: Domain is already active\n");

    let info = h.run(&["dominfo", "tiny"]).ok().stdout;
    assert!(
        info.starts_with("Id:             1\nName:           tiny\n"),
        "{info}"
    );
    assert!(
        info.contains("State:          running\nCPU(s):         2\n"),
        "{info}"
    );
    assert!(info
        .contains("Max memory:     32768 KiB\nUsed memory:    32768 KiB\nPersistent:     yes\n"));

    let live = h.run(&["dumpxml", "tiny"]).ok().stdout;
    assert!(live.starts_with("<domain type='kvm' id='1'>"), "{live}");
    assert!(live.contains("<source path='/dev/pts/"), "{live}");
    let inactive = h.run(&["dumpxml", "--inactive", "tiny"]).ok().stdout;
    assert!(inactive.starts_with("<domain type='kvm'>"), "{inactive}");
    assert!(!inactive.contains("/dev/pts/"));

    assert_eq!(
        h.run(&["suspend", "tiny"]).ok().stdout,
        "Domain 'tiny' suspended\n\n"
    );
    assert_eq!(h.state("tiny"), "paused (user)");
    assert_eq!(
        h.run(&["list", "--state-paused", "--name"]).ok().stdout,
        "tiny\n\n"
    );
    assert_eq!(
        h.run(&["resume", "tiny"]).ok().stdout,
        "Domain 'tiny' resumed\n\n"
    );
    assert_eq!(h.state("tiny"), "running (unpaused)");
    let r = h.run(&["resume", "tiny"]).fails();
    assert_eq!(
        r.stderr,
        "error: Failed to resume domain 'tiny'\nerror: Requested operation is not valid: domain is not paused\n"
    );

    // The guest polls the GED status register and powers off when the button is pressed.
    assert_eq!(
        h.run(&["shutdown", "tiny"]).ok().stdout,
        "Domain 'tiny' is being shutdown\n\n"
    );
    h.wait_state("tiny", "shut off (shutdown)", T);
    assert_eq!(h.run(&["domid", "tiny"]).ok().stdout, "-\n\n");
    let r = h.run(&["shutdown", "tiny"]).fails();
    assert_eq!(
        r.stderr,
        "error: Failed to shutdown domain 'tiny'\nerror: Requested operation is not valid: domain is not running\n"
    );

    // Ids keep increasing, like libvirt's.
    h.run(&["start", "tiny"]).ok();
    assert_eq!(h.run(&["domid", "tiny"]).ok().stdout, "2\n\n");
    assert_eq!(
        h.run(&["destroy", "tiny"]).ok().stdout,
        "Domain 'tiny' destroyed\n\n"
    );
    assert_eq!(h.state("tiny"), "shut off (destroyed)");
    let r = h.run(&["destroy", "tiny"]).fails();
    assert_eq!(
        r.stderr,
        "error: Failed to destroy domain 'tiny'\nerror: Requested operation is not valid: domain is not running\n"
    );

    assert_eq!(
        h.run(&["undefine", "tiny"]).ok().stdout,
        "Domain 'tiny' has been undefined\n\n"
    );
    let r = h.run(&["dominfo", "tiny"]).fails();
    assert_eq!(r.stderr, "error: failed to get domain 'tiny'\n");
    assert_eq!(r.stdout, "\n");
}

#[test]
fn vmm_killed_shows_crashed_and_is_cleaned_up() {
    let h = Host::new("cli-crash");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("victim", &kernel, 1);
    h.run(&["define", xml.to_str().unwrap()]).ok();
    h.run(&["start", "victim"]).ok();
    let pid = h.pid_of("victim").expect("pid file");
    // SAFETY: kill on the VMM this test started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    h.wait_state("victim", "shut off (crashed)", T);
    for ext in ["pid", "ctl", "xml", "def"] {
        assert!(
            !h.run_dir().join(format!("victim.{ext}")).exists(),
            "victim.{ext} left behind"
        );
    }
    // It starts again normally.
    h.run(&["start", "victim"]).ok();
    assert_eq!(h.state("victim"), "running (booted)");
    h.run(&["destroy", "victim"]).ok();
}

#[test]
fn truly_concurrent_starts_one_succeeds_rest_report_active() {
    let h = Host::new("cli-race");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("race", &kernel, 1);
    h.run(&["define", xml.to_str().unwrap()]).ok();
    let procs: Vec<_> = (0..4)
        .map(|_| {
            h.command()
                .args(["start", "race"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = procs
        .into_iter()
        .map(|p| p.wait_with_output().unwrap())
        .collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "{outs:?}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("already active") || e.contains("already running"),
            "{e}"
        );
    }
    // Exactly one ironvirt-vmm runs this domain.
    let vmms = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let c = String::from_utf8_lossy(c);
            c.contains("ironvirt-vmm") && c.contains(&h.root.display().to_string())
        })
        .count();
    assert_eq!(vmms, 1);
    h.run(&["destroy", "race"]).ok();
}

#[test]
fn undefine_running_domain_makes_it_transient() {
    let h = Host::new("cli-transient");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("fleeting", &kernel, 1);
    h.run(&["define", xml.to_str().unwrap()]).ok();
    h.run(&["start", "fleeting"]).ok();
    h.run(&["undefine", "fleeting"]).ok();
    let info = h.run(&["dominfo", "fleeting"]).ok().stdout;
    assert!(info.contains("Persistent:     no\n"), "{info}");
    assert_eq!(
        h.run(&["list", "--transient", "--name"]).ok().stdout,
        "fleeting\n\n"
    );
    assert_eq!(h.run(&["list", "--persistent", "--name"]).ok().stdout, "\n");
    let r = h.run(&["undefine", "fleeting"]).fails();
    assert!(
        r.stderr.contains("cannot undefine transient domain"),
        "{}",
        r.stderr
    );
    let r = h.run(&["autostart", "fleeting"]).fails();
    assert!(r.stderr.contains("transient"), "{}", r.stderr);
    // A transient domain is gone once its VM ends.
    h.run(&["shutdown", "fleeting"]).ok();
    let start = std::time::Instant::now();
    while h.run(&["dominfo", "fleeting"]).status == 0 {
        assert!(start.elapsed() < T, "transient domain did not go away");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(h.run(&["list", "--all", "--name"]).ok().stdout, "\n");
}

#[test]
fn create_runs_a_transient_domain() {
    let h = Host::new("cli-create");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("temp", &kernel, 1);
    let xml = xml.to_str().unwrap();
    let r = h.run(&["create", xml, "--paused"]).ok();
    assert_eq!(r.stdout, format!("Domain 'temp' created from {xml}\n\n"));
    assert_eq!(h.state("temp"), "paused (user)");
    // The XML has no <uuid>, so this is another domain of the same name (libvirt's check).
    let r = h.run(&["create", xml]).fails();
    assert!(
        r.stderr.starts_with(&format!("error: Failed to create domain from {xml}\nerror: operation failed: domain 'temp' already exists with uuid ")),
        "{}", r.stderr
    );
    let live = h.run(&["dumpxml", "temp"]).ok().stdout;
    let p = support::write_file(&h.dir, "temp-live.xml", live.as_bytes());
    let r = h.run(&["create", p.to_str().unwrap()]).fails();
    assert_eq!(
        r.stderr,
        format!("error: Failed to create domain from {}\nerror: operation failed: domain 'temp' is already active\n", p.display())
    );
    h.run(&["resume", "temp"]).ok();
    h.run(&["destroy", "temp"]).ok();
    let r = h.run(&["domstate", "temp"]).fails();
    assert_eq!(r.stderr, "error: failed to get domain 'temp'\n");
}

#[test]
fn autostart_and_boot_command() {
    let h = Host::new("cli-autostart");
    let kernel = service_guest(&h.dir, "READY\n");
    for name in ["a1", "a2", "a3"] {
        let xml = h.domain_xml(name, &kernel, 1);
        h.run(&["define", xml.to_str().unwrap()]).ok();
    }
    assert_eq!(
        h.run(&["autostart", "a1"]).ok().stdout,
        "Domain 'a1' marked as autostarted\n\n"
    );
    h.run(&["autostart", "a3"]).ok();
    h.run(&["autostart", "--disable", "a3"]).ok();
    h.run(&["autostart", "a2"]).ok();
    assert_eq!(
        h.run(&["list", "--all", "--autostart", "--name"])
            .ok()
            .stdout,
        "a1\na2\n\n"
    );
    assert_eq!(
        h.run(&["list", "--all", "--no-autostart", "--name"])
            .ok()
            .stdout,
        "a3\n\n"
    );
    assert!(h
        .run(&["dominfo", "a1"])
        .ok()
        .stdout
        .contains("Autostart:      enable\n"));
    h.run(&["start", "a2"]).ok();
    let r = h.run(&["autostart-boot"]).ok();
    assert_eq!(r.stdout, "Domain 'a1' started\nDomain 'a2' started\n\n");
    // Active domains are listed by id: a2 started first.
    assert_eq!(h.run(&["list", "--name"]).ok().stdout, "a2\na1\n\n");
    assert_eq!(h.state("a3"), "shut off (unknown)");
}

#[test]
fn the_issue_scripts_run_verbatim() {
    let h = Host::new("cli-scripts");
    let kernel = service_guest(&h.dir, "READY\n");
    for name in ["s1", "s2", "s3"] {
        let xml = h.domain_xml(name, &kernel, 1);
        h.run(&["define", xml.to_str().unwrap()]).ok();
    }
    h.sh("for vm in $(ironvirt list --name --state-shutoff); do ironvirt start \"$vm\"; done")
        .ok();
    assert_eq!(h.run(&["list", "--name"]).ok().stdout, "s1\ns2\ns3\n\n");
    // The loop's status is that of `[ -n "" ]` on list's closing empty line, as with virsh.
    let r = h.sh("ironvirt list --name | while read vm; do [ -n \"$vm\" ] && ironvirt shutdown \"$vm\"; done");
    assert_eq!(r.stderr, "");
    assert_eq!(
        r.stdout.matches("is being shutdown").count(),
        3,
        "{}",
        r.stdout
    );
    for name in ["s1", "s2", "s3"] {
        h.wait_state(name, "shut off (shutdown)", T);
    }
}

#[test]
fn start_errors_come_from_the_vmm_or_the_launch_check() {
    let h = Host::new("cli-start-errors");
    // A kernel that does not exist: the VMM's own error.
    let xml = h.domain_xml("nokernel", &h.dir.join("missing.elf"), 1);
    h.run(&["define", xml.to_str().unwrap()]).ok();
    let r = h.run(&["start", "nokernel"]).fails();
    assert!(
        r.stderr
            .starts_with("error: Failed to start domain 'nokernel'\nerror: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("missing.elf"), "{}", r.stderr);
    assert_eq!(h.state("nokernel"), "shut off (failed)");
    let log = std::fs::read_to_string(h.root.join("var/log/ironvirt/qemu/nokernel.log")).unwrap();
    assert!(log.contains("starting up ironvirt"), "{log}");
    assert!(log.contains("missing.elf"), "{log}");

    // A configuration the VMM cannot run is refused before a process exists.
    let kernel = service_guest(&h.dir, "READY\n");
    let bad = domain_xml("qemutype", &kernel, 1).replace("type='kvm'", "type='qemu'");
    let p = support::write_file(&h.dir, "qemutype.xml", bad.as_bytes());
    h.run(&["define", p.to_str().unwrap()]).ok();
    let r = h.run(&["start", "qemutype"]).fails();
    assert_eq!(
        r.stderr,
        "error: Failed to start domain 'qemutype'\nerror: unsupported configuration: domain type 'qemu' is not supported: only type='kvm' domains can run\n"
    );
}

#[test]
fn guest_that_powers_off_at_once_ends_shut_off() {
    let h = Host::new("cli-quick");
    let kernel = poweroff_guest(&h.dir);
    let xml = h.domain_xml("quick", &kernel, 1);
    h.run(&["define", xml.to_str().unwrap()]).ok();
    h.run(&["start", "quick"]).ok();
    h.wait_state("quick", "shut off (shutdown)", T);
}

#[test]
fn shutdown_modes_and_reboot() {
    let h = Host::new("cli-modes");
    let kernel = service_guest(&h.dir, "READY\n");
    let xml = h.domain_xml("m", &kernel, 1);
    h.run(&["define", xml.to_str().unwrap()]).ok();
    h.run(&["start", "m"]).ok();
    let r = h.run(&["shutdown", "m", "--mode", "agent"]).fails();
    assert!(
        r.stderr.starts_with(
            "error: Failed to shutdown domain 'm'\nerror: argument unsupported: guest agent"
        ),
        "{}",
        r.stderr
    );
    let r = h.run(&["shutdown", "m", "--mode", "bogus"]).fails();
    assert!(r.stderr.contains("Unknown mode bogus"), "{}", r.stderr);
    assert_eq!(
        h.run(&["reset", "m"]).ok().stdout,
        "Domain 'm' was reset\n\n"
    );
    assert_eq!(h.state("m"), "running (booted)");
    // reboot: the guest powers off on the button and the VMM boots it again.
    let pid = h.pid_of("m");
    assert_eq!(
        h.run(&["reboot", "m"]).ok().stdout,
        "Domain 'm' is being rebooted\n\n"
    );
    let log = h.root.join("var/log/ironvirt/qemu/m.log");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("rebooting after the guest's shutdown")
    {
        assert!(start.elapsed() < T, "the VMM did not reboot the guest");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(h.state("m"), "running (booted)");
    assert_eq!(h.pid_of("m"), pid, "reboot keeps the VMM process");
    h.run(&["destroy", "--graceful", "m"]).ok();
    assert_eq!(h.state("m"), "shut off (destroyed)");
}
