//! The virsh-compatible command line: global options, command parsing (virsh's rules), running
//! commands and printing their results. The work itself is in [`crate::driver`] and
//! [`crate::host`]; this module only parses and formats.

mod commands;
pub mod console;
pub mod format;
pub mod lexer;
pub mod spec;

use std::io::Write;

use crate::driver::{Connection, DriverError};
use crate::store::Env;
use crate::uri::{default_uri, ConnectUri};

pub use commands::COMMANDS;
use spec::{Args, Opt};

/// One command: its name, options, help and handler.
pub struct Command {
    pub name: &'static str,
    pub group: Group,
    pub summary: &'static str,
    pub description: &'static str,
    pub opts: &'static [Opt],
    pub handler: fn(&mut Ctl, &Args) -> CmdResult,
    /// virsh prints an empty line after each command's output, except after `echo`.
    pub trailing_newline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Domain,
    Monitor,
    Host,
    Network,
    Shell,
}

impl Group {
    pub fn title(&self) -> (&'static str, &'static str) {
        match self {
            Group::Domain => ("Domain Management", "domain"),
            Group::Monitor => ("Domain Monitoring", "monitor"),
            Group::Host => ("Host and Hypervisor", "host"),
            Group::Network => ("Networking", "network"),
            Group::Shell => ("Virsh itself", "virsh"),
        }
    }
}

/// A failed command: each line is printed as `error: LINE` on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError(pub Vec<String>);

impl CmdError {
    pub fn msg(s: impl Into<String>) -> CmdError {
        CmdError(vec![s.into()])
    }

    /// virsh's two-line form: what failed, then libvirt's reason.
    pub fn ctx(what: impl Into<String>, why: impl std::fmt::Display) -> CmdError {
        let mut lines = vec![what.into()];
        lines.extend(why.to_string().split("\nerror: ").map(str::to_string));
        CmdError(lines)
    }
}

impl From<DriverError> for CmdError {
    fn from(e: DriverError) -> Self {
        CmdError(
            e.to_string()
                .split("\nerror: ")
                .map(str::to_string)
                .collect(),
        )
    }
}

pub type CmdResult = Result<(), CmdError>;

/// The state of one `ironvirt` invocation (or interactive session).
pub struct Ctl<'a> {
    pub quiet: bool,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// `-c URI`, or what `connect` switched to.
    pub uri: Option<String>,
    pub env: Env,
    conn: Option<Connection>,
    /// Set by `quit`/`exit` in the interactive shell.
    pub exit_requested: bool,
    /// A status other than virsh's 0/1 that the last command asks for (`img check` exits with
    /// qemu-img's 2, 3 or 63).
    pub exit_code: Option<i32>,
}

impl<'a> Ctl<'a> {
    pub fn new(out: &'a mut dyn Write, err: &'a mut dyn Write, env: Env) -> Ctl<'a> {
        Ctl {
            quiet: false,
            out,
            err,
            uri: None,
            env,
            conn: None,
            exit_requested: false,
            exit_code: None,
        }
    }

    /// The URI this invocation uses: `-c`, else the configured default.
    pub fn uri_text(&self) -> String {
        self.uri.clone().unwrap_or_else(|| {
            default_uri(
                &|k| std::env::var(k).ok(),
                &self.env.config_file(),
                self.env.is_root,
            )
        })
    }

    /// The connection, opened on first use.
    pub fn conn(&mut self) -> Result<&Connection, CmdError> {
        if self.conn.is_none() {
            let text = self.uri_text();
            let uri = ConnectUri::parse(&text).map_err(|e| CmdError::ctx_lines(&e.to_string()))?;
            let conn = Connection::open(uri, &self.env)
                .map_err(|e| CmdError::ctx("failed to connect to the hypervisor", e))?;
            self.conn = Some(conn);
        }
        match &self.conn {
            Some(c) => Ok(c),
            None => Err(CmdError::msg("no valid connection")),
        }
    }

    /// Drops the connection so the next command opens `uri`.
    pub fn reconnect(&mut self, uri: Option<String>) {
        self.conn = None;
        if uri.is_some() {
            self.uri = uri;
        }
    }

    pub fn print(&mut self, s: &str) {
        let _ = self.out.write_all(s.as_bytes());
    }

    /// Output suppressed by `-q` (success messages, headers).
    pub fn print_extra(&mut self, s: &str) {
        if !self.quiet {
            self.print(s);
        }
    }
}

