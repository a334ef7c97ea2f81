//! Periodic triggers (cron with seconds, or a fixed interval) and the scheduler's clock.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, WorkflowError};

/// When a periodic job restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Periodic {
    /// A cron expression with seconds: `sec min hour day-of-month month day-of-week [year]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// A fixed interval (`30s`, `5m`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_opt"
    )]
    pub interval: Option<Duration>,
    /// Also start the job when the execution starts (otherwise the first run is at the
    /// first tick).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_at_start: bool,
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Periodic {
    /// Every `d`.
    pub fn interval(d: Duration) -> Self {
        Periodic {
            cron: None,
            interval: Some(d),
            run_at_start: false,
        }
    }

    /// On a cron schedule (with seconds).
    pub fn cron(expr: impl Into<String>) -> Self {
        Periodic {
            cron: Some(expr.into()),
            interval: None,
            run_at_start: false,
        }
    }

    /// Check the trigger: exactly one of cron and interval, a parsable cron, a non-zero
    /// interval.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cron, &self.interval) {
            (Some(_), Some(_)) | (None, None) => {
                Err("a periodic trigger takes exactly one of 'cron' and 'interval'".into())
            }
            (Some(c), None) => cron::Schedule::from_str(c).map(|_| ()).map_err(|e| {
                format!("cron '{c}': {e} (fields: sec min hour day month weekday [year])")
            }),
            (None, Some(d)) if d.is_zero() => Err("the interval must be longer than 0".into()),
            _ => Ok(()),
        }
    }

    /// The first tick strictly after `after_ms` (milliseconds since the epoch).
    pub fn next_after(&self, after_ms: i64) -> Result<i64> {
        if let Some(d) = self.interval {
            return Ok(after_ms.saturating_add(d.as_millis().clamp(1, i64::MAX as u128) as i64));
        }
        let expr = self.cron.as_deref().unwrap_or_default();
        let schedule = cron::Schedule::from_str(expr)
            .map_err(|e| WorkflowError::Invalid(format!("cron '{expr}': {e}")))?;
        let at = DateTime::<Utc>::from_timestamp_millis(after_ms)
            .ok_or_else(|| WorkflowError::Invalid(format!("time {after_ms} out of range")))?;
        schedule
            .after(&at)
            .next()
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| WorkflowError::Invalid(format!("cron '{expr}' never fires again")))
    }
}

/// Where the scheduler reads the time (injectable so tests can move it).
pub trait Clock: Send + Sync {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock at `ms`.
    pub fn at(ms: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }

    /// Move forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_next_tick_never_overflows() {
        let p = Periodic {
            cron: None,
            interval: Some(std::time::Duration::from_secs(u64::MAX / 4)),
            run_at_start: false,
        };
        assert_eq!(p.next_after(i64::MAX - 1).unwrap(), i64::MAX);
    }

    use super::*;

    #[test]
    fn cron_with_seconds_and_intervals() {
        let every_10s = Periodic::cron("*/10 * * * * *");
        every_10s.validate().unwrap();
        // 2026-01-01T00:00:03Z -> 00:00:10Z
        let t0 = 1_767_225_603_000;
        assert_eq!(every_10s.next_after(t0).unwrap(), 1_767_225_610_000);
        assert_eq!(
            Periodic::interval(Duration::from_secs(5))
                .next_after(t0)
                .unwrap(),
            t0 + 5000
        );
        assert!(Periodic::cron("61 * * * * *").validate().is_err());
        assert!(Periodic::interval(Duration::ZERO).validate().is_err());
        let both = Periodic {
            cron: Some("* * * * * *".into()),
            interval: Some(Duration::from_secs(1)),
            run_at_start: false,
        };
        assert!(both.validate().is_err());
    }
}
