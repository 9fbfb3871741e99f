//! Storage pools and volumes: pool-* and vol-* with virsh's options, messages and tables. The
//! work is in [`crate::storage`]; this module parses and prints.

use super::cmd;
use super::domain::read_file;
use crate::cli::format::{key_value, Table};
use crate::cli::spec::{data, flag, int, opt_data, string, Args, Opt};
use crate::cli::{CmdError, CmdResult, Command, Ctl, Group};
use crate::storage::backend::BuildFlags;
use crate::storage::domain::{paths_in_use, used};
use crate::storage::driver::PoolState;
use crate::storage::pool_xml::PoolSpec;
use crate::storage::progress::{self, JobProgress};
use crate::storage::size::{parse_size, pretty};
use crate::storage::vol_xml::format_volume;
use crate::storage::volume::Transfer;
use crate::storage::{CopyFlags, PoolRecord, StorageDriver, StorageError, VolCreate, VolInfo};

// Pools and volumes have no groups of their own in `help` yet; they sit with the host commands.
const G: Group = Group::Host;

fn driver(ctl: &mut Ctl) -> Result<StorageDriver, CmdError> {
    let paths = ctl.conn()?.paths().clone();
    StorageDriver::open(&paths).map_err(|e| CmdError::ctx("failed to open the storage driver", e))
}

/// The disk files running domains have open.
fn in_use(ctl: &mut Ctl) -> Result<Vec<std::path::PathBuf>, CmdError> {
    Ok(paths_in_use(ctl.conn()?))
}

/// virsh's lookup: a failed lookup is reported as "failed to get pool".
fn pool(d: &StorageDriver, a: &Args) -> Result<PoolRecord, CmdError> {
    let key = a.get("pool").unwrap_or_default();
    d.lookup(key)
        .map_err(|e| CmdError::ctx(format!("failed to get pool '{key}'"), e))
}

fn vol(d: &StorageDriver, a: &Args) -> Result<VolInfo, CmdError> {
    let key = a.get("vol").unwrap_or_default();
    d.volume(a.get("pool"), key)
        .map_err(|e| CmdError::ctx(format!("failed to get vol '{key}'"), e))
}

fn fail(what: String) -> impl FnOnce(StorageError) -> CmdError {
    move |e| CmdError::ctx(what, e)
}

const POOL: Opt = data("pool", "pool name or uuid");

const fn simple(
    name: &'static str,
    summary: &'static str,
    handler: fn(&mut Ctl, &Args) -> CmdResult,
) -> Command {
    cmd(name, G, summary, "", &[POOL], handler)
}

const SPEC_OPTS: &[Opt] = &[
    data("name", "name of the pool"),
    data("type", "type of the pool"),
    flag("print-xml", "print XML document, but don't define/create"),
    opt_data("source-host", "source-host for underlying storage"),
    opt_data("source-path", "source path for underlying storage"),
    opt_data("source-dev", "source device for underlying storage"),
    opt_data("source-name", "source name for underlying storage"),
    opt_data("target", "target for underlying storage"),
    string("source-format", "format for underlying storage"),
    string(
        "source-protocol-ver",
        "nfsvers value for NFS pool mount option",
    ),
];

fn spec_of(a: &Args) -> PoolSpec {
    let s = |n: &str| a.get(n).map(str::to_string);
    PoolSpec {
        name: a.get("name").unwrap_or_default().to_string(),
        pool_type: a.get("type").unwrap_or_default().to_string(),
        source_host: s("source-host"),
        source_path: s("source-path"),
        source_dev: s("source-dev"),
        source_name: s("source-name"),
        source_format: s("source-format"),
        source_protocol_ver: s("source-protocol-ver"),
        target: s("target"),
    }
}

