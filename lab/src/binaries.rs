//! Copying dynamically linked host binaries into an initramfs: the shared libraries `ldd` lists, the
//! dynamic loader, and a debug-stripped copy of the binary (a debug build of the VMM is mostly DWARF,
//! and every megabyte costs boot time when L1 unpacks its initramfs under TCG).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{self, ToolError};

/// The x86-64 dynamic loader path that binaries have as their ELF interpreter.
pub const DYNAMIC_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// The shared libraries (absolute host paths, as `ldd` prints them) that `binary` needs, the dynamic
/// loader included. A static binary needs none.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ToolError> {
    let out = tools::output(Command::new("ldd").arg(binary))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // ldd exits 1 for static executables ("not a dynamic executable"); anything else is a real error.
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("statically linked") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(ToolError::Failed {
            command: format!("ldd {}", binary.display()),
            status: out.status.to_string(),
            stderr: err.trim().to_string(),
        });
    }
    let mut libs = parse_ldd(&text);
    if !libs.iter().any(|l| l == Path::new(DYNAMIC_LOADER)) && !libs.is_empty() {
        libs.push(PathBuf::from(DYNAMIC_LOADER));
    }
    Ok(libs)
}

/// Parses ldd lines: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2 (0x...)`;
/// the vDSO has no file and is skipped.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            let p = PathBuf::from(p);
            if !libs.contains(&p) {
                libs.push(p);
            }
        }
    }
    libs
}

/// Installs `binaries` (host path, file name) into `dir/bin/<name>` and every shared library they need into
/// `dir/lib/<file name>`, the dynamic loader included, for a disk image that a guest runs them from with
/// `dir/lib/ld-linux-x86-64.so.2 --library-path dir/lib dir/bin/<name>`. A flat `lib/` works because ldd's
/// paths end in the sonames the loader searches for.
pub fn install_flat(binaries: &[(PathBuf, String)], dir: &Path) -> Result<(), ToolError> {
    let io = |op: &str, p: &Path, e: std::io::Error| ToolError::Failed {
        command: format!("{op} {}", p.display()),
        status: "I/O error".into(),
        stderr: e.to_string(),
    };
    for sub in ["bin", "lib"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| io("creating", &d, e))?;
    }
    for (host, name) in binaries {
        for lib in shared_libraries(host)? {
            let Some(file) = lib.file_name() else {
                continue;
            };
            let dest = dir.join("lib").join(file);
            if !dest.exists() {
                // fs::copy follows symlinks: the image gets the library's contents under ldd's name.
                std::fs::copy(&lib, &dest).map_err(|e| io("copying", &lib, e))?;
            }
        }
        let dest = dir.join("bin").join(name);
        let copy = stripped_copy(host, &dest);
        if copy != dest {
            std::fs::copy(host, &dest).map_err(|e| io("copying", host, e))?;
        }
    }
    Ok(())
}

/// Writes a copy of `binary` without debug info to `out`; returns the path to archive (the original
/// when `strip` is unavailable or fails, since a larger initramfs still works).
pub fn stripped_copy(binary: &Path, out: &Path) -> PathBuf {
    let ok = tools::output(
        Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(out)
            .arg(binary),
    )
    .map(|o| o.status.success())
    .unwrap_or(false);
    if ok {
        out.to_path_buf()
    } else {
        binary.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn host_shell_has_libc() {
        let libs = shared_libraries(Path::new("/bin/sh")).unwrap();
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("libc.so")));
        assert!(libs.contains(&PathBuf::from(DYNAMIC_LOADER)));
    }
}
