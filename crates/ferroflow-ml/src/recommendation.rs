//! Swing: item-to-item similarity from user behaviour (Flink ML's
//! `org.apache.flink.ml.recommendation.swing.Swing`).
//!
//! `w(i, j) = sum over user pairs {u, v} who both touched i and j of
//! 1 / (|I_u| + alpha1)^beta * 1 / (|I_v| + alpha1)^beta * 1 / (alpha2 + |I_u ∩ I_v|)`,
//! over users whose number of distinct items is within `[minUserBehavior, maxUserBehavior]`.
//! The output has a row per item: `item` and `"item,score;item,score"`, the `k` best first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator};
use crate::stage::AlgoOperator;
use crate::table::column;

/// The Swing AlgoOperator.
#[derive(Debug, Clone)]
pub struct Swing {
    params: Params,
}

impl Default for Swing {
    fn default() -> Self {
        Swing {
            params: Params::new(vec![
                ParamSpec::new(
                    "userCol",
                    ParamType::String,
                    json!("user"),
                    Validator::Always,
                ),
                ParamSpec::new(
                    "itemCol",
                    ParamType::String,
                    json!("item"),
                    Validator::Always,
                ),
                ParamSpec::new(
                    "outputCol",
                    ParamType::String,
                    json!("output"),
                    Validator::Always,
                ),
                ParamSpec::new(
                    "minUserBehavior",
                    ParamType::Int,
                    json!(10),
                    Validator::Gt(0.0),
                ),
                ParamSpec::new(
                    "maxUserBehavior",
                    ParamType::Int,
                    json!(1000),
                    Validator::Gt(0.0),
                ),
                ParamSpec::new("k", ParamType::Int, json!(100), Validator::Gt(0.0)),
                ParamSpec::new(
                    "maxUserNumPerItem",
                    ParamType::Int,
                    json!(1000),
                    Validator::Gt(0.0),
                ),
                ParamSpec::new("alpha1", ParamType::Int, json!(15), Validator::GtEq(0.0)),
                ParamSpec::new("alpha2", ParamType::Int, json!(0), Validator::GtEq(0.0)),
                ParamSpec::new("beta", ParamType::Double, json!(0.3), Validator::GtEq(0.0)),
                ParamSpec::new("seed", ParamType::Int, json!(0), Validator::Always),
            ]),
        }
    }
}

crate::impl_stage!(Swing, "org.apache.flink.ml.recommendation.swing.Swing");

fn longs(batch: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let col = column(batch, name)?;
    if !matches!(col.data_type(), DataType::Int64 | DataType::Int32) {
        return Err(MlError::column(
            name,
            "The types of user and item must be Long.",
        ));
    }
    let c = arrow_cast::cast(col, &DataType::Int64)?;
    let c = c.as_primitive::<Int64Type>();
    if c.null_count() > 0 {
        return Err(MlError::column(
            name,
            "Data of user and item column must not be null.",
        ));
    }
    Ok(c.values().to_vec())
}

impl AlgoOperator for Swing {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = crate::table::first(inputs)?;
        let p = &self.params;
        let users = longs(batch, &p.str("userCol")?)?;
        let items = longs(batch, &p.str("itemCol")?)?;
        let (min_b, max_b) = (
            p.i64("minUserBehavior")? as usize,
            p.i64("maxUserBehavior")? as usize,
        );
        if min_b > max_b {
            return Err(MlError::param(
                "maxUserBehavior",
                "must be >= minUserBehavior",
            ));
        }
        let (alpha1, alpha2, beta) = (
            p.i64("alpha1")? as f64,
            p.i64("alpha2")? as f64,
            p.f64("beta")?,
        );
        let k = p.i64("k")? as usize;
        let max_users = p.i64("maxUserNumPerItem")? as usize;
        let mut user_items: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        for (&u, &i) in users.iter().zip(&items) {
            user_items.entry(u).or_default().insert(i);
        }
        user_items.retain(|_, is| (min_b..=max_b).contains(&is.len()));
        let mut item_users: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (&u, is) in &user_items {
            for &i in is {
                item_users.entry(i).or_default().push(u);
            }
        }
        // At most maxUserNumPerItem users per item: a seeded sample.
        let mut x = (p.i64("seed")? as u64) ^ 0x2545_f491_4f6c_dd1d;
        for us in item_users.values_mut() {
            if us.len() > max_users {
                for i in (1..us.len()).rev() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    us.swap(i, (x % (i as u64 + 1)) as usize);
                }
                us.truncate(max_users);
                us.sort();
            }
        }
        let weight = |u: i64| 1.0 / (user_items[&u].len() as f64 + alpha1).powf(beta);
        let mut out_items = Vec::new();
        let mut out_text = Vec::new();
        for (&i, us) in &item_users {
            let mut scores: BTreeMap<i64, f64> = BTreeMap::new();
            for a in 0..us.len() {
                for b in a + 1..us.len() {
                    let (u, v) = (us[a], us[b]);
                    let common: Vec<i64> = user_items[&u]
                        .intersection(&user_items[&v])
                        .copied()
                        .collect();
                    let w = weight(u) * weight(v) / (alpha2 + common.len() as f64);
                    for j in common {
                        if j != i {
                            *scores.entry(j).or_insert(0.0) += w;
                        }
                    }
                }
            }
            if scores.is_empty() {
                continue;
            }
            let mut ranked: Vec<(i64, f64)> = scores.into_iter().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked.truncate(k);
            out_items.push(i);
            out_text.push(
                ranked
                    .iter()
                    .map(|(j, s)| {
                        format!("{j},{}", crate::feature::string_indexer::java_double(*s))
                    })
                    .collect::<Vec<_>>()
                    .join(";"),
            );
        }
        let schema = Schema::new(vec![
            Field::new(p.str("itemCol")?, DataType::Int64, false),
            Field::new(p.str("outputCol")?, DataType::Utf8, false),
        ]);
        Ok(vec![RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(out_items)),
                Arc::new(StringArray::from(out_text)),
            ],
        )?])
    }
}
