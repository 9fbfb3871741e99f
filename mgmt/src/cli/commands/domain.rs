//! Definitions and information: define, undefine, edit, dumpxml, list, dominfo, domstate, domid,
//! domname, domuuid, autostart, autostart-boot.

use std::path::Path;

use super::cmd;
use crate::cli::format::{key_value, Table};
use crate::cli::spec::{data, flag, string, Args};
use crate::cli::{CmdError, CmdResult, Command, Ctl, Group};
use crate::driver::{DomainRecord, DriverError, UndefineFlags};
use crate::xml::Domain;

/// virsh's lookup: a failed lookup is reported as "failed to get domain".
pub(super) fn lookup(ctl: &mut Ctl, a: &Args) -> Result<DomainRecord, CmdError> {
    let key = a.get("domain").unwrap_or_default().to_string();
    let conn = ctl.conn()?;
    match conn.lookup(&key) {
        Ok(r) => Ok(r),
        Err(DriverError::NoDomain { .. }) => {
            Err(CmdError::msg(format!("failed to get domain '{key}'")))
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn read_file(path: &str) -> Result<String, CmdError> {
    let bytes = if path == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
            .map_err(|e| CmdError::msg(format!("Failed to read stdin: {e}")))?;
        v
    } else {
        std::fs::read(path)
            .map_err(|e| CmdError::msg(format!("Failed to open file '{path}': {}", io_text(&e))))?
    };
    String::from_utf8(bytes).map_err(|_| CmdError::msg(format!("file '{path}' is not UTF-8 text")))
}

fn io_text(e: &std::io::Error) -> String {
    // The bare OS message, as libvirt prints it ("No such file or directory").
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// `--validate`: libvirt's RelaxNG schema through virt-xml-validate.
pub(super) fn validate_schema(path: &str, xml: &str) -> Result<(), String> {
    let tmp;
    let file = if path == "-" {
        tmp = std::env::temp_dir().join(format!("ironvirt-validate-{}.xml", std::process::id()));
        std::fs::write(&tmp, xml).map_err(|e| e.to_string())?;
        tmp.as_path()
    } else {
        Path::new(path)
    };
    let out = std::process::Command::new("virt-xml-validate")
        .arg(file)
        .arg("domain")
        .output();
    if path == "-" {
        let _ = std::fs::remove_file(file);
    }
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
            "--validate needs virt-xml-validate (Debian package libvirt-clients), which is not installed".into(),
        ),
        Err(e) => Err(format!("cannot run virt-xml-validate: {e}")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let detail = String::from_utf8_lossy(&o.stderr);
            Err(format!(
                "XML document failed to validate against schema: Unable to validate doc against libvirt's domain schema\n{}",
                detail.trim_end()
            ))
        }
    }
}

pub const DEFINE: Command = cmd(
    "define",
    Group::Domain,
    "define (but don't start) a domain from an XML file",
    "Define a domain.",
    &[
        data("file", "file containing an XML domain description"),
        flag("validate", "validate the XML against the schema"),
    ],
    |ctl, a| {
        let file = a.get("file").unwrap_or_default().to_string();
        let xml = read_file(&file)?;
        let fail = |e: &dyn std::fmt::Display| {
            CmdError::ctx(format!("Failed to define domain from {file}"), e)
        };
        if a.flag("validate") {
            validate_schema(&file, &xml).map_err(|e| fail(&e))?;
        }
        let r = ctl.conn()?.define(&xml).map_err(|e| fail(&e))?;
        ctl.print_extra(&format!("Domain '{}' defined from {file}\n", r.name));
        Ok(())
    },
);

pub const UNDEFINE: Command = cmd(
    "undefine",
    Group::Domain,
    "undefine a domain",
    "Undefine an inactive domain, or convert persistent to transient.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("managed-save", "remove domain managed state file"),
        string("storage", "remove associated storage volumes (comma separated list of targets or source paths) (see domblklist)"),
        flag("remove-all-storage", "remove all associated storage volumes (use with caution)"),
        flag("delete-storage", "delete snapshots associated with volume(s)"),
        flag("wipe-storage", "wipe data on the removed volumes"),
        flag("snapshots-metadata", "remove all domain snapshot metadata (vm must be inactive)"),
        flag("checkpoints-metadata", "remove all domain checkpoint metadata (vm must be inactive)"),
        flag("nvram", "remove nvram file"),
        flag("keep-nvram", "keep nvram file"),
        flag("tpm", "remove TPM state"),
        flag("keep-tpm", "keep TPM state"),
    ],
    undefine,
);

