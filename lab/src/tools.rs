//! Running the host tools the lab relies on (apt-get, dpkg-deb, lz4, depmod, ldd, qemu), with errors
//! that name the tool and the Debian package providing it, so a missing install is obvious.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A host tool failed or is missing.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "`{tool}` not found: install the Debian package `{package}` (apt-get install {package})"
    )]
    Missing { tool: String, package: &'static str },
    #[error("could not run `{tool}`: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

/// The Debian package that ships a tool, for error messages.
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        "apt-get" | "apt-cache" => "apt",
        "dpkg-deb" => "dpkg",
        "lz4" => "lz4",
        "depmod" => "kmod",
        "ldd" => "libc-bin",
        "strip" => "binutils",
        "qemu-system-x86_64" => "qemu-system-x86",
        "mkfs.ext4" | "debugfs" => "e2fsprogs",
        _ => "the package providing it",
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Where an installed system tool is, looked up in the sbin and bin directories (not `$PATH`: tests and
/// benchmarks run as users whose `$PATH` often lacks `/usr/sbin`, where dnsmasq and nft live).
pub fn which(tool: &str, package: &'static str) -> Result<PathBuf, ToolError> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .ok_or_else(|| ToolError::Missing {
            tool: tool.into(),
            package,
        })
}

/// Runs `cmd` to completion and returns its output, whatever its exit status.
pub fn output(cmd: &mut Command) -> Result<Output, ToolError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    cmd.output().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ToolError::Missing {
                package: package_of(&tool),
                tool,
            }
        } else {
            ToolError::Spawn { tool, source }
        }
    })
}

/// Runs `cmd` and requires exit status 0; returns stdout.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>, ToolError> {
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Runs `cmd` in `dir` and requires exit status 0; returns stdout as (lossy) text.
pub fn run_text_in(cmd: &mut Command, dir: &Path) -> Result<String, ToolError> {
    cmd.current_dir(dir);
    run(cmd).map(|o| String::from_utf8_lossy(&o).into_owned())
}

/// Runs `cmd` and requires exit status 0; returns stdout as (lossy) text.
pub fn run_text(cmd: &mut Command) -> Result<String, ToolError> {
    run(cmd).map(|o| String::from_utf8_lossy(&o).into_owned())
}
