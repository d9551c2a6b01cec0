//! Calendar dates from Unix time, for the site's feed and sitemap and for
//! write-ups ("between March 2026 and May 2026"). UTC only; no clock reads.

/// (year, month 1–12, day 1–31) of a Unix time in seconds (UTC).
pub fn ymd(unix_seconds: i64) -> (i64, u32, u32) {
    // Days since 1970-01-01 → civil date, counting in 400-year eras that
    // start on March 1st (so the leap day is the era-year's last day).
    let days = unix_seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-03-01T12:00:00Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    let (y, m, d) = ymd(unix_seconds);
    let secs = unix_seconds.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `2026-03-01`.
pub fn date(unix_seconds: i64) -> String {
    let (y, m, d) = ymd(unix_seconds);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `March 2026`.
pub fn month_year(unix_seconds: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (y, m, _) = ymd(unix_seconds);
    format!("{} {y}", MONTHS[(m - 1) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(month_year(1_780_000_000), "May 2026");
    }
}
