//! Typed params with Flink ML's names, defaults and validators.
//!
//! Values are kept as JSON, the form Flink ML's `paramMap` saves them in: doubles may be
//! written as integers, and non-finite doubles as the strings `"NaN"`, `"Infinity"`,
//! `"-Infinity"`. Setting an unknown param or an invalid value fails, naming the param and
//! what it accepts.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{MlError, Result};

/// The type of a param's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// `true` / `false`.
    Bool,
    /// A 32- or 64-bit integer.
    Int,
    /// A double (integers accepted).
    Double,
    /// A string.
    String,
    /// An array of strings.
    StringArray,
    /// An array of doubles.
    DoubleArray,
    /// An array of integers.
    IntArray,
    /// An array of arrays of doubles.
    DoubleArrayArray,
    /// A vector, as Flink ML saves it: `{"values": [...]}` (dense) or
    /// `{"n": N, "indices": [...], "values": [...]}` (sparse).
    Vector,
    /// Windows, as Flink ML saves them: `{"class": "...GlobalWindows"}`,
    /// `{"class": "...CountTumblingWindows", "size": N}`, ...
    Window,
    /// One model-data row as a JSON object (an online estimator's initial model given
    /// inline: `{"coefficient": {"values": [...]}, "modelVersion": 0}`).
    ModelDataRow,
}

/// What values a param accepts beyond its type.
#[derive(Debug, Clone, PartialEq)]
pub enum Validator {
    /// Anything of the type.
    Always,
    /// Greater than.
    Gt(f64),
    /// Greater than or equal.
    GtEq(f64),
    /// Within `[lo, hi]`.
    InRange(f64, f64),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A non-empty array.
    NonEmpty,
}

/// One param a stage has.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Name, as Flink ML spells it (`inputCol`, `maxIter`, ...).
    pub name: &'static str,
    /// Value type.
    pub ty: ParamType,
    /// Default (`None`: must be set).
    pub default: Option<Value>,
    /// Allowed values.
    pub validator: Validator,
}

impl ParamSpec {
    /// A param with a default.
    pub fn new(name: &'static str, ty: ParamType, default: Value, validator: Validator) -> Self {
        ParamSpec {
            name,
            ty,
            default: if default.is_null() {
                None
            } else {
                Some(default)
            },
            validator,
        }
    }
}

/// Decode a JSON double the way Flink ML's params save them.
pub fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Encode a double as Flink ML's params save it.
pub fn f64_json(x: f64) -> Value {
    if x.is_nan() {
        Value::String("NaN".into())
    } else if x == f64::INFINITY {
        Value::String("Infinity".into())
    } else if x == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

fn type_ok(ty: ParamType, v: &Value) -> bool {
    let doubles = |a: &Value| {
        a.as_array()
            .is_some_and(|a| a.iter().all(|x| json_f64(x).is_some()))
    };
    match ty {
        ParamType::Bool => v.is_boolean(),
        ParamType::Int => v.as_i64().is_some(),
        ParamType::Double => json_f64(v).is_some(),
        ParamType::String => v.is_string(),
        ParamType::StringArray => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        ParamType::DoubleArray => doubles(v),
        ParamType::IntArray => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x.as_i64().is_some())),
        ParamType::DoubleArrayArray => v.as_array().is_some_and(|a| a.iter().all(doubles)),
        ParamType::Vector => vector_param(v).is_some(),
        ParamType::Window => v.get("class").is_some_and(Value::is_string),
        ParamType::ModelDataRow => v.is_object(),
    }
}

fn check(spec: &ParamSpec, v: &Value) -> Result<()> {
    if !type_ok(spec.ty, v) {
        return Err(MlError::param(
            spec.name,
            format!("{v} is not a {:?}", spec.ty),
        ));
    }
    let num = json_f64(v);
    let bad = |allowed: String| {
        Err(MlError::param(
            spec.name,
            format!("{v} is invalid: {allowed}"),
        ))
    };
    match &spec.validator {
        Validator::Always => Ok(()),
        Validator::Gt(x) if num.is_some_and(|n| n > *x) => Ok(()),
        Validator::Gt(x) => bad(format!("must be > {x}")),
        Validator::GtEq(x) if num.is_some_and(|n| n >= *x) => Ok(()),
        Validator::GtEq(x) => bad(format!("must be >= {x}")),
        Validator::InRange(lo, hi) if num.is_some_and(|n| n >= *lo && n <= *hi) => Ok(()),
        Validator::InRange(lo, hi) => bad(format!("must be in [{lo}, {hi}]")),
        Validator::OneOf(options) if v.as_str().is_some_and(|s| options.contains(&s)) => Ok(()),
        Validator::OneOf(options) => bad(format!("allowed values: {}", options.join(", "))),
        Validator::NonEmpty if v.as_array().is_some_and(|a| !a.is_empty()) => Ok(()),
        Validator::NonEmpty => bad("must not be empty".into()),
    }
}

