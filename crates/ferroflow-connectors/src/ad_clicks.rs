//! A simulated stream of ad impressions whose clicks come from a hidden click model that
//! drifts: the data of online click-through-rate prediction, for demos, tests and
//! benchmarks of online learning.
//!
//! Row `i` is a pure function of (seed, i), as every [`RowGenerator`]'s, so a
//! [`GeneratorSource`](crate::GeneratorSource) over it is deterministic, parallel and
//! checkpointable. Columns: `id` (int64, the row index), `ts` (timestamp ms,
//! `start_ms + i * step_ms`), `user` (int64; low ids are more active), `ad` (int64; low ids
//! are shown more), `device` (`mobile` 60 %, `desktop` 30 %, `tablet` 10 %), `position`
//! (int64, 1–4), `hour` (int64, the hour of day of `ts`) and `click` (float64, 1.0 or 0.0).
//!
//! The click probability is `sigmoid(b + ad(i) + user + device + position + hour)`, with a
//! per-user and a per-ad effect drawn from the seed, a lower rate on mobile, lower rates
//! further down the page and an evening peak. The ad effects drift: they turn from one drawn
//! set to another and on (`cos θ · a₁ + sin θ · a₂`, `θ = π/2 · i / drift_rows`), so an ad
//! that draws clicks now stops doing so `drift_rows` impressions later, and a model trained
//! once goes stale while one trained online keeps up.

use std::f64::consts::{FRAC_PI_2, PI};
use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{ConnectorError, Result};
use crate::generator::{RowGenerator, mix};

/// The hidden click model and the shape of the traffic.
#[derive(Debug, Clone)]
pub struct AdClicks {
    users: u64,
    ads: u64,
    seed: u64,
    start_ms: i64,
    step_ms: i64,
    drift_rows: u64,
    base_rate: f64,
    schema: SchemaRef,
}

const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

/// Salts of the independent draws each row and each entity makes.
mod salt {
    pub(super) const USER: u64 = 1;
    pub(super) const AD: u64 = 2;
    pub(super) const DEVICE: u64 = 3;
    pub(super) const POSITION: u64 = 4;
    pub(super) const CLICK: u64 = 5;
    pub(super) const USER_EFFECT: u64 = 6;
    pub(super) const AD_EFFECT_1: u64 = 7;
    pub(super) const AD_EFFECT_2: u64 = 9;
}

