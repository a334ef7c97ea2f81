//! ALS: matrix factorisation of explicit ratings by alternating least squares, with Alink's
//! names (`com.alibaba.alink.pipeline.recommendation.ALS`; Flink ML has no ALS).
//!
//! Params: `userCol`, `itemCol`, `rateCol`, `rank` (10), `lambda` (0.1), `numIter` (10),
//! `seed`, `predictionCol`. Each round solves every user's factors given the items', then
//! every item's given the users': `(sum v vᵀ + lambda * n I) x = sum r v` over the ratings
//! of that user (n of them), the weighted-lambda regularisation of ALS-WR. Users and items
//! are integer ids. The model predicts `u · v` for a (user, item) pair; a user or item it
//! never saw gets a null prediction. Model data: one row per factor vector, columns `kind`
//! (`user` or `item`), `id`, `factors`. `implicitPrefs` and `nonnegative` are not
//! supported and are refused when set.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::{column, doubles, first, vectors, with_columns};
use crate::vector::dense_column;

fn specs() -> Vec<ParamSpec> {
    let s = |name: &'static str, default: &str| {
        ParamSpec::new(name, ParamType::String, json!(default), Validator::Always)
    };
    vec![
        s("userCol", "user"),
        s("itemCol", "item"),
        s("rateCol", "rate"),
        s("predictionCol", "prediction"),
        ParamSpec::new("rank", ParamType::Int, json!(10), Validator::Gt(0.0)),
        ParamSpec::new(
            "lambda",
            ParamType::Double,
            json!(0.1),
            Validator::GtEq(0.0),
        ),
        ParamSpec::new("numIter", ParamType::Int, json!(10), Validator::Gt(0.0)),
        ParamSpec::new("seed", ParamType::Int, json!(0), Validator::Always),
        ParamSpec::new(
            "implicitPrefs",
            ParamType::Bool,
            json!(false),
            Validator::Always,
        ),
        ParamSpec::new(
            "nonnegative",
            ParamType::Bool,
            json!(false),
            Validator::Always,
        ),
    ]
}

/// Integer ids of a column (Int8..Int64, UInt8..UInt32), row by row.
fn ids(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let col = column(batch, name)?;
    if !col.data_type().is_integer() {
        return Err(MlError::column(
            name,
            format!("ids must be integers, not {}", col.data_type()),
        ));
    }
    let c = arrow_cast::cast(col, &DataType::Int64)?;
    Ok(c.as_primitive::<Int64Type>().iter().collect())
}

crate::stage! {
    /// The estimator.
    pub struct Als("com.alibaba.alink.pipeline.recommendation.ALS", specs()) {}
}

/// Solve `a x = b` for a symmetric positive definite `a` (n x n, row-major) by Cholesky.
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Vec<f64> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    b
}

/// New factors of every row of `by` (each a list of (other index, rating)) given `other`.
fn half_step(
    by: &[Vec<(usize, f64)>],
    other: &[Vec<f64>],
    rank: usize,
    lambda: f64,
) -> Vec<Vec<f64>> {
    by.iter()
        .map(|ratings| {
            let mut a = vec![0.0; rank * rank];
            let mut b = vec![0.0; rank];
            for &(j, r) in ratings {
                let v = &other[j];
                for p in 0..rank {
                    b[p] += r * v[p];
                    for q in 0..rank {
                        a[p * rank + q] += v[p] * v[q];
                    }
                }
            }
            let reg = lambda * ratings.len().max(1) as f64;
            for p in 0..rank {
                a[p * rank + p] += reg;
            }
            solve_spd(a, b, rank)
        })
        .collect()
}