pub const POOL_DEFINE_AS: Command = cmd(
    "pool-define-as",
    G,
    "define a pool from a set of args",
    "Define a pool.",
    SPEC_OPTS,
    |ctl, a| {
        let xml = spec_of(a).to_xml();
        if a.flag("print-xml") {
            ctl.print(&xml);
            return Ok(());
        }
        let d = driver(ctl)?;
        let name = a.get("name").unwrap_or_default();
        let def = d
            .define(&xml)
            .map_err(fail(format!("Failed to define pool {name}")))?;
        ctl.print_extra(&format!("Pool {} defined\n", def.name()));
        Ok(())
    },
);

pub const POOL_CREATE_AS: Command = cmd(
    "pool-create-as",
    G,
    "create a pool from a set of args",
    "Create a pool.",
    SPEC_OPTS,
    |ctl, a| {
        let xml = spec_of(a).to_xml();
        if a.flag("print-xml") {
            ctl.print(&xml);
            return Ok(());
        }
        let d = driver(ctl)?;
        let name = a.get("name").unwrap_or_default();
        let def = d
            .create(&xml)
            .map_err(fail(format!("Failed to create pool {name}")))?;
        ctl.print_extra(&format!("Pool {} created\n", def.name()));
        Ok(())
    },
);

pub const POOL_DEFINE: Command = cmd(
    "pool-define",
    G,
    "define an inactive persistent storage pool or modify an existing persistent one from an XML file",
    "Define or modify a persistent storage pool.",
    &[data("file", "file containing an XML pool description")],
    |ctl, a| {
        let file = a.get("file").unwrap_or_default();
        let xml = read_file(file)?;
        let d = driver(ctl)?;
        let def = d
            .define(&xml)
            .map_err(fail(format!("Failed to define pool from {file}")))?;
        ctl.print_extra(&format!("Pool {} defined from {file}\n", def.name()));
        Ok(())
    },
);

pub const POOL_CREATE: Command = cmd(
    "pool-create",
    G,
    "create a pool from an XML file",
    "Create a pool.",
    &[data("file", "file containing an XML pool description")],
    |ctl, a| {
        let file = a.get("file").unwrap_or_default();
        let xml = read_file(file)?;
        let d = driver(ctl)?;
        let def = d
            .create(&xml)
            .map_err(fail(format!("Failed to create pool from {file}")))?;
        ctl.print_extra(&format!("Pool {} created from {file}\n", def.name()));
        Ok(())
    },
);

pub const POOL_BUILD: Command = cmd(
    "pool-build",
    G,
    "build a pool",
    "Build a given pool.",
    &[
        POOL,
        flag("no-overwrite", "do not overwrite any existing data"),
        flag("overwrite", "overwrite any existing data"),
    ],
    |ctl, a| {
        if a.flag("overwrite") && a.flag("no-overwrite") {
            return Err(CmdError::msg(
                "Options --overwrite and --no-overwrite are mutually exclusive",
            ));
        }
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        let flags = BuildFlags {
            overwrite: a.flag("overwrite"),
            no_overwrite: a.flag("no-overwrite"),
        };
        d.build(r.name(), flags)
            .map_err(fail(format!("Failed to build pool {}", r.name())))?;
        ctl.print_extra(&format!("Pool {} built\n", r.name()));
        Ok(())
    },
);

pub const POOL_START: Command = simple(
    "pool-start",
    "start a (previously defined) inactive pool",
    |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        d.start(r.name())
            .map_err(fail(format!("Failed to start pool {}", r.name())))?;
        ctl.print_extra(&format!("Pool {} started\n", r.name()));
        Ok(())
    },
);

pub const POOL_DESTROY: Command = simple("pool-destroy", "destroy (stop) a pool", |ctl, a| {
    let d = driver(ctl)?;
    let r = pool(&d, a)?;
    let busy = in_use(ctl)?;
    d.destroy(r.name(), &|p| used(&busy, p))
        .map_err(fail(format!("Failed to destroy pool {}", r.name())))?;
    ctl.print_extra(&format!("Pool {} destroyed\n", r.name()));
    Ok(())
});

pub const POOL_DELETE: Command = simple("pool-delete", "delete a pool", |ctl, a| {
    let d = driver(ctl)?;
    let r = pool(&d, a)?;
    d.delete(r.name())
        .map_err(fail(format!("Failed to delete pool {}", r.name())))?;
    ctl.print_extra(&format!("Pool {} deleted\n", r.name()));
    Ok(())
});