fn undefine(ctl: &mut Ctl, a: &Args) -> CmdResult {
    let r = lookup(ctl, a)?;
    let key = a.get("domain").unwrap_or_default().to_string();
    let flags = UndefineFlags {
        remove_all_storage: a.flag("remove-all-storage"),
        nvram: a.flag("nvram"),
        keep_nvram: a.flag("keep-nvram"),
    };
    let def = r.inactive_def().clone();
    let res = ctl.conn()?.undefine(&key, flags);
    res.map_err(|e| CmdError::ctx(format!("Failed to undefine domain '{key}'"), e))?;
    ctl.print_extra(&format!("Domain '{key}' has been undefined\n"));
    // Volumes: disks that are volumes of an active storage pool (by pool/volume, or by path) are deleted;
    // anything else is left in place with virsh's own words for unmanaged storage.
    let wanted: Option<Vec<String>> = a
        .get("storage")
        .map(|s| s.split(',').map(str::to_string).collect());
    if flags.remove_all_storage || wanted.is_some() {
        let paths = ctl.conn()?.paths().clone();
        let storage = crate::storage::StorageDriver::open(&paths).ok();
        for disk in def.devices().filter(|d| d.name == "disk") {
            let target = disk
                .child("target")
                .and_then(|t| t.attr("dev"))
                .unwrap_or("-")
                .to_string();
            let src = disk.child("source");
            let (pool, volume) = if disk.attr("type") == Some("volume") {
                (
                    src.and_then(|s| s.attr("pool")),
                    src.and_then(|s| s.attr("volume")),
                )
            } else {
                (
                    None,
                    src.and_then(|s| s.attr("file").or_else(|| s.attr("dev"))),
                )
            };
            let Some(volume) = volume else { continue };
            let selected = match &wanted {
                None => true,
                Some(w) => w.iter().any(|x| *x == target || x == volume),
            };
            if !selected {
                continue;
            }
            let found = storage.as_ref().and_then(|s| s.volume(pool, volume).ok());
            match (storage.as_ref(), found) {
                (Some(s), Some(v)) => match s.delete_volume(Some(&v.pool), &v.name, &|_| false) {
                    Ok(_) => ctl.print_extra(&format!("Volume '{target}'({}) removed.\n", v.path)),
                    Err(e) => {
                        return Err(CmdError::ctx(format!("Failed to remove storage volume '{target}'({})", v.path), e))
                    }
                },
                _ => ctl.print_extra(&format!(
                    "Storage volume '{target}'({volume}) is not managed by ironvirt. Remove it manually.\n"
                )),
            }
        }
    }
    if flags.nvram {
        if let Some(nvram) = def
            .document()
            .root
            .child("os")
            .and_then(|o| o.child("nvram"))
            .map(|n| n.text())
            .filter(|p| !p.trim().is_empty())
        {
            let _ = std::fs::remove_file(nvram.trim());
        }
    }
    Ok(())
}

pub const EDIT: Command = cmd(
    "edit",
    Group::Domain,
    "edit XML configuration for a domain",
    "Edit the XML configuration for a domain.",
    &[data("domain", "domain name, id or uuid")],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let original = crate::driver::inactive_xml(r.inactive_def());
        let edited = super::editor::run_editor(&format!("dom-{}", r.name), &original)?;
        if edited == original {
            ctl.print_extra(&format!(
                "Domain '{}' XML configuration not changed.\n",
                r.name
            ));
            return Ok(());
        }
        let def = Domain::parse(&edited).map_err(|e| CmdError::msg(e.to_string()))?;
        ctl.conn()?.redefine(&r.name, &def)?;
        ctl.print_extra(&format!(
            "Domain '{}' XML configuration edited.\n",
            def.name()
        ));
        Ok(())
    },
);

pub const DUMPXML: Command = cmd(
    "dumpxml",
    Group::Domain,
    "domain information in XML",
    "Output the domain information as an XML dump to stdout.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("inactive", "show inactive defined XML"),
        flag(
            "security-info",
            "include security sensitive information in XML dump",
        ),
        flag("update-cpu", "update guest CPU according to host CPU"),
        flag("migratable", "provide XML suitable for migrations"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let xml = if a.flag("inactive") {
            crate::driver::inactive_xml(r.inactive_def())
        } else {
            r.def.to_xml()
        };
        ctl.print(&xml);
        Ok(())
    },
);