/// Decode a Vector param (`{"values": [...]}` or `{"n", "indices", "values"}`).
pub fn vector_param(v: &Value) -> Option<crate::vector::Vector> {
    let values: Vec<f64> = v
        .get("values")?
        .as_array()?
        .iter()
        .map(json_f64)
        .collect::<Option<_>>()?;
    match (v.get("n"), v.get("indices")) {
        (None, None) => Some(crate::vector::Vector::Dense(values)),
        (Some(n), Some(idx)) => {
            let idx: Vec<usize> = idx
                .as_array()?
                .iter()
                .map(|x| x.as_u64().map(|x| x as usize))
                .collect::<Option<_>>()?;
            crate::vector::Vector::sparse(n.as_u64()? as usize, idx, values).ok()
        }
        _ => None,
    }
}

/// The params of one stage: their specs and current values.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    specs: Vec<ParamSpec>,
    values: BTreeMap<String, Value>,
}

impl Params {
    /// Params with these specs, at their defaults.
    pub fn new(specs: Vec<ParamSpec>) -> Self {
        let values = specs
            .iter()
            .filter_map(|s| s.default.clone().map(|d| (s.name.to_string(), d)))
            .collect();
        Params { specs, values }
    }

    fn spec(&self, name: &str) -> Result<&ParamSpec> {
        self.specs.iter().find(|s| s.name == name).ok_or_else(|| {
            MlError::param(
                name,
                format!(
                    "unknown param (this stage has: {})",
                    self.specs
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    /// Whether this stage has a param `name`.
    pub fn has(&self, name: &str) -> bool {
        self.specs.iter().any(|s| s.name == name)
    }

    /// Set `name` to `value`, checking its type and validator.
    pub fn set(&mut self, name: &str, value: Value) -> Result<()> {
        let spec = self.spec(name)?;
        // null unsets a param (Flink ML's optional params, such as distanceThreshold).
        if value.is_null() {
            self.values.remove(name);
            return Ok(());
        }
        check(spec, &value)?;
        self.values.insert(name.to_string(), value);
        Ok(())
    }

    /// Set every param of a Flink ML `paramMap`.
    pub fn set_all(&mut self, map: &Map<String, Value>) -> Result<()> {
        for (k, v) in map {
            self.set(k, v.clone())?;
        }
        Ok(())
    }

    /// Every param with its value (defaults included), as Flink ML saves a `paramMap`.
    pub fn to_map(&self) -> Map<String, Value> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The value of `name`; fails if it has none (a required param not set).
    pub fn get(&self, name: &str) -> Result<&Value> {
        self.spec(name)?;
        self.values
            .get(name)
            .ok_or_else(|| MlError::param(name, "required, and not set"))
    }

    /// A string param that may be unset (`weightCol`).
    pub fn opt_str(&self, name: &str) -> Result<Option<String>> {
        self.spec(name)?;
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(MlError::param(name, format!("{v} is not a string"))),
        }
    }

    /// A double param that may be unset.
    pub fn opt_f64(&self, name: &str) -> Result<Option<f64>> {
        self.spec(name)?;
        match self.values.get(name) {
            None => Ok(None),
            Some(v) => json_f64(v)
                .map(Some)
                .ok_or_else(|| MlError::param(name, format!("{v} is not a double"))),
        }
    }

    /// An integer param that may be unset.
    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>> {
        self.spec(name)?;
        match self.values.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| MlError::param(name, format!("{v} is not an integer"))),
        }
    }

    /// A double param.
    pub fn f64(&self, name: &str) -> Result<f64> {
        let v = self.get(name)?;
        json_f64(v).ok_or_else(|| MlError::param(name, format!("{v} is not a double")))
    }

    /// An integer param.
    pub fn i64(&self, name: &str) -> Result<i64> {
        let v = self.get(name)?;
        v.as_i64()
            .ok_or_else(|| MlError::param(name, format!("{v} is not an integer")))
    }

    /// A boolean param.
    pub fn bool(&self, name: &str) -> Result<bool> {
        let v = self.get(name)?;
        v.as_bool()
            .ok_or_else(|| MlError::param(name, format!("{v} is not a boolean")))
    }

    /// A string param.
    pub fn str(&self, name: &str) -> Result<String> {
        let v = self.get(name)?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| MlError::param(name, format!("{v} is not a string")))
    }

    /// A string-array param.
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let v = self.get(name)?;
        v.as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
            .ok_or_else(|| MlError::param(name, format!("{v} is not an array of strings")))
    }

