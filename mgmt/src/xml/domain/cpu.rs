//! `<vcpu>` and `<cpu>` (mode and topology).

use super::{attr_u32, DomainError};
use crate::xml::tree::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Static,
    Auto,
}

/// `<vcpu placement=… cpuset=… current=…>max</vcpu>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcpus {
    pub max: u32,
    /// Online at boot; equals `max` when the attribute is absent.
    pub current: u32,
    pub placement: Option<Placement>,
    /// Host CPUs the vCPUs may run on, as written (validated as a libvirt bitmap).
    pub cpuset: Option<String>,
}

/// `<cpu><topology …/>`; `dies` and `clusters` default to 1 as in libvirt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub sockets: u32,
    pub dies: u32,
    pub clusters: u32,
    pub cores: u32,
    pub threads: u32,
}

impl Topology {
    pub fn total(&self) -> u64 {
        [self.dies, self.clusters, self.cores, self.threads]
            .iter()
            .fold(u64::from(self.sockets), |acc, &n| {
                acc.saturating_mul(u64::from(n))
            })
    }
}

/// The parts of `<cpu>` the model knows; the rest (model, features, numa) stays in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// `custom`, `host-model`, `host-passthrough` or `maximum`; `None` when absent.
    pub mode: Option<String>,
    pub topology: Option<Topology>,
}

const CPU_MODES: &[&str] = &["custom", "host-model", "host-passthrough", "maximum"];

impl Vcpus {
    pub(super) fn parse(root: &Element) -> Result<Vcpus, DomainError> {
        let Some(el) = root.child("vcpu") else {
            return Ok(Vcpus {
                max: 1,
                current: 1,
                placement: None,
                cpuset: None,
            });
        };
        let max: u32 = el
            .text()
            .trim()
            .parse()
            .map_err(|_| DomainError::VcpuNotInteger)?;
        if max == 0 {
            return Err(DomainError::ZeroVcpus);
        }
        let current = match el.attr("current") {
            None => max,
            Some(c) => match c.trim().parse::<u32>() {
                Ok(0) => max,
                Ok(n) => n,
                Err(_) => return Err(DomainError::CurrentVcpuNotInteger),
            },
        };
        if current > max {
            return Err(DomainError::CurrentVcpusAboveMax);
        }
        let placement = match el.attr("placement") {
            None => None,
            Some("static") => Some(Placement::Static),
            Some("auto") => Some(Placement::Auto),
            Some(other) => {
                return Err(DomainError::InvalidAttr {
                    attr: "placement",
                    element: "vcpu",
                    value: other.to_string(),
                })
            }
        };
        let cpuset = el.attr("cpuset").map(str::to_string);
        if let Some(set) = &cpuset {
            parse_bitmap(set)?;
        }
        Ok(Vcpus {
            max,
            current,
            placement,
            cpuset,
        })
    }
}

impl Cpu {
    pub(super) fn parse(root: &Element) -> Result<Option<Cpu>, DomainError> {
        let Some(el) = root.child("cpu") else {
            return Ok(None);
        };
        let mode = el.attr("mode").map(str::to_string);
        if let Some(m) = &mode {
            if !CPU_MODES.contains(&m.as_str()) {
                return Err(DomainError::InvalidAttr {
                    attr: "mode",
                    element: "cpu",
                    value: m.clone(),
                });
            }
        }
        let topology = el.child("topology").map(parse_topology).transpose()?;
        Ok(Some(Cpu { mode, topology }))
    }
}

fn parse_topology(el: &Element) -> Result<Topology, DomainError> {
    let required = |attr: &'static str| -> Result<u32, DomainError> {
        nonzero(el, attr)?.ok_or(DomainError::MissingAttr {
            attr,
            element: "topology",
        })
    };
    Ok(Topology {
        sockets: required("sockets")?,
        dies: nonzero(el, "dies")?.unwrap_or(1),
        clusters: nonzero(el, "clusters")?.unwrap_or(1),
        cores: required("cores")?,
        threads: required("threads")?,
    })
}

fn nonzero(el: &Element, attr: &'static str) -> Result<Option<u32>, DomainError> {
    match attr_u32(el, attr, "topology")? {
        Some(0) => Err(DomainError::ZeroAttr {
            attr,
            element: "topology",
        }),
        other => Ok(other),
    }
}

/// Parses a libvirt CPU bitmap (`0-3,^2,8`) into the set CPU numbers, as virBitmapParse does.
pub fn parse_bitmap(s: &str) -> Result<Vec<u32>, DomainError> {
    let bad = || DomainError::InvalidBitmap(s.to_string());
    // Bounds the work a hostile document can cause; libvirt's own limit is 2^16 bits as well.
    const MAX_BIT: u32 = 65535;
    let mut set = std::collections::BTreeSet::new();
    let mut excluded = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some(neg) = part.strip_prefix('^') {
            excluded.push(neg.trim().parse::<u32>().map_err(|_| bad())?);
            continue;
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u32>().map_err(|_| bad())?,
                b.trim().parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || hi > MAX_BIT {
            return Err(bad());
        }
        set.extend(lo..=hi);
    }
    for n in excluded {
        set.remove(&n);
    }
    Ok(set.into_iter().collect())
}