impl CmdError {
    fn ctx_lines(text: &str) -> CmdError {
        CmdError(text.split("\nerror: ").map(str::to_string).collect())
    }
}

pub fn find_command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Parses every command of a line (or argv) before running any, as virsh does: a syntax error
/// runs nothing.
fn parse_all(commands: Vec<Vec<String>>) -> Result<Vec<(&'static Command, Args)>, CmdError> {
    let mut parsed = Vec::new();
    for words in commands {
        let Some((name, rest)) = words.split_first() else {
            continue;
        };
        let cmd = find_command(name)
            .ok_or_else(|| CmdError::msg(format!("unknown command: '{name}'")))?;
        let args =
            spec::bind(cmd.name, cmd.opts, rest).map_err(|e| CmdError::msg(e.to_string()))?;
        parsed.push((cmd, args));
    }
    Ok(parsed)
}

fn report(ctl: &mut Ctl, e: &CmdError) {
    for line in &e.0 {
        let _ = writeln!(ctl.err, "error: {line}");
    }
    let _ = ctl.err.flush();
}

/// Runs parsed commands; the result is the last command's.
fn run_parsed(ctl: &mut Ctl, cmds: Vec<(&'static Command, Args)>) -> bool {
    let mut ok = true;
    for (cmd, args) in cmds {
        ctl.exit_code = None;
        let result = if args.flag("help") {
            commands::help_for(ctl, cmd);
            Ok(())
        } else {
            (cmd.handler)(ctl, &args)
        };
        ok = result.is_ok();
        if let Err(e) = &result {
            report(ctl, e);
        }
        if ctl.exit_requested {
            return ok;
        }
        if cmd.trailing_newline {
            ctl.print_extra("\n");
        }
        let _ = ctl.out.flush();
    }
    ok
}

/// Runs a line typed in the interactive shell (or given as a single argument).
pub fn run_line(ctl: &mut Ctl, line: &str) -> bool {
    let commands = match lexer::split_commands(line) {
        Ok(c) => c,
        Err(e) => {
            report(ctl, &CmdError::msg(e.to_string()));
            return false;
        }
    };
    match parse_all(commands) {
        Ok(cmds) => run_parsed(ctl, cmds),
        Err(e) => {
            report(ctl, &e);
            false
        }
    }
}

/// Runs a command given as separate words (no quote processing, no `;` splitting).
pub fn run_argv(ctl: &mut Ctl, words: &[String]) -> bool {
    match parse_all(vec![words.to_vec()]) {
        Ok(cmds) => run_parsed(ctl, cmds),
        Err(e) => {
            report(ctl, &e);
            false
        }
    }
}

/// The global options before the command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Global {
    pub connect: Option<String>,
    pub quiet: bool,
    pub help: bool,
    pub version: Option<bool>,
    /// What follows the global options.
    pub rest: Vec<String>,
    /// The global options to forward to a remote `ironvirt` (everything but `-c`).
    pub forward: Vec<String>,
}

pub const USAGE: &str = "ironvirt [options]... [<command_string>]
ironvirt [options]... <command> [args...]

  options:
    -c | --connect=URI      hypervisor connection URI
    -q | --quiet            quiet mode
    -r | --readonly         connect readonly (accepted; ironvirt does not distinguish)
    -h | --help             this help
    -v                      short version
    -V                      long version
         --version[=TYPE]   version, TYPE is short or long (default short)

  commands (non interactive mode):
    see 'ironvirt help'

  URIs: ironvirt:///system, ironvirt:///session (qemu:///... are accepted as aliases),
        ironvirt+ssh://[user@]host[:port]/system
