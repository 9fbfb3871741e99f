//! The command table and the shell's own commands (help, echo, quit, connect).

mod devices;
mod domain;
mod editor;
mod host;
mod iface;
mod img;
mod lifecycle;
mod monitor;
mod network;
mod storage;

use super::spec::{alias, argv, flag, opt_data, string, Args, Kind, Opt};
use super::{CmdError, CmdResult, Command, Ctl, Group};

const fn cmd(
    name: &'static str,
    group: Group,
    summary: &'static str,
    description: &'static str,
    opts: &'static [Opt],
    handler: fn(&mut Ctl, &Args) -> CmdResult,
) -> Command {
    Command {
        name,
        group,
        summary,
        description,
        opts,
        handler,
        trailing_newline: true,
    }
}

pub static COMMANDS: &[Command] = &[
    // Domain management.
    domain::AUTOSTART,
    domain::AUTOSTART_BOOT,
    lifecycle::CONSOLE,
    monitor::CPU_STATS,
    lifecycle::CREATE,
    domain::DEFINE,
    lifecycle::DESTROY,
    domain::DOMID,
    domain::DOMNAME,
    domain::DOMUUID,
    domain::DUMPXML,
    domain::EDIT,
    lifecycle::REBOOT,
    lifecycle::RESET,
    lifecycle::RESUME,
    monitor::SETMAXMEM,
    monitor::SETMEM,
    monitor::SETVCPUS,
    lifecycle::SHUTDOWN,
    lifecycle::START,
    lifecycle::SUSPEND,
    domain::UNDEFINE,
    monitor::VCPUCOUNT,
    monitor::VCPUINFO,
    monitor::VCPUPIN,
    iface::ATTACH_INTERFACE,
    iface::DETACH_INTERFACE,
    // Monitoring.
    devices::DOMBLKINFO,
    devices::DOMBLKLIST,
    devices::DOMBLKSTAT,
    devices::DOMIFLIST,
    devices::DOMIFSTAT,
    iface::DOMIF_GETLINK,
    iface::DOMIF_SETLINK,
    iface::DOMIFADDR,
    domain::DOMINFO,
    monitor::DOMMEMSTAT,
    domain::DOMSTATE,
    monitor::DOMSTATS,
    domain::LIST,
    // Host.
    host::CAPABILITIES,
    host::HOSTNAME,
    host::NODEINFO,
    host::URI,
    host::VERSION,
    // Networking.
    network::NET_AUTOSTART,
    network::NET_CREATE,
    network::NET_DEFINE,
    network::NET_DESTROY,
    network::NET_DHCP_LEASES,
    network::NET_DUMPXML,
    network::NET_EDIT,
    network::NET_INFO,
    network::NET_LIST,
    network::NET_NAME,
    network::NET_START,
    network::NET_UNDEFINE,
    network::NET_UPDATE,
    network::NET_UUID,
    // Storage pools and volumes.
    storage::POOL_AUTOSTART,
    storage::POOL_BUILD,
    storage::POOL_CREATE,
    storage::POOL_CREATE_AS,
    storage::POOL_DEFINE,
    storage::POOL_DEFINE_AS,
    storage::POOL_DELETE,
    storage::POOL_DESTROY,
    storage::POOL_DUMPXML,
    storage::POOL_EDIT,
    storage::POOL_INFO,
    storage::POOL_LIST,
    storage::POOL_NAME,
    storage::POOL_REFRESH,
    storage::POOL_START,
    storage::POOL_UNDEFINE,
    storage::POOL_UUID,
    storage::VOL_CLONE,
    storage::VOL_CREATE,
    storage::VOL_CREATE_AS,
    storage::VOL_CREATE_FROM,
    storage::VOL_DELETE,
    storage::VOL_DOWNLOAD,
    storage::VOL_DUMPXML,
    storage::VOL_INFO,
    storage::VOL_KEY,
    storage::VOL_LIST,
    storage::VOL_NAME,
    storage::VOL_PATH,
    storage::VOL_POOL_CMD,
    storage::VOL_RESIZE,
    storage::VOL_UPLOAD,
    storage::VOL_WIPE,
    img::IMG,
    // The shell.
    CONNECT,
    ECHO,
    EXIT,
    HELP,
    QUIT,
];

