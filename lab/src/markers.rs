//! Results travel from the L1 payload to the host as console lines `IRONVIRT-LAB: <key> <value>`:
//! distinctive enough not to collide with kernel or guest output, trivially printed from a shell.

/// The prefix of every result line.
pub const MARKER_PREFIX: &str = "IRONVIRT-LAB: ";

/// Removes leading whitespace and terminal escape sequences (firmware clears the screen with
/// `ESC c ESC [?7l ESC [2J` right before L1's first line).
pub fn strip_terminal_noise(line: &str) -> &str {
    // SeaBIOS sometimes leaves "Booting from ROM.." on the line the screen reset (`ESC c`) starts; what came
    // before the reset is firmware text. Mirrored guest lines (`L2|…`) never get this treatment.
    let line = match line.rfind("\u{1b}c") {
        Some(i) if !line.starts_with("L2") => &line[i..],
        _ => line,
    };
    let mut rest = line.trim_start();
    while let Some(after) = rest.strip_prefix('\u{1b}') {
        rest = match after.strip_prefix('[') {
            // CSI: parameters until a final byte in 0x40..=0x7e.
            Some(csi) => match csi.find(|c: char| ('\u{40}'..='\u{7e}').contains(&c)) {
                Some(i) => &csi[i + 1..],
                None => "",
            },
            // Two-character escape (e.g. `ESC c`).
            None => after.get(1..).unwrap_or(""),
        }
        .trim_start();
    }
    rest
}

/// The markers of one transcript, in order of appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    entries: Vec<(String, String)>,
}

impl Markers {
    /// Extracts markers from console output. Lines may carry `\r` (serial consoles) or leading
    /// whitespace; anything else before the prefix (e.g. a mirrored guest line) disqualifies the line,
    /// so a guest cannot forge L1's results by accident.
    pub fn parse(transcript: &str) -> Self {
        let entries = transcript
            .lines()
            .filter_map(|l| strip_terminal_noise(l).strip_prefix(MARKER_PREFIX))
            .map(|rest| {
                let rest = rest.trim_end_matches(['\r', '\n', ' ']);
                match rest.split_once(' ') {
                    Some((k, v)) => (k.to_string(), v.trim().to_string()),
                    None => (rest.to_string(), String::new()),
                }
            })
            .collect();
        Markers { entries }
    }

    /// The value of the last marker named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `get` parsed as a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// All values of markers named `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_values() {
        let t = "noise\r\nIRONVIRT-LAB: l1-ready 6.1.0 uptime=5.2\r\n  IRONVIRT-LAB: boot-time 7.25 s\n\
                 L2|x| IRONVIRT-LAB: forged 1\nIRONVIRT-LAB: done\nIRONVIRT-LAB: boot-time 8\n";
        let m = Markers::parse(t);
        assert_eq!(m.get("l1-ready"), Some("6.1.0 uptime=5.2"));
        assert_eq!(m.all("boot-time"), ["7.25 s", "8"]);
        assert_eq!(m.number("boot-time"), Some(8.0));
        assert!(m.contains("done"));
        assert!(!m.contains("forged"));
        let m = Markers::parse("\u{1b}c\u{1b}[?7l\u{1b}[2JIRONVIRT-LAB: l1-ready 6.1\n");
        assert_eq!(m.get("l1-ready"), Some("6.1"));
        // Firmware text left on the line where the screen reset starts (seen in CI).
        let m = Markers::parse(
            "Booting from ROM..\u{1b}c\u{1b}[?7l\u{1b}[2JIRONVIRT-LAB: l1-ready 6.1\n",
        );
        assert_eq!(m.get("l1-ready"), Some("6.1"));
        // A guest line cannot use the same trick.
        let m = Markers::parse("L2|x| text\u{1b}c\u{1b}[2JIRONVIRT-LAB: forged 1\n");
        assert!(!m.contains("forged"));
    }
}
