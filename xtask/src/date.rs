//! Today's date for `DriverVer`, without a date-time crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// A civil (proleptic Gregorian) date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of the month, 1..=31.
    pub day: u32,
}

impl Date {
    /// The date `days` days after 1970-01-01 (negative: before).
    pub fn from_unix_days(days: i64) -> Self {
        // Count in 400-year eras starting on 0000-03-01, so that the leap day ends each year.
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted.rem_euclid(146_097);
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        // Both are small and positive by construction (1..=31, 1..=12).
        Self { year, month: u32::try_from(month).unwrap_or(0), day: u32::try_from(day).unwrap_or(0) }
    }

    /// Today (UTC), or the day of `SOURCE_DATE_EPOCH` when that is set (reproducible builds).
    pub fn today() -> Result<Self, String> {
        let seconds = if let Ok(text) = std::env::var("SOURCE_DATE_EPOCH") {
            text.trim().parse::<i64>().map_err(|e| format!("SOURCE_DATE_EPOCH={text:?}: {e}"))?
        } else {
            let now =
                SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| format!("system clock: {e}"))?;
            i64::try_from(now.as_secs()).map_err(|e| format!("system clock: {e}"))?
        };
        Ok(Self::from_unix_days(seconds.div_euclid(86_400)))
    }

    /// `MM/DD/YYYY`, the form `DriverVer` takes.
    pub fn inf_form(self) -> String {
        format!("{:02}/{:02}/{:04}", self.month, self.day, self.year)
    }
}

#[cfg(test)]
mod tests {
    use super::Date;

    fn date(year: i64, month: u32, day: u32) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn known_days() {
        assert_eq!(Date::from_unix_days(0), date(1970, 1, 1));
        assert_eq!(Date::from_unix_days(-1), date(1969, 12, 31));
        // 30 years with 7 leap days, then January and February of a leap year.
        assert_eq!(Date::from_unix_days(30 * 365 + 7 + 31 + 28), date(2000, 2, 29));
        assert_eq!(Date::from_unix_days(30 * 365 + 7 + 31 + 29), date(2000, 3, 1));
        // 54 years with 13 leap days.
        assert_eq!(Date::from_unix_days(54 * 365 + 13), date(2024, 1, 1));
        // 2100 is not a leap year: 2100-02-28 is followed by 2100-03-01.
        let feb_28_2100 = (2100 - 1970) * 365 + 32 + 31 + 27;
        assert_eq!(Date::from_unix_days(feb_28_2100), date(2100, 2, 28));
        assert_eq!(Date::from_unix_days(feb_28_2100 + 1), date(2100, 3, 1));
    }

    #[test]
    fn consecutive_days_are_consecutive_dates() {
        let mut previous = Date::from_unix_days(-800_000);
        for days in -799_999..800_000 {
            let next = Date::from_unix_days(days);
            let same_month =
                next.year == previous.year && next.month == previous.month && next.day == previous.day + 1;
            let new_month = next.day == 1
                && ((next.year == previous.year && next.month == previous.month + 1)
                    || (next.year == previous.year + 1 && next.month == 1 && previous.month == 12));
            assert!(same_month || new_month, "{previous:?} -> {next:?}");
            previous = next;
        }
    }

    #[test]
    fn inf_form_is_zero_padded() {
        assert_eq!(date(2026, 3, 7).inf_form(), "03/07/2026");
    }
}
