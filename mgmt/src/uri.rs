//! Connection URIs: `ironvirt:///system|session`, libvirt's `qemu:///…` spellings as aliases, and
//! `ironvirt+ssh://[user@]host[:port]/system` for running a command on another host.

use std::path::Path;

/// Which local store a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The host-wide store under /etc, /var/lib and /run (root).
    System,
    /// The per-user store under the XDG directories.
    Session,
}

impl Scope {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::Session => "session",
        }
    }
}

/// Where `ironvirt+ssh` connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// A parsed connection URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectUri {
    /// The URI as the user wrote it; `uri` prints it back.
    pub text: String,
    pub scope: Scope,
    /// `Some` for a remote connection.
    pub ssh: Option<SshTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("failed to connect to the hypervisor\nerror: no connection driver available for {0}")]
    NoDriver(String),
    #[error("failed to connect to the hypervisor\nerror: invalid argument: unexpected {scheme} URI path '{path}', try {scheme}:///system or {scheme}:///session")]
    BadPath { scheme: String, path: String },
    #[error("failed to connect to the hypervisor\nerror: invalid argument: malformed URI '{0}'")]
    Malformed(String),
    #[error("failed to connect to the hypervisor\nerror: invalid argument: remote URIs need a host name: '{0}'")]
    MissingHost(String),
}

impl ConnectUri {
    pub fn parse(text: &str) -> Result<ConnectUri, UriError> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| UriError::Malformed(text.to_string()))?;
        let (driver, transport) = match scheme.split_once('+') {
            Some((d, t)) => (d, Some(t)),
            None => (scheme, None),
        };
        if !matches!(driver, "ironvirt" | "qemu" | "kvm") {
            return Err(UriError::NoDriver(text.to_string()));
        }
        // Query parameters (e.g. libvirt's ?socket=) are accepted and ignored.
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let scope = match path.trim_end_matches('/') {
            "/system" => Scope::System,
            "/session" => Scope::Session,
            other => {
                return Err(UriError::BadPath {
                    scheme: scheme.to_string(),
                    path: other.to_string(),
                })
            }
        };
        let ssh = match transport {
            None if authority.is_empty() => None,
            // qemu://host/system means "the remote daemon on host" in libvirt; we only reach
            // remote hosts over ssh.
            None => return Err(UriError::NoDriver(text.to_string())),
            Some("ssh") => Some(parse_authority(authority, text)?),
            Some(_) => return Err(UriError::NoDriver(text.to_string())),
        };
        Ok(ConnectUri {
            text: text.to_string(),
            scope,
            ssh,
        })
    }

    /// The URI the remote `ironvirt` is told to use: its own local store of the same scope.
    pub fn remote_local_uri(&self) -> String {
        format!("ironvirt:///{}", self.scope.as_str())
    }

    /// The ssh command line that runs `ironvirt <args>` on the remote host. The remote shell
    /// re-splits words, so every argument is quoted.
    pub fn ssh_command(&self, args: &[String]) -> Option<Vec<String>> {
        let target = self.ssh.as_ref()?;
        let mut cmd = vec!["ssh".to_string()];
        if let Some(port) = target.port {
            cmd.push("-p".into());
            cmd.push(port.to_string());
        }
        cmd.push(match &target.user {
            Some(u) => format!("{u}@{}", target.host),
            None => target.host.clone(),
        });
        cmd.push("ironvirt".into());
        cmd.push("-c".into());
        cmd.push(self.remote_local_uri());
        cmd.extend(args.iter().map(|a| shell_quote(a)));
        Some(cmd)
    }
}

fn parse_authority(authority: &str, text: &str) -> Result<SshTarget, UriError> {
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h,
            Some(
                p.parse::<u16>()
                    .map_err(|_| UriError::Malformed(text.to_string()))?,
            ),
        ),
        _ => (hostport, None),
    };
    if host.is_empty() {
        return Err(UriError::MissingHost(text.to_string()));
    }
    Ok(SshTarget {
        user: user.filter(|u| !u.is_empty()),
        host: host.to_string(),
        port,
    })
}

