//! `edit`, `net-edit`, `pool-edit`: the user's editor on a temporary copy of a definition.

use super::super::CmdError;

/// Opens `text` in `$VISUAL`/`$EDITOR` (vi by default) and returns what the user saved.
pub(super) fn run_editor(tag: &str, text: &str) -> Result<String, CmdError> {
    let path = std::env::temp_dir().join(format!("ironvirt-edit-{tag}-{}.xml", std::process::id()));
    std::fs::write(&path, text)
        .map_err(|e| CmdError::msg(format!("cannot write {}: {e}", path.display())))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    // The editor command may carry arguments ("emacs -nw"), as with virsh.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status();
    let edited = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(CmdError::msg(format!("{editor}: command failed ({s})"))),
        Err(e) => return Err(CmdError::msg(format!("cannot run editor {editor}: {e}"))),
    }
    edited.map_err(|e| CmdError::msg(format!("cannot read back the edited XML: {e}")))
}