pub const POOL_UNDEFINE: Command =
    simple("pool-undefine", "undefine an inactive pool", |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        d.undefine(r.name())
            .map_err(fail(format!("Failed to undefine pool {}", r.name())))?;
        ctl.print_extra(&format!("Pool {} has been undefined\n", r.name()));
        Ok(())
    });

pub const POOL_REFRESH: Command = simple("pool-refresh", "refresh a pool", |ctl, a| {
    let d = driver(ctl)?;
    let r = pool(&d, a)?;
    d.refresh(r.name())
        .map_err(fail(format!("Failed to refresh pool {}", r.name())))?;
    ctl.print_extra(&format!("Pool {} refreshed\n", r.name()));
    Ok(())
});

pub const POOL_AUTOSTART: Command = cmd(
    "pool-autostart",
    G,
    "autostart a pool",
    "Configure a pool to be automatically started at boot.",
    &[POOL, flag("disable", "disable autostarting")],
    |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        let on = !a.flag("disable");
        d.set_autostart(r.name(), on).map_err(fail(if on {
            format!("failed to mark pool {} as autostarted", r.name())
        } else {
            format!("failed to unmark pool {} as autostarted", r.name())
        }))?;
        let verb = if on { "marked" } else { "unmarked" };
        ctl.print_extra(&format!("Pool {} {verb} as autostarted\n", r.name()));
        Ok(())
    },
);

pub const POOL_UUID: Command = cmd(
    "pool-uuid",
    G,
    "convert a pool name to pool UUID",
    "Returns UUID of a pool.",
    &[data("pool", "pool name")],
    |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        ctl.print(&format!("{}\n", r.uuid()));
        Ok(())
    },
);

pub const POOL_NAME: Command = cmd(
    "pool-name",
    G,
    "convert a pool UUID to pool name",
    "",
    &[data("pool", "pool uuid")],
    |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        ctl.print(&format!("{}\n", r.name()));
        Ok(())
    },
);

pub const POOL_DUMPXML: Command = cmd(
    "pool-dumpxml",
    G,
    "pool information in XML",
    "Output the pool information as an XML dump to stdout.",
    &[POOL, flag("inactive", "show inactive defined XML")],
    |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        let def = match (a.flag("inactive"), &r.config) {
            (true, Some(c)) => c,
            _ => &r.def,
        };
        ctl.print(&def.to_xml());
        Ok(())
    },
);

pub const POOL_INFO: Command = cmd(
    "pool-info",
    G,
    "storage pool information",
    "Returns basic information about the storage pool.",
    &[POOL, flag("bytes", "Reture pool info in bytes")],
    |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut s = key_value("Name", r.name(), 15);
        s.push_str(&key_value("UUID", &r.uuid(), 15));
        s.push_str(&key_value("State", r.state.as_str(), 15));
        s.push_str(&key_value("Persistent", yes(r.persistent()), 15));
        s.push_str(&key_value("Autostart", yes(r.autostart), 15));
        if r.is_active() {
            let f = StorageDriver::figures_of(&r);
            let show = |v: u64| {
                if a.flag("bytes") {
                    v.to_string()
                } else {
                    pretty(v)
                }
            };
            s.push_str(&key_value("Capacity", &show(f.capacity), 15));
            s.push_str(&key_value("Allocation", &show(f.allocation), 15));
            s.push_str(&key_value("Available", &show(f.available), 15));
        }
        ctl.print(&s);
        Ok(())
    },
);

pub const POOL_LIST: Command = cmd(
    "pool-list",
    G,
    "list pools",
    "Returns list of pools.",
    &[
        flag("inactive", "list inactive pools"),
        flag("all", "list inactive & active pools"),
        flag("transient", "list transient pools"),
        flag("persistent", "list persistent pools"),
        flag("autostart", "list pools with autostart enabled"),
        flag("no-autostart", "list pools with autostart disabled"),
        string("type", "only list pool of specified type(s) (if supported)"),
        flag("details", "display extended details for pools"),
        flag("uuid", "list UUID of active pools only"),
        flag("name", "list name of active pools only"),
    ],
    pool_list,
);

