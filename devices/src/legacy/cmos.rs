//! The MC146818 CMOS real-time clock and its battery-backed RAM (ports 0x70/0x71).
//!
//! Time registers read the host's UTC clock in BCD, 24-hour mode. The RAM bytes survive guest resets because
//! the VMM keeps one `Cmos` for the whole life of the process, as a real board keeps its battery.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

pub const CMOS_BASE: u16 = 0x70;
pub const CMOS_LEN: u16 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
const REG_STATUS_C: u8 = 0x0c;
const REG_STATUS_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// 32.768 kHz time base, 1024 Hz periodic rate; UIP never set because reads are atomic here.
const STATUS_A: u8 = 0x26;
/// 24-hour mode, BCD (DM bit clear).
const STATUS_B_24H: u8 = 0x02;
/// Valid RAM and time.
const STATUS_D_VRT: u8 = 0x80;

/// Wall-clock fields in the form the RTC presents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub weekday: u32, // 1 = Sunday, as the RTC counts
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl CivilTime {
    /// UTC fields of a Unix timestamp (proleptic Gregorian calendar).
    pub fn from_unix(secs: u64) -> Self {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Howard Hinnant's days-to-civil algorithm, shifted so that eras start on 1 March.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        CivilTime {
            year: year as u32,
            month: month as u32,
            day: day as u32,
            // 1970-01-01 was a Thursday (RTC weekday 5).
            weekday: ((days + 4) % 7) as u32 + 1,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
        }
    }
}

fn bcd(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    now: Box<dyn Fn() -> u64 + Send>,
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

impl Cmos {
    /// A CMOS whose clock follows the host's.
    pub fn new() -> Self {
        Self::with_clock(Box::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        }))
    }

    /// A CMOS whose clock reads `now()` (seconds since the Unix epoch), for tests.
    pub fn with_clock(now: Box<dyn Fn() -> u64 + Send>) -> Self {
        let mut ram = [0u8; 128];
        ram[REG_STATUS_A as usize] = STATUS_A;
        ram[REG_STATUS_B as usize] = STATUS_B_24H;
        Cmos { index: 0, ram, now }
    }

    fn read_register(&self, reg: u8) -> u8 {
        let t = || CivilTime::from_unix((self.now)());
        match reg {
            REG_SECONDS => bcd(t().second),
            REG_MINUTES => bcd(t().minute),
            REG_HOURS => bcd(t().hour),
            REG_WEEKDAY => bcd(t().weekday),
            REG_DAY => bcd(t().day),
            REG_MONTH => bcd(t().month),
            REG_YEAR => bcd(t().year % 100),
            REG_CENTURY => bcd(t().year / 100),
            REG_STATUS_C => 0,
            REG_STATUS_D => STATUS_D_VRT,
            r => self.ram[usize::from(r & 0x7f)],
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = match offset {
            0 => self.index,
            _ => self.read_register(self.index),
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            // Bit 7 of the index port is the NMI mask on real hardware, not part of the index.
            0 => self.index = value & 0x7f,
            _ => match self.index {
                // The guest setting the clock would need an offset kept per VM; the host clock stays authoritative.
                REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
                | REG_YEAR | REG_CENTURY | REG_STATUS_C | REG_STATUS_D => {}
                // Keep 24-hour BCD whatever the guest asks: the read side only produces that.
                REG_STATUS_B => {
                    self.ram[usize::from(REG_STATUS_B)] = (value & !0x06) | STATUS_B_24H
                }
                r => self.ram[usize::from(r)] = value,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(c: &mut Cmos, reg: u8) -> u8 {
        c.write(0, &[reg]);
        let mut v = [0];
        c.read(1, &mut v);
        v[0]
    }

    #[test]
    fn civil_time_matches_known_dates() {
        // 2026-11-28 20:47:35 UTC, a Saturday.
        let t = CivilTime::from_unix(1_795_898_855);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 11, 28, 20, 47, 35)
        );
        assert_eq!(t.weekday, 7);
        let leap = CivilTime::from_unix(951_782_400); // 2000-02-29 00:00:00, a Tuesday
        assert_eq!(
            (leap.year, leap.month, leap.day, leap.weekday),
            (2000, 2, 29, 3)
        );
    }

    #[test]
    fn time_registers_are_bcd() {
        let mut c = Cmos::with_clock(Box::new(|| 1_795_898_855));
        assert_eq!(read(&mut c, REG_SECONDS), 0x35);
        assert_eq!(read(&mut c, REG_MINUTES), 0x47);
        assert_eq!(read(&mut c, REG_HOURS), 0x20);
        assert_eq!(read(&mut c, REG_DAY), 0x28);
        assert_eq!(read(&mut c, REG_MONTH), 0x11);
        assert_eq!(read(&mut c, REG_YEAR), 0x26);
        assert_eq!(read(&mut c, REG_CENTURY), 0x20);
        assert_eq!(read(&mut c, REG_STATUS_D), STATUS_D_VRT);
    }

    #[test]
    fn ram_keeps_values_and_index_ignores_nmi_bit() {
        let mut c = Cmos::new();
        c.write(0, &[0x80 | 0x40]);
        c.write(1, &[0xab]);
        assert_eq!(read(&mut c, 0x40), 0xab);
        c.write(0, &[REG_SECONDS]);
        c.write(1, &[0x99]);
        assert_ne!(read(&mut c, 0x40), 0);
    }
}
