//! A node checked and read into what it will do: one variant per node kind, its settings
//! typed and its stages already built. Checking a spec and running a job read a node the
//! same way, here, once.

use ferroflow_meta::ModelStage;
use ferroflow_ml::StageRegistry;
use ferroflow_ml::stage::AnyStage;
use ferroflow_workflow::{Node, Result};
use serde_json::json;

use crate::settings::{self, model_stage, node_err, read, stage};

/// The node kinds a native job runs, by their spec names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeKind {
    /// `read_dataset`: read a file or a dataset record.
    ReadDataset,
    /// `write_dataset`: write a table to a file.
    WriteDataset,
    /// `transform`: an ML stage, SQL or a saved stage.
    Transform,
    /// `train`: fit an estimator and register the model.
    Train,
    /// `predict`: score with a model.
    Predict,
    /// `evaluate`: compute metrics.
    Evaluate,
    /// `dataset_validate`: check a table.
    DatasetValidate,
    /// `model_validate`: evaluate a version and promote it.
    ModelValidate,
    /// `push_model`: deploy a version.
    PushModel,
    /// `user_defined`: a function registered in Rust.
    UserDefined,
}

impl NativeKind {
    /// Every kind.
    pub const ALL: [NativeKind; 10] = [
        NativeKind::ReadDataset,
        NativeKind::WriteDataset,
        NativeKind::Transform,
        NativeKind::Train,
        NativeKind::Predict,
        NativeKind::Evaluate,
        NativeKind::DatasetValidate,
        NativeKind::ModelValidate,
        NativeKind::PushModel,
        NativeKind::UserDefined,
    ];

    /// The name a spec gives it.
    pub fn name(self) -> &'static str {
        match self {
            NativeKind::ReadDataset => "read_dataset",
            NativeKind::WriteDataset => "write_dataset",
            NativeKind::Transform => "transform",
            NativeKind::Train => "train",
            NativeKind::Predict => "predict",
            NativeKind::Evaluate => "evaluate",
            NativeKind::DatasetValidate => "dataset_validate",
            NativeKind::ModelValidate => "model_validate",
            NativeKind::PushModel => "push_model",
            NativeKind::UserDefined => "user_defined",
        }
    }

    /// The kind of node `n`, or an error naming the node and the kinds there are.
    pub fn of(n: &Node) -> Result<NativeKind> {
        NativeKind::ALL
            .into_iter()
            .find(|k| k.name() == n.kind.as_str())
            .ok_or_else(|| {
                let known = NativeKind::ALL.map(NativeKind::name).join(", ");
                node_err(
                    n,
                    format!(
                        "a native job has no node kind '{}' (known: {known})",
                        n.kind
                    ),
                )
            })
    }
}

/// Where `read_dataset` reads.
pub(crate) enum Input {
    /// A file, relative to the spec.
    Path(String),
    /// The uri of a dataset record of the job's project.
    Dataset(String),
}

/// The model `predict` scores with.
pub(crate) enum Scorer {
    /// A saved stage's directory, relative to the spec.
    Dir(String),
    /// A Model Center version: `version`, or the newest in `stage`.
    Center {
        model: String,
        version: Option<i64>,
        stage: ModelStage,
    },
}

/// `train`: fit, score the input, save and register the model.
pub(crate) struct Training {
    pub(crate) model: String,
    pub(crate) estimator: Box<dyn ferroflow_ml::stage::Estimator>,
    pub(crate) evaluator: Option<AnyStage>,
    pub(crate) description: String,
}

/// `model_validate`: score a version, keep the metric, promote or reject it.
pub(crate) struct ModelCheck {
    pub(crate) model: String,
    pub(crate) evaluator: AnyStage,
    pub(crate) metric: String,
    pub(crate) threshold: f64,
    /// The stage the version is taken from.
    pub(crate) stage: ModelStage,
    /// Below the threshold: DEPRECATED (else kept as it is).
    pub(crate) deprecate: bool,
}

/// What a node does.
pub(crate) enum Step {
    /// `read_dataset`.
    Read(Input),
    /// `dataset_validate`.
    ValidateData(settings::DatasetValidate),
    /// `transform` with a stage (a SQL statement is a SQLTransformer).
    Transform(AnyStage),
    /// `transform` with a saved stage's directory, loaded when it runs.
    TransformDir(String),
    /// `train`.
    Train(Training),
    /// `model_validate`.
    ValidateModel(ModelCheck),
    /// `push_model`.
    Push {
        model: String,
        stage: ModelStage,
        require: bool,
    },
    /// `predict`.
    Predict(Scorer),
    /// `evaluate`.
    Evaluate(AnyStage),
    /// `write_dataset`.
    Write(String),
    /// `user_defined`: a registered function's name (its settings are its own).
    User(String),
}