fn pool_list(ctl: &mut Ctl, a: &Args) -> CmdResult {
    if a.flag("all") && a.flag("inactive") {
        return Err(CmdError::msg(
            "Options --all and --inactive are mutually exclusive",
        ));
    }
    let d = driver(ctl)?;
    let types: Vec<&str> = a
        .get("type")
        .map(|t| t.split(',').collect())
        .unwrap_or_default();
    let pools: Vec<PoolRecord> = d
        .list()
        .map_err(|e| CmdError::ctx("Failed to list pools", e))?
        .into_iter()
        .filter(|r| {
            (a.flag("all") || a.flag("inactive") != r.is_active())
                && (!a.flag("persistent") || r.persistent())
                && (!a.flag("transient") || !r.persistent())
                && (!a.flag("autostart") || r.autostart)
                && (!a.flag("no-autostart") || !r.autostart)
                && (types.is_empty() || types.contains(&r.def.pool_type()))
        })
        .collect();
    if a.flag("name") || a.flag("uuid") {
        let mut s = String::new();
        for r in &pools {
            match (a.flag("uuid"), a.flag("name")) {
                (true, true) => s.push_str(&format!("{}  {}\n", r.uuid(), r.name())),
                (true, false) => s.push_str(&format!("{}\n", r.uuid())),
                _ => s.push_str(&format!("{}\n", r.name())),
            }
        }
        ctl.print(&s);
        return Ok(());
    }
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let t = if a.flag("details") {
        let mut t = Table::new(&[
            "Name",
            "State",
            "Autostart",
            "Persistent",
            "Capacity",
            "Allocation",
            "Available",
        ]);
        for r in &pools {
            let f = StorageDriver::figures_of(r);
            let fig = |v: u64| if r.is_active() { pretty(v) } else { "-".into() };
            t.row(vec![
                r.name().to_string(),
                r.state.as_str().to_string(),
                yes(r.autostart),
                yes(r.persistent()),
                fig(f.capacity),
                fig(f.allocation),
                fig(f.available),
            ]);
        }
        t
    } else {
        let mut t = Table::new(&["Name", "State", "Autostart"]);
        for r in &pools {
            let state = if r.state == PoolState::Running {
                "active"
            } else {
                "inactive"
            };
            t.row(vec![r.name().to_string(), state.into(), yes(r.autostart)]);
        }
        t
    };
    ctl.print(&t.render(ctl.quiet));
    Ok(())
}

const VOL: Opt = data("vol", "vol name, key or path");
const VOL_POOL: Opt = opt_data("pool", "pool name or uuid");

fn parse_size_arg(_what: &str, text: &str) -> Result<u64, CmdError> {
    parse_size(text).map_err(|_| CmdError::msg(format!("Malformed size {text}")))
}