pub const LIST: Command = cmd(
    "list",
    Group::Monitor,
    "list domains",
    "Returns list of domains.",
    &[
        flag("inactive", "list inactive domains"),
        flag("all", "list inactive & active domains"),
        flag("transient", "list transient domains"),
        flag("persistent", "list persistent domains"),
        flag("with-snapshot", "list domains with existing snapshot"),
        flag("without-snapshot", "list domains without a snapshot"),
        flag("state-running", "list domains in running state"),
        flag("state-paused", "list domains in paused state"),
        flag("state-shutoff", "list domains in shutoff state"),
        flag("state-other", "list domains in other states"),
        flag("autostart", "list domains with autostart enabled"),
        flag("no-autostart", "list domains with autostart disabled"),
        flag("with-managed-save", "list domains with managed save state"),
        flag("without-managed-save", "list domains without managed save"),
        flag("uuid", "list uuid's only"),
        flag("name", "list domain names only"),
        flag("id", "list domain IDs only"),
        flag("table", "list table (default)"),
        flag(
            "managed-save",
            "mark inactive domains with managed save state",
        ),
        flag("title", "show domain title"),
    ],
    list,
);

/// Which domains `list` shows, from its flags (virsh's semantics).
pub fn list_filter(a: &Args, r: &DomainRecord) -> bool {
    let states = [
        "state-running",
        "state-paused",
        "state-shutoff",
        "state-other",
    ];
    let any_state = states.iter().any(|s| a.flag(s));
    if any_state {
        let ok = match r.state {
            crate::driver::State::Running => a.flag("state-running"),
            crate::driver::State::Paused => a.flag("state-paused"),
            crate::driver::State::ShutOff => a.flag("state-shutoff"),
        };
        if !ok {
            return false;
        }
    } else if a.flag("inactive") && !a.flag("all") {
        if r.is_active() {
            return false;
        }
    } else if !a.flag("all") && !r.is_active() {
        return false;
    }
    // Each pair filters only when exactly one of its two flags is given.
    if a.flag("persistent") != a.flag("transient") && a.flag("persistent") != r.persistent {
        return false;
    }
    if a.flag("autostart") != a.flag("no-autostart") && a.flag("autostart") != r.autostart {
        return false;
    }
    // No snapshots or managed saves exist yet.
    !(a.flag("with-snapshot") || a.flag("with-managed-save"))
}

fn list(ctl: &mut Ctl, a: &Args) -> CmdResult {
    let table = a.flag("table");
    for other in ["name", "uuid", "id"] {
        if table && a.flag(other) {
            return Err(CmdError::msg(format!(
                "Options --table and --{other} are mutually exclusive"
            )));
        }
    }
    let domains: Vec<DomainRecord> = ctl
        .conn()?
        .list()?
        .into_iter()
        .filter(|r| list_filter(a, r))
        .collect();
    let short = a.flag("name") || a.flag("uuid") || a.flag("id");
    if short {
        let mut s = String::new();
        for r in &domains {
            let mut parts = Vec::new();
            if a.flag("uuid") {
                parts.push(r.uuid.clone());
            }
            if a.flag("id") {
                match r.id {
                    Some(id) => parts.push(id.to_string()),
                    // An inactive domain has no id: alone it is skipped, with others it is "-".
                    None if !a.flag("uuid") && !a.flag("name") => continue,
                    None => parts.push("-".into()),
                }
            }
            if a.flag("name") {
                parts.push(r.name.clone());
            }
            s.push_str(&parts.join(" "));
            s.push('\n');
        }
        ctl.print(&s);
        return Ok(());
    }
    let mut header = vec!["Id", "Name", "State"];
    if a.flag("title") {
        header.push("Title");
    }
    let mut t = Table::new(&header);
    for r in &domains {
        let mut row = vec![
            r.id.map_or("-".into(), |i| i.to_string()),
            r.name.clone(),
            r.state.as_str().to_string(),
        ];
        if a.flag("title") {
            row.push(r.def.title().unwrap_or_default().to_string());
        }
        t.row(row);
    }
    let quiet = ctl.quiet;
    ctl.print(&t.render(quiet));
    Ok(())
}

pub const DOMINFO: Command = cmd(
    "dominfo",
    Group::Monitor,
    "domain information",
    "Returns basic information about the domain.",
    &[data("domain", "domain name, id or uuid")],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        let cpu_time = if r.is_active() {
            ctl.conn()?.cpu_stats(&r).map(|s| s.total_ns()).unwrap_or(0)
        } else {
            0
        };
        ctl.print(&dominfo_text(&r, cpu_time));
        Ok(())
    },
);

