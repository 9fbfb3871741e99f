//! Disks and network interfaces: domblklist, domblkinfo, domblkstat, domiflist, domifstat. The
//! lists come from the definition; statistics need devices the VMM runs, and it runs none yet.

use super::cmd;
use super::domain::lookup;
use crate::cli::format::{key_value, Table};
use crate::cli::spec::{data, flag, opt_data};
use crate::cli::{CmdError, Command, Group};
use crate::xml::{Domain, Element};

fn source_of(el: &Element) -> Option<String> {
    let src = el.child("source")?;
    [
        "file", "dev", "dir", "name", "volume", "network", "bridge", "path",
    ]
    .iter()
    .find_map(|a| src.attr(a).map(str::to_string))
}

/// `(target, source)` of every `<disk>`.
pub fn disks(def: &Domain) -> Vec<(String, Option<String>)> {
    def.devices()
        .filter(|d| d.name == "disk")
        .map(|d| {
            let target = d
                .child("target")
                .and_then(|t| t.attr("dev"))
                .unwrap_or("-")
                .to_string();
            (target, source_of(d))
        })
        .collect()
}

pub const DOMBLKLIST: Command = cmd(
    "domblklist",
    Group::Monitor,
    "list all domain blocks",
    "Get the summary of block devices for a domain.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("inactive", "get inactive rather than running configuration"),
        flag("details", "additionally display the type and device value"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let def = if a.flag("inactive") {
            r.inactive_def()
        } else {
            &r.def
        };
        let details = a.flag("details");
        let mut t = if details {
            Table::new(&["Type", "Device", "Target", "Source"])
        } else {
            Table::new(&["Target", "Source"])
        };
        for d in def.devices().filter(|d| d.name == "disk") {
            let target = d.child("target").and_then(|t| t.attr("dev")).unwrap_or("-");
            let source = source_of(d).unwrap_or_else(|| "-".into());
            let mut row = Vec::new();
            if details {
                row.push(d.attr("type").unwrap_or("file").to_string());
                row.push(d.attr("device").unwrap_or("disk").to_string());
            }
            row.push(target.to_string());
            row.push(source);
            t.row(row);
        }
        let quiet = ctl.quiet;
        ctl.print(&t.render(quiet));
        Ok(())
    },
);

pub const DOMIFLIST: Command = cmd(
    "domiflist",
    Group::Monitor,
    "list all domain virtual interfaces",
    "Get the summary of virtual interfaces for a domain.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("inactive", "get inactive rather than running configuration"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let def = if a.flag("inactive") {
            r.inactive_def()
        } else {
            &r.def
        };
        // A running VM's TAP names (vnetN) come from its VMM.
        let live = if a.flag("inactive") {
            Vec::new()
        } else {
            super::iface::live_interfaces(ctl, &r).unwrap_or_default()
        };
        let mut t = Table::new(&["Interface", "Type", "Source", "Model", "MAC"]);
        for i in def.devices().filter(|d| d.name == "interface") {
            let attr = |child: &str, attr: &str| {
                i.child(child)
                    .and_then(|c| c.attr(attr))
                    .unwrap_or("-")
                    .to_string()
            };
            let mac = attr("mac", "address");
            let target = live
                .iter()
                .find(|l| l.mac.eq_ignore_ascii_case(&mac))
                .map(|l| l.name.clone())
                .unwrap_or_else(|| attr("target", "dev"));
            t.row(vec![
                target,
                i.attr("type").unwrap_or("-").to_string(),
                source_of(i).unwrap_or_else(|| "-".into()),
                attr("model", "type"),
                mac,
            ]);
        }
        let quiet = ctl.quiet;
        ctl.print(&t.render(quiet));
        Ok(())
    },
);

