//! The `ironvirt` shell itself: connection URIs, host commands, virsh's parsing rules (libvirt's
//! own virsh test cases), interactive mode, `-q`, errors and exit codes, `define --validate`, `edit`.

mod cli;
mod support;

use std::io::Write;
use std::process::Stdio;

use cli::*;

#[test]
fn default_uri_precedence() {
    let h = Host::new("cli-uri");
    // Tests run as root in CI: system by default.
    let is_root = unsafe { libc::geteuid() } == 0;
    let default = if is_root {
        "ironvirt:///system"
    } else {
        "ironvirt:///session"
    };
    assert_eq!(h.run(&["uri"]).ok().stdout, format!("{default}\n\n"));
    let r = h
        .command()
        .arg("uri")
        .env("LIBVIRT_DEFAULT_URI", "qemu:///session")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "qemu:///session\n\n");
    let r = h
        .command()
        .arg("uri")
        .env("LIBVIRT_DEFAULT_URI", "qemu:///session")
        .env("IRONVIRT_DEFAULT_URI", "qemu:///system")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "qemu:///system\n\n");
    assert_eq!(
        h.run(&["-c", "ironvirt:///session", "uri"]).ok().stdout,
        "ironvirt:///session\n\n"
    );
    assert_eq!(
        h.run(&["--connect=qemu:///system", "uri"]).ok().stdout,
        "qemu:///system\n\n"
    );
    if is_root {
        let conf = h.root.join("etc/ironvirt");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("ironvirt.conf"),
            "uri_default = \"qemu:///session\"\n",
        )
        .unwrap();
        assert_eq!(h.run(&["uri"]).ok().stdout, "qemu:///session\n\n");
        let r = h
            .command()
            .arg("uri")
            .env("LIBVIRT_DEFAULT_URI", "ironvirt:///system")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout), "ironvirt:///system\n\n");
    }
    let r = h.run(&["-c", "xen:///system", "list"]).fails();
    assert_eq!(
        r.stderr,
        "error: failed to connect to the hypervisor\nerror: no connection driver available for xen:///system\n"
    );
}

#[test]
fn system_and_session_keep_separate_stores() {
    let h = Host::new("cli-scopes");
    let kernel = service_guest(&h.dir, "x");
    let xml = h.domain_xml("only-in-session", &kernel, 1);
    h.run(&["-c", "qemu:///session", "define", xml.to_str().unwrap()])
        .ok();
    assert_eq!(
        h.run(&["-c", "ironvirt:///session", "list", "--all", "--name"])
            .ok()
            .stdout,
        "only-in-session\n\n"
    );
    assert_eq!(
        h.run(&["-c", "ironvirt:///system", "list", "--all", "--name"])
            .ok()
            .stdout,
        "\n"
    );
}

#[test]
fn host_commands() {
    let h = Host::new("cli-host");
    let v = h.run(&["version"]).ok().stdout;
    assert!(v.starts_with("Compiled against library: ironvirt "), "{v}");
    assert!(v.contains("\nRunning hypervisor: ironvirt-vmm "), "{v}");
    assert!(!h.run(&["hostname"]).ok().stdout.trim().is_empty());
    let n = h.run(&["nodeinfo"]).ok().stdout;
    for label in [
        "CPU model:           x86_64\n",
        "CPU(s):              ",
        "CPU frequency:       ",
        "CPU socket(s):       ",
        "Core(s) per socket:  ",
        "Thread(s) per core:  ",
        "NUMA cell(s):        ",
        "Memory size:         ",
    ] {
        assert!(n.contains(label), "{label:?} in\n{n}");
    }
    let caps = h.run(&["capabilities"]).ok().stdout;
    assert!(caps.contains("<domain type='kvm'/>"), "{caps}");
    let p = support::write_file(&h.dir, "caps.xml", caps.as_bytes());
    if let Ok(o) = std::process::Command::new("virt-xml-validate")
        .arg(&p)
        .arg("capability")
        .output()
    {
        assert!(
            o.status.success(),
            "{}\n{caps}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(
        h.run(&["-v"]).ok().stdout,
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// libvirt's virshtest echo cases: (expected output, argv after `--connect URI`).
const ECHO_CASES: &[(&str, &[&str])] = &[
    ("\n", &["echo"]),
    ("a\n", &["echo", "a"]),
    ("a b\n", &["echo", "a", "b"]),
    ("a b\n", &["echo a \t b"]),
    ("a \t b\n", &["echo \"a \t b\""]),
    ("a \t b\n", &["echo 'a \t b'"]),
    ("a \t b\n", &["echo a\\ \\\t\\ b"]),
    ("\n\n", &["echo ; echo"]),
    ("a\nb\n", &[";echo a; ; echo b;"]),
    ("' \" \\;echo\ta\n", &["echo", "'", "\"", "\\;echo\ta"]),
    ("' \" ;echo a\n", &["echo \\' \\\" \\;echo\ta"]),
    ("' \" \\\na\n", &["echo \\' \\\" \\\\;echo\ta"]),
    ("' \" \\\\\n", &["echo  \"'\"  '\"'  '\\'\"\\\\\""]),
    ("\n", &["echo", ""]),
    ("''\n", &["echo", "--shell", ""]),
    ("''\n", &["echo --shell \"\""]),
    ("''\n", &["echo --xml --shell \"\"''"]),
    ("a\n", &["--", "echo", "--shell", "a"]),
    ("a\n", &["--", "echo", "a", "--shell"]),
    ("a --shell\n", &["--", "echo", "--", "a", "--shell"]),
    ("-- --shell a\n", &["echo", "--", "--", "--shell", "a"]),
    ("a\n", &["echo --s\\h'e'\"l\"l -- a"]),
    ("--shell a\n", &["echo \t '-'\"-\" \t --shell \t a"]),
    ("hello\n", &["echo", "--string", "hello"]),
    ("hello\n", &["echo --str hello"]),
    ("hello\n", &["echo --hi"]),
];

#[test]
fn virsh_parsing_rules() {
    let h = Host::new("cli-parse");
    for (expected, args) in ECHO_CASES {
        let r = h.run(args).ok();
        assert_eq!(r.stdout, *expected, "{args:?}");
    }
    let r = h.run(&["frobnicate"]).fails();
    assert_eq!(r.stderr, "error: unknown command: 'frobnicate'\n");
    assert_eq!(r.stdout, "");
    let r = h.run(&["list", "--foo"]).fails();
    assert_eq!(
        r.stderr,
        "error: command 'list' doesn't support option --foo\n"
    );
    let r = h.run(&["domid"]).fails();
    assert_eq!(
        r.stderr,
        "error: command 'domid' requires <domain> option\n"
    );
    let r = h.run(&["setvcpus", "x", "--count"]).fails();
    assert_eq!(r.stderr, "error: expected syntax: --count <number>\n");
    let r = h.run(&["echo a; frobnicate"]).fails();
    assert_eq!(r.stdout, "", "a syntax error anywhere runs nothing");
    let r = h.run(&["echo \"unterminated"]).fails();
    assert_eq!(r.stderr, "error: missing \"\n");
    let r = h.run(&["list", "--table", "--name"]).fails();
    assert_eq!(
        r.stderr,
        "error: Options --table and --name are mutually exclusive\n"
    );
    let r = h.run(&["help", "start"]).ok();
    assert!(r.stdout.starts_with("  NAME\n    start - start a (previously defined) inactive domain\n\n  SYNOPSIS\n    start <domain> [--console] [--paused]"), "{}", r.stdout);
    let r = h.run(&["start", "--help"]).ok();
    assert!(r.stdout.contains("  OPTIONS\n"), "{}", r.stdout);
    assert!(h
        .run(&["help"])
        .ok()
        .stdout
        .contains(" Domain Management (help keyword 'domain'):\n"));
}

#[test]
fn golden_echo_and_multiple_command_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/conformance/libvirt-10.7.0/virsh-golden");
    if !dir.exists() {
        return;
    }
    let h = Host::new("cli-golden");
    // NAME.in fed to the shell line by line; the output is compared with NAME.out.
    for name in ["echo-alias", "echo-escaping", "echo-split"] {
        let input = std::fs::read_to_string(dir.join(format!("{name}.in"))).unwrap();
        let expected = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
        let mut child = h
            .command()
            .arg("-q")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), expected, "{name}");
    }
}

