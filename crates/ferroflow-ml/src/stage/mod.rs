//! Flink ML's stage API: `Stage`, `AlgoOperator` (and `Transformer`), `Estimator`, `Model`;
//! the registry of stages by class name ([`StageRegistry`]); save and load.
//!
//! Tables are Arrow `RecordBatch`es. A saved stage is a directory with `metadata` (JSON:
//! `className`, `timestamp`, `paramMap`, as Flink ML writes it) and, for a model, its model
//! data under `data/` as Arrow IPC files (`data/0.arrow`, ...).

use std::path::Path;

use arrow_array::RecordBatch;
use serde_json::{Value, json};

pub mod online;

use crate::error::{MlError, Result};
use crate::params::Params;

/// Anything with params and a Flink ML class name.
pub trait Stage: Send + Sync {
    /// Flink ML's full class name (`org.apache.flink.ml.feature.standardscaler.StandardScaler`).
    fn class_name(&self) -> &'static str;

    /// The params.
    fn params(&self) -> &Params;

    /// The params, to change.
    fn params_mut(&mut self) -> &mut Params;
}

/// A stage that maps input tables to output tables. A `Transformer` in Flink ML is an
/// `AlgoOperator` whose output rows correspond to input rows; both are this trait here.
pub trait AlgoOperator: Stage {
    /// Transform `inputs` (usually one table) into the output tables, in Flink ML's order.
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>>;
}

/// A stage that learns a [`Model`] from tables.
pub trait Estimator: Stage {
    /// Fit on `inputs` (usually one bounded table).
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>>;

    /// This estimator as one that learns from a stream (Flink ML's online estimators).
    fn as_online(&self) -> Option<&dyn online::OnlineEstimator> {
        None
    }

    /// This estimator as one that learns from a stream, to change (its initial model).
    fn as_online_mut(&mut self) -> Option<&mut dyn online::OnlineEstimator> {
        None
    }
}

/// A fitted (or given) model: a transformer with model data.
pub trait Model: AlgoOperator {
    /// The model data as tables, with Flink ML's column names.
    fn model_data(&self) -> Result<Vec<RecordBatch>>;

    /// Replace the model data (Flink ML's `setModelData`). Models of online estimators
    /// given several versions take the newest.
    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()>;

    /// The version of the model data now held, for models whose data is versioned (online
    /// models): a model-data stream's older versions are skipped.
    fn version(&self) -> Option<i64> {
        None
    }

    /// The latest event time (ms) of a row this model may score (OnlineStandardScaler's
    /// `maxAllowedModelDelayMs`: a row later than the model's timestamp plus the delay waits
    /// for a newer model). `None`: any row.
    fn scores_until(&self) -> Option<i64> {
        None
    }

    /// The schema of what [`AlgoOperator::transform`] gives for input `input`, when the
    /// model knows it without model data (online models, from their params). `None`: found
    /// by transforming an empty batch.
    fn output_schema(
        &self,
        _input: &arrow_schema::Schema,
    ) -> Result<Option<arrow_schema::SchemaRef>> {
        Ok(None)
    }

    /// Save into `dir` (which must not exist): `metadata` and the model data under `data/`.
    fn save(&self, dir: &Path) -> Result<()> {
        save_model_files(self.class_name(), self.params(), &self.model_data()?, dir)
    }
}

/// A stage of any kind, as created from a class name.
pub enum AnyStage {
    /// Needs no fit.
    Operator(Box<dyn AlgoOperator>),
    /// Fits a model.
    Estimator(Box<dyn Estimator>),
    /// A model (its data set by fitting, loading or `set_model_data`).
    Model(Box<dyn Model>),
}

impl AnyStage {
    /// The stage's params.
    pub fn params_mut(&mut self) -> &mut Params {
        match self {
            AnyStage::Operator(s) => s.params_mut(),
            AnyStage::Estimator(s) => s.params_mut(),
            AnyStage::Model(s) => s.params_mut(),
        }
    }
}

/// Makes a stage with its params at their defaults (for [`StageRegistry::register`]).
pub type Factory = fn() -> AnyStage;