/// POSIX shell quoting: plain words stay as they are, anything else goes in single quotes.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Where the default URI comes from, in libvirt's order: the environment, then `uri_default` in
/// the client config file, then system for root and session for everyone else.
pub fn default_uri(
    env: &dyn Fn(&str) -> Option<String>,
    config_file: &Path,
    is_root: bool,
) -> String {
    for var in ["IRONVIRT_DEFAULT_URI", "LIBVIRT_DEFAULT_URI"] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            return v;
        }
    }
    if let Some(v) = std::fs::read_to_string(config_file)
        .ok()
        .and_then(|text| crate::config::uri_default(&text))
    {
        return v;
    }
    if is_root {
        "ironvirt:///system".into()
    } else {
        "ironvirt:///session".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_uris_and_aliases() {
        for (text, scope) in [
            ("ironvirt:///system", Scope::System),
            ("ironvirt:///session", Scope::Session),
            ("qemu:///system", Scope::System),
            ("qemu:///session", Scope::Session),
            ("qemu:///system?socket=/x", Scope::System),
        ] {
            let u = ConnectUri::parse(text).unwrap();
            assert_eq!(u.scope, scope);
            assert_eq!(u.ssh, None);
            assert_eq!(u.text, text);
        }
    }

    #[test]
    fn bad_uris() {
        assert!(matches!(
            ConnectUri::parse("xen:///system"),
            Err(UriError::NoDriver(_))
        ));
        assert!(matches!(
            ConnectUri::parse("ironvirt:///embed"),
            Err(UriError::BadPath { .. })
        ));
        assert!(matches!(
            ConnectUri::parse("system"),
            Err(UriError::Malformed(_))
        ));
        assert!(ConnectUri::parse("ironvirt+tls://h/system").is_err());
        assert!(ConnectUri::parse("ironvirt+ssh:///system").is_err());
    }

    #[test]
    fn ssh_command_construction() {
        let u = ConnectUri::parse("ironvirt+ssh://alice@host.example:2222/system").unwrap();
        assert_eq!(
            u.ssh,
            Some(SshTarget {
                user: Some("alice".into()),
                host: "host.example".into(),
                port: Some(2222)
            })
        );
        let cmd = u
            .ssh_command(&["list".into(), "--all".into(), "my vm".into()])
            .unwrap();
        assert_eq!(
            cmd,
            [
                "ssh",
                "-p",
                "2222",
                "alice@host.example",
                "ironvirt",
                "-c",
                "ironvirt:///system",
                "list",
                "--all",
                "'my vm'"
            ]
        );
        let u = ConnectUri::parse("ironvirt+ssh://host/system").unwrap();
        assert_eq!(
            u.ssh_command(&["start".into(), "it's".into()]).unwrap(),
            [
                "ssh",
                "host",
                "ironvirt",
                "-c",
                "ironvirt:///system",
                "start",
                "'it'\\''s'"
            ]
        );
        assert_eq!(
            ConnectUri::parse("qemu:///system")
                .unwrap()
                .ssh_command(&[]),
            None
        );
    }

    #[test]
    fn default_uri_precedence() {
        let dir = std::env::temp_dir().join(format!("ironvirt-uri-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("ironvirt.conf");
        std::fs::write(&conf, "# comment\nuri_default = \"qemu:///session\"\n").unwrap();
        let none = |_: &str| None;
        let both = |v: &str| match v {
            "IRONVIRT_DEFAULT_URI" => Some("ironvirt:///system".to_string()),
            "LIBVIRT_DEFAULT_URI" => Some("qemu:///session".to_string()),
            _ => None,
        };
        let libvirt_only =
            |v: &str| (v == "LIBVIRT_DEFAULT_URI").then(|| "qemu:///system".to_string());
        assert_eq!(default_uri(&both, &conf, false), "ironvirt:///system");
        assert_eq!(default_uri(&libvirt_only, &conf, false), "qemu:///system");
        assert_eq!(default_uri(&none, &conf, true), "qemu:///session");
        let missing = dir.join("nope.conf");
        assert_eq!(default_uri(&none, &missing, true), "ironvirt:///system");
        assert_eq!(default_uri(&none, &missing, false), "ironvirt:///session");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