#[test]
fn interactive_mode_reads_commands_until_quit() {
    let h = Host::new("cli-interactive");
    let mut child = h
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"list --all\necho hello; echo world\nnosuch\nquit\necho never\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        " Id   Name   State\n--------------------\n\nhello\nworld\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: unknown command: 'nosuch'\n"
    );
}

#[test]
fn quiet_drops_headers_and_messages() {
    let h = Host::new("cli-quiet");
    let kernel = service_guest(&h.dir, "x");
    let xml = h.domain_xml("q", &kernel, 1);
    let r = h.run(&["-q", "define", xml.to_str().unwrap()]).ok();
    assert_eq!(r.stdout, "");
    assert_eq!(
        h.run(&["-q", "list", "--all"]).ok().stdout,
        " -   q   shut off\n"
    );
    assert_eq!(h.run(&["-q", "domstate", "q"]).ok().stdout, "shut off\n");
}

#[test]
fn define_validate_and_edit() {
    let h = Host::new("cli-edit");
    let kernel = service_guest(&h.dir, "x");
    let good = h.domain_xml("ed", &kernel, 1);
    h.run(&["define", "--validate", good.to_str().unwrap()])
        .ok();
    // Valid for our parser, not for libvirt's schema.
    let bad = support::write_file(
        &h.dir,
        "bad.xml",
        cli::domain_xml("bad", &kernel, 1)
            .replace("<devices>", "<devices><bogus/>")
            .as_bytes(),
    );
    let r = h
        .run(&["define", "--validate", bad.to_str().unwrap()])
        .fails();
    assert!(
        r.stderr.starts_with(&format!("error: Failed to define domain from {}\nerror: XML document failed to validate against schema", bad.display())),
        "{}",
        r.stderr
    );
    assert_eq!(h.run(&["list", "--all", "--name"]).ok().stdout, "ed\n\n");
    let r = h.run(&["define", "/nonexistent.xml"]).fails();
    assert_eq!(
        r.stderr,
        "error: Failed to open file '/nonexistent.xml': No such file or directory\n"
    );

    // An editor that changes nothing, one that changes the memory, one that breaks the XML.
    let edit = |editor: &str| {
        let o = h
            .command()
            .args(["edit", "ed"])
            .env("EDITOR", editor)
            .env_remove("VISUAL")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(
        edit("true"),
        (
            Some(0),
            "Domain 'ed' XML configuration not changed.\n\n".into(),
            String::new()
        )
    );
    let (code, out, _) = edit("sed -i 's/>32</>16</'");
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "Domain 'ed' XML configuration edited.\n\n")
    );
    assert!(h
        .run(&["dumpxml", "ed"])
        .ok()
        .stdout
        .contains("<memory unit='MiB'>16</memory>"));
    let (code, _, err) = edit("sed -i 's/<memory/<memoryx/'");
    assert_eq!(code, Some(1), "{err}");
    assert!(h
        .run(&["dumpxml", "ed"])
        .ok()
        .stdout
        .contains("<memory unit='MiB'>16</memory>"));
}
