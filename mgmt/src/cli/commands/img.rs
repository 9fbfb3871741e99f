//! `ironvirt img`: qemu-img's create and info for raw and qcow2, with its option syntax and
//! output (`ironvirt img info --output json disk.qcow2`). The work is in
//! [`crate::storage::imgtool`].

use crate::cli::spec::{argv, flag, string, Args};
use crate::cli::{CmdError, CmdResult, Command, Ctl, Group};
use crate::storage::imgcheck::Chunk;
use crate::storage::imgtool::{self, parse_qemu_size, CreateArgs};
use crate::storage::progress::QemuProgress;

pub const IMG: Command = Command {
    name: "img",
    group: Group::Host,
    summary: "disk image tool (qemu-img create, info, check, convert, resize, snapshot -l)",
    description: "Creates and inspects raw and qcow2 images like qemu-img: \
                  'img create [-f fmt] [-b backing -F fmt] [-o opts] FILE [SIZE]', \
                  'img info [-U] [--output human|json] FILE', \
                  'img check [-f fmt] [-r leaks|all] [--output human|json] FILE' (exit status 0 clean, \
                  2 corruptions, 3 leaked clusters, 1 check failed, 63 format without checks), \
                  'img convert [-p] [-c] [-f fmt] [-O fmt] SRC DST', 'img resize FILE [+|-]SIZE'.",
    opts: &[
        string("output", "output format for info: human (default) or json"),
        flag("force-share", "accepted (images are never locked for info)"),
        flag("shrink", "resize: allow shrinking"),
        argv("args", "subcommand and its arguments"),
    ],
    handler: img,
    // qemu-img prints nothing after its output.
    trailing_newline: false,
};

fn img(ctl: &mut Ctl, a: &Args) -> CmdResult {
    let words = a.all("args");
    let Some((sub, rest)) = words.split_first() else {
        return Err(CmdError::msg("Not enough arguments: img create|info"));
    };
    match sub.as_str() {
        "create" => create(ctl, rest),
        "info" => info(ctl, a, rest),
        "check" => check(ctl, a, rest),
        "convert" => convert(ctl, rest),
        "resize" => resize(ctl, a, rest),
        "snapshot" => snapshot(ctl, rest),
        other => Err(CmdError::msg(format!(
            "Command not found: {other} (ironvirt img supports create, info, check, convert, resize and snapshot -l)"
        ))),
    }
}

/// Takes the value after a single-dash option.
fn value<'a>(it: &mut std::slice::Iter<'a, String>, opt: &str) -> Result<&'a String, CmdError> {
    it.next()
        .ok_or_else(|| CmdError::msg(format!("option requires an argument -- '{opt}'")))
}

fn create(ctl: &mut Ctl, words: &[String]) -> CmdResult {
    let mut c = CreateArgs::default();
    let mut quiet = false;
    let mut positional = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-f" => c.format = Some(value(&mut it, "f")?.clone()),
            "-F" => c.backing_format = Some(value(&mut it, "F")?.clone()),
            "-b" => c.backing = Some(value(&mut it, "b")?.clone()),
            "-o" => {
                for kv in value(&mut it, "o")?.split(',') {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, "on"));
                    c.options.push((k.to_string(), v.to_string()));
                }
            }
            "-q" => quiet = true,
            "-u" => {}
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(CmdError::msg(format!("invalid option -- '{}'", &s[1..])))
            }
            _ => positional.push(w.clone()),
        }
    }
    let mut pos = positional.into_iter();
    c.filename = pos
        .next()
        .ok_or_else(|| CmdError::msg("Expecting image file name"))?;
    if let Some(s) = pos.next() {
        c.size = Some(parse_qemu_size(&s).ok_or_else(|| {
            CmdError::msg("Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.")
        })?);
    }
    if let Some(extra) = pos.next() {
        return Err(CmdError::msg(format!("Unexpected argument: {extra}")));
    }
    let line = imgtool::create(&c).map_err(|e| CmdError::msg(format!("{}: {e}", c.filename)))?;
    if !quiet && !ctl.quiet {
        ctl.print(&line);
    }
    Ok(())
}

fn info(ctl: &mut Ctl, a: &Args, words: &[String]) -> CmdResult {
    let mut json = matches!(a.get("output"), Some("json"));
    if let Some(o) = a.get("output") {
        if o != "json" && o != "human" {
            return Err(CmdError::msg(
                "--output must be used with human or json as argument.",
            ));
        }
    }
    let mut file = None;
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-U" => {}
            "-f" => {
                let f = value(&mut it, "f")?;
                if f != "raw" && f != "qcow2" {
                    return Err(CmdError::msg(format!("Unknown file format '{f}'")));
                }
            }
            // After `--` the long options arrive as plain words.
            "--output" => json = value(&mut it, "-output")? == "json",
            "--output=json" => json = true,
            "--output=human" => json = false,
            "--force-share" => {}
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(CmdError::msg(format!("invalid option -- '{}'", &s[1..])))
            }
            _ => file = Some(w.clone()),
        }
    }
    let file = file.ok_or_else(|| CmdError::msg("Expecting one image file name"))?;
    let text = if json {
        imgtool::info_json(&file)
    } else {
        imgtool::info_text(&file)
    }
    .map_err(|e| CmdError::msg(format!("Could not open '{file}': {e}")))?;
    ctl.print(&text);
    Ok(())
}

