//! start, create, shutdown, destroy, reboot, reset, suspend, resume, console.

use std::os::fd::AsRawFd;

use super::cmd;
use super::domain::{lookup, read_file, validate_schema};
use crate::cli::console;
use crate::cli::spec::{data, flag, string, Args};
use crate::cli::{CmdError, CmdResult, Command, Ctl, Group};
use crate::driver::{DomainRecord, ShutdownMode, StartFlags};

fn modes(a: &Args) -> Result<Vec<ShutdownMode>, CmdError> {
    let Some(list) = a.get("mode") else {
        return Ok(vec![ShutdownMode::Acpi]);
    };
    list.split(',')
        .map(|m| {
            ShutdownMode::parse(m).ok_or_else(|| CmdError::msg(format!("Unknown mode {m} value, expecting 'acpi', 'agent', 'initctl', 'signal' or 'paravirt'")))
        })
        .collect()
}

fn attach_console(ctl: &mut Ctl, name: &str, force: bool) -> CmdResult {
    let (r, pty) = ctl.conn()?.console_pty(name)?;
    let lock = ctl.conn()?.paths().run.join(format!("{}.console", r.name));
    ctl.print_extra(&format!(
        "Connected to domain '{}'\nEscape character is ^] (Ctrl + ])\n",
        r.name
    ));
    let _ = ctl.out.flush();
    let stdin = std::io::stdin();
    console::attach(&pty, &lock, force, stdin.as_raw_fd(), ctl.out)
        .map_err(|e| CmdError::msg(e.to_string()))?;
    ctl.print("\n");
    Ok(())
}

pub const START: Command = cmd(
    "start",
    Group::Domain,
    "start a (previously defined) inactive domain",
    "Start a domain, either from the last managedsave\n    state, or via a fresh boot if no managedsave state\n    is present.",
    &[
        data("domain", "name of the inactive domain"),
        flag("console", "attach to console after creation"),
        flag("paused", "leave the guest paused after creation"),
        flag("autodestroy", "automatically destroy the guest when virsh disconnects"),
        flag("bypass-cache", "avoid file system cache when loading"),
        flag("force-boot", "force fresh boot by discarding any managed save"),
        string("pass-fds", "pass file descriptors N,M,... to the guest"),
        flag("reset-nvram", "re-initialize NVRAM from its pristine template"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        if r.is_active() {
            return Err(CmdError::msg("Domain is already active"));
        }
        if a.flag("autodestroy") {
            return Err(CmdError::ctx(
                format!("Failed to start domain '{}'", r.name),
                "Operation not supported: --autodestroy needs a connection that outlives the command; ironvirt has no daemon",
            ));
        }
        let flags = StartFlags {
            paused: a.flag("paused"),
        };
        ctl.conn()?
            .start(&r.name, flags)
            .map_err(|e| CmdError::ctx(format!("Failed to start domain '{}'", r.name), e))?;
        ctl.print_extra(&format!("Domain '{}' started\n", r.name));
        if a.flag("console") {
            attach_console(ctl, &r.name, false)?;
        }
        Ok(())
    },
);

pub const CREATE: Command = cmd(
    "create",
    Group::Domain,
    "create a domain from an XML file",
    "Create a domain.",
    &[
        data("file", "file containing an XML domain description"),
        flag("console", "attach to console after creation"),
        flag("paused", "leave the guest paused after creation"),
        flag(
            "autodestroy",
            "automatically destroy the guest when virsh disconnects",
        ),
        string("pass-fds", "pass file descriptors N,M,... to the guest"),
        flag("validate", "validate the XML against the schema"),
        flag(
            "reset-nvram",
            "re-initialize NVRAM from its pristine template",
        ),
    ],
    |ctl, a| {
        let file = a.get("file").unwrap_or_default().to_string();
        let xml = read_file(&file)?;
        let fail = |e: &dyn std::fmt::Display| {
            CmdError::ctx(format!("Failed to create domain from {file}"), e)
        };
        if a.flag("validate") {
            validate_schema(&file, &xml).map_err(|e| fail(&e))?;
        }
        let flags = StartFlags {
            paused: a.flag("paused"),
        };
        let r = ctl.conn()?.create(&xml, flags).map_err(|e| fail(&e))?;
        ctl.print_extra(&format!("Domain '{}' created from {file}\n", r.name));
        if a.flag("console") {
            attach_console(ctl, &r.name, false)?;
        }
        Ok(())
    },
);

/// The commands that act on a running domain and print one message.
fn simple(
    ctl: &mut Ctl,
    a: &Args,
    verb: &str,
    done: &str,
    op: fn(
        &crate::driver::Connection,
        &str,
        &Args,
    ) -> Result<DomainRecord, crate::driver::DriverError>,
) -> CmdResult {
    lookup(ctl, a)?;
    let key = a.get("domain").unwrap_or_default().to_string();
    let conn = ctl.conn()?;
    op(conn, &key, a).map_err(|e| CmdError::ctx(format!("Failed to {verb} domain '{key}'"), e))?;
    ctl.print_extra(&format!("Domain '{key}' {done}\n"));
    Ok(())
}

pub const SHUTDOWN: Command = cmd(
    "shutdown",
    Group::Domain,
    "gracefully shutdown a domain",
    "Run shutdown in the target domain.",
    &[
        data("domain", "domain name, id or uuid"),
        string("mode", "shutdown mode: acpi|agent|initctl|signal|paravirt"),
    ],
    |ctl, a| {
        let m = modes(a)?;
        lookup(ctl, a)?;
        let key = a.get("domain").unwrap_or_default().to_string();
        ctl.conn()?
            .shutdown(&key, &m)
            .map_err(|e| CmdError::ctx(format!("Failed to shutdown domain '{key}'"), e))?;
        ctl.print_extra(&format!("Domain '{key}' is being shutdown\n"));
        Ok(())
    },
);

pub const REBOOT: Command = cmd(
    "reboot",
    Group::Domain,
    "reboot a domain",
    "Run a reboot command in the target domain: the guest shuts down through ACPI and is booted again.",
    &[
        data("domain", "domain name, id or uuid"),
        string("mode", "shutdown mode: acpi|agent|initctl|signal|paravirt"),
    ],
    |ctl, a| {
        let m = modes(a)?;
        lookup(ctl, a)?;
        let key = a.get("domain").unwrap_or_default().to_string();
        ctl.conn()?
            .reboot(&key, &m)
            .map_err(|e| CmdError::ctx(format!("Failed to reboot domain '{key}'"), e))?;
        ctl.print_extra(&format!("Domain '{key}' is being rebooted\n"));
        Ok(())
    },
);

pub const DESTROY: Command = cmd(
    "destroy",
    Group::Domain,
    "destroy (stop) a domain",
    "Forcefully stop a given domain, but leave its resources intact.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("graceful", "terminate gracefully"),
        flag("remove-logs", "remove domain logs"),
    ],
    |ctl, a| {
        simple(ctl, a, "destroy", "destroyed", |c, k, a| {
            let r = c.destroy(k, a.flag("graceful"))?;
            if a.flag("remove-logs") {
                let _ = std::fs::remove_file(c.log_path(&r.name));
            }
            Ok(r)
        })
    },
);

