use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[test]
fn durations_add_up_their_parts() {
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
    assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7_200));
    assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
    assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(604_800));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
}

#[test]
fn durations_without_a_known_unit_are_refused() {
    for text in ["", "10", "m", "5 parsecs", "1h30", "-5m"] {
        assert!(parse_duration(text).is_err(), "{text:?} should be refused");
    }
}

#[test]
fn since_a_duration_counts_back_from_now() {
    let now = at(10_000);
    assert_eq!(parse_since("1h", now).unwrap(), at(10_000 - 3_600));
    assert_eq!(parse_since("1d1h", at(200_000)).unwrap(), at(200_000 - 90_000));
}

#[test]
fn timestamps_are_utc_unless_they_name_a_zone() {
    assert_eq!(parse_timestamp("1970-01-02").unwrap(), at(86_400));
    assert_eq!(parse_timestamp("2025-01-31T08:00:00Z").unwrap(), at(1_738_310_400));
    assert_eq!(parse_timestamp("2025-01-31 08:00").unwrap(), at(1_738_310_400));
    assert_eq!(parse_timestamp("2025-01-31T10:00:00+02:00").unwrap(), at(1_738_310_400));
    assert_eq!(parse_timestamp("2025-01-31T07:30:00-00:30").unwrap(), at(1_738_310_400));
    assert_eq!(parse_timestamp("2025-01-31T08:00:00.25Z").unwrap(), at(1_738_310_400) + Duration::from_millis(250));
    assert_eq!(parse_since("2025-01-31T08:00:00Z", at(0)).unwrap(), at(1_738_310_400));
}

#[test]
fn impossible_dates_and_times_are_refused() {
    for text in ["2025-02-30", "2025-13-01", "2025-01-31T24:00", "2025-01-31T08:60", "2025-01-31Tnoon", "2025-01"] {
        assert!(parse_timestamp(text).is_err(), "{text:?} should be refused");
    }
    assert!(parse_timestamp("2024-02-29").is_ok(), "2024 is a leap year");
}

#[test]
fn formatting_round_trips_through_parsing() {
    let moment = at(1_738_310_400) + Duration::from_millis(7);
    assert_eq!(format_utc(moment), "2025-01-31 08:00:00");
    assert_eq!(format_utc_millis(moment), "2025-01-31 08:00:00.007");
    assert_eq!(format_rfc3339(moment), "2025-01-31T08:00:00.007Z");
    assert_eq!(parse_timestamp(&format_rfc3339(moment)).unwrap(), moment);
    assert_eq!(format_utc(UNIX_EPOCH - Duration::from_secs(1)), "1969-12-31 23:59:59");
}
