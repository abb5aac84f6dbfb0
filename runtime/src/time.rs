//! Times as people read them, with the `time` crate's calendar (none by
//! hand). Both daemons' CLIs print through here.

use time::OffsetDateTime;

/// `YYYY-MM-DD{sep}HH:MM:SS` in UTC, then `suffix`; a time outside years
/// -9999..=9999 prints as its number of seconds.
fn utc(secs: i64, sep: char, suffix: &str) -> String {
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}{suffix}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => secs.to_string(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC) for unix seconds.
pub fn rfc3339(secs: i64) -> String {
    utc(secs, 'T', "Z")
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ` (what [`rfc3339`] prints); `None`
/// for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, clock) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (year, month, day) = (d.next()?, d.next()?, d.next()?);
    let mut c = clock.splitn(3, ':');
    let (hour, minute, second) = (c.next()?, c.next()?, c.next()?);
    let month = time::Month::try_from(month.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
    let clock = time::Time::from_hms(
        hour.parse().ok()?,
        minute.parse().ok()?,
        second.parse().ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// `2024-05-01 12:00:00 +0000 UTC`, as SPIRE's CLI prints times.
pub fn spire_cli(secs: i64) -> String {
    utc(secs, ' ', " +0000 UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_in_utc_including_leap_days_and_before_1970() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_714_564_800), "2024-05-01T12:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(spire_cli(1_714_564_800), "2024-05-01 12:00:00 +0000 UTC");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn what_rfc3339_prints_parses_back() {
        for secs in [0, 951_782_400, 1_714_564_800, -1] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs));
        }
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T25:00:00Z",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
