//! Times on the command line: parsing `--since` and printing timestamps, all in UTC.
//!
//! The CLI prints UTC so that what it shows matches what another machine shows for the same
//! run; a dependency for time zones is not worth it for one column. Dates are converted with
//! Howard Hinnant's `days_from_civil` algorithm (proleptic Gregorian calendar).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;

/// Parses the argument of `--since`: a duration back from `now` (`90s`, `15m`, `2h`, `7d`,
/// `1w`, or a sum such as `1h30m`) or a UTC timestamp (`2025-01-31`, `2025-01-31T08:00`,
/// `2025-01-31 08:00:00Z`, `2025-01-31T08:00:00.250+02:00`).
pub(crate) fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    let looks_like_date = text.len() >= 10 && text.as_bytes().get(4) == Some(&b'-');
    if looks_like_date {
        return parse_timestamp(text);
    }
    let ago = parse_duration(text)?;
    Ok(now.checked_sub(ago).unwrap_or(UNIX_EPOCH))
}

/// A duration such as `90s`, `15m`, `2h`, `7d`, `1w`, `1h30m` or `500ms`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "`{text}` is neither a duration (90s, 15m, 2h, 7d, 1w, 1h30m) nor a UTC timestamp (2025-01-31T08:00:00Z)"
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let amount: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds_per_unit: u64 = match &rest[..unit_len] {
            "ms" => {
                total = total.saturating_add(Duration::from_millis(amount));
                rest = &rest[unit_len..];
                continue;
            }
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hr" | "hrs" => 3_600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return Err(bad()),
        };
        total = total.saturating_add(Duration::from_secs(amount.saturating_mul(seconds_per_unit)));
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A timestamp: `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM[:SS[.fff]]`,
/// optionally followed by `Z` or `±HH:MM`. Without a zone it is UTC.
pub(crate) fn parse_timestamp(text: &str) -> Result<SystemTime, String> {
    let bad = |why: &str| format!("`{text}` is not a timestamp ({why}); write e.g. 2025-01-31T08:00:00Z");
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mut fields = date.splitn(3, '-');
    let mut field = |name: &str| -> Result<i64, String> {
        fields.next().and_then(|f| f.parse().ok()).ok_or_else(|| bad(&format!("no {name}")))
    };
    let (year, month, day) = (field("year")?, field("month")?, field("day")?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    let mut seconds = days_from_civil(year, month, day) * SECS_PER_DAY;
    let mut nanos = 0u32;
    if let Some(time) = time {
        let (clock, offset) = split_zone(time).ok_or_else(|| bad("bad time zone"))?;
        let mut parts = clock.splitn(3, ':');
        let hour: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad("bad hour"))?;
        let minute: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad("bad minute"))?;
        let (second, fraction) = match parts.next() {
            None => (0, ""),
            Some(sec) => match sec.split_once('.') {
                Some((whole, fraction)) => (whole.parse().map_err(|_| bad("bad second"))?, fraction),
                None => (sec.parse().map_err(|_| bad("bad second"))?, ""),
            },
        };
        if hour > 23 || minute > 59 || !(0..=60).contains(&second) {
            return Err(bad("no such time"));
        }
        if !fraction.is_empty() {
            if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("bad fraction of a second"));
            }
            let padded = format!("{fraction:0<9}");
            nanos = padded.parse().map_err(|_| bad("bad fraction of a second"))?;
        }
        seconds += hour * 3_600 + minute * 60 + second - offset;
    }
    let whole = Duration::from_secs(seconds.unsigned_abs());
    let at = if seconds >= 0 { UNIX_EPOCH.checked_add(whole) } else { UNIX_EPOCH.checked_sub(whole) };
    at.and_then(|at| at.checked_add(Duration::from_nanos(u64::from(nanos)))).ok_or_else(|| bad("out of range"))
}

/// Splits `08:00:00+02:00` into the clock and the zone's offset in seconds east of UTC.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let Some(at) = time.rfind(['+', '-']) else { return Some((time, 0)) };
    let sign = if time[at..].starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = time[at + 1..].split_once(':').unwrap_or((&time[at + 1..], "0"));
    let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((&time[..at], sign * (hours * 3_600 + minutes * 60)))
}

/// `2025-01-31 08:00:00` (UTC), to the second.
pub(crate) fn format_utc(at: SystemTime) -> String {
    let (date, h, m, s, _) = split(at);
    format!("{date} {h:02}:{m:02}:{s:02}")
}

/// `2025-01-31 08:00:00.250` (UTC), to the millisecond.
pub(crate) fn format_utc_millis(at: SystemTime) -> String {
    let (date, h, m, s, ms) = split(at);
    format!("{date} {h:02}:{m:02}:{s:02}.{ms:03}")
}

/// `2025-01-31T08:00:00.250Z`: RFC 3339, for JSON output.
pub(crate) fn format_rfc3339(at: SystemTime) -> String {
    let (date, h, m, s, ms) = split(at);
    format!("{date}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// The date as `YYYY-MM-DD`, then hours, minutes, seconds and milliseconds (UTC).
fn split(at: SystemTime) -> (String, i64, i64, i64, i64) {
    let millis: i64 = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    };
    let seconds = millis.div_euclid(1_000);
    let (days, of_day) = (seconds.div_euclid(SECS_PER_DAY), seconds.rem_euclid(SECS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60,
        millis.rem_euclid(1_000),
    )
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
