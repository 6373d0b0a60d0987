//! When a pull source runs: a five-field cron expression (UTC) or a fixed
//! interval.
//!
//! Hand-written rather than the `cron` or `croner` crate: `cron` wants a
//! seconds field, `croner` also takes `L`, `W` and `#` that a spec must not
//! hold, and both compute times with chrono where this crate has jiff.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};

/// A parsed `schedule`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Run every so often, such as `30s` or `5m`.
    Every(Duration),
    /// Run at the minutes a cron expression names, in UTC.
    Cron(Cron),
}

/// A five-field cron expression: minute, hour, day of month, month, day of
/// week. Fields take `*`, numbers, ranges `a-b`, lists `a,b` and steps
/// `*/n` or `a-b/n`; months and days of week also take English names
/// (`jan`, `mon`), and day of week 7 is Sunday like 0. As in Vixie cron,
/// when both day fields are restricted a day matching either one runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    any_day_of_month: bool,
    any_day_of_week: bool,
}

/// Why a `schedule` cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "{0:?} is neither a five-field cron expression such as \"*/1 * * * *\" nor an interval such as \"30s\", \"5m\" or \"1h\""
    )]
    Unrecognised(String),
    #[error("interval {0:?} is zero; pulls would run back to back")]
    ZeroInterval(String),
    #[error("interval {0:?} is too long")]
    IntervalTooLong(String),
    #[error("cron expression {text:?}: the {field} field {value:?} {problem}")]
    BadField {
        text: String,
        field: &'static str,
        value: String,
        problem: String,
    },
    #[error("cron expression {0:?} never fires (no such date)")]
    NeverFires(String),
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Longest search for the next run: eight years covers a February 29th
/// schedule across a skipped leap year (2100).
const SEARCH_DAYS: u32 = 366 * 8 + 1;

impl Schedule {
    /// Parses a schedule: an interval first (`^[0-9]+(ms|s|m|h)$`), else a
    /// cron expression.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        if let Some(interval) = parse_interval(text)? {
            return Ok(Self::Every(interval));
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 || text.contains(['\t', '\n', '\r']) {
            return Err(ScheduleError::Unrecognised(text.to_owned()));
        }
        Cron::parse(text, &fields).map(Self::Cron)
    }

    /// The first run strictly after `after`. For an interval, `after` plus
    /// the interval; for cron, the next matching minute. `None` only for a
    /// cron expression that never fires.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Every(interval) => {
                let step = SignedDuration::try_from(*interval).ok()?;
                after.checked_add(step).ok()
            }
            Self::Cron(cron) => cron.next_after(after),
        }
    }
}

fn parse_interval(text: &str) -> Result<Option<Duration>, ScheduleError> {
    let digits_end = text.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, unit) = text.split_at(digits_end);
    let unit_millis: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Ok(None),
    };
    if digits.is_empty() {
        return Ok(None);
    }
    let too_long = || ScheduleError::IntervalTooLong(text.to_owned());
    let amount: u64 = digits.parse().map_err(|_| too_long())?;
    if amount == 0 {
        return Err(ScheduleError::ZeroInterval(text.to_owned()));
    }
    let millis = amount.checked_mul(unit_millis).ok_or_else(too_long)?;
    Ok(Some(Duration::from_millis(millis)))
}

impl Cron {
    fn parse(text: &str, fields: &[&str]) -> Result<Self, ScheduleError> {
        let field = |spec: &FieldSpec, value: &str| parse_field(text, spec, value);
        let mut days_of_week = field(&DAY_OF_WEEK, fields[4])?;
        // 7 is another name for Sunday.
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & !(1 << 7);
        }
        let cron = Self {
            text: text.to_owned(),
            minutes: field(&MINUTE, fields[0])?,
            hours: field(&HOUR, fields[1])?,
            days_of_month: field(&DAY_OF_MONTH, fields[2])?,
            months: field(&MONTH, fields[3])?,
            days_of_week,
            any_day_of_month: fields[2].starts_with(['*', '?']),
            any_day_of_week: fields[4].starts_with(['*', '?']),
        };
        if cron.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(ScheduleError::NeverFires(text.to_owned()));
        }
        Ok(cron)
    }

    fn runs_on(&self, date: Date) -> bool {
        let bit = |set: u64, n: i8| n >= 0 && set & (1 << n) != 0;
        if !bit(self.months, date.month()) {
            return false;
        }
        let dom = bit(self.days_of_month, date.day());
        let dow = bit(self.days_of_week, date.weekday().to_sunday_zero_offset());
        match (self.any_day_of_month, self.any_day_of_week) {
            (false, false) => dom || dow,
            (true, false) => dow,
            (false, true) => dom,
            (true, true) => true,
        }
    }

    fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let now = Offset::UTC.to_datetime(after);
        let mut date = now.date();
        let mut from_hour = u32::try_from(now.hour()).ok()?;
        // The next whole minute after `after`, never `after` itself.
        let mut from_minute = u32::try_from(now.minute()).ok()? + 1;
        for _ in 0..SEARCH_DAYS {
            if self.runs_on(date)
                && let Some((hour, minute)) = self.first_time_from(from_hour, from_minute)
            {
                let time =
                    Time::new(i8::try_from(hour).ok()?, i8::try_from(minute).ok()?, 0, 0).ok()?;
                return Offset::UTC
                    .to_timestamp(DateTime::from_parts(date, time))
                    .ok();
            }
            date = date.tomorrow().ok()?;
            from_hour = 0;
            from_minute = 0;
        }
        None
    }

    fn first_time_from(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        let (hour, minute) = if minute > 59 {
            (hour + 1, 0)
        } else {
            (hour, minute)
        };
        (hour..24)
            .filter(|h| self.hours & (1 << h) != 0)
            .find_map(|h| {
                let start = if h == hour { minute } else { 0 };
                (start..60)
                    .find(|m| self.minutes & (1 << m) != 0)
                    .map(|m| (h, m))
            })
    }
}

