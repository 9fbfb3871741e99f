//! Helpers for the `ironvirt` CLI tests: a hermetic store (IRONVIRT_ROOT) per test, tiny guests as
//! domain XML, and running the real binaries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use iced_x86::code_asm::*;

use crate::support::{pvh_elf, scratch_dir, write_file, Guest, COM1, LOAD_ADDR};

pub const GED_STATUS_PORT: u16 = 0x608;

/// A test's own store and scratch files; every VMM it started is killed on drop.
pub struct Host {
    pub dir: PathBuf,
    pub root: PathBuf,
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            status: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.status, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails(self) -> Run {
        assert_eq!(
            self.status, 1,
            "expected exit status 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Host {
    pub fn new(test: &str) -> Host {
        let dir = scratch_dir(test);
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        Host { dir, root }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ironvirt"));
        c.env("IRONVIRT_ROOT", &self.root)
            .env("IRONVIRT_VMM", env!("CARGO_BIN_EXE_ironvirt-vmm"))
            .env_remove("IRONVIRT_DEFAULT_URI")
            .env_remove("LIBVIRT_DEFAULT_URI")
            .env_remove("IRONVIRT_LOG")
            .stdin(Stdio::null());
        c
    }

    /// `ironvirt ARGS…` (argv form).
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().unwrap())
    }

    /// A shell snippet with `ironvirt` on PATH, as a user's script would run.
    pub fn sh(&self, script: &str) -> Run {
        let bin = Path::new(env!("CARGO_BIN_EXE_ironvirt")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = self.command();
        c.env("PATH", path);
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(script).stdin(Stdio::null());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        Run::from(sh.output().unwrap())
    }

    /// Writes a domain XML booting `kernel` with a pty console and returns its path.
    pub fn domain_xml(&self, name: &str, kernel: &Path, vcpus: u32) -> PathBuf {
        let xml = domain_xml(name, kernel, vcpus);
        write_file(&self.dir, &format!("{name}.xml"), xml.as_bytes())
    }

    pub fn state(&self, name: &str) -> String {
        self.run(&["domstate", "--reason", name])
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    /// Polls `domstate --reason` until it is `want`.
    #[track_caller]
    pub fn wait_state(&self, name: &str, want: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let s = self.state(name);
            if s == want {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "domain {name} is '{s}', not '{want}'"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run/ironvirt/qemu")
    }

    pub fn pid_of(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.run_dir().join(format!("{name}.pid")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.run_dir()) else {
            return;
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    // SAFETY: kill on a pid this test's VMM wrote.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

pub fn domain_xml(name: &str, kernel: &Path, vcpus: u32) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu placement='static'>{vcpus}</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{}</kernel>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
  </devices>
</domain>
",
        kernel.display()
    )
}

/// A guest that prints `marker`, then forever: powers off when the ACPI power button is pressed
/// (polling the GED status register, as no tiny guest handles interrupts), and echoes serial input.
pub fn service_guest(dir: &Path, marker: &str) -> PathBuf {
    let mut g = Guest::new32();
    g.print(marker);
    let mut top = g.a.create_label();
    let mut off = g.a.create_label();
    let mut no_input = g.a.create_label();
    g.a.set_label(&mut top).unwrap();
    g.a.mov(dx, GED_STATUS_PORT as u32).unwrap();
    g.a.in_(al, dx).unwrap();
    g.a.test(al, 1).unwrap();
    g.a.jnz(off).unwrap();
    g.a.mov(dx, (COM1 + 5) as u32).unwrap();
    g.a.in_(al, dx).unwrap();
    g.a.test(al, 1).unwrap();
    g.a.jz(no_input).unwrap();
    g.a.mov(dx, COM1 as u32).unwrap();
    g.a.in_(al, dx).unwrap();
    g.a.out(dx, al).unwrap();
    g.a.set_label(&mut no_input).unwrap();
    g.a.pause().unwrap();
    g.a.jmp(top).unwrap();
    g.a.set_label(&mut off).unwrap();
    g.power_off();
    write_file(dir, "service.elf", &pvh_elf(&g.assemble(LOAD_ADDR)))
}

/// A guest that powers off at once.
pub fn poweroff_guest(dir: &Path) -> PathBuf {
    let mut g = Guest::new32();
    g.print("bye\n");
    g.power_off();
    write_file(dir, "poweroff.elf", &pvh_elf(&g.assemble(LOAD_ADDR)))
}