/// Read node `n`; `known_function` says whether a `user_defined` node's function exists
/// (the registered names, for the message, otherwise).
pub(crate) fn parse(
    n: &Node,
    known_function: impl Fn(&str) -> std::result::Result<(), String>,
    stages: &StageRegistry,
) -> Result<Step> {
    let need_inputs = |count: usize| {
        if n.inputs.len() != count {
            return Err(node_err(
                n,
                format!("reads {count} input(s), has {}", n.inputs.len()),
            ));
        }
        Ok(())
    };
    Ok(match NativeKind::of(n)? {
        NativeKind::ReadDataset => {
            let s: settings::ReadDataset = read(n)?;
            need_inputs(0)?;
            match (s.path, s.dataset) {
                (Some(p), None) => Step::Read(Input::Path(p)),
                (None, Some(d)) => Step::Read(Input::Dataset(d)),
                _ => return Err(node_err(n, "give exactly one of 'path' and 'dataset'")),
            }
        }
        NativeKind::WriteDataset => {
            let s: settings::WriteDataset = read(n)?;
            need_inputs(1)?;
            Step::Write(s.path)
        }
        NativeKind::DatasetValidate => {
            let s: settings::DatasetValidate = read(n)?;
            need_inputs(1)?;
            Step::ValidateData(s)
        }
        NativeKind::Transform => {
            let s: settings::Transform = read(n)?;
            need_inputs(1)?;
            match (s.stage, s.sql, s.model_dir) {
                (Some(v), None, None) => Step::Transform(stage(stages, n, "stage", &v)?),
                (None, Some(sql), None) => Step::Transform(stage(
                    stages,
                    n,
                    "sql",
                    &json!({"className": "SQLTransformer", "paramMap": {"statement": sql}}),
                )?),
                (None, None, Some(dir)) => Step::TransformDir(dir),
                _ => {
                    return Err(node_err(
                        n,
                        "give exactly one of 'stage', 'sql' and 'model_dir'",
                    ));
                }
            }
        }
        NativeKind::Train => {
            let s: settings::Train = read(n)?;
            need_inputs(1)?;
            let AnyStage::Estimator(estimator) = stage(stages, n, "estimator", &s.estimator)?
            else {
                return Err(node_err(
                    n,
                    "'estimator' is not an estimator (nothing to fit)",
                ));
            };
            Step::Train(Training {
                model: s.model,
                estimator,
                evaluator: s
                    .evaluator
                    .map(|v| stage(stages, n, "evaluator", &v))
                    .transpose()?,
                description: s.description,
            })
        }
        NativeKind::ModelValidate => {
            let s: settings::ModelValidate = read(n)?;
            need_inputs(1)?;
            let deprecate = match s.reject.as_deref() {
                None | Some("keep") => false,
                Some("deprecate") => true,
                Some(r) => return Err(node_err(n, format!("reject '{r}': use keep or deprecate"))),
            };
            Step::ValidateModel(ModelCheck {
                evaluator: stage(stages, n, "evaluator", &s.evaluator)?,
                stage: model_stage(n, s.stage.as_deref(), ModelStage::Generated)?,
                model: s.model,
                metric: s.metric,
                threshold: s.threshold,
                deprecate,
            })
        }
        NativeKind::PushModel => {
            let s: settings::PushModel = read(n)?;
            need_inputs(0)?;
            Step::Push {
                stage: model_stage(n, s.stage.as_deref(), ModelStage::Validated)?,
                model: s.model,
                require: s.require,
            }
        }
        NativeKind::Predict => {
            let s: settings::Predict = read(n)?;
            need_inputs(1)?;
            let stage = model_stage(n, s.stage.as_deref(), ModelStage::Deployed)?;
            match (s.model, s.model_dir) {
                (Some(model), None) => Step::Predict(Scorer::Center {
                    model,
                    version: s.version,
                    stage,
                }),
                (None, Some(dir)) => Step::Predict(Scorer::Dir(dir)),
                _ => return Err(node_err(n, "give exactly one of 'model' and 'model_dir'")),
            }
        }
        NativeKind::Evaluate => {
            let s: settings::Evaluate = read(n)?;
            need_inputs(1)?;
            Step::Evaluate(stage(stages, n, "evaluator", &s.evaluator)?)
        }
        NativeKind::UserDefined => {
            let f = n
                .str_config("function")
                .ok_or_else(|| node_err(n, "needs 'function' as a string"))?;
            known_function(f).map_err(|m| node_err(n, m))?;
            Step::User(f.to_string())
        }
    })
}
