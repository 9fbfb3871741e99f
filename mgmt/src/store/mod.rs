//! Where a connection keeps its state, and the two primitives every write goes through: atomic
//! replacement of a file and a per-object lock.
//!
//! Layout (modelled on libvirt's, never inside a libvirt install's directories):
//! - system: `/etc/ironvirt/{qemu,networks,storage}`, `/var/lib/ironvirt`, `/run/ironvirt`,
//!   `/var/log/ironvirt/qemu`;
//! - session: `$XDG_CONFIG_HOME/ironvirt/…`, `$XDG_DATA_HOME/ironvirt`,
//!   `$XDG_RUNTIME_DIR/ironvirt` (or the cache dir when unset), `$XDG_CACHE_HOME/ironvirt/qemu/log`.
//!
//! `IRONVIRT_ROOT=/some/dir` moves everything (system and session) under that directory, so tests
//! and experiments never touch the real host state.

mod atomic;
mod lock;

use std::path::{Path, PathBuf};

pub use atomic::write_atomic;
pub use lock::FileLock;

use crate::uri::Scope;

/// Every directory a connection reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Persistent domain definitions (`NAME.xml`) and `autostart/` links.
    pub domains: PathBuf,
    pub networks: PathBuf,
    pub storage: PathBuf,
    /// Long-lived data (images, snapshots, saved state).
    pub data: PathBuf,
    /// Runtime state of running domains: status XML, pid files, control sockets, locks.
    pub run: PathBuf,
    /// One log per domain (`NAME.log`): the VMM's stderr.
    pub logs: PathBuf,
    /// The client config file (`uri_default`).
    pub config_file: PathBuf,
}

/// What the environment says, gathered once so tests can supply their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub root: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub xdg_config: Option<PathBuf>,
    pub xdg_data: Option<PathBuf>,
    pub xdg_cache: Option<PathBuf>,
    pub xdg_runtime: Option<PathBuf>,
    pub is_root: bool,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            root: var("IRONVIRT_ROOT"),
            home: var("HOME"),
            xdg_config: var("XDG_CONFIG_HOME"),
            xdg_data: var("XDG_DATA_HOME"),
            xdg_cache: var("XDG_CACHE_HOME"),
            xdg_runtime: var("XDG_RUNTIME_DIR"),
            // SAFETY: geteuid has no preconditions.
            is_root: unsafe { libc::geteuid() } == 0,
        }
    }

    fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(|| PathBuf::from("/"))
    }

    fn xdg(&self, set: &Option<PathBuf>, fallback: &str) -> PathBuf {
        match (&self.root, set) {
            (Some(root), _) => root.join("session").join(fallback),
            (None, Some(p)) => p.clone(),
            (None, None) => self.home().join(fallback),
        }
    }

    /// The client config file for this user: system-wide for root, per user otherwise.
    pub fn config_file(&self) -> PathBuf {
        if self.is_root {
            self.system_prefix("etc/ironvirt").join("ironvirt.conf")
        } else {
            self.xdg(&self.xdg_config, ".config")
                .join("ironvirt/ironvirt.conf")
        }
    }

    fn system_prefix(&self, rel: &str) -> PathBuf {
        match &self.root {
            Some(root) => root.join(rel),
            None => Path::new("/").join(rel),
        }
    }

    pub fn paths(&self, scope: Scope) -> Paths {
        match scope {
            Scope::System => {
                let etc = self.system_prefix("etc/ironvirt");
                Paths {
                    domains: etc.join("qemu"),
                    networks: etc.join("networks"),
                    storage: etc.join("storage"),
                    data: self.system_prefix("var/lib/ironvirt"),
                    run: self.system_prefix("run/ironvirt/qemu"),
                    logs: self.system_prefix("var/log/ironvirt/qemu"),
                    config_file: self.config_file(),
                }
            }
            Scope::Session => {
                let config = self.xdg(&self.xdg_config, ".config").join("ironvirt");
                let cache = self.xdg(&self.xdg_cache, ".cache").join("ironvirt");
                let run = match (&self.root, &self.xdg_runtime) {
                    (Some(root), _) => root.join("session/runtime/ironvirt"),
                    (None, Some(p)) => p.join("ironvirt"),
                    (None, None) => cache.join("run"),
                };
                Paths {
                    domains: config.join("qemu"),
                    networks: config.join("networks"),
                    storage: config.join("storage"),
                    data: self.xdg(&self.xdg_data, ".local/share").join("ironvirt"),
                    run: run.join("qemu"),
                    logs: cache.join("qemu/log"),
                    config_file: self.config_file(),
                }
            }
        }
    }
}

/// Creates `dir` and its parents; runtime directories hold sockets and pid files, so they are
/// private to the owner.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Why an autostart link could not be set: what was being done, to which path.
#[derive(Debug)]
pub struct LinkError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Marks (`enable`) or unmarks an object for autostart the way libvirt does: a symlink at `link` to its
/// persistent definition `config`. Domains, networks and pools all use this.
pub fn set_autostart_link(config: &Path, link: &Path, enable: bool) -> Result<(), LinkError> {
    let err = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| LinkError { what, path, source }
    };
    if enable {
        if let Some(dir) = link.parent() {
            ensure_dir(dir).map_err(err("cannot create directory", dir))?;
        }
        // Replacing the link keeps it pointing at the current definition.
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(config, link).map_err(err("cannot create autostart link", link))
    } else {
        match std::fs::remove_file(link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(err("cannot remove autostart link", link)(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autostart_links() {
        let dir = std::env::temp_dir().join(format!("ironvirt-autostart-{}", std::process::id()));
        let config = dir.join("vm.xml");
        let link = dir.join("autostart/vm.xml");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&config, "x").unwrap();
        set_autostart_link(&config, &link, true).unwrap();
        set_autostart_link(&config, &link, true).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), config);
        set_autostart_link(&config, &link, false).unwrap();
        set_autostart_link(&config, &link, false).unwrap();
        assert!(!link.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn root_override_moves_everything() {
        let env = Env {
            root: Some("/tmp/x".into()),
            home: Some("/home/u".into()),
            xdg_config: Some("/elsewhere".into()),
            is_root: true,
            ..Env::default()
        };
        let sys = env.paths(Scope::System);
        assert_eq!(sys.domains, Path::new("/tmp/x/etc/ironvirt/qemu"));
        assert_eq!(sys.run, Path::new("/tmp/x/run/ironvirt/qemu"));
        assert_eq!(sys.logs, Path::new("/tmp/x/var/log/ironvirt/qemu"));
        let ses = env.paths(Scope::Session);
        assert!(ses.domains.starts_with("/tmp/x/session"));
        assert!(ses.run.starts_with("/tmp/x/session"));
        assert!(ses.logs.starts_with("/tmp/x/session"));
    }

    #[test]
    fn real_layout() {
        let env = Env {
            home: Some("/home/u".into()),
            xdg_runtime: Some("/run/user/1000".into()),
            ..Env::default()
        };
        assert_eq!(
            env.paths(Scope::System).domains,
            Path::new("/etc/ironvirt/qemu")
        );
        let ses = env.paths(Scope::Session);
        assert_eq!(ses.domains, Path::new("/home/u/.config/ironvirt/qemu"));
        assert_eq!(ses.run, Path::new("/run/user/1000/ironvirt/qemu"));
        assert_eq!(ses.logs, Path::new("/home/u/.cache/ironvirt/qemu/log"));
        assert_eq!(
            env.config_file(),
            Path::new("/home/u/.config/ironvirt/ironvirt.conf")
        );
    }
}