pub const DOMBLKINFO: Command = cmd(
    "domblkinfo",
    Group::Monitor,
    "domain block device size information",
    "Get block device size info for a domain.",
    &[
        data("domain", "domain name, id or uuid"),
        opt_data("device", "block device"),
        flag("human", "Human readable output"),
        flag("all", "display all block devices info"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let disks = disks(r.inactive_def());
        // (capacity, allocation, physical) as libvirt reports them: a qcow2 image's capacity is its virtual
        // size, its physical size the file's length.
        let size = |src: &Option<String>| {
            let path = src.as_ref()?;
            let m = std::fs::metadata(path).ok()?;
            use std::os::unix::fs::MetadataExt;
            let physical = m.len();
            let capacity =
                match ironvirt_devices::block::ImageFormat::probe(std::path::Path::new(path)) {
                    Ok(ironvirt_devices::block::ImageFormat::Qcow2) => {
                        ironvirt_devices::block::qcow2::info(std::path::Path::new(path))
                            .map(|i| i.virtual_size)
                            .unwrap_or(physical)
                    }
                    _ => physical,
                };
            Some((capacity, m.blocks() * 512, physical))
        };
        if a.flag("all") {
            let mut t = Table::new(&["Target", "Capacity", "Allocation", "Physical"]);
            for (target, src) in &disks {
                let (c, al, ph) = size(src).unwrap_or((0, 0, 0));
                t.row(vec![
                    target.clone(),
                    c.to_string(),
                    al.to_string(),
                    ph.to_string(),
                ]);
            }
            let quiet = ctl.quiet;
            ctl.print(&t.render(quiet));
            return Ok(());
        }
        let Some(dev) = a.get("device") else {
            return Err(CmdError::msg(
                "command 'domblkinfo' requires <device> option when --all is not used",
            ));
        };
        let Some((_, src)) = disks
            .iter()
            .find(|(t, s)| t == dev || s.as_deref() == Some(dev))
        else {
            return Err(CmdError::msg(format!(
                "invalid argument: invalid path {dev} not assigned to domain"
            )));
        };
        let (c, al, ph) = size(src).ok_or_else(|| {
            CmdError::msg(format!(
                "internal error: cannot read the size of {}",
                src.clone().unwrap_or_default()
            ))
        })?;
        let mut s = key_value("Capacity", &c.to_string(), 15);
        s.push_str(&key_value("Allocation", &al.to_string(), 15));
        s.push_str(&key_value("Physical", &ph.to_string(), 15));
        ctl.print(&s);
        Ok(())
    },
);

pub const DOMBLKSTAT: Command = cmd(
    "domblkstat",
    Group::Monitor,
    "get device block stats for a domain",
    "Get device block stats for a running domain.",
    &[
        data("domain", "domain name, id or uuid"),
        opt_data("device", "block device"),
        flag("human", "print a more human readable output"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let dev = a.get("device").unwrap_or_default().to_string();
        let fail =
            |why: String| CmdError::ctx(format!("Failed to get block stats {} {dev}", r.name), why);
        if !r.is_active() {
            return Err(fail(
                "Requested operation is not valid: domain is not running".into(),
            ));
        }
        let disks = ctl
            .conn()?
            .block_stats(&r)
            .map_err(|e| fail(e.to_string()))?;
        // Without a device, virsh prints the sum over all disks with an empty name column.
        let (name, picked): (&str, Vec<_>) = if dev.is_empty() {
            ("", disks.iter().collect())
        } else {
            let one: Vec<_> = disks.iter().filter(|d| d.device == dev).collect();
            if one.is_empty() {
                return Err(fail(format!("invalid argument: invalid path: {dev}")));
            }
            (dev.as_str(), one)
        };
        let sum = |f: fn(&crate::driver::stats::BlockStats) -> u64| {
            picked.iter().map(|d| f(d)).sum::<u64>()
        };
        let mut s = String::new();
        for (k, v) in [
            ("rd_req", sum(|d| d.rd_reqs)),
            ("rd_bytes", sum(|d| d.rd_bytes)),
            ("wr_req", sum(|d| d.wr_reqs)),
            ("wr_bytes", sum(|d| d.wr_bytes)),
            ("flush_operations", sum(|d| d.flush_reqs)),
            ("rd_total_times", 0),
            ("wr_total_times", 0),
            ("flush_total_times", 0),
        ] {
            s.push_str(&format!("{name} {k} {v}\n"));
        }
        ctl.print(&s);
        Ok(())
    },
);

pub const DOMIFSTAT: Command = cmd(
    "domifstat",
    Group::Monitor,
    "get network interface stats for a domain",
    "Get network interface stats for a running domain.",
    &[
        data("domain", "domain name, id or uuid"),
        data(
            "interface",
            "interface device specified by name or MAC Address",
        ),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let dev = a.get("interface").unwrap_or_default();
        if !r.is_active() {
            return Err(CmdError::ctx(
                format!("Failed to get interface stats {} {dev}", r.name),
                "Requested operation is not valid: domain is not running",
            ));
        }
        // The counters come from the running VMM (see iface.rs).
        let text = super::iface::ifstat_text(ctl, &r, dev)?;
        ctl.print(&text);
        Ok(())
    },
);
