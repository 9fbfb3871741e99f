//! The high-level entry point: prepare artifacts once, build initramfs images into a per-run
//! directory, boot L1.

use std::path::{Path, PathBuf};

use crate::artifacts::{self, ArtifactError, Artifacts};
use crate::initramfs::{InitramfsError, L1Initramfs, L2Initramfs};
use crate::run::{self, L1Config, L1Run, RunError};

/// Any lab failure.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// A prepared lab (artifacts downloaded and cached).
#[derive(Debug, Clone)]
pub struct Lab {
    pub artifacts: Artifacts,
}

impl Lab {
    /// Prepares the lab in [`artifacts::lab_dir`].
    pub fn prepare() -> Result<Self, LabError> {
        Self::prepare_in(&artifacts::lab_dir())
    }

    pub fn prepare_in(dir: &Path) -> Result<Self, LabError> {
        Ok(Lab {
            artifacts: artifacts::prepare(dir)?,
        })
    }

    /// `<lab>/runs/<name>`: initramfs images and the console log of the run called `name`.
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.artifacts.lab_dir.join("runs").join(name)
    }

    /// Builds `l2` as `<run dir>/l2.cpio`.
    pub fn build_l2(&self, name: &str, l2: &L2Initramfs) -> Result<PathBuf, LabError> {
        let out = self.run_dir(name).join("l2.cpio");
        l2.build(&self.artifacts, &out)?;
        Ok(out)
    }

    /// Builds `l1` as `<run dir>/l1.cpio` and boots it; `configure` may adjust the L1 settings
    /// (timeout, echo, ...). The console log is `<run dir>/console.log`.
    pub fn run(
        &self,
        name: &str,
        l1: &L1Initramfs,
        configure: impl FnOnce(&mut L1Config),
    ) -> Result<L1Run, LabError> {
        let dir = self.run_dir(name);
        let initrd = dir.join("l1.cpio");
        l1.build(&self.artifacts, &initrd)?;
        let mut cfg = L1Config::new(&self.artifacts, &initrd, &dir.join("console.log"));
        configure(&mut cfg);
        Ok(run::run(&cfg)?)
    }
}
