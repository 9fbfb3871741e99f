//! `netfs` pools: a network filesystem mounted on the target directory by the system's mount
//! helpers (mount.nfs from nfs-common, mount.glusterfs, mount.cifs). Volumes are files in the
//! mounted directory, as in a dir pool. Command lines follow libvirt's
//! virStorageBackendFileSystemMountCmd.

use super::dir;
use super::mount::{self, MountEntry, MountState};
use crate::storage::pool_xml::clean_path;
use crate::storage::{PoolDef, StorageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFormat {
    /// Plain `mount SRC TARGET`: `mount -t auto` does not find nfs, plain mount does.
    Auto,
    Nfs,
    Glusterfs,
    Cifs,
}

impl NetFormat {
    fn parse(s: &str) -> Option<NetFormat> {
        Some(match s {
            "auto" => NetFormat::Auto,
            "nfs" => NetFormat::Nfs,
            "glusterfs" => NetFormat::Glusterfs,
            "cifs" => NetFormat::Cifs,
            _ => return None,
        })
    }
}

/// What a netfs pool mounts, validated as libvirt does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSource {
    pub host: String,
    pub dir: String,
    pub format: NetFormat,
    pub protocol_ver: Option<String>,
}

impl NetSource {
    /// The mount source: `HOST:DIR`, or `//HOST/DIR` for CIFS.
    pub fn spec(&self) -> String {
        match self.format {
            NetFormat::Cifs => format!("//{}/{}", self.host, self.dir),
            _ => format!("{}:{}", self.host, self.dir),
        }
    }
}

pub fn source(def: &PoolDef) -> Result<NetSource, StorageError> {
    let hosts = def.source_hosts();
    let host = match hosts.as_slice() {
        [Some(h)] => h.clone(),
        [None] => return Err(StorageError::Internal("missing source host".into())),
        _ => {
            return Err(StorageError::Unsupported(
                "expected exactly 1 host for the storage pool".into(),
            ))
        }
    };
    let dir = def
        .source_dir()
        .ok_or_else(|| StorageError::Internal("missing source path".into()))?;
    let fmt = def.source_format().unwrap_or_else(|| "auto".into());
    let format = NetFormat::parse(&fmt).ok_or_else(|| {
        StorageError::Unsupported(format!(
            "unknown network filesystem format type '{fmt}' for pool '{}' (auto, nfs, glusterfs or cifs)",
            def.name()
        ))
    })?;
    let protocol_ver = def.protocol_ver();
    if let Some(v) = &protocol_ver {
        if v.parse::<u32>().is_err() && v.parse::<f32>().is_err() {
            return Err(StorageError::Invalid(format!(
                "storage pool protocol ver '{v}' is malformed"
            )));
        }
    }
    Ok(NetSource {
        host,
        dir,
        format,
        protocol_ver,
    })
}

pub fn mount_argv(def: &PoolDef, src: &NetSource) -> Vec<String> {
    let target = def.target_path().unwrap_or_default();
    let nfsvers: Vec<String> = src
        .protocol_ver
        .iter()
        .map(|v| format!("nfsvers={v}"))
        .collect();
    match src.format {
        NetFormat::Auto => mount::mount_argv(None, &nfsvers, &src.spec(), &target),
        NetFormat::Nfs => mount::mount_argv(Some("nfs"), &nfsvers, &src.spec(), &target),
        NetFormat::Glusterfs => mount::mount_argv(
            Some("glusterfs"),
            &["direct-io-mode=1".into()],
            &src.spec(),
            &target,
        ),
        NetFormat::Cifs => mount::mount_argv(Some("cifs"), &["guest".into()], &src.spec(), &target),
    }
}

/// The mount table names a network mount by its source string (nfs4 may add or drop a
/// trailing slash).
fn source_matcher(src: &NetSource) -> impl Fn(&MountEntry) -> bool {
    let want = clean_path(&src.spec());
    move |e: &MountEntry| clean_path(&e.source) == want
}