impl AdClicks {
    /// `users` users and `ads` ads (both at least 1), drawn from `seed`; by default rows are
    /// 100 ms apart from 2026-01-01 00:00 UTC, the ad effects turn every 100 000 rows and
    /// the click rate of an average impression is 5 %.
    pub fn new(users: u64, ads: u64, seed: u64) -> Result<Self> {
        if users == 0 || ads == 0 {
            return Err(ConnectorError::Config(format!(
                "ad clicks: users ({users}) and ads ({ads}) must be at least 1"
            )));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("user", DataType::Int64, false),
            Field::new("ad", DataType::Int64, false),
            Field::new("device", DataType::Utf8, false),
            Field::new("position", DataType::Int64, false),
            Field::new("hour", DataType::Int64, false),
            Field::new("click", DataType::Float64, false),
        ]));
        Ok(AdClicks {
            users,
            ads,
            seed,
            start_ms: 1_767_225_600_000,
            step_ms: 100,
            drift_rows: 100_000,
            base_rate: 0.05,
            schema,
        })
    }

    /// Event time of row 0 (ms since the epoch).
    pub fn with_start_ms(mut self, start_ms: i64) -> Self {
        self.start_ms = start_ms;
        self
    }

    /// Event time between two rows (ms, at least 1).
    pub fn with_step_ms(mut self, step_ms: i64) -> Result<Self> {
        if step_ms < 1 {
            return Err(ConnectorError::Config(format!(
                "ad clicks: step_ms {step_ms} must be at least 1"
            )));
        }
        self.step_ms = step_ms;
        Ok(self)
    }

    /// Rows over which the ad effects turn by a quarter (0: no drift).
    pub fn with_drift_rows(mut self, rows: u64) -> Self {
        self.drift_rows = rows;
        self
    }

    /// The click rate of an impression whose effects are all 0 (in (0, 1)).
    pub fn with_base_rate(mut self, rate: f64) -> Result<Self> {
        if !(rate > 0.0 && rate < 1.0) {
            return Err(ConnectorError::Config(format!(
                "ad clicks: base_rate {rate} must be between 0 and 1"
            )));
        }
        self.base_rate = rate;
        Ok(self)
    }

    /// A uniform draw in [0, 1) keyed by `salt` and `key`.
    fn uniform(&self, salt: u64, key: u64) -> f64 {
        let z = mix(self.seed ^ mix(salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ mix(key)));
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw keyed by `salt` and `key` (Box-Muller).
    fn normal(&self, salt: u64, key: u64) -> f64 {
        let u1 = self
            .uniform(salt, key.wrapping_mul(2))
            .max(f64::MIN_POSITIVE);
        let u2 = self.uniform(salt, key.wrapping_mul(2) + 1);
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// The true click probability of an impression at row `i`.
    pub fn click_probability(
        &self,
        i: u64,
        user: u64,
        ad: u64,
        device: usize,
        position: i64,
        hour: i64,
    ) -> f64 {
        let theta = if self.drift_rows == 0 {
            0.0
        } else {
            FRAC_PI_2 * i as f64 / self.drift_rows as f64
        };
        let ad_effect = theta.cos() * self.normal(salt::AD_EFFECT_1, ad)
            + theta.sin() * self.normal(salt::AD_EFFECT_2, ad);
        let user_effect = 0.5 * self.normal(salt::USER_EFFECT, user);
        let device_effect = [-0.3, 0.2, 0.0][device];
        let position_effect = -0.4 * (position - 1) as f64;
        let hour_effect = 0.4 * (2.0 * PI * (hour - 15) as f64 / 24.0).cos();
        let b = (self.base_rate / (1.0 - self.base_rate)).ln();
        let logit = b + ad_effect + user_effect + device_effect + position_effect + hour_effect;
        1.0 / (1.0 + (-logit).exp())
    }
}

impl RowGenerator for AdClicks {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn rows(&self, first: u64, n: usize) -> ferroflow_engine::Result<RecordBatch> {
        let mut id = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        let mut user = Vec::with_capacity(n);
        let mut ad = Vec::with_capacity(n);
        let mut device = Vec::with_capacity(n);
        let mut position = Vec::with_capacity(n);
        let mut hour = Vec::with_capacity(n);
        let mut click = Vec::with_capacity(n);
        for i in first..first + n as u64 {
            let t = self
                .start_ms
                .saturating_add((i as i64).saturating_mul(self.step_ms));
            // Squared uniform draws: low ids are the active users and the big campaigns.
            let u = ((self.uniform(salt::USER, i).powi(2) * self.users as f64) as u64)
                .min(self.users - 1);
            let a =
                ((self.uniform(salt::AD, i).powi(2) * self.ads as f64) as u64).min(self.ads - 1);
            let d = match self.uniform(salt::DEVICE, i) {
                x if x < 0.6 => 0,
                x if x < 0.9 => 1,
                _ => 2,
            };
            let pos = 1 + (self.uniform(salt::POSITION, i) * 4.0) as i64;
            let h = t.div_euclid(3_600_000).rem_euclid(24);
            let p = self.click_probability(i, u, a, d, pos.min(4), h);
            id.push(i as i64);
            ts.push(t);
            user.push(u as i64);
            ad.push(a as i64);
            device.push(DEVICES[d]);
            position.push(pos.min(4));
            hour.push(h);
            click.push(if self.uniform(salt::CLICK, i) < p {
                1.0
            } else {
                0.0
            });
        }
        Ok(RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(Int64Array::from(id)),
                Arc::new(TimestampMillisecondArray::from(ts)),
                Arc::new(Int64Array::from(user)),
                Arc::new(Int64Array::from(ad)),
                Arc::new(StringArray::from(device)),
                Arc::new(Int64Array::from(position)),
                Arc::new(Int64Array::from(hour)),
                Arc::new(Float64Array::from(click)),
            ],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};

    fn clicks(b: &RecordBatch) -> Vec<f64> {
        b.column(7).as_primitive::<Float64Type>().values().to_vec()
    }

    #[test]
    fn rows_are_a_function_of_their_index() {
        let g = AdClicks::new(100, 20, 3).unwrap();
        let whole = g.rows(0, 1000).unwrap();
        let a = g.rows(0, 400).unwrap();
        let b = g.rows(400, 600).unwrap();
        let parts = arrow_select::concat::concat_batches(&g.schema(), &[a, b]).unwrap();
        assert_eq!(whole, parts);
        let other = AdClicks::new(100, 20, 4).unwrap().rows(0, 1000).unwrap();
        assert_ne!(clicks(&whole), clicks(&other), "the seed matters");
    }

    #[test]
    fn the_click_rate_is_near_the_model_and_ad_effects_drift() {
        let g = AdClicks::new(1000, 50, 1).unwrap().with_drift_rows(50_000);
        let early = g.rows(0, 20_000).unwrap();
        let rate = clicks(&early).iter().sum::<f64>() / 20_000.0;
        assert!((0.02..0.2).contains(&rate), "click rate {rate}");
        // The most shown ad's true rate at the start and two quarter-turns later differ.
        let p0 = g.click_probability(0, 0, 0, 1, 1, 12);
        let p1 = g.click_probability(100_000, 0, 0, 1, 1, 12);
        assert!((p0 - p1).abs() > 0.01, "{p0} vs {p1}");
        let hours = early.column(6).as_primitive::<Int64Type>();
        assert!(hours.values().iter().all(|h| (0..24).contains(h)));
        let positions = early.column(5).as_primitive::<Int64Type>();
        assert!(positions.values().iter().all(|p| (1..=4).contains(p)));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(AdClicks::new(0, 1, 0).is_err());
        assert!(AdClicks::new(1, 1, 0).unwrap().with_step_ms(0).is_err());
        assert!(AdClicks::new(1, 1, 0).unwrap().with_base_rate(1.0).is_err());
    }
}
