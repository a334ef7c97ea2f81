//! Each node kind's settings as a typed struct, read once when the job is checked: the
//! field list is the one list of keys a kind accepts (an unknown key is refused by name).

use ferroflow_meta::ModelStage;
use ferroflow_ml::StageRegistry;
use ferroflow_ml::stage::AnyStage;
use ferroflow_workflow::{Node, Result, WorkflowError};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An error of node `n`, naming it and its kind (the spec error then points at its line).
pub(crate) fn node_err(n: &Node, message: impl std::fmt::Display) -> WorkflowError {
    WorkflowError::Node {
        job: n.job.clone(),
        node: n.id.clone(),
        message: format!("node '{}' ({}): {message}", n.id, n.kind),
    }
}

/// Settings of one node kind.
pub(crate) trait Settings: DeserializeOwned {
    /// Every key the kind accepts (its fields, in order).
    const KEYS: &'static [&'static str];
}

/// A settings struct with serde's derive and its [`Settings::KEYS`] taken from its fields.
macro_rules! settings {
    ($(#[$m:meta])* struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, serde::Deserialize)]
        pub(crate) struct $name {
            $($(#[$fm])* pub(crate) $field: $ty,)*
        }
        impl Settings for $name {
            const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

settings! {
    /// `read_dataset`: a file, or a dataset record's uri.
    struct ReadDataset { path: Option<String>, dataset: Option<String> }
}
settings! {
    /// `write_dataset`.
    struct WriteDataset { path: String }
}
settings! {
    /// `dataset_validate`: columns present, columns without nulls, a row count.
    struct DatasetValidate {
        #[serde(default)] columns: Vec<String>,
        #[serde(default)] not_null: Vec<String>,
        min_rows: Option<u64>,
    }
}
settings! {
    /// `transform`: one of a stage, a SQL statement or a saved stage's directory.
    struct Transform { stage: Option<Value>, sql: Option<String>, model_dir: Option<String> }
}
settings! {
    /// `train`.
    struct Train {
        model: String,
        estimator: Value,
        evaluator: Option<Value>,
        #[serde(default)] description: String,
    }
}
settings! {
    /// `model_validate`.
    struct ModelValidate {
        model: String,
        evaluator: Value,
        metric: String,
        threshold: f64,
        stage: Option<String>,
        reject: Option<String>,
    }
}
settings! {
    /// `push_model`.
    struct PushModel { model: String, stage: Option<String>, #[serde(default)] require: bool }
}
settings! {
    /// `predict`: a Model Center model (a version, or the newest in a stage) or a directory.
    struct Predict {
        model: Option<String>,
        stage: Option<String>,
        version: Option<i64>,
        model_dir: Option<String>,
    }
}
settings! {
    /// `evaluate`.
    struct Evaluate { evaluator: Value }
}

/// The settings of `n` as `T`: unknown keys refused by name, then the values by type.
pub(crate) fn read<T: Settings>(n: &Node) -> Result<T> {
    let map = match &n.config {
        Value::Null => &serde_json::Map::new(),
        Value::Object(map) => map,
        _ => return Err(node_err(n, "settings must be a map")),
    };
    if let Some(k) = map.keys().find(|k| !T::KEYS.contains(&k.as_str())) {
        return Err(node_err(
            n,
            format!("unknown setting '{k}' (known: {})", T::KEYS.join(", ")),
        ));
    }
    serde_json::from_value(Value::Object(map.clone())).map_err(|e| node_err(n, e))
}

/// A stage setting (`{className, paramMap}`, a Pipeline, ...) as a stage.
pub(crate) fn stage(stages: &StageRegistry, n: &Node, key: &str, v: &Value) -> Result<AnyStage> {
    stages
        .from_json(v)
        .map_err(|e| node_err(n, format!("{key}: {e}")))
}

/// A `stage` setting, or `default` without one.
pub(crate) fn model_stage(n: &Node, s: Option<&str>, default: ModelStage) -> Result<ModelStage> {
    match s {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e| node_err(n, e)),
    }
}
