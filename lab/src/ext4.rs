//! Moving files in and out of the lab through an ext4 image: the host builds it from a directory with
//! `mkfs.ext4 -d` and reads files back with `debugfs`, neither of which needs root or a loop mount. L1 sees it
//! as a virtio disk, which also gives L1 a real filesystem (tmpfs has no O_DIRECT).

use std::path::Path;
use std::process::Command;

use crate::tools::{self, ToolError};

/// Creates `image` (`size_mib` MiB, sparse) holding a copy of `src_dir`'s tree.
pub fn make_image(src_dir: &Path, size_mib: u64, image: &Path) -> Result<(), ToolError> {
    let _ = std::fs::remove_file(image);
    tools::run_text(
        Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1",
                "-d",
            ])
            .arg(src_dir)
            .arg(image)
            .arg(format!("{size_mib}M")),
    )
    .map(|_| ())
}

/// Copies the file at `inner` (an absolute path inside the filesystem) to `out`.
pub fn dump_file(image: &Path, inner: &str, out: &Path) -> Result<(), ToolError> {
    let _ = std::fs::remove_file(out);
    tools::run_text(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump -p {inner} {}", out.display()))
            .arg(image),
    )?;
    if out.is_file() {
        Ok(())
    } else {
        Err(ToolError::Failed {
            command: format!("debugfs -R 'dump -p {inner}' {}", image.display()),
            status: "no output file".into(),
            stderr: format!("{inner} is not in the image"),
        })
    }
}