fn check(ctl: &mut Ctl, a: &Args, words: &[String]) -> CmdResult {
    use ironvirt_devices::block::qcow2::Repair;
    let mut json = matches!(a.get("output"), Some("json"));
    if let Some(o) = a.get("output") {
        if o != "json" && o != "human" {
            return Err(CmdError::msg(
                "--output must be used with human or json as argument.",
            ));
        }
    }
    let (mut format, mut repair, mut quiet, mut file) = (None, Repair::None, false, None);
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-f" => format = Some(value(&mut it, "f")?.clone()),
            "-r" => {
                repair = match value(&mut it, "r")?.as_str() {
                    "leaks" => Repair::Leaks,
                    "all" => Repair::All,
                    _ => {
                        return Err(CmdError::msg(
                            "Unknown option value for -r (expecting 'leaks' or 'all')",
                        ))
                    }
                }
            }
            "-q" => quiet = true,
            "-U" | "--force-share" => {}
            "--output" => json = value(&mut it, "-output")? == "json",
            "--output=json" => json = true,
            "--output=human" => json = false,
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(CmdError::msg(format!("invalid option -- '{}'", &s[1..])))
            }
            _ => file = Some(w.clone()),
        }
    }
    let file = file.ok_or_else(|| CmdError::msg("Expecting one image file name"))?;
    let out = imgtool_check(&file, format.as_deref(), repair, json, quiet || ctl.quiet)?;
    for chunk in &out.chunks {
        // Both streams are flushed at every switch so a terminal shows them in qemu-img's order.
        match chunk {
            Chunk::Stdout(s) => {
                ctl.print(s);
                let _ = ctl.out.flush();
            }
            Chunk::Stderr(line) => {
                let _ = writeln!(ctl.err, "{line}");
                let _ = ctl.err.flush();
            }
        }
    }
    ctl.exit_code = Some(out.exit);
    match out.error {
        Some(why) => Err(CmdError::msg(why)),
        None => Ok(()),
    }
}

fn imgtool_check(
    file: &str,
    format: Option<&str>,
    repair: ironvirt_devices::block::qcow2::Repair,
    json: bool,
    quiet: bool,
) -> Result<crate::storage::imgcheck::CheckOutput, CmdError> {
    crate::storage::imgcheck::check(file, format, repair, json, quiet)
        .map_err(|e| CmdError::msg(format!("Could not open '{file}': {e}")))
}

fn convert(ctl: &mut Ctl, words: &[String]) -> CmdResult {
    let (mut src_fmt, mut out_fmt, mut compress) = (None, "raw".to_string(), false);
    let mut show_progress = false;
    let mut files = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-f" => src_fmt = Some(value(&mut it, "f")?.clone()),
            "-O" => out_fmt = value(&mut it, "O")?.clone(),
            "-c" => compress = true,
            // Like qemu-img, -p prints whether or not stdout is a terminal; -q silences it.
            "-p" => show_progress = true,
            "-q" => show_progress = false,
            "-U" => {}
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(CmdError::msg(format!("invalid option -- '{}'", &s[1..])))
            }
            _ => files.push(w.clone()),
        }
    }
    let [src, dst] = files.as_slice() else {
        return Err(CmdError::msg("Expecting one source and one target image"));
    };
    let show_progress = show_progress && !ctl.quiet;
    let mut bar = QemuProgress::new(&mut *ctl.out);
    let mut report = |done, total| {
        if show_progress {
            bar.update(done, total)
        }
    };
    let r = imgtool::convert(
        src,
        src_fmt.as_deref(),
        &out_fmt,
        compress,
        dst,
        &mut report,
    );
    if show_progress {
        if r.is_ok() {
            bar.complete();
        } else {
            bar.finish();
        }
    }
    r.map_err(|e| CmdError::msg(format!("error converting '{src}' to '{dst}': {e}")))
}

fn resize(ctl: &mut Ctl, a: &Args, words: &[String]) -> CmdResult {
    let mut rest = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-f" => {
                value(&mut it, "f")?;
            }
            "-q" => {}
            _ => rest.push(w.clone()),
        }
    }
    let [file, size] = rest.as_slice() else {
        return Err(CmdError::msg("Expecting image file name and size"));
    };
    imgtool::resize(file, size, a.flag("shrink"))
        .map_err(|e| CmdError::msg(format!("{file}: {e}")))?;
    ctl.print("Image resized.\n");
    Ok(())
}

fn snapshot(ctl: &mut Ctl, words: &[String]) -> CmdResult {
    let mut list = false;
    let mut file = None;
    for w in words {
        match w.as_str() {
            "-l" => list = true,
            "-U" | "-q" => {}
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(CmdError::msg(format!(
                    "snapshot {s} is not supported yet (only -l)"
                )))
            }
            _ => file = Some(w.clone()),
        }
    }
    if !list {
        return Err(CmdError::msg("snapshot: only -l (list) is supported"));
    }
    let file = file.ok_or_else(|| CmdError::msg("Expecting one image file name"))?;
    let text = imgtool::snapshot_table(&file)
        .map_err(|e| CmdError::msg(format!("Could not open '{file}': {e}")))?;
    ctl.print(&text);
    Ok(())
}
