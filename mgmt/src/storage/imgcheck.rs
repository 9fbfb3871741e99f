//! `ironvirt img check`: qemu-img check's outputs (human and JSON) and exit codes over the qcow2
//! consistency check in our block code ([`qcow2::check`]).

use std::path::Path;

use ironvirt_devices::block::qcow2::{self, CheckResult, Repair};

use super::image;
use super::StorageError;

/// qemu-img check's exit statuses.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_CORRUPT: i32 = 2;
pub const EXIT_LEAKS: i32 = 3;
pub const EXIT_NOT_SUPPORTED: i32 = 63;

/// One piece of what a check prints, in the order qemu-img prints them (problems go to stderr as
/// they are found, figures to stdout at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Stdout(String),
    /// One line of QEMU's problem reports ("Leaked cluster 54 refcount=1 reference=0").
    Stderr(String),
}

/// What a check printed and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutput {
    pub chunks: Vec<Chunk>,
    /// Why the check failed or could not run (exit statuses 1 and 63), for the error line.
    pub error: Option<String>,
    pub exit: i32,
}

impl CheckOutput {
    /// Everything printed on stdout.
    pub fn stdout(&self) -> String {
        self.chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Stdout(s) => Some(s.as_str()),
                Chunk::Stderr(_) => None,
            })
            .collect()
    }
}

/// Runs `qemu-img check [-f fmt] [-r leaks|all] [--output json] FILE`.
pub fn check(
    filename: &str,
    format: Option<&str>,
    repair: Repair,
    json: bool,
    quiet: bool,
) -> Result<CheckOutput, StorageError> {
    let path = Path::new(filename);
    let fmt = match format {
        Some(f) => f.to_string(),
        None => image::probe(path)?.0.to_string(),
    };
    if fmt != "qcow2" {
        // Only qcow2 has metadata to check; qemu-img gives raw (and the rest) status 63.
        image::block_format(&fmt)?;
        return Ok(CheckOutput {
            chunks: Vec::new(),
            error: Some("This image format does not support checks".into()),
            exit: EXIT_NOT_SUPPORTED,
        });
    }
    let mut chunks = Vec::new();
    let mut r = qcow2::check(path, repair)?;
    chunks.extend(r.messages.drain(..).map(Chunk::Stderr));
    if r.failed.is_none() && (r.corruptions_fixed > 0 || r.leaks_fixed > 0) {
        if !json && !quiet {
            chunks.push(Chunk::Stdout(format!(
                "The following inconsistencies were found and repaired:\n\n    {} leaked clusters\n    {} corruptions\n\nDouble checking the fixed image now...\n",
                r.leaks_fixed, r.corruptions_fixed
            )));
        }
        let (leaks_fixed, corruptions_fixed) = (r.leaks_fixed, r.corruptions_fixed);
        r = qcow2::check(path, Repair::None)?;
        chunks.extend(r.messages.drain(..).map(Chunk::Stderr));
        r.leaks_fixed = leaks_fixed;
        r.corruptions_fixed = corruptions_fixed;
    }
    if let Some(why) = &r.failed {
        return Ok(CheckOutput {
            chunks,
            error: Some(format!("Check failed: {why}")),
            exit: EXIT_FAILED,
        });
    }
    if !quiet {
        chunks.push(Chunk::Stdout(if json {
            json_text(filename, &r)
        } else {
            human_text(&r)
        }));
    }
    let (exit, error) = if r.check_errors > 0 {
        (EXIT_FAILED, Some("Check failed".to_string()))
    } else if r.corruptions > 0 {
        (EXIT_CORRUPT, None)
    } else if r.leaks > 0 {
        (EXIT_LEAKS, None)
    } else {
        (EXIT_OK, None)
    };
    Ok(CheckOutput {
        chunks,
        error,
        exit,
    })
}

