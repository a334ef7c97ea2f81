//! StringIndexer (strings, or numbers by their Java string form, to indices by a chosen
//! order) and IndexToStringModel (back).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, Float64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{column, doubles, filter_rows, one_row, with_columns};

/// Java's `Double.toString` for the values a column holds in practice.
pub(crate) fn java_double(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = x.abs();
    if x == 0.0 || (1e-3..1e7).contains(&a) {
        return format!("{x:?}");
    }
    // Scientific: d.dddE±n, the mantissa with at least one decimal.
    let s = format!("{x:e}");
    let (m, e) = s.split_once('e').expect("exponent");
    let m = if m.contains('.') {
        m.to_string()
    } else {
        format!("{m}.0")
    };
    format!("{m}E{e}")
}

/// A column's values as strings (`None`: null): strings as they are, numbers by Java's form.
fn labels(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let col = column(batch, name)?;
    Ok(match col.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let c = arrow_cast::cast(col, &DataType::Utf8)?;
            c.as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect()
        }
        dt if dt.is_integer() => {
            let c = arrow_cast::cast(col, &DataType::Int64)?;
            c.as_primitive::<arrow_array::types::Int64Type>()
                .iter()
                .map(|v| v.map(|v| v.to_string()))
                .collect()
        }
        dt if dt.is_floating() => doubles(batch, name)?
            .into_iter()
            .map(|v| v.map(java_double))
            .collect(),
        other => {
            return Err(MlError::column(
                name,
                format!("type {other} cannot be indexed"),
            ));
        }
    })
}

const ORDERS: &[&str] = &[
    "arbitrary",
    "frequencyDesc",
    "frequencyAsc",
    "alphabetDesc",
    "alphabetAsc",
];

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_cols(),
        common::output_cols(),
        ParamSpec::new(
            "stringOrderType",
            ParamType::String,
            json!("arbitrary"),
            Validator::OneOf(ORDERS),
        ),
        common::handle_invalid("error", common::ERROR_SKIP_KEEP),
        ParamSpec::new(
            "maxIndexNum",
            ParamType::Int,
            json!(i32::MAX),
            Validator::Gt(1.0),
        ),
    ]
}

crate::stage! {
    /// The estimator: `inputCols`, `outputCols`, `stringOrderType`, `handleInvalid`,
    /// `maxIndexNum`.
    pub struct StringIndexer("org.apache.flink.ml.feature.stringindexer.StringIndexer", specs()) {}
}

impl Estimator for StringIndexer {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let batch = first(inputs)?;
        let order = self.params.str("stringOrderType")?;
        let max = self.params.i64("maxIndexNum")? as usize;
        let mut arrays = Vec::new();
        for c in self.params.strings("inputCols")? {
            let mut counts: HashMap<String, usize> = HashMap::new();
            let mut seen = Vec::new();
            for v in labels(batch, &c)?.into_iter().flatten() {
                let n = counts.entry(v.clone()).or_insert(0);
                if *n == 0 {
                    seen.push(v);
                }
                *n += 1;
            }
            match order.as_str() {
                "alphabetAsc" => seen.sort(),
                "alphabetDesc" => seen.sort_by(|a, b| b.cmp(a)),
                // Ties by label, so the order does not depend on the input's.
                "frequencyDesc" => seen.sort_by(|a, b| counts[b].cmp(&counts[a]).then(a.cmp(b))),
                "frequencyAsc" => seen.sort_by(|a, b| counts[a].cmp(&counts[b]).then(a.cmp(b))),
                _ => {}
            }
            if seen.len() > max {
                // Keep the most frequent max - 1 labels; the rest share the last index.
                seen.sort_by(|a, b| counts[b].cmp(&counts[a]).then(a.cmp(b)));
                seen.truncate(max - 1);
            }
            arrays.push(seen);
        }
        Ok(Box::new(StringIndexerModel {
            params: self.params.clone(),
            arrays,
        }))
    }
}

fn arrays_table(arrays: &[Vec<String>]) -> Result<RecordBatch> {
    let mut b = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
    for a in arrays {
        for s in a {
            b.values().values().append_value(s);
        }
        b.values().append(true);
    }
    b.append(true);
    one_row(vec![("stringArrays", Arc::new(b.finish()))])
}