fn parse_field(text: &str, spec: &FieldSpec, value: &str) -> Result<u64, ScheduleError> {
    let bad = |problem: String| ScheduleError::BadField {
        text: text.to_owned(),
        field: spec.name,
        value: value.to_owned(),
        problem,
    };
    let number = |s: &str| -> Result<u32, ScheduleError> {
        let lower = s.to_ascii_lowercase();
        let n = match spec.names.iter().position(|name| *name == lower) {
            Some(i) if spec.min == 1 => i as u32 + 1,
            Some(i) => i as u32,
            None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse()
                .map_err(|_| bad(format!("has {s:?}, which is too large")))?,
            None => return Err(bad(format!("has {s:?}, which is not a number"))),
        };
        if n < spec.min || n > spec.max {
            return Err(bad(format!(
                "has {n}, outside {} to {}",
                spec.min, spec.max
            )));
        }
        Ok(n)
    };
    let mut set = 0u64;
    for item in value.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 =
                    step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        bad(format!("has step {step:?}; a step is a number from 1"))
                    })?;
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = match range {
            "*" | "?" if spec.name.starts_with("day") || range == "*" => (spec.min, spec.max),
            _ => match range.split_once('-') {
                Some((low, high)) => (number(low)?, number(high)?),
                // `5/15` means from 5 to the end, every 15.
                None if item.contains('/') => (number(range)?, spec.max),
                None => {
                    let n = number(range)?;
                    (n, n)
                }
            },
        };
        if low > high {
            return Err(bad(format!(
                "has the range {range:?}, which runs backwards"
            )));
        }
        // Stepping by `step_by` cannot overflow however large the step.
        for n in (low..=high).step_by(step as usize) {
            set |= 1 << n;
        }
    }
    Ok(set)
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every(d) => write!(f, "every {d:?}"),
            Self::Cron(c) => f.write_str(&c.text),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule)
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn intervals_parse_into_durations() {
        assert_eq!(
            Schedule::parse("30s"),
            Ok(Schedule::Every(Duration::from_secs(30)))
        );
        assert_eq!(
            Schedule::parse("5m"),
            Ok(Schedule::Every(Duration::from_secs(300)))
        );
        assert_eq!(
            Schedule::parse("250ms"),
            Ok(Schedule::Every(Duration::from_millis(250)))
        );
        assert_eq!(
            Schedule::parse("1h"),
            Ok(Schedule::Every(Duration::from_secs(3600)))
        );
        assert!(matches!(
            Schedule::parse("0s"),
            Err(ScheduleError::ZeroInterval(_))
        ));
        assert!(matches!(
            Schedule::parse("99999999999999999999h"),
            Err(ScheduleError::IntervalTooLong(_))
        ));
        assert_eq!(next("30s", "2024-01-01T00:00:00Z"), "2024-01-01T00:00:30Z");
    }

    #[test]
    fn every_minute_fires_at_the_next_whole_minute() {
        assert_eq!(
            next("*/1 * * * *", "2024-01-01T00:00:00Z"),
            "2024-01-01T00:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T00:00:59.9Z"),
            "2024-01-01T00:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-12-31T23:59:30Z"),
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn steps_ranges_lists_and_names_work() {
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T00:16:00Z"),
            "2024-01-01T00:30:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T00:26:00Z"),
            "2024-01-01T00:45:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T13:00:00Z"
        );
        assert_eq!(
            next("0,30 8 * * *", "2024-01-01T08:10:00Z"),
            "2024-01-01T08:30:00Z"
        );
        // 2024-01-01 is a Monday.
        assert_eq!(
            next("0 0 * * FRI", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jun *", "2024-01-01T00:00:00Z"),
            "2024-06-01T00:00:00Z"
        );
    }

    #[test]
    fn restricted_day_fields_match_either_day() {
        // The 15th, or any Monday: Monday 2024-01-08 comes first.
        assert_eq!(
            next("0 0 15 * 1", "2024-01-02T00:00:00Z"),
            "2024-01-08T00:00:00Z"
        );
        // Only Mondays when the day of month is a star.
        assert_eq!(
            next("0 0 * * 1", "2024-01-02T00:00:00Z"),
            "2024-01-08T00:00:00Z"
        );
    }

    #[test]
    fn huge_steps_fire_once_per_range() {
        assert_eq!(
            next("1/4294967295 * * * *", "2024-01-01T00:00:00Z"),
            "2024-01-01T00:01:00Z"
        );
    }

    #[test]
    fn leap_days_are_found_years_ahead() {
        assert_eq!(
            next("0 0 29 2 *", "2097-03-01T00:00:00Z"),
            "2104-02-29T00:00:00Z"
        );
    }

    #[test]
    fn bad_cron_fields_are_named() {
        let cases = [
            ("61 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "minute"),
            ("5-1 * * * *", "minute"),
            ("x * * * *", "minute"),
            ("* * * foo *", "month"),
        ];
        for (text, field) in cases {
            match Schedule::parse(text) {
                Err(ScheduleError::BadField { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_schedules_are_refused() {
        for text in [
            "",
            "* * * *",
            "* * * * * *",
            "every minute",
            "5 minutes",
            "1d",
            "-5s",
        ] {
            assert!(
                matches!(Schedule::parse(text), Err(ScheduleError::Unrecognised(_))),
                "{text:?}"
            );
        }
        assert!(matches!(
            Schedule::parse("0 0 31 2 *"),
            Err(ScheduleError::NeverFires(_))
        ));
    }
}