const CONNECT: Command = cmd(
    "connect",
    Group::Shell,
    "(re)connect to hypervisor",
    "Connect to local hypervisor. This is built-in command after shell start up.",
    &[
        opt_data("name", "hypervisor connection URI"),
        flag("readonly", "read-only connection"),
    ],
    |ctl, a| {
        let uri = a.get("name").map(str::to_string);
        ctl.reconnect(uri);
        ctl.conn().map(|_| ())
    },
);

const QUIT: Command = cmd(
    "quit",
    Group::Shell,
    "quit this interactive terminal",
    "",
    &[],
    |ctl, _| {
        ctl.exit_requested = true;
        Ok(())
    },
);

const EXIT: Command = cmd(
    "exit",
    Group::Shell,
    "quit this interactive terminal",
    "",
    &[],
    |ctl, _| {
        ctl.exit_requested = true;
        Ok(())
    },
);

const ECHO: Command = Command {
    trailing_newline: false,
    ..cmd(
        "echo",
        Group::Shell,
        "echo arguments. Used for internal testing.",
        "Echo back arguments, possibly with quoting. Used for internal testing.",
        &[
            flag("shell", "escape for shell use"),
            flag("xml", "escape for XML use"),
            flag(
                "split",
                "split each argument on ','; ',,' is an escape sequence",
            ),
            flag("err", "output to stderr"),
            alias("str", "string"),
            alias("hi", "string=hello"),
            string("prefix", "prefix the message"),
            argv("string", "arguments to echo"),
        ],
        echo,
    )
};

/// `echo`'s formatting, separate from output for tests.
pub fn echo_text(a: &Args) -> String {
    let mut pieces = Vec::new();
    for s in a.all("string") {
        let mut s = s.clone();
        if a.flag("xml") {
            s = crate::xml::tree::escape_text(&s);
        }
        if a.flag("shell") {
            s = shell_escape(&s);
        }
        pieces.push(s);
    }
    let mut text = String::new();
    if let Some(p) = a.get("prefix") {
        text.push_str(p);
    }
    if a.flag("split") {
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            for part in split_commas(piece) {
                text.push_str(&part);
                text.push('\n');
            }
        }
        // libvirt 10.x: each piece ends its own line, nothing more (virsh-golden/echo-split).
    } else {
        text.push_str(&pieces.join(" "));
        text.push('\n');
    }
    text
}

/// Splits at single commas; ",," stands for a literal comma.
fn split_commas(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                if let Some(p) = parts.last_mut() {
                    p.push(',');
                }
            } else {
                parts.push(String::new());
            }
        } else {
            if let Some(p) = parts.last_mut() {
                p.push(c);
            }
        }
    }
    parts
}