fn arrays_from(data: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    let t = first(data)?;
    let col = column(t, "stringArrays")?;
    let bad = || MlError::column("stringArrays", "expected a list of lists of strings");
    let outer = col.as_list_opt::<i32>().ok_or_else(bad)?;
    if outer.is_empty() {
        return Err(bad());
    }
    let inner = outer.value(0);
    let inner = inner.as_list_opt::<i32>().ok_or_else(bad)?;
    (0..inner.len())
        .map(|i| {
            let v = arrow_cast::cast(&inner.value(i), &DataType::Utf8)?;
            Ok(v.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or_default().to_string())
                .collect())
        })
        .collect()
}

crate::stage! {
    /// The fitted model: model data `stringArrays` (one array of labels per input column).
    pub struct StringIndexerModel("org.apache.flink.ml.feature.stringindexer.StringIndexerModel", specs()) {
        arrays: Vec<Vec<String>>,
    }
}

impl AlgoOperator for StringIndexerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let ins = self.params.strings("inputCols")?;
        let outs = self.params.strings("outputCols")?;
        let handle = self.params.str("handleInvalid")?;
        if ins.len() != outs.len() || ins.len() != self.arrays.len() {
            return Err(MlError::param(
                "outputCols",
                format!(
                    "{} input columns, {} output columns, {} label arrays",
                    ins.len(),
                    outs.len(),
                    self.arrays.len()
                ),
            ));
        }
        let mut keep = vec![true; batch.num_rows()];
        let mut columns = Vec::new();
        for ((c, o), labels_of) in ins.iter().zip(&outs).zip(&self.arrays) {
            let index: HashMap<&str, usize> = labels_of
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            let mut out = Vec::with_capacity(batch.num_rows());
            for (row, v) in labels(batch, c)?.into_iter().enumerate() {
                match v.as_deref().and_then(|v| index.get(v)) {
                    Some(&i) => out.push(Some(i as f64)),
                    None => match handle.as_str() {
                        "keep" => out.push(Some(labels_of.len() as f64)),
                        "skip" => {
                            keep[row] = false;
                            out.push(None);
                        }
                        _ => {
                            return Err(MlError::Row {
                                row,
                                message: format!(
                                    "column '{c}': The input contains unseen string: {}. See handleInvalid parameter for more options.",
                                    v.unwrap_or_else(|| "null".into())
                                ),
                            });
                        }
                    },
                }
            }
            columns.push((o.clone(), Arc::new(Float64Array::from(out)) as _));
        }
        Ok(vec![filter_rows(&with_columns(batch, columns)?, &keep)?])
    }
}

impl Model for StringIndexerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![arrays_table(&self.arrays)?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        self.arrays = arrays_from(data)?;
        Ok(())
    }
}

crate::stage! {
    /// Indices back to strings, with a StringIndexer's model data (`stringArrays`).
    pub struct IndexToStringModel("org.apache.flink.ml.feature.stringindexer.IndexToStringModel", vec![common::input_cols(), common::output_cols()]) {
        arrays: Vec<Vec<String>>,
    }
}

impl AlgoOperator for IndexToStringModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let ins = self.params.strings("inputCols")?;
        let outs = self.params.strings("outputCols")?;
        if ins.len() != outs.len() || ins.len() != self.arrays.len() {
            return Err(MlError::param(
                "outputCols",
                format!(
                    "{} input columns, {} output columns, {} label arrays",
                    ins.len(),
                    outs.len(),
                    self.arrays.len()
                ),
            ));
        }
        let mut columns = Vec::new();
        for ((c, o), labels_of) in ins.iter().zip(&outs).zip(&self.arrays) {
            let mut out: Vec<Option<&str>> = Vec::with_capacity(batch.num_rows());
            for (row, v) in doubles(batch, c)?.into_iter().enumerate() {
                match v {
                    None => out.push(None),
                    Some(i) if i >= 0.0 && i.fract() == 0.0 && (i as usize) < labels_of.len() => {
                        out.push(Some(labels_of[i as usize].as_str()))
                    }
                    Some(i) => {
                        return Err(MlError::Row {
                            row,
                            message: format!(
                                "column '{c}': The input contains unseen index: {}.",
                                i as i64
                            ),
                        });
                    }
                }
            }
            columns.push((o.clone(), Arc::new(StringArray::from(out)) as _));
        }
        Ok(vec![with_columns(batch, columns)?])
    }
}

impl Model for IndexToStringModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![arrays_table(&self.arrays)?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        self.arrays = arrays_from(data)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::java_double;

    #[test]
    fn doubles_print_as_in_java() {
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(-1.0), "-1.0");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.5e-5), "1.5E-5");
        assert_eq!(java_double(f64::NAN), "NaN");
    }
}