pub const VOL_CREATE_AS: Command = cmd(
    "vol-create-as",
    G,
    "create a volume from a set of args",
    "Create a vol.",
    &[
        data("pool", "pool name"),
        data("name", "name of the volume"),
        data(
            "capacity",
            "size of the vol, as scaled integer (default bytes)",
        ),
        string(
            "allocation",
            "initial allocation size, as scaled integer (default bytes)",
        ),
        string("format", "file format type raw,bochs,qcow,qcow2,qed,vmdk"),
        string("backing-vol", "the backing volume if taking a snapshot"),
        string(
            "backing-vol-format",
            "format of backing volume if taking a snapshot",
        ),
        flag(
            "prealloc-metadata",
            "preallocate metadata (for qcow2 instead of full allocation)",
        ),
        flag("print-xml", "print XML document, but don't define/create"),
    ],
    |ctl, a| {
        let name = a.get("name").unwrap_or_default().to_string();
        let capacity = parse_size_arg("capacity", a.get("capacity").unwrap_or_default())?;
        let allocation = a
            .get("allocation")
            .map(|s| parse_size_arg("allocation", s))
            .transpose()?;
        let spec = VolCreate {
            name: name.clone(),
            capacity,
            allocation,
            format: a.get("format").map(str::to_string),
            backing: a.get("backing-vol").map(str::to_string),
            backing_format: a.get("backing-vol-format").map(str::to_string),
            prealloc_metadata: a.flag("prealloc-metadata"),
            ..VolCreate::default()
        };
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        if a.flag("print-xml") {
            let mut spec = spec;
            // virsh shows the backing volume by its path.
            if let Some(b) = &spec.backing {
                let v = d
                    .volume(Some(r.name()), b)
                    .map_err(|e| CmdError::ctx(format!("failed to get vol '{b}'"), e))?;
                spec.backing = Some(v.path);
            }
            ctl.print(&spec.to_xml());
            return Ok(());
        }
        d.create_volume(r.name(), &spec)
            .map_err(fail(format!("Failed to create vol {name}")))?;
        ctl.print_extra(&format!("Vol {name} created\n"));
        Ok(())
    },
);

pub const VOL_CREATE: Command = cmd(
    "vol-create",
    G,
    "create a vol from an XML file",
    "Create a vol.",
    &[
        data("pool", "pool name"),
        data("file", "file containing an XML vol description"),
        flag(
            "prealloc-metadata",
            "preallocate metadata (for qcow2 instead of full allocation)",
        ),
    ],
    |ctl, a| {
        let file = a.get("file").unwrap_or_default();
        let xml = read_file(file)?;
        let mut spec =
            VolCreate::from_xml(&xml).map_err(fail(format!("Failed to create vol from {file}")))?;
        spec.prealloc_metadata = a.flag("prealloc-metadata");
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        d.create_volume(r.name(), &spec)
            .map_err(fail(format!("Failed to create vol from {file}")))?;
        ctl.print_extra(&format!("Vol {} created from {file}\n", spec.name));
        Ok(())
    },
);

pub const VOL_LIST: Command = cmd(
    "vol-list",
    G,
    "list vols",
    "Returns list of vols by pool.",
    &[
        POOL,
        flag("details", "display extended details for volumes"),
    ],
    |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        let vols = d
            .volumes(r.name())
            .map_err(|e| CmdError::ctx("Failed to list active vols", e))?;
        let t = if a.flag("details") {
            let mut t = Table::new(&["Name", "Path", "Type", "Capacity", "Allocation"]);
            for v in &vols {
                t.row(vec![
                    v.name.clone(),
                    v.path.clone(),
                    v.vol_type.clone(),
                    pretty(v.capacity),
                    pretty(v.allocation),
                ]);
            }
            t
        } else {
            let mut t = Table::new(&["Name", "Path"]);
            for v in &vols {
                t.row(vec![v.name.clone(), v.path.clone()]);
            }
            t
        };
        ctl.print(&t.render(ctl.quiet));
        Ok(())
    },
);

pub const VOL_INFO: Command = cmd(
    "vol-info",
    G,
    "storage vol information",
    "Returns basic information about the storage vol.",
    &[
        VOL,
        VOL_POOL,
        flag(
            "bytes",
            "sizes are represented in bytes rather than pretty units",
        ),
        flag(
            "physical",
            "return the physical size of the volume in allocation field",
        ),
    ],
    |ctl, a| {
        let d = driver(ctl)?;
        let v = vol(&d, a)?;
        let show = |n: u64| {
            if a.flag("bytes") {
                format!("{n} bytes")
            } else {
                pretty(n)
            }
        };
        let mut s = key_value("Name", &v.name, 15);
        s.push_str(&key_value("Type", &v.vol_type, 15));
        s.push_str(&key_value("Capacity", &show(v.capacity), 15));
        if a.flag("physical") {
            s.push_str(&key_value("Physical", &show(v.physical), 15));
        } else {
            s.push_str(&key_value("Allocation", &show(v.allocation), 15));
        }
        ctl.print(&s);
        Ok(())
    },
);

