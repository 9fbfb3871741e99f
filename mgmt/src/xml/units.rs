//! libvirt's scaled integers (`<memory unit='GiB'>4</memory>`), following virScaleInteger:
//! the unit letter is case-insensitive; a bare letter or `<letter>iB` means powers of 1024,
//! `<letter>B` powers of 1000; `b`, `byte`, `bytes` mean 1.

/// A value/unit pair libvirt would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid argument: unknown suffix '{0}'")]
    UnknownUnit(String),
    #[error(
        "XML error: Invalid value '{0}' for a scaled integer: expected a non-negative whole number"
    )]
    NotANumber(String),
    #[error("numerical overflow: value too large: {value}{unit}")]
    Overflow { value: String, unit: String },
}

/// The unit libvirt assumes when the `unit` attribute is absent (for `<memory>`, KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultUnit {
    Bytes,
    KiB,
    MiB,
}

impl DefaultUnit {
    fn multiplier(self) -> u64 {
        match self {
            DefaultUnit::Bytes => 1,
            DefaultUnit::KiB => 1 << 10,
            DefaultUnit::MiB => 1 << 20,
        }
    }
}

/// Multiplier for a unit suffix, or `None` when libvirt does not know it.
pub fn unit_multiplier(unit: &str) -> Option<u64> {
    let lower = unit.to_ascii_lowercase();
    if matches!(lower.as_str(), "b" | "byte" | "bytes") {
        return Some(1);
    }
    let mut chars = lower.chars();
    let letter = chars.next()?;
    let rest = chars.as_str();
    let base: u64 = match rest {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    let power = match letter {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    // 1024^6 and 1000^6 both fit in u64.
    Some(base.pow(power))
}

/// Parses `value` scaled by `unit` (or `default_unit` when absent) into bytes.
pub fn parse_scaled(
    value: &str,
    unit: Option<&str>,
    default_unit: DefaultUnit,
) -> Result<u64, UnitError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UnitError::NotANumber(value.to_string()));
    }
    let multiplier = match unit {
        Some(u) if !u.is_empty() => {
            unit_multiplier(u).ok_or_else(|| UnitError::UnknownUnit(u.to_string()))?
        }
        _ => default_unit.multiplier(),
    };
    let overflow = || UnitError::Overflow {
        value: trimmed.to_string(),
        unit: unit.unwrap_or("").to_string(),
    };
    let n: u64 = trimmed.parse().map_err(|_| overflow())?;
    n.checked_mul(multiplier).ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libvirt_unit() {
        let cases: &[(&str, u64)] = &[
            ("b", 1),
            ("B", 1),
            ("byte", 1),
            ("bytes", 1),
            ("KB", 1000),
            ("kb", 1000),
            ("k", 1024),
            ("K", 1024),
            ("KiB", 1024),
            ("kib", 1024),
            ("MB", 1000u64.pow(2)),
            ("M", 1 << 20),
            ("MiB", 1 << 20),
            ("GB", 1000u64.pow(3)),
            ("G", 1 << 30),
            ("GiB", 1 << 30),
            ("TB", 1000u64.pow(4)),
            ("T", 1 << 40),
            ("TiB", 1 << 40),
            ("PB", 1000u64.pow(5)),
            ("P", 1 << 50),
            ("PiB", 1 << 50),
            ("EB", 1000u64.pow(6)),
            ("E", 1 << 60),
            ("EiB", 1 << 60),
        ];
        for (unit, mult) in cases {
            assert_eq!(
                parse_scaled("1", Some(unit), DefaultUnit::KiB),
                Ok(*mult),
                "unit {unit}"
            );
        }
    }

    #[test]
    fn default_unit_applies_without_unit() {
        assert_eq!(parse_scaled("4", None, DefaultUnit::KiB), Ok(4096));
        assert_eq!(parse_scaled("4", Some(""), DefaultUnit::MiB), Ok(4 << 20));
        assert_eq!(parse_scaled(" 7 ", None, DefaultUnit::Bytes), Ok(7));
    }

    #[test]
    fn overflow_names_the_value() {
        let err = parse_scaled("100", Some("EiB"), DefaultUnit::KiB).unwrap_err();
        assert_eq!(
            err.to_string(),
            "numerical overflow: value too large: 100EiB"
        );
        let err = parse_scaled("99999999999999999999999", None, DefaultUnit::Bytes).unwrap_err();
        assert!(matches!(err, UnitError::Overflow { .. }));
        assert!(err.to_string().contains("99999999999999999999999"));
    }

    #[test]
    fn bad_units_and_numbers() {
        for unit in ["XB", "KiBB", "Ki", "kibibytes", "iB", "Mb2"] {
            assert_eq!(
                parse_scaled("1", Some(unit), DefaultUnit::KiB),
                Err(UnitError::UnknownUnit(unit.into())),
                "unit {unit}"
            );
        }
        assert_eq!(
            parse_scaled("1", Some("XB"), DefaultUnit::KiB)
                .unwrap_err()
                .to_string(),
            "invalid argument: unknown suffix 'XB'"
        );
        for v in ["", "abc", "-1", "1.5", "0x10"] {
            assert!(matches!(
                parse_scaled(v, None, DefaultUnit::KiB),
                Err(UnitError::NotANumber(_))
            ));
        }
    }
}
