use std::time::Duration;

use super::*;

#[test]
fn the_longest_duration_fills_the_bar_and_others_scale_in_eighths() {
    let longest = Duration::from_millis(80);
    assert_eq!(bar(longest, longest, 4), "████");
    assert_eq!(bar(Duration::from_millis(50), longest, 4), "██▌");
    assert_eq!(bar(Duration::from_millis(10), longest, 4), "▌");
}

#[test]
fn a_tiny_duration_still_shows_a_sliver_and_zero_shows_nothing() {
    let longest = Duration::from_secs(100);
    assert_eq!(bar(Duration::from_nanos(1), longest, 30), "▏");
    assert_eq!(bar(Duration::ZERO, longest, 30), "");
    assert_eq!(bar(Duration::ZERO, Duration::ZERO, 30), "");
}

#[test]
fn durations_print_with_three_significant_digits() {
    assert_eq!(duration(Duration::from_micros(850)), "850µs");
    assert_eq!(duration(Duration::from_micros(1_234)), "1.23ms");
    assert_eq!(duration(Duration::from_micros(12_345)), "12.3ms");
    assert_eq!(duration(Duration::from_millis(123)), "123ms");
    assert_eq!(duration(Duration::from_millis(4_200)), "4.20s");
    assert_eq!(duration(Duration::from_secs(184)), "3m04s");
    assert_eq!(duration(Duration::from_secs(7_500)), "2h05m");
}

#[test]
fn byte_counts_use_binary_units() {
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(1_536), "1.5 KiB");
    assert_eq!(bytes(12 * 1024 * 1024), "12.0 MiB");
}

#[test]
fn an_excerpt_keeps_the_first_line_and_marks_a_cut() {
    assert_eq!(excerpt("short", 10), "short");
    assert_eq!(excerpt("a much longer message", 10), "a much lo…");
    assert_eq!(excerpt("first\nsecond", 10), "first…");
}

#[test]
fn a_table_aligns_columns_and_right_aligns_numbers() {
    let mut table = Table::new(&["NAME", ">STEPS", "NOTE"]);
    table.row(vec!["a".into(), "3".into(), String::new()]);
    table.row(vec!["longer".into(), "12".into(), "x".into()]);
    let mut out = Vec::new();
    table.write(&mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "NAME    STEPS  NOTE\na           3\nlonger     12  x\n");
}
