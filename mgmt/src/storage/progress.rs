//! Progress reports for long copies, in the two formats users know: qemu-img's `-p`
//! ("    (45.00/100%)" rewritten in place with `\r`, on stdout) and virsh's job progress
//! ("\rUpload: [ 45.00 %]", on stderr — the bar `virsh migrate --verbose` and block jobs draw).

use std::io::Write;

/// A callback told how many of how many bytes are done.
pub type Report<'a> = &'a mut dyn FnMut(u64, u64);

/// A report that ignores everything.
pub fn none() -> impl FnMut(u64, u64) {
    |_, _| {}
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        (done.min(total) as f64) * 100.0 / total as f64
    }
}

/// qemu-img's progress line (util/qemu-progress.c: "    (%3.2f/100%)\r").
pub fn qemu_line(done: u64, total: u64) -> String {
    format!("    ({:3.2}/100%)\r", percent(done, total))
}

/// virsh's job progress (virshPrintJobProgress: "\r%s: [%5.2f %%]", two decimals kept by
/// truncation, and 100 only once the job has finished).
pub fn virsh_line(label: &str, done: u64, total: u64) -> String {
    let mut p = percent(done, total);
    if done < total && p >= 100.0 {
        p = 99.99;
    }
    let p = (p * 100.0).trunc() / 100.0;
    format!("\r{label}: [{p:5.2} %]")
}

/// qemu-img's printer: prints at 0 and 100 and whenever the figure moved by a whole percent
/// since the last print (its `min_skip`), then a newline at the end.
pub struct QemuProgress<'w> {
    out: &'w mut dyn Write,
    last: Option<f64>,
}

impl<'w> QemuProgress<'w> {
    pub fn new(out: &'w mut dyn Write) -> Self {
        QemuProgress { out, last: None }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        let p = percent(done, total);
        let due = match self.last {
            None => true,
            Some(last) => p >= last + 1.0 || (p == 100.0 && last != 100.0),
        };
        if due {
            self.last = Some(p);
            let _ = self.out.write_all(qemu_line(done, total).as_bytes());
            let _ = self.out.flush();
        }
    }

    /// Success: qemu-img convert reports 100 % once more after its copy loop (so the figure
    /// appears twice), then ends the line.
    pub fn complete(&mut self) {
        let _ = self.out.write_all(qemu_line(1, 1).as_bytes());
        self.finish();
    }

    /// Ends the line (also after a failure).
    pub fn finish(&mut self) {
        let _ = self.out.write_all(b"\n");
        let _ = self.out.flush();
    }
}

/// virsh's bar, drawn only when `enabled` (the caller checks that stderr is a terminal, so
/// scripts and logs see no change), redrawn when the shown figure changes.
pub struct JobProgress<'w> {
    out: &'w mut dyn Write,
    label: &'static str,
    enabled: bool,
    last: Option<String>,
}

impl<'w> JobProgress<'w> {
    pub fn new(out: &'w mut dyn Write, label: &'static str, enabled: bool) -> Self {
        JobProgress {
            out,
            label,
            enabled,
            last: None,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let line = virsh_line(self.label, done, total);
        if self.last.as_deref() != Some(line.as_str()) {
            let _ = self.out.write_all(line.as_bytes());
            let _ = self.out.flush();
            self.last = Some(line);
        }
    }

    /// Draws 100 % and ends the line.
    pub fn finish(&mut self) {
        if self.enabled {
            self.update(1, 1);
            let _ = self.out.write_all(b"\n");
            let _ = self.out.flush();
        }
    }
}

/// Whether file descriptor `fd` is a terminal.
pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_like_qemu_img_and_virsh() {
        assert_eq!(qemu_line(0, 10), "    (0.00/100%)\r");
        assert_eq!(qemu_line(45, 100), "    (45.00/100%)\r");
        assert_eq!(qemu_line(1, 1), "    (100.00/100%)\r");
        assert_eq!(virsh_line("Upload", 0, 100), "\rUpload: [ 0.00 %]");
        assert_eq!(virsh_line("Upload", 4567, 10000), "\rUpload: [45.67 %]");
        // Truncated, not rounded, and never 100 before the end.
        assert_eq!(
            virsh_line("Download", 99999, 100000),
            "\rDownload: [99.99 %]"
        );
        assert_eq!(virsh_line("Download", 2, 3), "\rDownload: [66.66 %]");
        assert_eq!(virsh_line("Download", 5, 5), "\rDownload: [100.00 %]");
    }

    #[test]
    fn qemu_printer_skips_sub_percent_steps() {
        let mut buf = Vec::new();
        let mut p = QemuProgress::new(&mut buf);
        for done in [0, 5, 9, 10, 30, 1000] {
            p.update(done, 1000);
        }
        p.complete();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "    (0.00/100%)\r    (1.00/100%)\r    (3.00/100%)\r    (100.00/100%)\r    (100.00/100%)\r\n"
        );
    }

    #[test]
    fn job_bar_only_when_enabled() {
        let mut buf = Vec::new();
        let mut p = JobProgress::new(&mut buf, "Upload", false);
        p.update(1, 2);
        p.finish();
        assert!(buf.is_empty());
        let mut p = JobProgress::new(&mut buf, "Upload", true);
        p.update(1, 2);
        p.update(1, 2);
        p.finish();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "\rUpload: [50.00 %]\rUpload: [100.00 %]\n"
        );
    }
}
