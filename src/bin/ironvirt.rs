//! `ironvirt`: the virsh-compatible command line. Everything but the interactive line editor is in
//! `ironvirt_mgmt::cli`.

use std::io::{BufRead, IsTerminal, Write};

use ironvirt_mgmt::cli::{self, Ctl};

const BANNER: &str = "Welcome to ironvirt, the virtualization interactive terminal.

Type:  'help' for help with commands
       'quit' to quit

";

/// The interactive shell: `ironvirt # ` prompts, with line editing and history on a terminal.
fn interactive(ctl: &mut Ctl) -> bool {
    let mut ok = true;
    if std::io::stdin().is_terminal() {
        ctl.print_extra(BANNER);
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(e) => e,
            Err(e) => {
                let _ = writeln!(ctl.err, "error: cannot start the line editor: {e}");
                return false;
            }
        };
        let history = std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".cache/ironvirt/history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        loop {
            match editor.readline("ironvirt # ") {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    ok = cli::run_line(ctl, &line);
                    if ctl.exit_requested {
                        break;
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => break,
            }
        }
        if let Some(h) = &history {
            if let Some(dir) = h.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = editor.save_history(h);
        }
        ctl.print_extra("\n");
    } else {
        // Commands piped in: one line at a time, no prompt (as virsh does without a terminal).
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            ok = cli::run_line(ctl, &line);
            if ctl.exit_requested {
                break;
            }
        }
    }
    ok
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut err = std::io::stderr();
    let code = cli::main(&args, &mut out, &mut err, &mut interactive);
    let _ = out.flush();
    std::process::exit(code);
}
