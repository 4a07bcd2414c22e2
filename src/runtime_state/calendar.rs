//! UTC days and calendar months as the spending totals count them: a day is its number since
//! 1970-01-01, a month `year * 12 + month - 1`. Shared by the limits (which period is it now,
//! when does it end) and the Redis backend (the periods' key names and expiries).

pub const DAY_MS: i64 = 86_400_000;

/// The day of a Unix time in ms.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The month of a Unix time in ms.
pub fn month_of(ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(day_of(ms));
    year * 12 + i64::from(month) - 1
}

/// Unix ms at which `month` begins.
pub fn month_start_ms(month: i64) -> i64 {
    let (year, number) = (month.div_euclid(12), month.rem_euclid(12) + 1);
    days_from_civil(year, number, 1) * DAY_MS
}

/// `YYYY-MM-DD` of a day.
pub fn day_label(day: i64) -> String {
    let (year, month, date) = civil_from_days(day);
    format!("{year:04}-{month:02}-{date:02}")
}

/// `YYYY-MM` of a month.
pub fn month_label(month: i64) -> String {
    format!(
        "{:04}-{:02}",
        month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// The inverse: (year, month 1–12, day) → days since 1970-01-01.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_arithmetic_matches_known_dates() {
        // 2024-02-29 is day 19782; 2026-11-26 is day 20783.
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(days_from_civil(2026, 11, 26), 20_783);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        let dec = days_from_civil(2025, 12, 31) * DAY_MS;
        assert_eq!(
            month_start_ms(month_of(dec) + 1),
            days_from_civil(2026, 1, 1) * DAY_MS
        );
    }

    #[test]
    fn labels_name_the_day_and_the_month() {
        assert_eq!(day_label(19_782), "2024-02-29");
        assert_eq!(month_label(month_of(19_782 * DAY_MS)), "2024-02");
        assert_eq!(
            month_label(month_of(days_from_civil(2025, 12, 31) * DAY_MS)),
            "2025-12"
        );
    }
}
