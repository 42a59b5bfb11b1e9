//! RFC 3339 UTC timestamps with milliseconds (`2026-11-25T03:04:05.123Z`), the form every event
//! carries, written and read with the `time` crate (one fixed format description).

use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, always UTC.
const FORMAT: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Formats `t` as RFC 3339 UTC with milliseconds and a `Z`. Times before 1970 clamp to the epoch.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let t = t.max(UNIX_EPOCH);
    // invariant: FORMAT has only components every UTC date-time has (years past 9999 aside)
    OffsetDateTime::from(t).format(FORMAT).unwrap_or_else(|_| "9999-12-31T23:59:59.999Z".into())
}

/// Parses what [`rfc3339_millis`] writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`); `None` for anything else.
/// Consumers of the stream and the bench use it to measure capture-to-stream latency.
pub fn parse_rfc3339_millis(s: &str) -> Option<SystemTime> {
    let t = PrimitiveDateTime::parse(s, FORMAT).ok()?.assume_utc();
    Some(SystemTime::from(t))
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