/// Reads a stage whose metadata has its own shape (a Pipeline's `stages`), from that
/// metadata, with the registry to create its inner stages from.
pub type FromJson = fn(&Value, &StageRegistry) -> Result<AnyStage>;

/// Loads a stage saved in its own layout (a PipelineModel's or Graph's `stages/`) from its
/// directory and parsed metadata, with the registry to load its inner stages from.
pub type Loader = fn(&Path, &Value, &StageRegistry) -> Result<AnyStage>;

/// How the registry makes one class.
#[derive(Clone, Copy)]
enum Make {
    /// A stage of params (and model data under `data/` for a model).
    Plain(Factory),
    /// A composite (Pipeline, Graph): read from its metadata, loaded from its layout.
    Composite {
        from_json: Option<FromJson>,
        load: Option<Loader>,
    },
}

/// The stages a program can name by class: what `{className, paramMap}` documents, saved
/// models and pipelines are built from. `ferroflow_ml::builtin_stages()` holds this crate's;
/// other crates add theirs (`ferroflow_sql::register_ml_stages` adds SQLTransformer) to a
/// registry they then hand to whatever reads stages, so no caller depends on another having
/// filled a global list first. Cloning is cheap (the list is shared).
#[derive(Clone, Default)]
pub struct StageRegistry {
    classes: std::sync::Arc<Vec<(&'static str, Make)>>,
}

impl std::fmt::Debug for StageRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageRegistry")
            .field("classes", &self.classes.len())
            .finish()
    }
}

impl StageRegistry {
    fn add(&mut self, class_name: &'static str, make: Make) -> Result<()> {
        if self.classes.iter().any(|(n, _)| *n == class_name) {
            return Err(MlError::Invalid(format!(
                "stage class '{class_name}' is registered twice"
            )));
        }
        std::sync::Arc::make_mut(&mut self.classes).push((class_name, make));
        Ok(())
    }

    /// Add a stage by its full class name. A name already registered is refused.
    pub fn register(&mut self, class_name: &'static str, make: Factory) -> Result<()> {
        self.add(class_name, Make::Plain(make))
    }

    /// Add a composite stage, read from its own metadata shape and loaded from its own
    /// directory layout. A name already registered is refused.
    pub fn register_composite(
        &mut self,
        class_name: &'static str,
        from_json: Option<FromJson>,
        load: Option<Loader>,
    ) -> Result<()> {
        self.add(class_name, Make::Composite { from_json, load })
    }

    /// Full class names of the stages made from their class name alone.
    pub fn classes(&self) -> Vec<&'static str> {
        self.classes
            .iter()
            .filter(|(_, m)| matches!(m, Make::Plain(_)))
            .map(|(n, _)| *n)
            .collect()
    }

    fn find(&self, class_name: &str) -> Result<Make> {
        self.classes
            .iter()
            .find(|(full, _)| *full == class_name || full.rsplit('.').next() == Some(class_name))
            .map(|(_, make)| *make)
            .ok_or_else(|| MlError::UnknownStage(class_name.to_string()))
    }

    /// Create a stage from its Flink ML class name, full
    /// (`org.apache.flink.ml.feature.standardscaler.StandardScaler`) or short
    /// (`StandardScaler`), with default params.
    pub fn create(&self, class_name: &str) -> Result<AnyStage> {
        match self.find(class_name)? {
            Make::Plain(make) => Ok(make()),
            Make::Composite { .. } => Err(MlError::Invalid(format!(
                "a {class_name} is made from its stages, not from its class name alone"
            ))),
        }
    }

    /// Create a stage from Flink ML's metadata shape `{"className": ..., "paramMap": {...}}`,
    /// or a pipeline `{"className": "Pipeline", "stages": [...]}`.
    pub fn from_json(&self, meta: &Value) -> Result<AnyStage> {
        let class = meta
            .get("className")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                MlError::Invalid("stage metadata without a 'className' string".into())
            })?;
        let mut stage = match self.find(class)? {
            Make::Plain(make) => make(),
            Make::Composite {
                from_json: Some(read),
                ..
            } => return read(meta, self),
            Make::Composite {
                from_json: None, ..
            } => {
                return Err(MlError::Invalid(format!(
                    "a {class} is loaded from its saved directory, not described inline"
                )));
            }
        };
        if let Some(map) = meta.get("paramMap") {
            let map = map
                .as_object()
                .ok_or_else(|| MlError::Invalid("'paramMap' is not an object".into()))?;
            stage.params_mut().set_all(map)?;
        }
        Ok(stage)
    }

    /// Load a stage saved by [`save_stage`] (or Flink ML: a metadata file with its params,
    /// model data under `data/`).
    pub fn load(&self, dir: &Path) -> Result<AnyStage> {
        let path = dir.join("metadata");
        let text = std::fs::read_to_string(&path).map_err(|e| MlError::io(path.display(), e))?;
        let meta: Value =
            serde_json::from_str(&text).map_err(|e| MlError::io(path.display(), e))?;
        if let Some(class) = meta.get("className").and_then(Value::as_str)
            && let Make::Composite {
                load: Some(load), ..
            } = self.find(class)?
        {
            return load(dir, &meta, self);
        }
        let mut stage = self.from_json(&meta)?;
        if let AnyStage::Model(m) = &mut stage {
            m.set_model_data(&read_model_data(dir)?)?;
        }
        Ok(stage)
    }
}

