//! Command and option definitions, and binding a command's words to its options with virsh's rules:
//! `--name value`, `--name=value`, booleans without values, positional data filling the
//! not-yet-given positional options in order, `--` ending option parsing, aliases.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// A string value.
    Str,
    /// A number.
    Int,
    /// Takes every remaining positional word.
    Argv,
    /// Another spelling: `target` is an option name, optionally `name=value` to imply a value.
    Alias(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// May be given without `--name`.
    pub positional: bool,
    pub help: &'static str,
}

pub const fn flag(name: &'static str, help: &'static str) -> Opt {
    Opt {
        name,
        kind: Kind::Bool,
        required: false,
        positional: false,
        help,
    }
}

/// A required positional string (`<domain>`, `<file>`, …).
pub const fn data(name: &'static str, help: &'static str) -> Opt {
    Opt {
        name,
        kind: Kind::Str,
        required: true,
        positional: true,
        help,
    }
}

/// An optional positional string.
pub const fn opt_data(name: &'static str, help: &'static str) -> Opt {
    Opt {
        name,
        kind: Kind::Str,
        required: false,
        positional: true,
        help,
    }
}

/// An optional named string (`--mode acpi`).
pub const fn string(name: &'static str, help: &'static str) -> Opt {
    Opt {
        name,
        kind: Kind::Str,
        required: false,
        positional: false,
        help,
    }
}

pub const fn int(name: &'static str, required: bool, positional: bool, help: &'static str) -> Opt {
    Opt {
        name,
        kind: Kind::Int,
        required,
        positional,
        help,
    }
}

pub const fn argv(name: &'static str, help: &'static str) -> Opt {
    Opt {
        name,
        kind: Kind::Argv,
        required: false,
        positional: true,
        help,
    }
}

pub const fn alias(name: &'static str, target: &'static str) -> Opt {
    Opt {
        name,
        kind: Kind::Alias(target),
        required: false,
        positional: false,
        help: "",
    }
}

/// The options a command was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Args {
    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("command '{cmd}' doesn't support option --{opt}")]
    UnknownOption { cmd: String, opt: String },
    #[error("option --{0} already seen")]
    Repeated(String),
    #[error("invalid '=' after option --{0}")]
    ValueForBool(String),
    #[error("expected syntax: --{0} <{1}>")]
    MissingValue(String, &'static str),
    #[error("unexpected data '{0}'")]
    UnexpectedData(String),
    #[error("command '{cmd}' requires {what} option")]
    Required { cmd: String, what: String },
}