fn print_vol(ctl: &mut Ctl, a: &Args, pick: fn(&VolInfo) -> String) -> CmdResult {
    let d = driver(ctl)?;
    let v = vol(&d, a)?;
    ctl.print(&format!("{}\n", pick(&v)));
    Ok(())
}

pub const VOL_PATH: Command = cmd(
    "vol-path",
    G,
    "returns the volume path for a given volume name or key",
    "Returns the volume path for a given volume name or key",
    &[VOL, VOL_POOL],
    |ctl, a| print_vol(ctl, a, |v| v.path.clone()),
);

pub const VOL_KEY: Command = cmd(
    "vol-key",
    G,
    "returns the volume key for a given volume name or path",
    "Returns the volume key for a given volume name or path",
    &[VOL, VOL_POOL],
    |ctl, a| print_vol(ctl, a, |v| v.key.clone()),
);

pub const VOL_NAME: Command = cmd(
    "vol-name",
    G,
    "returns the volume name for a given volume key or path",
    "Returns the volume name for a given volume key or path",
    &[VOL],
    |ctl, a| print_vol(ctl, a, |v| v.name.clone()),
);

pub const VOL_POOL_CMD: Command = cmd(
    "vol-pool",
    G,
    "returns the storage pool for a given volume key or path",
    "Returns the storage pool for a given volume key or path",
    &[
        VOL,
        flag("uuid", "return the pool uuid rather than pool name"),
    ],
    |ctl, a| {
        let d = driver(ctl)?;
        let v = vol(&d, a)?;
        let out = if a.flag("uuid") {
            d.lookup(&v.pool).map(|r| r.uuid()).unwrap_or_default()
        } else {
            v.pool.clone()
        };
        ctl.print(&format!("{out}\n"));
        Ok(())
    },
);

pub const VOL_DUMPXML: Command = cmd(
    "vol-dumpxml",
    G,
    "vol information in XML",
    "Output the vol information as an XML dump to stdout.",
    &[VOL, VOL_POOL],
    |ctl, a| print_vol(ctl, a, format_volume),
);

pub const VOL_DELETE: Command = cmd(
    "vol-delete",
    G,
    "delete a vol",
    "Delete a given vol.",
    &[VOL, VOL_POOL],
    |ctl, a| {
        let d = driver(ctl)?;
        let key = a.get("vol").unwrap_or_default();
        let v = vol(&d, a)?;
        let busy = in_use(ctl)?;
        d.delete_volume(Some(&v.pool), &v.name, &|p| used(&busy, p))
            .map_err(fail(format!("Failed to delete vol {key}")))?;
        ctl.print_extra(&format!("Vol {key} deleted\n"));
        Ok(())
    },
);

pub const VOL_RESIZE: Command = cmd(
    "vol-resize",
    G,
    "resize a vol",
    "Resizes a storage volume. This is safe only for storage volumes not in use by an active guest.\nSee blockresize for live resizing.",
    &[
        VOL,
        data("capacity", "new capacity for the vol, as scaled integer (default bytes)"),
        VOL_POOL,
        flag("allocate", "allocate the new capacity, rather than leaving it sparse"),
        flag("delta", "use capacity as a delta to current size, rather than the new size"),
        flag("shrink", "allow the resize to shrink the volume"),
    ],
    |ctl, a| {
        let text = a.get("capacity").unwrap_or_default();
        // A leading '-' means shrink by that much, as virsh reads it.
        let (neg, num) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let capacity = parse_size_arg("capacity", num)?;
        let d = driver(ctl)?;
        let v = vol(&d, a)?;
        let delta = a.flag("delta") || neg;
        let shrink = a.flag("shrink") || neg;
        d.resize_volume(Some(&v.pool), &v.name, capacity, delta, shrink, a.flag("allocate"))
            .map_err(fail(format!(
                "Failed to change size of volume '{}' to {text}",
                v.name
            )))?;
        ctl.print_extra(&format!(
            "Size of volume '{}' successfully changed to {text}\n",
            v.name
        ));
        Ok(())
    },
);