/// The model data tables under `dir/data/` (`0.arrow`, `1.arrow`, ...).
fn read_model_data(dir: &Path) -> Result<Vec<RecordBatch>> {
    let mut tables = Vec::new();
    for i in 0.. {
        let path = dir.join("data").join(format!("{i}.arrow"));
        if !path.exists() {
            break;
        }
        let mut file = std::fs::File::open(&path).map_err(|e| MlError::io(path.display(), e))?;
        let shown = path.display().to_string();
        ferroflow_connectors::ipc::check_ipc_file(&mut file, &shown)?;
        let read = ferroflow_connectors::ipc::guard_decode(&shown, || {
            let reader = arrow_ipc::reader::FileReader::try_new(file, None)?;
            let schema = reader.schema();
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            Ok::<_, MlError>(arrow_select::concat::concat_batches(&schema, &batches)?)
        })?;
        tables.push(read?);
    }
    Ok(tables)
}

fn metadata(class_name: &str, params: &Params) -> Value {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    json!({
        "className": class_name,
        "timestamp": timestamp,
        "paramMap": Value::Object(params.to_map()),
    })
}

/// Save `model` (metadata and model data) into `dir`, which must not exist yet.
pub fn save_model(model: &dyn Model, dir: &Path) -> Result<()> {
    model.save(dir)
}

/// Save any stage: a model with its data, an operator or estimator as its metadata.
pub fn save_stage(stage: &AnyStage, dir: &Path) -> Result<()> {
    match stage {
        AnyStage::Model(m) => m.save(dir),
        AnyStage::Operator(s) => save_model_files(s.class_name(), s.params(), &[], dir),
        AnyStage::Estimator(s) => save_model_files(s.class_name(), s.params(), &[], dir),
    }
}

fn save_model_files(class: &str, params: &Params, data: &[RecordBatch], dir: &Path) -> Result<()> {
    if dir.exists() {
        return Err(MlError::io(dir.display(), "already exists"));
    }
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).map_err(|e| MlError::io(data_dir.display(), e))?;
    let meta = metadata(class, params);
    let path = dir.join("metadata");
    std::fs::write(&path, serde_json::to_vec_pretty(&meta).expect("JSON"))
        .map_err(|e| MlError::io(path.display(), e))?;
    for (i, table) in data.iter().enumerate() {
        let path = data_dir.join(format!("{i}.arrow"));
        let file = std::fs::File::create(&path).map_err(|e| MlError::io(path.display(), e))?;
        let mut w = arrow_ipc::writer::FileWriter::try_new(file, &table.schema())?;
        w.write(table)?;
        w.finish()?;
    }
    Ok(())
}