impl Estimator for Als {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let p = &self.params;
        for flag in ["implicitPrefs", "nonnegative"] {
            if p.bool(flag)? {
                return Err(MlError::param(
                    flag,
                    "is not supported yet (only explicit, unconstrained ALS)",
                ));
            }
        }
        let batch = first(inputs)?;
        let (user_col, item_col, rate_col) =
            (p.str("userCol")?, p.str("itemCol")?, p.str("rateCol")?);
        let (users, items, rates) = (
            ids(batch, &user_col)?,
            ids(batch, &item_col)?,
            doubles(batch, &rate_col)?,
        );
        let mut user_index: HashMap<i64, usize> = HashMap::new();
        let mut item_index: HashMap<i64, usize> = HashMap::new();
        let (mut user_ids, mut item_ids) = (vec![], vec![]);
        let mut triples = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let missing = |c: &str| MlError::Row {
                row,
                message: format!("column '{c}' is null"),
            };
            let u = users[row].ok_or_else(|| missing(&user_col))?;
            let i = items[row].ok_or_else(|| missing(&item_col))?;
            let r = rates[row].ok_or_else(|| missing(&rate_col))?;
            if !r.is_finite() {
                return Err(MlError::Row {
                    row,
                    message: format!("column '{rate_col}': rating {r} is not a number"),
                });
            }
            let ui = *user_index.entry(u).or_insert_with(|| {
                user_ids.push(u);
                user_ids.len() - 1
            });
            let ii = *item_index.entry(i).or_insert_with(|| {
                item_ids.push(i);
                item_ids.len() - 1
            });
            triples.push((ui, ii, r));
        }
        if triples.is_empty() {
            return Err(MlError::Invalid("the training table is empty".into()));
        }
        let rank = p.i64("rank")? as usize;
        let lambda = p.f64("lambda")?;
        let mut by_user = vec![vec![]; user_ids.len()];
        let mut by_item = vec![vec![]; item_ids.len()];
        for &(u, i, r) in &triples {
            by_user[u].push((i, r));
            by_item[i].push((u, r));
        }
        // Item factors start small and seeded; users are solved first.
        let mut x = (p.i64("seed")? as u64) ^ 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let scale = 1.0 / (rank as f64).sqrt();
        let mut item_f: Vec<Vec<f64>> = (0..item_ids.len())
            .map(|_| (0..rank).map(|_| next() * scale).collect())
            .collect();
        let mut user_f = vec![vec![0.0; rank]; user_ids.len()];
        for _ in 0..p.i64("numIter")? {
            user_f = half_step(&by_user, &item_f, rank, lambda);
            item_f = half_step(&by_item, &user_f, rank, lambda);
        }
        Ok(Box::new(AlsModel {
            params: self.params.clone(),
            users: user_ids.into_iter().zip(user_f).collect(),
            items: item_ids.into_iter().zip(item_f).collect(),
        }))
    }
}

crate::stage! {
    /// The fitted factors.
    pub struct AlsModel("com.alibaba.alink.pipeline.recommendation.ALSModel", specs()) {
        users: HashMap<i64, Vec<f64>>,
        items: HashMap<i64, Vec<f64>>,
    }
}

impl AlgoOperator for AlsModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let p = &self.params;
        let (users, items) = (
            ids(batch, &p.str("userCol")?)?,
            ids(batch, &p.str("itemCol")?)?,
        );
        let prediction: Float64Array = users
            .iter()
            .zip(&items)
            .map(|(u, i)| {
                let (u, i) = (self.users.get(&(*u)?)?, self.items.get(&(*i)?)?);
                Some(u.iter().zip(i).map(|(a, b)| a * b).sum::<f64>())
            })
            .collect();
        Ok(vec![with_columns(
            batch,
            vec![(p.str("predictionCol")?, Arc::new(prediction) as ArrayRef)],
        )?])
    }
}

