//! `<memory>` and `<currentMemory>`.

use super::DomainError;
use crate::xml::tree::Element;
use crate::xml::units::{parse_scaled, DefaultUnit};

/// Guest memory sizes in bytes, rounded up to whole KiB as libvirt stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `<memory>`: the boot-time maximum.
    pub memory_bytes: u64,
    /// `<currentMemory>`: what the balloon leaves to the guest; never above `memory_bytes`.
    pub current_bytes: u64,
}

impl Memory {
    pub(super) fn parse(root: &Element) -> Result<Memory, DomainError> {
        let memory = scaled(root.child("memory"), "./memory[1]")?
            .filter(|&b| b > 0)
            .or(numa_total(root)?)
            .ok_or(DomainError::NoMemory)?;
        // libvirt treats a missing, zero or too large currentMemory as "all of it" rather than
        // refusing the domain, and so do we.
        let current = scaled(root.child("currentMemory"), "./currentMemory[1]")?
            .filter(|&c| c > 0 && c <= memory)
            .unwrap_or(memory);
        Ok(Memory {
            memory_bytes: memory,
            current_bytes: current,
        })
    }
}

fn scaled(el: Option<&Element>, what: &str) -> Result<Option<u64>, DomainError> {
    let Some(el) = el else { return Ok(None) };
    let text = el.text();
    if text.trim().is_empty() || !text.trim().bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::InvalidNumber {
            value: text,
            what: what.to_string(),
        });
    }
    let bytes = parse_scaled(&text, el.attr("unit"), DefaultUnit::KiB)?;
    Ok(Some(round_up_kib(bytes)))
}

fn round_up_kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024).saturating_mul(1024)
}

/// With `<cpu><numa>` cells libvirt may take the size from their sum instead of `<memory>`.
fn numa_total(root: &Element) -> Result<Option<u64>, DomainError> {
    let Some(numa) = root.child("cpu").and_then(|c| c.child("numa")) else {
        return Ok(None);
    };
    let mut total: u64 = 0;
    for cell in numa.children_named("cell") {
        let Some(value) = cell.attr("memory") else {
            continue;
        };
        let bytes = parse_scaled(value, cell.attr("unit"), DefaultUnit::KiB)?;
        total = total.saturating_add(round_up_kib(bytes));
    }
    Ok((total > 0).then_some(total))
}