pub const VOL_CLONE: Command = cmd(
    "vol-clone",
    G,
    "clone a volume.",
    "Clone an existing volume within the parent pool.",
    &[
        VOL,
        data("newname", "clone name"),
        VOL_POOL,
        flag(
            "prealloc-metadata",
            "preallocate metadata (for qcow2 instead of full allocation)",
        ),
        flag("reflink", "use btrfs COW lightweight copy"),
    ],
    |ctl, a| {
        let d = driver(ctl)?;
        let v = vol(&d, a)?;
        let new = a.get("newname").unwrap_or_default();
        let flags = CopyFlags {
            prealloc_metadata: a.flag("prealloc-metadata"),
            reflink: a.flag("reflink"),
        };
        d.clone_volume(Some(&v.pool), &v.name, new, flags)
            .map_err(fail(format!("Failed to clone vol from {}", v.name)))?;
        ctl.print_extra(&format!("Vol {new} cloned from {}\n", v.name));
        Ok(())
    },
);

const TRANSFER_OPTS: &[Opt] = &[
    VOL,
    data("file", "file"),
    VOL_POOL,
    int(
        "offset",
        false,
        false,
        "volume offset to upload/download from",
    ),
    int("length", false, false, "amount of data to upload/download"),
    flag("sparse", "preserve sparseness of volume"),
];

fn transfer(a: &Args) -> Result<Transfer, CmdError> {
    let num = |n: &str| -> Result<u64, CmdError> {
        match a.get(n) {
            None => Ok(0),
            Some(v) => v
                .parse()
                .map_err(|_| CmdError::msg(format!("Unable to parse integer parameter to --{n}"))),
        }
    };
    Ok(Transfer {
        offset: num("offset")?,
        length: num("length")?,
        sparse: a.flag("sparse"),
    })
}

pub const VOL_UPLOAD: Command = cmd(
    "vol-upload",
    G,
    "upload file contents to a volume",
    "Upload file contents to a volume",
    TRANSFER_OPTS,
    |ctl, a| {
        let t = transfer(a)?;
        let file = a.get("file").unwrap_or_default();
        let d = driver(ctl)?;
        let v = vol(&d, a)?;
        let mut input = std::fs::File::open(file)
            .map_err(|e| CmdError::msg(format!("cannot read {file}: {e}")))?;
        let size = input.metadata().map(|m| m.len()).unwrap_or(0);
        let expected = if t.length > 0 {
            size.min(t.length)
        } else {
            size
        };
        // A bar only on a terminal: scripts and logs see exactly virsh's (empty) output.
        let mut bar = JobProgress::new(&mut *ctl.err, "Upload", progress::is_tty(2));
        d.upload_with_progress(
            Some(&v.pool),
            &v.name,
            &mut input,
            t,
            expected,
            &mut |done, total| bar.update(done, total),
        )
        .map_err(fail(format!("cannot upload to volume {}", v.name)))?;
        bar.finish();
        Ok(())
    },
);

pub const VOL_DOWNLOAD: Command = cmd(
    "vol-download",
    G,
    "download volume contents to a file",
    "Download volume contents to a file",
    TRANSFER_OPTS,
    |ctl, a| {
        let t = transfer(a)?;
        let file = a.get("file").unwrap_or_default();
        let d = driver(ctl)?;
        let v = vol(&d, a)?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(file)
            .map_err(|e| CmdError::msg(format!("cannot create {file}: {e}")))?;
        let mut bar = JobProgress::new(&mut *ctl.err, "Download", progress::is_tty(2));
        let r =
            d.download_with_progress(Some(&v.pool), &v.name, &mut out, t, &mut |done, total| {
                bar.update(done, total)
            });
        if r.is_ok() {
            bar.finish();
        }
        if let Err(e) = r {
            let _ = std::fs::remove_file(file);
            return Err(CmdError::ctx(
                format!("cannot download from volume {}", v.name),
                e,
            ));
        }
        Ok(())
    },
);

