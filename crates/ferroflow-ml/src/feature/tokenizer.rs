//! Tokenizer and RegexTokenizer: strings to arrays of tokens.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{column, with_columns};

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let col = column(batch, name)?;
    if !matches!(
        col.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Err(MlError::column(
            name,
            format!("type {} is not a string", col.data_type()),
        ));
    }
    let c = arrow_cast::cast(col, &DataType::Utf8)?;
    Ok(c.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

fn token_column(rows: &[Option<Vec<String>>]) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for r in rows {
        match r {
            Some(tokens) => {
                for t in tokens {
                    b.values().append_value(t);
                }
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

/// Java's `String.split`: trailing empty strings removed.
fn java_split(s: &str, re: &regex::Regex) -> Vec<String> {
    let mut parts: Vec<String> = re.split(s).map(str::to_string).collect();
    while parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    if parts.is_empty() && !s.is_empty() {
        return Vec::new();
    }
    parts
}

crate::stage! {
    /// Lower-cases and splits on whitespace (Java's `toLowerCase().split("\\s")`).
    pub struct Tokenizer("org.apache.flink.ml.feature.tokenizer.Tokenizer", vec![common::input_col(), common::output_col()]) {}
}

impl AlgoOperator for Tokenizer {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        // Java's \s: space, \t, \n, \x0B, \f, \r.
        let ws = regex::Regex::new(r"[ \t\n\x0B\f\r]").expect("valid");
        let out: Vec<Option<Vec<String>>> = strings(batch, &input)?
            .into_iter()
            .map(|s| s.map(|s| java_split(&s.to_lowercase(), &ws)))
            .collect();
        Ok(vec![with_columns(
            batch,
            vec![(output, token_column(&out))],
        )?])
    }
}

/// Splits on a regex (`gaps`) or extracts its matches; drops short tokens.
#[derive(Debug, Clone)]
pub struct RegexTokenizer {
    params: Params,
}

impl Default for RegexTokenizer {
    fn default() -> Self {
        RegexTokenizer {
            params: Params::new(vec![
                common::input_col(),
                common::output_col(),
                ParamSpec::new(
                    "minTokenLength",
                    ParamType::Int,
                    json!(1),
                    Validator::GtEq(0.0),
                ),
                ParamSpec::new("gaps", ParamType::Bool, json!(true), Validator::Always),
                ParamSpec::new(
                    "pattern",
                    ParamType::String,
                    json!("\\s+"),
                    Validator::Always,
                ),
                ParamSpec::new(
                    "toLowercase",
                    ParamType::Bool,
                    json!(true),
                    Validator::Always,
                ),
            ]),
        }
    }
}

crate::impl_stage!(
    RegexTokenizer,
    "org.apache.flink.ml.feature.regextokenizer.RegexTokenizer"
);

/// Java pattern syntax that Rust's regex spells differently.
fn java_pattern(p: &str) -> String {
    p.replace(r"\p{Punct}", "[[:punct:]]")
        .replace(r"\p{Alpha}", "[[:alpha:]]")
        .replace(r"\p{Digit}", "[[:digit:]]")
        .replace(r"\p{Alnum}", "[[:alnum:]]")
        .replace(r"\p{Space}", "[[:space:]]")
}

impl AlgoOperator for RegexTokenizer {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let pattern = self.params.str("pattern")?;
        let re = regex::Regex::new(&java_pattern(&pattern))
            .map_err(|e| MlError::param("pattern", e.to_string()))?;
        let (gaps, lower) = (self.params.bool("gaps")?, self.params.bool("toLowercase")?);
        let min = self.params.i64("minTokenLength")? as usize;
        let out: Vec<Option<Vec<String>>> = strings(batch, &input)?
            .into_iter()
            .map(|s| {
                s.map(|s| {
                    let s = if lower { s.to_lowercase() } else { s };
                    let tokens = if gaps {
                        java_split(&s, &re)
                    } else {
                        re.find_iter(&s).map(|m| m.as_str().to_string()).collect()
                    };
                    tokens
                        .into_iter()
                        .filter(|t| t.chars().count() >= min)
                        .collect()
                })
            })
            .collect();
        Ok(vec![with_columns(
            batch,
            vec![(output, token_column(&out))],
        )?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_split_keeps_inner_empties_and_drops_trailing_ones() {
        let ws = regex::Regex::new(r"[ \t\n\x0B\f\r]").unwrap();
        assert_eq!(java_split("a  b ", &ws), vec!["a", "", "b"]);
        assert_eq!(java_split(" a", &ws), vec!["", "a"]);
    }
}