/// `dominfo`'s text for a domain and its CPU time (0 = not shown, as virsh does).
pub fn dominfo_text(r: &DomainRecord, cpu_time_ns: u64) -> String {
    let mem = r.def.memory();
    let mut s = String::new();
    let mut kv = |k: &str, v: String| s.push_str(&key_value(k, &v, 15));
    kv("Id", r.id.map_or("-".into(), |i| i.to_string()));
    kv("Name", r.name.clone());
    kv("UUID", r.uuid.clone());
    kv("OS Type", r.def.os().os_type.clone());
    kv("State", r.state.as_str().into());
    kv("CPU(s)", r.def.vcpus().current.to_string());
    if cpu_time_ns != 0 {
        kv("CPU time", format!("{:.1}s", cpu_time_ns as f64 / 1e9));
    }
    kv("Max memory", format!("{} KiB", mem.memory_bytes / 1024));
    kv("Used memory", format!("{} KiB", mem.current_bytes / 1024));
    kv("Persistent", if r.persistent { "yes" } else { "no" }.into());
    kv(
        "Autostart",
        if r.autostart { "enable" } else { "disable" }.into(),
    );
    kv("Managed save", "no".into());
    kv("Security model", "none".into());
    kv("Security DOI", "0".into());
    s
}

pub const DOMSTATE: Command = cmd(
    "domstate",
    Group::Monitor,
    "domain state",
    "Returns state about a domain.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("reason", "also print reason for the state"),
    ],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        if a.flag("reason") {
            ctl.print(&format!("{} ({})\n", r.state.as_str(), r.reason.as_str()));
        } else {
            ctl.print(&format!("{}\n", r.state.as_str()));
        }
        Ok(())
    },
);

pub const DOMID: Command = cmd(
    "domid",
    Group::Domain,
    "convert a domain name or UUID to domain id",
    "",
    &[data("domain", "domain name or uuid")],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        ctl.print(&format!("{}\n", r.id.map_or("-".into(), |i| i.to_string())));
        Ok(())
    },
);

pub const DOMNAME: Command = cmd(
    "domname",
    Group::Domain,
    "convert a domain id or UUID to domain name",
    "",
    &[data("domain", "domain id or uuid")],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        ctl.print(&format!("{}\n", r.name));
        Ok(())
    },
);

pub const DOMUUID: Command = cmd(
    "domuuid",
    Group::Domain,
    "convert a domain name or id to domain UUID",
    "",
    &[data("domain", "domain id or name")],
    |ctl, a| {
        let r = lookup(ctl, a)?;
        ctl.print(&format!("{}\n", r.uuid));
        Ok(())
    },
);

pub const AUTOSTART: Command = cmd(
    "autostart",
    Group::Domain,
    "autostart a domain",
    "Configure a domain to be automatically started at boot.",
    &[
        data("domain", "domain name, id or uuid"),
        flag("disable", "disable autostarting"),
    ],
    |ctl, a| {
        lookup(ctl, a)?;
        let key = a.get("domain").unwrap_or_default().to_string();
        let disable = a.flag("disable");
        ctl.conn()?.set_autostart(&key, !disable).map_err(|e| {
            CmdError::ctx(
                format!(
                    "Failed to {} domain '{key}' as autostarted",
                    if disable { "unmark" } else { "mark" }
                ),
                e,
            )
        })?;
        ctl.print_extra(&format!(
            "Domain '{key}' {} as autostarted\n",
            if disable { "unmarked" } else { "marked" }
        ));
        Ok(())
    },
);

pub const AUTOSTART_BOOT: Command = cmd(
    "autostart-boot",
    Group::Domain,
    "start every domain marked for autostart (run at host boot)",
    "Starts all networks, then all persistent domains, marked with 'autostart' that are not running. The shipped ironvirt-autostart.service runs it at host boot, as libvirtd does when it starts.",
    &[],
    |ctl, _| {
        let mut errors = Vec::new();
        // Networks first: a domain on an autostart network needs its bridge.
        let networks = crate::network::Networks::open(&ctl.conn()?.paths().clone());
        match networks {
            Ok(nets) => {
                for (name, r) in nets.autostart_all() {
                    if let Err(e) = r {
                        errors.push(format!("Failed to autostart network '{name}'"));
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(format!("cannot open the network driver: {e}")),
        }
        let results = ctl.conn()?.autostart_all();
        for (name, r) in results {
            match r {
                Ok(()) => ctl.print_extra(&format!("Domain '{name}' started\n")),
                Err(e) => {
                    errors.push(format!("Failed to autostart domain '{name}'"));
                    errors.extend(e.to_string().split("\nerror: ").map(str::to_string));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CmdError(errors))
        }
    },
);