fn mount_state(def: &PoolDef, src: &NetSource) -> Result<MountState, StorageError> {
    let target = mount::canonical_target(&def.target_path().unwrap_or_default());
    mount::state(
        &mount::mounts()?,
        &src.spec(),
        &source_matcher(src),
        &target,
    )
}

/// Mounts the share on the target (nothing to do when it is mounted there already).
pub fn start(def: &PoolDef) -> Result<(), StorageError> {
    let src = source(def)?;
    dir::check(def)?;
    mount::start_pool(mount_state(def, &src), &mount_argv(def, &src))
}

/// Unmounts the target if this pool's source is mounted there.
pub fn stop(def: &PoolDef) -> Result<(), StorageError> {
    let src = source(def)?;
    mount::stop_pool(
        mount_state(def, &src),
        &def.target_path().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(source: &str, target: &str) -> PoolDef {
        PoolDef::parse(&format!(
            "<pool type='netfs'><name>n</name><source>{source}</source><target><path>{target}</path></target></pool>"
        ))
        .unwrap()
    }

    fn argv(source: &str, target: &str) -> String {
        let p = pool(source, target);
        mount_argv(&p, &super::source(&p).unwrap()).join(" ")
    }

    /// The golden command lines of libvirt's tests/storagepoolxml2argvdata/*-linux.argv.
    #[test]
    fn mount_command_lines_like_libvirt() {
        let h = "<host name='localhost'/><dir path='/var/lib/libvirt/images'/>";
        assert_eq!(
            argv(&format!("{h}<format type='nfs'/>"), "/mnt"),
            "mount -o nodev,nosuid,noexec -t nfs localhost:/var/lib/libvirt/images /mnt"
        );
        assert_eq!(
            argv(
                &format!("{h}<format type='nfs'/><protocol ver='3'/>"),
                "/mnt"
            ),
            "mount -o nodev,nosuid,noexec,nfsvers=3 -t nfs localhost:/var/lib/libvirt/images /mnt"
        );
        assert_eq!(
            argv(&format!("{h}<format type='auto'/>"), "/mnt"),
            "mount -o nodev,nosuid,noexec localhost:/var/lib/libvirt/images /mnt"
        );
        assert_eq!(
            argv(h, "/mnt"),
            "mount -o nodev,nosuid,noexec localhost:/var/lib/libvirt/images /mnt"
        );
        assert_eq!(
            argv(
                "<host name='example.com'/><dir path='samba_share'/><format type='cifs'/>",
                "/mnt/cifs"
            ),
            "mount -o nodev,nosuid,noexec,guest -t cifs //example.com/samba_share /mnt/cifs"
        );
        assert_eq!(
            argv(
                "<host name='example.com'/><dir path='/volume'/><format type='glusterfs'/>",
                "/mnt/gluster"
            ),
            "mount -o nodev,nosuid,noexec,direct-io-mode=1 -t glusterfs example.com:/volume /mnt/gluster"
        );
    }

    #[test]
    fn source_is_validated() {
        let e = |s: &str| source(&pool(s, "/mnt")).unwrap_err().to_string();
        assert_eq!(
            e("<dir path='/x'/>"),
            "unsupported configuration: expected exactly 1 host for the storage pool"
        );
        assert_eq!(
            e("<host/><dir path='/x'/>"),
            "internal error: missing source host"
        );
        assert_eq!(e("<host name='h'/>"), "internal error: missing source path");
        assert!(e("<host name='h'/><dir path='/x'/><format type='ext4'/>")
            .contains("unknown network filesystem format type 'ext4'"));
    }

    #[test]
    fn recognises_its_mount() {
        let p = pool("<host name='srv'/><dir path='/export'/>", "/mnt");
        let m = source_matcher(&source(&p).unwrap());
        let e = |s: &str| MountEntry {
            dev: (0, 50),
            target: "/mnt".into(),
            fstype: "nfs4".into(),
            source: s.into(),
        };
        assert!(m(&e("srv:/export")));
        assert!(m(&e("srv:/export/")));
        assert!(!m(&e("srv:/other")));
    }
}