pub const VOL_WIPE: Command = cmd(
    "vol-wipe",
    G,
    "wipe a vol",
    "Ensure data previously on a volume is not accessible to future reads.",
    &[
        VOL,
        VOL_POOL,
        string("algorithm", "perform selected wiping algorithm"),
    ],
    |ctl, a| {
        const ALGORITHMS: &[&str] = &[
            "zero",
            "nnsa",
            "dod",
            "bsi",
            "gutmann",
            "schneier",
            "pfitzner7",
            "pfitzner33",
            "random",
            "trim",
        ];
        let alg = a.get("algorithm").unwrap_or("zero");
        if !ALGORITHMS.contains(&alg) {
            return Err(CmdError::msg(format!("Unsupported algorithm '{alg}'")));
        }
        let key = a.get("vol").unwrap_or_default();
        if alg == "trim" {
            // libvirt's local-file backend refuses trim outright (storageBackendVolWipeLocalFile).
            return Err(CmdError::ctx(
                format!("Failed to wipe vol {key}"),
                "argument unsupported: 'trim' algorithm not supported",
            ));
        }
        let d = driver(ctl)?;
        let v = vol(&d, a)?;
        let busy = in_use(ctl)?;
        if alg == "zero" {
            d.wipe_volume(Some(&v.pool), &v.name, &|p| used(&busy, p))
        } else {
            d.wipe_volume_with(Some(&v.pool), &v.name, alg, &|p| used(&busy, p))
        }
        .map_err(fail(format!("Failed to wipe vol {key}")))?;
        ctl.print_extra(&format!("Vol {key} wiped\n"));
        Ok(())
    },
);

pub const VOL_CREATE_FROM: Command = cmd(
    "vol-create-from",
    G,
    "create a vol, using another volume as input",
    "Create a vol from an existing volume.",
    &[
        data("pool", "pool name"),
        data("file", "file containing an XML vol description"),
        data("vol", "input vol name or key"),
        string("inputpool", "pool name or uuid of the input volume's pool"),
        flag(
            "prealloc-metadata",
            "preallocate metadata (for qcow2 instead of full allocation)",
        ),
        flag("reflink", "use btrfs COW lightweight copy"),
    ],
    |ctl, a| {
        let file = a.get("file").unwrap_or_default();
        let xml = read_file(file)?;
        let spec = VolCreate::from_xml_for_copy(&xml)
            .map_err(fail(format!("Failed to create vol from {file}")))?;
        let flags = CopyFlags {
            prealloc_metadata: a.flag("prealloc-metadata"),
            reflink: a.flag("reflink"),
        };
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        let key = a.get("vol").unwrap_or_default();
        let input = d
            .volume(a.get("inputpool"), key)
            .map_err(|e| CmdError::ctx(format!("failed to get vol '{key}'"), e))?;
        d.create_volume_from(r.name(), &spec, &input, flags)
            .map_err(fail(format!("Failed to create vol from {file}")))?;
        ctl.print_extra(&format!(
            "Vol {} created from input vol {}\n",
            spec.name, input.name
        ));
        Ok(())
    },
);

pub const POOL_EDIT: Command = cmd(
    "pool-edit",
    G,
    "edit XML configuration for a storage pool",
    "Edit the XML configuration for a storage pool.",
    &[POOL],
    |ctl, a| {
        let d = driver(ctl)?;
        let r = pool(&d, a)?;
        let original = r.config.as_ref().unwrap_or(&r.def).to_xml();
        let edited = super::editor::run_editor(&format!("pool-{}", r.name()), &original)?;
        if edited == original {
            ctl.print_extra(&format!(
                "Pool {} XML configuration not changed.\n",
                r.name()
            ));
            return Ok(());
        }
        let def = d
            .define(&edited)
            .map_err(fail(format!("Failed to define pool {}", r.name())))?;
        ctl.print_extra(&format!("Pool {} XML configuration edited.\n", def.name()));
        Ok(())
    },
);