";

/// Parses the global options, stopping at the first non-option (the command) or `--`.
pub fn parse_global(args: &[String]) -> Result<Global, CmdError> {
    let mut g = Global::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let value = |i: &mut usize, name: &str| -> Result<String, CmdError> {
            let v = args
                .get(*i)
                .cloned()
                .ok_or_else(|| CmdError::msg(format!("option '{name}' requires an argument")))?;
            *i += 1;
            Ok(v)
        };
        match a.as_str() {
            "--" => break,
            "-c" | "--connect" => g.connect = Some(value(&mut i, a)?),
            s if s.starts_with("--connect=") => g.connect = Some(s["--connect=".len()..].into()),
            s if s.starts_with("-c") && s.len() > 2 => g.connect = Some(s[2..].into()),
            "-q" | "--quiet" => {
                g.quiet = true;
                g.forward.push(a.clone());
            }
            "-r" | "--readonly" => g.forward.push(a.clone()),
            "-h" | "--help" => g.help = true,
            "-v" | "--version" | "--version=short" => g.version = Some(false),
            "-V" | "--version=long" => g.version = Some(true),
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(CmdError::msg(format!(
                    "unsupported option '{s}'. See --help."
                )))
            }
            _ => {
                i -= 1;
                break;
            }
        }
    }
    g.rest = args[i..].to_vec();
    Ok(g)
}

/// Runs `ironvirt ARGS` (without the program name) to completion; returns the exit status.
/// `interactive` is called with the control when no command was given.
pub fn main(
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
    interactive: &mut dyn FnMut(&mut Ctl) -> bool,
) -> i32 {
    let mut ctl = Ctl::new(out, err, Env::from_process());
    let g = match parse_global(args) {
        Ok(g) => g,
        Err(e) => {
            report(&mut ctl, &e);
            return 1;
        }
    };
    if g.help {
        ctl.print(USAGE);
        return 0;
    }
    if let Some(long) = g.version {
        if long {
            ctl.print(&format!(
                "Ironvirt {} (libvirt-compatible)\n Hypervisors: KVM (ironvirt-vmm)\n Networking: Bridging\n",
                env!("CARGO_PKG_VERSION")
            ));
        } else {
            ctl.print(&format!("{}\n", env!("CARGO_PKG_VERSION")));
        }
        return 0;
    }
    ctl.quiet = g.quiet;
    ctl.uri = g.connect.clone();
    // A remote URI: the whole command runs on the remote host, over ssh.
    let uri_text = ctl.uri_text();
    if let Ok(uri) = ConnectUri::parse(&uri_text) {
        if uri.ssh.is_some() {
            let mut remote = g.forward.clone();
            remote.extend(g.rest.iter().cloned());
            return run_remote(&uri, &remote, &mut ctl);
        }
    }
    let ok = match g.rest.len() {
        0 => interactive(&mut ctl),
        // One word may be a whole command string ("list --all; dominfo x"), as with virsh.
        1 => run_line(&mut ctl, &g.rest[0]),
        _ => run_argv(&mut ctl, &g.rest),
    };
    let _ = ctl.out.flush();
    if let Some(code) = ctl.exit_code {
        return code;
    }
    if ok {
        0
    } else {
        1
    }
}

fn run_remote(uri: &ConnectUri, args: &[String], ctl: &mut Ctl) -> i32 {
    let Some(cmd) = uri.ssh_command(args) else {
        return 1;
    };
    let _ = ctl.out.flush();
    match std::process::Command::new(&cmd[0]).args(&cmd[1..]).status() {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            report(
                ctl,
                &CmdError::ctx(
                    "failed to connect to the hypervisor",
                    format!("cannot run ssh: {e}"),
                ),
            );
            1
        }
    }
}

#[cfg(test)]
mod tests;