impl Model for AlsModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let mut rows: Vec<(&str, i64, Vec<f64>)> = vec![];
        let mut users: Vec<_> = self.users.iter().collect();
        users.sort_by_key(|(id, _)| **id);
        let mut items: Vec<_> = self.items.iter().collect();
        items.sort_by_key(|(id, _)| **id);
        rows.extend(users.into_iter().map(|(id, f)| ("user", *id, f.clone())));
        rows.extend(items.into_iter().map(|(id, f)| ("item", *id, f.clone())));
        Ok(vec![RecordBatch::try_from_iter(vec![
            (
                "kind",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "id",
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )) as _,
            ),
            (
                "factors",
                dense_column(&rows.iter().map(|r| Some(r.2.clone())).collect::<Vec<_>>()),
            ),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = data
            .first()
            .ok_or_else(|| MlError::Invalid("no model data table".into()))?;
        let kind = column(t, "kind")?;
        let kind = kind
            .as_string_opt::<i32>()
            .ok_or_else(|| MlError::column("kind", "is not a string column"))?;
        let id = ids(t, "id")?;
        let factors = vectors(t, "factors")?;
        let (mut users, mut items) = (HashMap::new(), HashMap::new());
        for row in 0..t.num_rows() {
            let bad = |m: &str| MlError::Row {
                row,
                message: m.to_string(),
            };
            let f = factors[row]
                .as_ref()
                .ok_or_else(|| bad("factors is null"))?
                .to_dense();
            let i = id[row].ok_or_else(|| bad("id is null"))?;
            match (!kind.is_null(row)).then(|| kind.value(row)) {
                Some("user") => users.insert(i, f),
                Some("item") => items.insert(i, f),
                other => return Err(bad(&format!("kind {other:?}: use user or item"))),
            };
        }
        self.users = users;
        self.items = items;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ratings of a rank-2 matrix with a little noise (fitted with rank 3: ALS is fitted
    /// with some slack above the true rank); every third one held out.
    fn ratings() -> (RecordBatch, RecordBatch) {
        let (mut train, mut test) = ((vec![], vec![], vec![]), (vec![], vec![], vec![]));
        let mut x: u64 = 7;
        for u in 0..60i64 {
            for i in 0..40i64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x % 10 < 4 {
                    continue; // not rated
                }
                let (uf, vf) = (
                    [(u % 5) as f64 * 0.5, 1.0 + (u % 3) as f64],
                    [1.0 + (i % 4) as f64 * 0.3, (i % 7) as f64 * 0.2],
                );
                let noise = ((x >> 20) % 1000) as f64 / 1000.0 * 0.02 - 0.01;
                let r = uf[0] * vf[0] + uf[1] * vf[1] + noise;
                let t = if (u + i) % 3 == 0 {
                    &mut test
                } else {
                    &mut train
                };
                t.0.push(u);
                t.1.push(i);
                t.2.push(r);
            }
        }
        let table = |t: (Vec<i64>, Vec<i64>, Vec<f64>)| {
            RecordBatch::try_from_iter(vec![
                ("user", Arc::new(Int64Array::from(t.0)) as ArrayRef),
                ("item", Arc::new(Int64Array::from(t.1)) as _),
                ("rate", Arc::new(Float64Array::from(t.2)) as _),
            ])
            .unwrap()
        };
        (table(train), table(test))
    }

    fn rmse(out: &RecordBatch) -> f64 {
        let r = doubles(out, "rate").unwrap();
        let p = doubles(out, "prediction").unwrap();
        let se: f64 = r
            .iter()
            .zip(&p)
            .map(|(a, b)| (a.unwrap() - b.unwrap()).powi(2))
            .sum();
        (se / r.len() as f64).sqrt()
    }

    #[test]
    fn recovers_a_low_rank_matrix_on_held_out_ratings() {
        let (train, test) = ratings();
        let mut als = Als::default();
        als.params
            .set_all(
                json!({"rank": 3, "lambda": 0.001, "numIter": 30})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        let model = als.fit(std::slice::from_ref(&train)).unwrap();
        let train_rmse = rmse(&model.transform(&[train]).unwrap()[0]);
        let test_rmse = rmse(&model.transform(std::slice::from_ref(&test)).unwrap()[0]);
        assert!(train_rmse < 0.02, "train RMSE {train_rmse}");
        assert!(test_rmse < 0.05, "held-out RMSE {test_rmse}");
        // Model data round trip: same predictions.
        let mut back = AlsModel {
            params: als.params.clone(),
            ..Default::default()
        };
        back.set_model_data(&model.model_data().unwrap()).unwrap();
        assert_eq!(
            back.transform(std::slice::from_ref(&test)).unwrap(),
            model.transform(&[test]).unwrap()
        );
    }

    #[test]
    fn unknown_users_get_null_and_bad_input_is_refused() {
        let (train, _) = ratings();
        let model = Als::default().fit(&[train]).unwrap();
        let q = RecordBatch::try_from_iter(vec![
            ("user", Arc::new(Int64Array::from(vec![0, 999])) as ArrayRef),
            ("item", Arc::new(Int64Array::from(vec![1, 1])) as _),
        ])
        .unwrap();
        let out = model.transform(&[q]).unwrap();
        let p = out[0].column_by_name("prediction").unwrap();
        assert!(!p.is_null(0) && p.is_null(1));
        let mut als = Als::default();
        als.params
            .set_all(json!({"implicitPrefs": true}).as_object().unwrap())
            .unwrap();
        let e = als.fit(&[ratings().0]).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("implicitPrefs"), "{e}");
        let strings = RecordBatch::try_from_iter(vec![
            ("user", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
            ("item", Arc::new(Int64Array::from(vec![1])) as _),
            ("rate", Arc::new(Float64Array::from(vec![1.0])) as _),
        ])
        .unwrap();
        let e = Als::default()
            .fit(&[strings])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("user") && e.contains("integers"), "{e}");
    }
}

#[cfg(test)]
mod solver_tests {
    #[test]
    fn cholesky_solves() {
        // [[4, 2], [2, 3]] x = [2, 5] -> x = [-0.5, 2]
        let x = super::solve_spd(vec![4.0, 2.0, 2.0, 3.0], vec![2.0, 5.0], 2);
        assert!(
            (x[0] + 0.5).abs() < 1e-12 && (x[1] - 2.0).abs() < 1e-12,
            "{x:?}"
        );
        let a = vec![6.0, 2.0, 1.0, 2.0, 5.0, 2.0, 1.0, 2.0, 4.0];
        let x = super::solve_spd(a.clone(), vec![1.0, 2.0, 3.0], 3);
        for r in 0..3 {
            let v: f64 = (0..3).map(|c| a[r * 3 + c] * x[c]).sum();
            assert!((v - [1.0, 2.0, 3.0][r]).abs() < 1e-12);
        }
    }
}
