//! StopWordsRemover: drop stop words from arrays of strings.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{column, with_columns};

/// The English stop words Flink ML (and Spark) use by default.
pub const ENGLISH: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "should",
    "now",
    "i'll",
    "you'll",
    "he'll",
    "she'll",
    "we'll",
    "they'll",
    "i'd",
    "you'd",
    "he'd",
    "she'd",
    "we'd",
    "they'd",
    "i'm",
    "you're",
    "he's",
    "she's",
    "it's",
    "we're",
    "they're",
    "i've",
    "we've",
    "you've",
    "they've",
    "isn't",
    "aren't",
    "wasn't",
    "weren't",
    "haven't",
    "hasn't",
    "hadn't",
    "don't",
    "doesn't",
    "didn't",
    "won't",
    "wouldn't",
    "shan't",
    "shouldn't",
    "mustn't",
    "can't",
    "couldn't",
    "cannot",
    "could",
    "here's",
    "how's",
    "let's",
    "ought",
    "that's",
    "there's",
    "what's",
    "when's",
    "where's",
    "who's",
    "why's",
    "would",
];

/// The transformer: `inputCols`, `outputCols`, `stopWords` (default: the English list),
/// `caseSensitive` (false), `locale` (lower-casing follows Unicode rules whatever the locale).
#[derive(Debug, Clone)]
pub struct StopWordsRemover {
    params: Params,
}

impl Default for StopWordsRemover {
    fn default() -> Self {
        StopWordsRemover {
            params: Params::new(vec![
                common::input_cols(),
                common::output_cols(),
                ParamSpec::new(
                    "stopWords",
                    ParamType::StringArray,
                    json!(ENGLISH),
                    Validator::Always,
                ),
                ParamSpec::new(
                    "caseSensitive",
                    ParamType::Bool,
                    json!(false),
                    Validator::Always,
                ),
                ParamSpec::new("locale", ParamType::String, Value::Null, Validator::Always),
            ]),
        }
    }
}

crate::impl_stage!(
    StopWordsRemover,
    "org.apache.flink.ml.feature.stopwordsremover.StopWordsRemover"
);

impl AlgoOperator for StopWordsRemover {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let ins = self.params.strings("inputCols")?;
        let outs = self.params.strings("outputCols")?;
        if ins.len() != outs.len() {
            return Err(MlError::param(
                "outputCols",
                "must have as many columns as inputCols",
            ));
        }
        let sensitive = self.params.bool("caseSensitive")?;
        let norm = |s: &str| {
            if sensitive {
                s.to_string()
            } else {
                s.to_lowercase()
            }
        };
        let stop: HashSet<String> = self
            .params
            .strings("stopWords")?
            .iter()
            .map(|s| norm(s))
            .collect();
        let mut columns = Vec::new();
        for (c, o) in ins.iter().zip(&outs) {
            let col = column(batch, c)?;
            let DataType::List(_) = col.data_type() else {
                return Err(MlError::column(
                    c,
                    format!("type {} is not a list of strings", col.data_type()),
                ));
            };
            let list = col.as_list::<i32>();
            let mut b = ListBuilder::new(StringBuilder::new());
            for i in 0..list.len() {
                if list.is_null(i) {
                    b.append(false);
                    continue;
                }
                let v = arrow_cast::cast(&list.value(i), &DataType::Utf8)?;
                for t in v.as_string::<i32>().iter() {
                    match t {
                        // Null tokens are kept.
                        None => b.values().append_null(),
                        Some(t) if !stop.contains(&norm(t)) => b.values().append_value(t),
                        Some(_) => {}
                    }
                }
                b.append(true);
            }
            columns.push((o.clone(), Arc::new(b.finish()) as _));
        }
        Ok(vec![with_columns(batch, columns)?])
    }
}
