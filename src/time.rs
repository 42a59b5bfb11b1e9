//! RFC 3339 UTC timestamps with milliseconds (`2026-11-25T03:04:05.123Z`), the form every event
//! carries. Written by hand (civil-from-days) because it is twenty lines and needs no time zone.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as RFC 3339 UTC with milliseconds and a `Z`. Times before 1970 clamp to the epoch.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", sod / 3600, (sod / 60) % 60, sod % 60)
}

/// Parses what [`rfc3339_millis`] writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`); `None` for anything else.
/// Consumers of the stream and the bench use it to measure capture-to-stream latency.
pub fn parse_rfc3339_millis(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let n = |a: usize, e: usize| s.get(a..e)?.parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (h, mi, sec, ms) = (n(11, 13)?, n(14, 16)?, n(17, 19)?, n(20, 23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // days_from_civil (Howard Hinnant), the inverse of civil_from_days
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis = ((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000 + ms).try_into().ok()?;
    Some(UNIX_EPOCH + std::time::Duration::from_millis(millis))
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day) 12:34:56.789
        let t = UNIX_EPOCH + Duration::from_millis(951_827_696_789);
        assert_eq!(rfc3339_millis(t), "2000-02-29T12:34:56.789Z");
        // 2026-11-25T03:04:05.006Z
        let t = UNIX_EPOCH + Duration::from_millis(1_795_575_845_006);
        assert_eq!(rfc3339_millis(t), "2026-11-25T03:04:05.006Z");
    }

    #[test]
    fn parses_what_it_writes() {
        for ms in [0u64, 951_827_696_789, 1_795_575_845_006, 4_102_444_799_999] {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(t)), Some(t));
        }
        assert_eq!(parse_rfc3339_millis("2026-13-01T00:00:00.000Z"), None);
        assert_eq!(parse_rfc3339_millis("2026-11-25 03:04:05.006Z"), None);
        assert_eq!(parse_rfc3339_millis("2026-11-25T03:04:05Z"), None);
    }
}
