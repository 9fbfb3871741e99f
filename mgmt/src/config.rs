//! The client configuration file (`ironvirt.conf`), in libvirt.conf's syntax: `key = value` lines,
//! `#` comments, string values in double quotes.

/// The `uri_default` setting, if the file has one.
pub fn uri_default(text: &str) -> Option<String> {
    setting(text, "uri_default")
}

fn setting(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        let v = v.trim();
        // A trailing comment after the value is allowed.
        let v = match v.strip_prefix('"') {
            Some(rest) => rest.split('"').next().unwrap_or_default(),
            None => v.split('#').next().unwrap_or_default().trim(),
        };
        found = Some(v.to_string());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_uri_default() {
        assert_eq!(
            uri_default("uri_default=\"test:///default?good_uri\"\n").as_deref(),
            Some("test:///default?good_uri")
        );
        assert_eq!(
            uri_default("#uri_default=\"x\"\n  uri_default = \"a\" # c\n").as_deref(),
            Some("a")
        );
        assert_eq!(uri_default("other=1\n"), None);
    }
}