pub const RESET: Command = cmd(
    "reset",
    Group::Domain,
    "reset a domain",
    "Reset the target domain as if by power button",
    &[data("domain", "domain name, id or uuid")],
    |ctl, a| simple(ctl, a, "reset", "was reset", |c, k, _| c.reset(k)),
);

pub const SUSPEND: Command = cmd(
    "suspend",
    Group::Domain,
    "suspend a domain",
    "Suspend a running domain.",
    &[data("domain", "domain name, id or uuid")],
    |ctl, a| simple(ctl, a, "suspend", "suspended", |c, k, _| c.suspend(k)),
);

pub const RESUME: Command = cmd(
    "resume",
    Group::Domain,
    "resume a domain",
    "Resume a previously suspended domain.",
    &[data("domain", "domain name, id or uuid")],
    |ctl, a| simple(ctl, a, "resume", "resumed", |c, k, _| c.resume(k)),
);

pub const CONSOLE: Command = cmd(
    "console",
    Group::Domain,
    "connect to the guest console",
    "Connect the virtual serial console for the guest",
    &[
        data("domain", "domain name, id or uuid"),
        string("devname", "character device name"),
        flag(
            "force",
            "force console connection (disconnect already connected sessions)",
        ),
        flag("safe", "only connect if safe console handling is supported"),
        flag(
            "resume",
            "resume a paused guest after connecting to console",
        ),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        if let Some(dev) = a
            .get("devname")
            .filter(|d| !matches!(*d, "serial0" | "console0"))
        {
            return Err(CmdError::msg(format!(
                "internal error: cannot find character device {dev}"
            )));
        }
        if a.flag("resume") && r.state == crate::driver::State::Paused {
            ctl.conn()?.resume(&r.name)?;
        }
        attach_console(ctl, &r.name, a.flag("force"))
    },
);
