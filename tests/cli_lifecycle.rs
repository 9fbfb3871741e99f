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