/// Binds `words` (after the command name) to `opts`. A `--help` anywhere asks for help.
pub fn bind(cmd: &str, opts: &[Opt], words: &[String]) -> Result<Args, ParseError> {
    let mut args = Args::default();
    let mut data_only = false;
    let mut i = 0;
    let lookup = |name: &str| opts.iter().find(|o| o.name == name);
    while i < words.len() {
        let word = &words[i];
        i += 1;
        let is_option = !data_only
            && word.len() > 2
            && word.starts_with("--")
            && word.as_bytes()[2].is_ascii_alphanumeric();
        if is_option {
            let body = &word[2..];
            let (name, mut value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if name == "help" {
                args.values.insert("help", Vec::new());
                continue;
            }
            let mut opt = lookup(name).ok_or_else(|| ParseError::UnknownOption {
                cmd: cmd.to_string(),
                opt: name.to_string(),
            })?;
            if let Kind::Alias(target) = opt.kind {
                let (tname, implied) = match target.split_once('=') {
                    Some((t, v)) => (t, Some(v)),
                    None => (target, None),
                };
                opt = lookup(tname).ok_or_else(|| ParseError::UnknownOption {
                    cmd: cmd.to_string(),
                    opt: name.to_string(),
                })?;
                if let Some(v) = implied {
                    if value.is_some() {
                        return Err(ParseError::ValueForBool(name.to_string()));
                    }
                    value = Some(v.to_string());
                }
            }
            if opt.kind != Kind::Argv && args.values.contains_key(opt.name) {
                return Err(ParseError::Repeated(opt.name.to_string()));
            }
            if opt.kind == Kind::Bool {
                if value.is_some() {
                    return Err(ParseError::ValueForBool(opt.name.to_string()));
                }
                args.values.insert(opt.name, Vec::new());
                continue;
            }
            let value = match value {
                Some(v) => v,
                None => match words.get(i) {
                    Some(v) => {
                        i += 1;
                        v.clone()
                    }
                    None => {
                        return Err(ParseError::MissingValue(
                            opt.name.to_string(),
                            if opt.kind == Kind::Int {
                                "number"
                            } else {
                                "string"
                            },
                        ))
                    }
                },
            };
            args.values.entry(opt.name).or_default().push(value);
            continue;
        }
        if !data_only && word == "--" {
            data_only = true;
            continue;
        }
        let next = opts
            .iter()
            .find(|o| o.positional && (o.kind == Kind::Argv || !args.values.contains_key(o.name)));
        match next {
            Some(o) => args.values.entry(o.name).or_default().push(word.clone()),
            None => return Err(ParseError::UnexpectedData(word.clone())),
        }
    }
    if !args.flag("help") {
        for o in opts.iter().filter(|o| o.required) {
            if !args.values.contains_key(o.name) {
                return Err(ParseError::Required {
                    cmd: cmd.to_string(),
                    what: if o.positional {
                        format!("<{}>", o.name)
                    } else {
                        format!("--{}", o.name)
                    },
                });
            }
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETVCPUS: &[Opt] = &[
        data("domain", ""),
        int("count", true, true, ""),
        flag("config", ""),
    ];

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn argument_assignment_like_virsh() {
        // Every spelling of virsh-golden/argument-assignment binds domain=test, count=2.
        for line in [
            "test 2",
            "--domain test 2",
            "--domain=test 2",
            "test --count 2",
            "test --count=2",
            "--domain test --count 2",
            "--domain=test --count 2",
            "--domain test --count=2",
            "--domain=test --count=2",
            "--count 2 --domain test",
            "--count 2 --domain=test",
            "--count=2 --domain test",
            "--count=2 --domain=test",
            "--count 2 test",
            "--count=2 test",
        ] {
            let a = bind("setvcpus", SETVCPUS, &w(line)).unwrap();
            assert_eq!(a.get("domain"), Some("test"), "{line}");
            assert_eq!(a.get("count"), Some("2"), "{line}");
        }
    }

    #[test]
    fn errors_match_virsh() {
        let e = |line: &str| {
            bind("setvcpus", SETVCPUS, &w(line))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e("test 2 --foo"),
            "command 'setvcpus' doesn't support option --foo"
        );
        assert_eq!(e("test"), "command 'setvcpus' requires <count> option");
        assert_eq!(e("test 2 3"), "unexpected data '3'");
        assert_eq!(e("test --count"), "expected syntax: --count <number>");
        assert_eq!(
            e("test 2 --config=yes"),
            "invalid '=' after option --config"
        );
        assert_eq!(e("test 2 --domain x"), "option --domain already seen");
    }

    #[test]
    fn dash_dash_and_aliases() {
        let opts = &[
            flag("shell", ""),
            alias("str", "string"),
            alias("hi", "string=hello"),
            argv("string", ""),
        ];
        let a = bind("echo", opts, &w("-- --shell a")).unwrap();
        assert!(!a.flag("shell"));
        assert_eq!(a.all("string"), ["--shell", "a"]);
        assert_eq!(
            bind("echo", opts, &w("--hi")).unwrap().all("string"),
            ["hello"]
        );
        assert_eq!(
            bind("echo", opts, &w("--str x")).unwrap().all("string"),
            ["x"]
        );
        assert!(bind("echo", opts, &w("a --help")).unwrap().flag("help"));
    }
}