/// qemu-img's dump_human_image_check.
pub fn human_text(r: &CheckResult) -> String {
    let mut s = String::new();
    if r.corruptions == 0 && r.leaks == 0 && r.check_errors == 0 {
        s.push_str("No errors were found on the image.\n");
    } else {
        if r.corruptions > 0 {
            s.push_str(&format!(
                "\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n",
                r.corruptions
            ));
        }
        if r.leaks > 0 {
            s.push_str(&format!(
                "\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
                r.leaks
            ));
        }
        if r.check_errors > 0 {
            s.push_str(&format!(
                "\n{} internal errors have occurred during the check.\n",
                r.check_errors
            ));
        }
    }
    if r.total_clusters != 0 && r.allocated_clusters != 0 {
        let a = r.allocated_clusters as f64;
        s.push_str(&format!(
            "{}/{} = {:.2}% allocated, {:.2}% fragmented, {:.2}% compressed clusters\n",
            r.allocated_clusters,
            r.total_clusters,
            a * 100.0 / r.total_clusters as f64,
            r.fragmented_clusters as f64 * 100.0 / a,
            r.compressed_clusters as f64 * 100.0 / a
        ));
    }
    if r.image_end_offset != 0 {
        s.push_str(&format!("Image end offset: {}\n", r.image_end_offset));
    }
    s
}

/// qemu-img's JSON ImageCheck. QEMU prints a QDict, whose members come out in hash-bucket order
/// (tdb_hash of the key modulo 512), not in the schema's order; this is that order. Members whose
/// value is zero are absent, except the three QEMU always sets.
pub fn json_text(filename: &str, r: &CheckResult) -> String {
    let optional = |v: u64| (v != 0).then_some(v.to_string());
    let members: [(&str, Option<String>); 12] = [
        ("image-end-offset", optional(r.image_end_offset)),
        ("compressed-clusters", optional(r.compressed_clusters)),
        ("total-clusters", optional(r.total_clusters)),
        ("corruptions", optional(r.corruptions)),
        ("corruptions-fixed", optional(r.corruptions_fixed)),
        ("check-errors", Some(r.check_errors.to_string())),
        ("leaks", optional(r.leaks)),
        ("leaks-fixed", optional(r.leaks_fixed)),
        ("allocated-clusters", optional(r.allocated_clusters)),
        ("filename", Some(super::imgtool::json_str(filename))),
        ("format", Some("\"qcow2\"".into())),
        ("fragmented-clusters", optional(r.fragmented_clusters)),
    ];
    let body: Vec<String> = members
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("    \"{k}\": {v}")))
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CheckResult {
        CheckResult {
            corruptions: 2,
            leaks: 1,
            total_clusters: 1024,
            allocated_clusters: 49,
            fragmented_clusters: 2,
            image_end_offset: 3538944,
            ..CheckResult::default()
        }
    }

    #[test]
    fn human_like_qemu() {
        assert_eq!(
            human_text(&sample()),
            "\n2 errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n\n1 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n49/1024 = 4.79% allocated, 4.08% fragmented, 0.00% compressed clusters\nImage end offset: 3538944\n"
        );
        let clean = CheckResult {
            total_clusters: 1024,
            image_end_offset: 262144,
            ..CheckResult::default()
        };
        assert_eq!(
            human_text(&clean),
            "No errors were found on the image.\nImage end offset: 262144\n"
        );
    }

    #[test]
    fn json_in_qemu_member_order() {
        // Verbatim from qemu-img 10.0 on an image with an L2 entry pointing past the end of the file.
        assert_eq!(
            json_text("eof.qcow2", &sample()),
            "{\n    \"image-end-offset\": 3538944,\n    \"total-clusters\": 1024,\n    \"corruptions\": 2,\n    \"check-errors\": 0,\n    \"leaks\": 1,\n    \"allocated-clusters\": 49,\n    \"filename\": \"eof.qcow2\",\n    \"format\": \"qcow2\",\n    \"fragmented-clusters\": 2\n}\n"
        );
    }
}