    /// A double-array param.
    pub fn f64s(&self, name: &str) -> Result<Vec<f64>> {
        let v = self.get(name)?;
        v.as_array()
            .and_then(|a| a.iter().map(json_f64).collect())
            .ok_or_else(|| MlError::param(name, format!("{v} is not an array of doubles")))
    }

    /// An integer-array param.
    pub fn i64s(&self, name: &str) -> Result<Vec<i64>> {
        let v = self.get(name)?;
        v.as_array()
            .and_then(|a| a.iter().map(Value::as_i64).collect())
            .ok_or_else(|| MlError::param(name, format!("{v} is not an array of integers")))
    }

    /// A vector param.
    pub fn vector(&self, name: &str) -> Result<crate::vector::Vector> {
        let v = self.get(name)?;
        vector_param(v).ok_or_else(|| MlError::param(name, format!("{v} is not a vector")))
    }

    /// An array-of-double-arrays param.
    pub fn f64ss(&self, name: &str) -> Result<Vec<Vec<f64>>> {
        let v = self.get(name)?;
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|r| r.as_array().and_then(|r| r.iter().map(json_f64).collect()))
                    .collect()
            })
            .ok_or_else(|| MlError::param(name, format!("{v} is not an array of double arrays")))
    }
}

/// Specs shared by many stages, with Flink ML's defaults.
pub mod common {
    use serde_json::{Value, json};

    use super::{ParamSpec, ParamType, Validator};

    /// `inputCol`, default `"input"`.
    pub fn input_col() -> ParamSpec {
        ParamSpec::new(
            "inputCol",
            ParamType::String,
            json!("input"),
            Validator::Always,
        )
    }

    /// `outputCol`, default `"output"`.
    pub fn output_col() -> ParamSpec {
        ParamSpec::new(
            "outputCol",
            ParamType::String,
            json!("output"),
            Validator::Always,
        )
    }

    /// `featuresCol`, default `"features"`.
    pub fn features_col() -> ParamSpec {
        ParamSpec::new(
            "featuresCol",
            ParamType::String,
            json!("features"),
            Validator::Always,
        )
    }

    /// `labelCol`, default `"label"`.
    pub fn label_col() -> ParamSpec {
        ParamSpec::new(
            "labelCol",
            ParamType::String,
            json!("label"),
            Validator::Always,
        )
    }

    /// `predictionCol`, default `"prediction"`.
    pub fn prediction_col() -> ParamSpec {
        ParamSpec::new(
            "predictionCol",
            ParamType::String,
            json!("prediction"),
            Validator::Always,
        )
    }

    /// `weightCol`, unset by default (every row weighs 1).
    pub fn weight_col() -> ParamSpec {
        ParamSpec::new(
            "weightCol",
            ParamType::String,
            Value::Null,
            Validator::Always,
        )
    }

    /// `inputCols`, required, non-empty.
    pub fn input_cols() -> ParamSpec {
        ParamSpec::new(
            "inputCols",
            ParamType::StringArray,
            Value::Null,
            Validator::NonEmpty,
        )
    }

    /// `outputCols`, required, non-empty.
    pub fn output_cols() -> ParamSpec {
        ParamSpec::new(
            "outputCols",
            ParamType::StringArray,
            Value::Null,
            Validator::NonEmpty,
        )
    }

    /// How invalid entries are handled: `error` (default), `skip` (drop the row), `keep`.
    pub fn handle_invalid(default: &str, options: &'static [&'static str]) -> ParamSpec {
        ParamSpec::new(
            "handleInvalid",
            ParamType::String,
            json!(default),
            Validator::OneOf(options),
        )
    }

    /// Error, skip and keep.
    pub const ERROR_SKIP_KEEP: &[&str] = &["error", "skip", "keep"];
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::common::*;
    use super::*;

    #[test]
    fn unknown_params_and_bad_values_name_the_param_and_the_choices() {
        let mut p = Params::new(vec![
            input_col(),
            handle_invalid("error", common::ERROR_SKIP_KEEP),
            ParamSpec::new("p", ParamType::Double, json!(2.0), Validator::GtEq(1.0)),
        ]);
        let e = p.set("inputcol", json!("x")).unwrap_err().to_string();
        assert!(e.contains("'inputcol'") && e.contains("inputCol"), "{e}");
        let e = p
            .set("handleInvalid", json!("drop"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("error, skip, keep"), "{e}");
        let e = p.set("p", json!(0.5)).unwrap_err().to_string();
        assert!(e.contains(">= 1"), "{e}");
        p.set("p", json!(3)).unwrap();
        assert_eq!(p.f64("p").unwrap(), 3.0);
        p.set("p", json!("Infinity")).unwrap();
        assert_eq!(p.f64("p").unwrap(), f64::INFINITY);
        assert_eq!(p.str("inputCol").unwrap(), "input");
    }
}
