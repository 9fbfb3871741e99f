//! virsh's output layouts.
//!
//! Tables: each cell is a space plus its text; every column but the last is padded to its widest
//! value plus two; the dashed rule under the header spans every column at that width (the last
//! included). Key/value listings (`dominfo`): the label padded to 15 columns, a space, the value.

/// A table with a header row, printed like virsh's `vshTable`.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text; `quiet` (`-q`) drops the header and the rule.
    pub fn render(&self, quiet: bool) -> String {
        let cols = self.header.len();
        // With -q the header is not printed and does not count towards the widths (as in virsh).
        let header = if quiet { None } else { Some(&self.header) };
        let width = |i: usize| {
            header
                .into_iter()
                .chain(&self.rows)
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, w) in widths.iter().enumerate() {
                let text = cells.get(i).map(String::as_str).unwrap_or("");
                s.push(' ');
                s.push_str(text);
                if i + 1 < cols {
                    let pad = w + 2 - text.chars().count();
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
            s.push('\n');
            s
        };
        let mut out = String::new();
        if !quiet {
            out.push_str(&line(&self.header));
            let total: usize = widths.iter().map(|w| w + 3).sum();
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// `Label:` padded to `width` columns, a space, the value (dominfo uses 15, nodeinfo 20).
pub fn key_value(label: &str, value: &str, width: usize) -> String {
    format!("{:<width$} {value}\n", format!("{label}:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `virsh -c test:///default list --all --title` and `vcpupin test`, byte for byte.
    #[test]
    fn tables_match_virsh() {
        let mut t = Table::new(&["Id", "Name", "State", "Title"]);
        t.row(vec!["1".into(), "test".into(), "running".into(), "".into()]);
        assert_eq!(
            t.render(false),
            " Id   Name   State     Title\n------------------------------\n 1    test   running   \n"
        );
        let mut t = Table::new(&["Id", "Name", "State"]);
        t.row(vec!["1".into(), "test".into(), "running".into()]);
        assert_eq!(
            t.render(false),
            " Id   Name   State\n----------------------\n 1    test   running\n"
        );
        assert_eq!(t.render(true), " 1   test   running\n");
        let mut t = Table::new(&["Interface", "Type", "Source", "Model", "MAC"]);
        t.row(
            ["testnet0", "network", "default", "-", "aa:bb:cc:dd:ee:ff"]
                .map(String::from)
                .to_vec(),
        );
        assert_eq!(
            t.render(false),
            " Interface   Type      Source    Model   MAC\n\
             ------------------------------------------------------------\n \
             testnet0    network   default   -       aa:bb:cc:dd:ee:ff\n"
        );
    }

    #[test]
    fn empty_table_is_header_only() {
        let t = Table::new(&["Id", "Name", "State"]);
        assert_eq!(
            t.render(false),
            " Id   Name   State\n--------------------\n"
        );
    }

    #[test]
    fn key_values() {
        assert_eq!(key_value("Id", "2", 15), "Id:             2\n");
        assert_eq!(key_value("Security DOI", "", 15), "Security DOI:   \n");
        assert_eq!(
            key_value("CPU model", "i686", 20),
            "CPU model:           i686\n"
        );
    }
}
