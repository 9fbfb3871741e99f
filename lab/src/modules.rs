//! Resolving kernel modules and their dependencies from `modules.dep`, so an initramfs can `insmod`
//! them in order without needing modprobe or depmod inside the guest.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Modules the L2 guests load (LAB.md's order; virtio needs virtio_ring first). They are included even
/// where a test does not use them yet, so every guest has the same driver set.
pub const L2_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_balloon",
    "virtio-rng",
];
/// Modules giving L1 a `/dev/kvm` on the emulated AMD-V CPU.
pub const L1_KVM_MODULES: &[&str] = &["irqbypass", "kvm", "kvm-amd"];
/// Modules for a virtio-pci disk in L1 (QEMU's default `pc` machine), for tests that need a real
/// filesystem there (O_DIRECT) or results that outlive L1.
pub const L1_STORAGE_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
];
/// Modules for network tests in L1 (tap, bridges, veth, nftables NAT).
pub const L1_NET_MODULES: &[&str] = &[
    "tun",
    "llc",
    "stp",
    "bridge",
    "veth",
    "nf_tables",
    "nf_nat",
    "nft_chain_nat",
    "nft_masq",
    "nft_ct",
];

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading {path}: {source} (was `depmod -b` run on the unpacked kernel?)")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("kernel module `{0}` is neither in modules.dep nor built in")]
    Unknown(String),
}

/// A module file to copy into an initramfs, in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The module's name as `insmod` reports it (file stem, `-` kept as in the file name).
    pub name: String,
    /// Path relative to the modules directory, as modules.dep spells it.
    pub rel_path: String,
    /// Absolute host path.
    pub path: PathBuf,
}

/// Module names compare with `-` and `_` equivalent, as the kernel does.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

fn stem(rel: &str) -> &str {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    base.split(".ko").next().unwrap_or(base)
}

/// The parsed `modules.dep` + `modules.builtin` of one kernel.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    /// canonical name -> (relative path, dependencies' relative paths)
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Reads `modules.dep` (and `modules.builtin` if present) from `modules_dir`.
    pub fn load(modules_dir: &Path) -> Result<Self, ModuleError> {
        let read = |name: &str| {
            let path = modules_dir.join(name);
            fs::read_to_string(&path).map_err(|source| ModuleError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let dep = read("modules.dep")?;
        let builtin = read("modules.builtin").unwrap_or_default();
        Ok(Self::parse(modules_dir, &dep, &builtin))
    }

    fn parse(dir: &Path, dep: &str, builtin: &str) -> Self {
        let mut deps = BTreeMap::new();
        for line in dep.lines() {
            let Some((module, rest)) = line.split_once(':') else {
                continue;
            };
            let module = module.trim();
            let list = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(canonical(stem(module)), (module.to_string(), list));
        }
        let builtin = builtin.lines().map(|l| canonical(stem(l.trim()))).collect();
        ModuleIndex {
            dir: dir.to_path_buf(),
            deps,
            builtin,
        }
    }

    /// `names` plus their dependencies, dependencies first, each once. Built-in modules are skipped.
    pub fn resolve(&self, names: &[&str]) -> Result<Vec<Module>, ModuleError> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let key = canonical(name);
            if !self.deps.contains_key(&key) {
                if self.builtin.contains(&key) {
                    continue;
                }
                return Err(ModuleError::Unknown((*name).to_string()));
            }
            self.visit(&key, &mut seen, &mut order);
        }
        Ok(order)
    }

    /// The host path of the module `name` alone (no dependencies), e.g. to ship it for a later `insmod`.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, ModuleError> {
        self.deps
            .get(&canonical(name))
            .map(|(rel, _)| self.dir.join(rel))
            .ok_or_else(|| ModuleError::Unknown(name.to_string()))
    }

    fn visit(&self, key: &str, seen: &mut BTreeSet<String>, order: &mut Vec<Module>) {
        // `seen` is marked before recursing, so a (malformed) dependency cycle terminates.
        if !seen.insert(key.to_string()) {
            return;
        }
        let Some((rel, deps)) = self.deps.get(key) else {
            return;
        };
        for dep in deps {
            self.visit(&canonical(stem(dep)), seen, order);
        }
        order.push(Module {
            name: stem(rel).to_string(),
            rel_path: rel.clone(),
            path: self.dir.join(rel),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/a/virtio_ring.ko:\n\
kernel/a/virtio.ko: kernel/a/virtio_ring.ko\n\
kernel/b/virtio-rng.ko: kernel/a/virtio.ko kernel/a/virtio_ring.ko\n\
kernel/c/kvm-amd.ko: kernel/c/kvm.ko kernel/c/irqbypass.ko\n\
kernel/c/kvm.ko: kernel/c/irqbypass.ko\n\
kernel/c/irqbypass.ko:\n";

    #[test]
    fn orders_dependencies_first() {
        let idx = ModuleIndex::parse(Path::new("/m"), DEP, "kernel/x/builtin_thing.ko\n");
        let names: Vec<_> = idx
            .resolve(&["virtio_rng", "kvm-amd", "builtin-thing"])
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            [
                "virtio_ring",
                "virtio",
                "virtio-rng",
                "irqbypass",
                "kvm",
                "kvm-amd"
            ]
        );
    }

    #[test]
    fn unknown_module_is_an_error() {
        let idx = ModuleIndex::parse(Path::new("/m"), DEP, "");
        assert!(matches!(idx.resolve(&["nope"]), Err(ModuleError::Unknown(n)) if n == "nope"));
    }
}
