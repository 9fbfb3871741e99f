//! Sizes as virsh reads and prints them: `vol-create-as` capacities with libvirt's suffixes
//! (bare numbers are bytes) and `vshPrettyCapacity`'s "1.50 GiB".

use crate::xml::units::{parse_scaled, unit_multiplier, DefaultUnit, UnitError};

/// `10G`, `512M`, `1000KB`, `4096`: the number, then an optional libvirt unit suffix.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if !unit.is_empty() && unit_multiplier(unit).is_none() {
        return Err(UnitError::UnknownUnit(unit.to_string()));
    }
    parse_scaled(num, Some(unit), DefaultUnit::Bytes)
}

/// virsh's human-readable capacity: two decimals, binary units from B to EiB.
pub fn pretty(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    // virsh switches unit once the value reaches 1024 of the current one.
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn pretty_like_virsh() {
        assert_eq!(pretty(0), "0.00 B");
        assert_eq!(pretty(1 << 30), "1.00 GiB");
        assert_eq!(pretty(10 << 20), "10.00 MiB");
        assert_eq!(pretty(107374182400), "100.00 GiB");
        assert_eq!(pretty(1536), "1.50 KiB");
    }
}
