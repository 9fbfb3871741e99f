//! Runs the host tools the pool backends drive (mount, mkfs, blkid, the lvm2 commands). Every
//! backend builds its argv with a pure function (unit-tested) and hands it here; a failure
//! becomes a [`StorageError::Command`] naming the command line and carrying its stderr, as
//! libvirt's "Child process (…) unexpected exit status N: …".

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::storage::StorageError;

/// What a finished command said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Builds an argv from string slices.
pub fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The Debian package that ships `program`, for the "install it" hint.
fn package_of(program: &str) -> &'static str {
    match program {
        "pvcreate" | "pvremove" | "pvs" | "vgcreate" | "vgchange" | "vgremove" | "vgs" | "lvs"
        | "lvcreate" | "lvremove" | "lvresize" | "lvchange" => "lvm2",
        "mkfs.xfs" => "xfsprogs",
        "mount" | "umount" => "mount",
        _ => "util-linux",
    }
}

/// Finds `program` on PATH, then in the sbin directories a non-root PATH often lacks (mkfs,
/// blkid and the lvm2 tools live there).
pub fn locate(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `argv` and returns how it ended, whatever the exit status (for tools such as blkid whose
/// non-zero statuses are answers, not failures).
pub fn run_any(argv: &[String]) -> Result<(Finished, String), StorageError> {
    let Some(program) = argv.first() else {
        return Err(StorageError::Internal("empty command line".into()));
    };
    let resolved = locate(program).ok_or_else(|| StorageError::CommandMissing {
        program: program.clone(),
        package: package_of(program),
    })?;
    let shown = std::iter::once(resolved.display().to_string())
        .chain(argv[1..].iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(&resolved)
        .args(&argv[1..])
        // The parsers read English, unlocalised output.
        .env("LC_ALL", "C")
        // lvm2 complains about every inherited descriptor it did not expect.
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StorageError::Command {
            command: shown.clone(),
            status: "failure to run".into(),
            stderr: e.to_string(),
        })?;
    let finished = Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if finished.code.is_none() {
        return Err(StorageError::Command {
            command: shown,
            status: format!("fatal signal {}", out.status.signal().unwrap_or(0)),
            stderr: finished.stderr.trim().to_string(),
        });
    }
    Ok((finished, shown))
}

/// Runs `argv`; anything but exit status 0 is an error carrying the tool's message.
pub fn run(argv: &[String]) -> Result<String, StorageError> {
    let (f, shown) = run_any(argv)?;
    if f.code == Some(0) {
        return Ok(f.stdout);
    }
    Err(failure(&shown, &f))
}

/// The error for a command that ended with a non-zero status.
pub fn failure(shown: &str, f: &Finished) -> StorageError {
    // Some tools (mkfs.*) report on stdout; show whichever stream has the message.
    let msg = match f.stderr.trim() {
        "" => f.stdout.trim(),
        e => e,
    };
    StorageError::Command {
        command: shown.to_string(),
        status: format!("exit status {}", f.code.unwrap_or(-1)),
        stderr: msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_status_and_stderr() {
        let e = run(&argv(&["sh", "-c", "echo boom >&2; exit 5"])).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("internal error: Child process ("), "{m}");
        assert!(
            m.ends_with("sh -c echo boom >&2; exit 5) unexpected exit status 5: boom"),
            "{m}"
        );
    }

    #[test]
    fn missing_tool_says_which_package() {
        let e = run(&argv(&["pvcreate-does-not-exist"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cannot find 'pvcreate-does-not-exist' in path: No such file or directory (install the util-linux package)"
        );
        assert_eq!(package_of("vgcreate"), "lvm2");
    }

    #[test]
    fn success_returns_stdout() {
        assert_eq!(run(&argv(&["sh", "-c", "echo hi"])).unwrap(), "hi\n");
    }
}