/// Quotes for a POSIX shell when needed (like virBufferEscapeShell).
fn shell_escape(s: &str) -> String {
    const SPECIAL: &str = "|&;()<>[]{}*?$`\"' \t\n~#!\\";
    if !s.is_empty() && !s.chars().any(|c| SPECIAL.contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn echo(ctl: &mut Ctl, a: &Args) -> CmdResult {
    let text = echo_text(a);
    if a.flag("err") {
        let _ = ctl.err.write_all(text.as_bytes());
    } else {
        ctl.print(&text);
    }
    Ok(())
}

const HELP: Command = cmd(
    "help",
    Group::Shell,
    "print help",
    "Prints global help, command specific help, or help for a group of related commands",
    &[opt_data(
        "command",
        "Prints global help, command specific help, or help for a group of related commands",
    )],
    help,
);

fn help(ctl: &mut Ctl, a: &Args) -> CmdResult {
    let groups = [
        Group::Domain,
        Group::Monitor,
        Group::Host,
        Group::Network,
        Group::Shell,
    ];
    let show_group = |ctl: &mut Ctl, g: Group| {
        let (title, keyword) = g.title();
        ctl.print(&format!(" {title} (help keyword '{keyword}'):\n"));
        for c in COMMANDS.iter().filter(|c| c.group == g) {
            ctl.print(&format!("    {:<30} {}\n", c.name, c.summary));
        }
        ctl.print("\n");
    };
    match a.get("command") {
        None => {
            ctl.print("Grouped commands:\n\n");
            for g in groups {
                show_group(ctl, g);
            }
            Ok(())
        }
        Some(name) => {
            if let Some(c) = super::find_command(name) {
                help_for(ctl, c);
                return Ok(());
            }
            if let Some(g) = groups.into_iter().find(|g| g.title().1 == name) {
                show_group(ctl, g);
                return Ok(());
            }
            Err(CmdError::msg(format!(
                "command or command group '{name}' doesn't exist"
            )))
        }
    }
}

/// `help CMD` / `CMD --help`, in virsh's layout.
pub fn help_for(ctl: &mut Ctl, c: &Command) {
    let mut synopsis = c.name.to_string();
    for o in c.opts {
        let piece = match (o.kind, o.positional, o.required) {
            (Kind::Alias(_), ..) => continue,
            (Kind::Bool, ..) => format!("[--{}]", o.name),
            (Kind::Argv, ..) => format!("[<{}>]...", o.name),
            (_, true, true) => format!("<{}>", o.name),
            (_, true, false) => format!("[<{}>]", o.name),
            (Kind::Int, false, _) => format!("[--{} <number>]", o.name),
            (_, false, _) => format!("[--{} <string>]", o.name),
        };
        synopsis.push(' ');
        synopsis.push_str(&piece);
    }
    let mut s = format!(
        "  NAME\n    {} - {}\n\n  SYNOPSIS\n    {}\n\n",
        c.name, c.summary, synopsis
    );
    if !c.description.is_empty() {
        s.push_str(&format!("  DESCRIPTION\n    {}\n\n", c.description));
    }
    let shown: Vec<&Opt> = c
        .opts
        .iter()
        .filter(|o| !matches!(o.kind, Kind::Alias(_)))
        .collect();
    if !shown.is_empty() {
        s.push_str("  OPTIONS\n");
        for o in shown {
            let label = match (o.kind, o.positional) {
                (Kind::Bool, _) => format!("--{}", o.name),
                (Kind::Int, true) => format!("[--{}] <number>", o.name),
                (Kind::Int, false) => format!("--{} <number>", o.name),
                (Kind::Argv, _) => format!("[--{}] <string>", o.name),
                (_, true) => format!("[--{}] <string>", o.name),
                (_, false) => format!("--{} <string>", o.name),
            };
            s.push_str(&format!("    {label:<15}  {}\n", o.help));
        }
        s.push('\n');
    }
    ctl.print(&s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::spec::bind;

    fn echo_of(words: &[&str]) -> String {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        echo_text(&bind("echo", ECHO.opts, &words).unwrap())
    }

    /// libvirt's virshtest echo cases (argv form).
    #[test]
    fn echo_flags() {
        let all = [
            "a", "A", "0", "+", "*", ";", ".", "'", "\"", "/", "?", "=", " ", "\n", "<", ">", "&",
        ];
        assert_eq!(echo_of(&all), "a A 0 + * ; . ' \" / ? =   \n < > &\n");
        let mut v = vec!["--shell"];
        v.extend(all);
        assert_eq!(
            echo_of(&v),
            "a A 0 + '*' ';' . ''\\''' '\"' / '?' = ' ' '\n' '<' '>' '&'\n"
        );
        let mut v = vec!["--xml"];
        v.extend(all);
        assert_eq!(
            echo_of(&v),
            "a A 0 + * ; . &apos; &quot; / ? =   \n &lt; &gt; &amp;\n"
        );
        let mut v = vec!["--shell", "--xml"];
        v.extend(all);
        assert_eq!(
            echo_of(&v),
            "a A 0 + '*' ';' . '&apos;' '&quot;' / '?' = ' ' '\n' '&lt;' '&gt;' '&amp;'\n"
        );
        assert_eq!(echo_of(&[""]), "\n");
        assert_eq!(echo_of(&["--shell", ""]), "''\n");
        assert_eq!(echo_of(&["--", "--", "--shell", "a"]), "-- --shell a\n");
        assert_eq!(echo_of(&["--hi"]), "hello\n");
    }

    #[test]
    fn echo_split_matches_golden() {
        let golden = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/conformance/libvirt-10.7.0/virsh-golden/echo-split.out"
        ));
        let Ok(golden) = golden else { return };
        let inputs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/conformance/libvirt-10.7.0/virsh-golden/echo-split.in"
        ))
        .unwrap();
        let mut out = String::new();
        for line in inputs.lines() {
            let words: Vec<String> = line
                .split_whitespace()
                .skip(1)
                .map(str::to_string)
                .collect();
            out.push_str(&echo_text(&bind("echo", ECHO.opts, &words).unwrap()));
        }
        assert_eq!(out, golden);
    }
}
