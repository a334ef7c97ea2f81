//! `Pipeline` (an estimator made of stages) and `PipelineModel` (the fitted stages).
//!
//! Fitting runs the stages in order over the table: an estimator is fitted and its model
//! transforms the table for the stages after it; operators and models just transform. Saved
//! as Flink ML saves them: `metadata` (with `numStages`) and each stage under `stages/<i>`.

use std::path::Path;

use arrow_array::RecordBatch;
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::Params;
use crate::stage::{AlgoOperator, AnyStage, Estimator, Model, Stage, StageRegistry, save_stage};

/// Flink ML's class name of pipelines.
pub const PIPELINE_CLASS: &str = "org.apache.flink.ml.builder.Pipeline";
/// Flink ML's class name of fitted pipelines.
pub const PIPELINE_MODEL_CLASS: &str = "org.apache.flink.ml.builder.PipelineModel";

/// A copy of a stage (class, params and, for a model, its model data).
pub fn clone_stage(stage: &AnyStage, stages: &StageRegistry) -> Result<AnyStage> {
    let (class, params) = match stage {
        AnyStage::Operator(s) => (s.class_name(), s.params()),
        AnyStage::Estimator(s) => (s.class_name(), s.params()),
        AnyStage::Model(s) => (s.class_name(), s.params()),
    };
    if class == PIPELINE_CLASS || class == PIPELINE_MODEL_CLASS {
        return Err(MlError::Invalid(
            "nested pipelines are not supported".into(),
        ));
    }
    let mut copy = stages.create(class)?;
    copy.params_mut().set_all(&params.to_map())?;
    if let (AnyStage::Model(from), AnyStage::Model(to)) = (stage, &mut copy) {
        to.set_model_data(&from.model_data()?)?;
    }
    Ok(copy)
}

fn transform_with(stage: &AnyStage, table: &RecordBatch) -> Result<RecordBatch> {
    let out = match stage {
        AnyStage::Operator(s) => s.transform(std::slice::from_ref(table))?,
        AnyStage::Model(s) => s.transform(std::slice::from_ref(table))?,
        AnyStage::Estimator(s) => {
            return Err(MlError::Invalid(format!(
                "{} is not fitted",
                s.class_name()
            )));
        }
    };
    out.into_iter()
        .next()
        .ok_or_else(|| MlError::Invalid("a stage produced no table".into()))
}

/// An estimator made of stages.
pub struct Pipeline {
    params: Params,
    stages: Vec<AnyStage>,
    /// Where the fitted pipeline's copies of its transformers come from.
    registry: StageRegistry,
}

impl Pipeline {
    /// A pipeline of these stages, all of classes in `registry` (fitting copies the
    /// transformers by class into the fitted model).
    pub fn new(stages: Vec<AnyStage>, registry: StageRegistry) -> Self {
        Pipeline {
            params: Params::new(Vec::new()),
            stages,
            registry,
        }
    }

    /// From `{"className": "Pipeline", "stages": [{"className": ..., "paramMap": ...}, ...]}`,
    /// the stages created from `registry`.
    pub fn from_json(meta: &Value, registry: &StageRegistry) -> Result<Self> {
        let stages = meta
            .get("stages")
            .and_then(Value::as_array)
            .ok_or_else(|| MlError::Invalid("a Pipeline needs a 'stages' array".into()))?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                registry
                    .from_json(s)
                    .map_err(|e| MlError::Invalid(format!("stage {i}: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(Pipeline::new(stages, registry.clone()))
    }
}

impl Stage for Pipeline {
    fn class_name(&self) -> &'static str {
        PIPELINE_CLASS
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

impl Estimator for Pipeline {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let mut table = inputs
            .first()
            .cloned()
            .ok_or_else(|| MlError::Invalid("no input table".into()))?;
        let last_estimator = self
            .stages
            .iter()
            .rposition(|s| matches!(s, AnyStage::Estimator(_)));
        let mut fitted = Vec::with_capacity(self.stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            let stage = match stage {
                AnyStage::Estimator(e) => {
                    AnyStage::Model(e.fit(std::slice::from_ref(&table)).map_err(|err| {
                        MlError::Invalid(format!("stage {i} ({}): {err}", e.class_name()))
                    })?)
                }
                other => clone_stage(other, &self.registry)?,
            };
            // Later stages see the table as transformed by this one.
            if last_estimator.is_some_and(|l| i < l) {
                table = transform_with(&stage, &table)
                    .map_err(|err| MlError::Invalid(format!("stage {i}: {err}")))?;
            }
            fitted.push(stage);
        }
        Ok(Box::new(PipelineModel::new(fitted)))
    }
}

/// Fitted stages, applied in order.
pub struct PipelineModel {
    params: Params,
    stages: Vec<AnyStage>,
}

impl PipelineModel {
    /// A pipeline model of these (fitted) stages.
    pub fn new(stages: Vec<AnyStage>) -> Self {
        PipelineModel {
            params: Params::new(Vec::new()),
            stages,
        }
    }

    /// The stages.
    pub fn stages(&self) -> &[AnyStage] {
        &self.stages
    }

    /// Save into `dir` (must not exist): `metadata` and `stages/<i>`.
    pub fn save_pipeline(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            return Err(MlError::io(dir.display(), "already exists"));
        }
        std::fs::create_dir_all(dir).map_err(|e| MlError::io(dir.display(), e))?;
        let meta = json!({
            "className": PIPELINE_MODEL_CLASS,
            "timestamp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            "paramMap": {},
            "numStages": self.stages.len(),
        });
        let path = dir.join("metadata");
        std::fs::write(&path, serde_json::to_vec_pretty(&meta).expect("JSON"))
            .map_err(|e| MlError::io(path.display(), e))?;
        let digits = self.stages.len().max(1).to_string().len();
        for (i, s) in self.stages.iter().enumerate() {
            save_stage(s, &dir.join("stages").join(format!("{i:0digits$}")))?;
        }
        Ok(())
    }

    /// Load what [`PipelineModel::save_pipeline`] wrote (`meta` is its metadata), the
    /// stages loaded with `registry`.
    pub fn load(dir: &Path, meta: &Value, registry: &StageRegistry) -> Result<Self> {
        let n = meta
            .get("numStages")
            .and_then(Value::as_u64)
            .ok_or_else(|| MlError::io(dir.join("metadata").display(), "no 'numStages'"))?
            as usize;
        let digits = n.max(1).to_string().len();
        let stages = (0..n)
            .map(|i| registry.load(&dir.join("stages").join(format!("{i:0digits$}"))))
            .collect::<Result<_>>()?;
        Ok(PipelineModel::new(stages))
    }
}

impl Stage for PipelineModel {
    fn class_name(&self) -> &'static str {
        PIPELINE_MODEL_CLASS
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

impl AlgoOperator for PipelineModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let mut table = inputs
            .first()
            .cloned()
            .ok_or_else(|| MlError::Invalid("no input table".into()))?;
        for (i, s) in self.stages.iter().enumerate() {
            table = transform_with(s, &table)
                .map_err(|e| MlError::Invalid(format!("stage {i}: {e}")))?;
        }
        Ok(vec![table])
    }
}

impl Model for PipelineModel {
    /// The model data of the last stage that has any.
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        for s in self.stages.iter().rev() {
            if let AnyStage::Model(m) = s {
                return m.model_data();
            }
        }
        Ok(Vec::new())
    }

    fn set_model_data(&mut self, _data: &[RecordBatch]) -> Result<()> {
        Err(MlError::Invalid(
            "a PipelineModel's data is its stages' (set them one by one)".into(),
        ))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.save_pipeline(dir)
    }
}
