//! A model node that swaps whole saved models while the job runs
//! ([`crate::MlStreamExt::ml_transform_with_versions`]): its second input is a stream of
//! `(version, uri)` rows (from the Model Center's `ferroflow-ml` versions, a training job,
//! a file), each naming a directory written by [`crate::save_stage`]. A version different
//! from the one served is loaded and replaces it between two batches of rows, so every row
//! is scored exactly once, by the version that was current when its batch arrived.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_engine::state::{StateDecoder, StateEncoder};
use ferroflow_engine::{
    EngineError, InstanceInfo, Operator, OperatorFactory, OperatorState, Output, RestoreContext,
    StateKind,
};

use crate::online::nodes::{conform, ml_err};
use crate::stage::{AlgoOperator, AnyStage, StageRegistry};

/// How a model node fed saved versions starts and what it writes.
#[derive(Clone)]
pub struct VersionedModel {
    pub(crate) template: Arc<dyn AlgoOperator>,
    pub(crate) initial_version: i64,
    pub(crate) wait_for_first: bool,
    pub(crate) version_column: Option<String>,
    pub(crate) scored_at_column: Option<String>,
    pub(crate) stages: StageRegistry,
}

impl std::fmt::Debug for VersionedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionedModel")
            .field("class", &self.template.class_name())
            .field("initial_version", &self.initial_version)
            .field("wait_for_first", &self.wait_for_first)
            .field("version_column", &self.version_column)
            .field("scored_at_column", &self.scored_at_column)
            .finish()
    }
}

impl VersionedModel {
    /// Serve `model` (a fitted model, or a transformer) as version 0 until a version arrives.
    /// Its output columns are the node's: every later version must give the same.
    pub fn new(model: Arc<dyn AlgoOperator>) -> Self {
        VersionedModel {
            template: model,
            initial_version: 0,
            wait_for_first: false,
            version_column: None,
            scored_at_column: None,
            stages: crate::classes::builtin_stages(),
        }
    }

    /// Load versions with these stages (default: this crate's; a saved pipeline holding
    /// another crate's stage, such as SQLTransformer, needs a registry with it).
    pub fn stages(mut self, stages: StageRegistry) -> Self {
        self.stages = stages;
        self
    }

    /// The version number of the model given to [`VersionedModel::new`] (default 0).
    pub fn initial_version(mut self, version: i64) -> Self {
        self.initial_version = version;
        self
    }

    /// Do not score with the model given to [`VersionedModel::new`] (it only fixes the
    /// output columns): rows wait, in order, for the first version to arrive.
    pub fn wait_for_first_version(mut self) -> Self {
        self.wait_for_first = true;
        self
    }

    /// Add an Int64 column `name` holding the version that scored each row.
    pub fn version_column(mut self, name: impl Into<String>) -> Self {
        self.version_column = Some(name.into());
        self
    }

    /// Add a timestamp (ms) column `name` holding the wall-clock time each row was scored:
    /// a serving log's "when", and how a benchmark sees a new version's first prediction.
    pub fn scored_at_column(mut self, name: impl Into<String>) -> Self {
        self.scored_at_column = Some(name.into());
        self
    }
}

/// Checks that `versions` carries an integer `version` and a string `uri` column.
pub(crate) fn check_versions_schema(node: &str, versions: &Schema) -> ferroflow_engine::Result<()> {
    let ok = |name: &str, want: &[DataType]| {
        versions
            .field_with_name(name)
            .is_ok_and(|f| want.contains(f.data_type()))
    };
    if !ok("version", &[DataType::Int64, DataType::Int32]) || !ok("uri", &[DataType::Utf8]) {
        return Err(EngineError::plan(format!(
            "node '{node}': its versions input needs columns version (int64) and uri (utf8), \
             it has {:?}",
            versions
                .fields()
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// The output schema of the node: the model's columns, plus the version and scored-at
/// columns.
pub(crate) fn output_schema(
    model: &VersionedModel,
    scored: SchemaRef,
) -> ferroflow_engine::Result<SchemaRef> {
    let mut fields: Vec<Field> = scored.fields().iter().map(|f| f.as_ref().clone()).collect();
    let extra = [
        (&model.version_column, DataType::Int64),
        (
            &model.scored_at_column,
            DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None),
        ),
    ];
    for (col, dt) in extra {
        let Some(col) = col else { continue };
        if fields.iter().any(|f| f.name() == col) {
            return Err(EngineError::plan(format!(
                "column '{col}' is already an output column of {}",
                model.template.class_name()
            )));
        }
        fields.push(Field::new(col, dt, false));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Makes the instances of a model node fed saved versions (input 1, broadcast).
pub(crate) struct VersionsFactory {
    pub(crate) name: String,
    pub(crate) model: VersionedModel,
    /// What the model gives for the node's input (without the version column).
    pub(crate) scored: SchemaRef,
    pub(crate) input: SchemaRef,
    pub(crate) schema: SchemaRef,
    pub(crate) max_held_rows: usize,
}

impl OperatorFactory for VersionsFactory {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn create(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        let serving = (!self.model.wait_for_first).then(|| Serving {
            version: self.model.initial_version,
            uri: None,
            stage: self.model.template.clone(),
        });
        Ok(Box::new(VersionsOperator {
            name: self.name.clone(),
            scored: self.scored.clone(),
            input: self.input.clone(),
            schema: self.schema.clone(),
            version_column: self.model.version_column.clone(),
            scored_at_column: self.model.scored_at_column.is_some(),
            serving,
            held: VecDeque::new(),
            held_rows: 0,
            max_held_rows: self.max_held_rows,
            stages: self.model.stages.clone(),
        }))
    }

    /// Every instance serves the same versions: a new instance takes the newest version of
    /// the old instances.
    fn state_kind(&self) -> StateKind {
        StateKind::Broadcast
    }
}

struct Serving {
    version: i64,
    /// Where it was loaded from (`None`: the model the node was built with).
    uri: Option<String>,
    stage: Arc<dyn AlgoOperator>,
}

struct VersionsOperator {
    name: String,
    scored: SchemaRef,
    input: SchemaRef,
    schema: SchemaRef,
    version_column: Option<String>,
    scored_at_column: bool,
    serving: Option<Serving>,
    /// Rows that arrived before the first version, in arrival order.
    held: VecDeque<RecordBatch>,
    held_rows: usize,
    max_held_rows: usize,
    /// What saved versions are loaded with.
    stages: StageRegistry,
}

impl VersionsOperator {
    fn score(&self, batch: &RecordBatch, out: &mut Output) -> ferroflow_engine::Result<()> {
        let s = self.serving.as_ref().expect("scored only with a model");
        let class = s.stage.class_name();
        let what = || format!("node '{}' ({class} version {})", self.name, s.version);
        let t = s
            .stage
            .transform(std::slice::from_ref(batch))
            .map_err(|e| ml_err(what(), e))?;
        let Some(t) = t.first() else {
            return Ok(());
        };
        let scored = conform(&self.scored, t, class)?;
        if self.version_column.is_none() && !self.scored_at_column {
            out.emit(scored);
            return Ok(());
        }
        let n = scored.num_rows();
        let mut columns = scored.columns().to_vec();
        if self.version_column.is_some() {
            columns.push(Arc::new(Int64Array::from_value(s.version, n)) as ArrayRef);
        }
        if self.scored_at_column {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            columns.push(
                Arc::new(arrow_array::TimestampMillisecondArray::from_value(now, n)) as ArrayRef,
            );
        }
        out.emit(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn hold(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        self.held_rows += batch.num_rows();
        if self.held_rows > self.max_held_rows {
            return Err(EngineError::Other(format!(
                "node '{}': {} rows wait for a first model version, more than the {} it holds",
                self.name, self.held_rows, self.max_held_rows
            )));
        }
        self.held.push_back(batch);
        Ok(())
    }

    /// Load the saved model of `version` at `uri` and check that it fits the node.
    fn load(&self, version: i64, uri: &str) -> ferroflow_engine::Result<Arc<dyn AlgoOperator>> {
        let what = format!("node '{}': version {version} at '{uri}'", self.name);
        let stage = load_version(&self.name, version, uri, &self.stages)?;
        let probe = stage
            .transform(&[RecordBatch::new_empty(self.input.clone())])
            .map_err(|e| ml_err(&what, e))?;
        let got = probe.first().map(|b| b.schema());
        let same = got.as_ref().is_some_and(|got| {
            got.fields().len() == self.scored.fields().len()
                && got.fields().iter().zip(self.scored.fields()).all(|(g, w)| {
                    g.name() == w.name()
                        && (g.data_type() == w.data_type()
                            || crate::vector::is_vector_type(g.data_type())
                                && crate::vector::is_vector_type(w.data_type()))
                })
        });
        if !same {
            return Err(EngineError::Other(format!(
                "{what} ({}) gives columns {:?}, the node's are {:?}",
                stage.class_name(),
                got.map(|s| names(&s)).unwrap_or_default(),
                names(&self.scored)
            )));
        }
        Ok(stage)
    }

    /// New versions: the last row of the batch is the one to serve.
    fn update(&mut self, batch: RecordBatch, out: &mut Output) -> ferroflow_engine::Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let rows = crate::table::version_rows(&batch)?;
        let Some((version, uri)) = rows.into_iter().rev().flatten().next() else {
            return Err(EngineError::Other(format!(
                "node '{}': a versions row without version or uri",
                self.name
            )));
        };
        if self.serving.as_ref().is_some_and(|s| s.version == version) {
            return Ok(());
        }
        let stage = self.load(version, &uri)?;
        self.serving = Some(Serving {
            version,
            uri: Some(uri),
            stage,
        });
        let held: Vec<RecordBatch> = self.held.drain(..).collect();
        self.held_rows = 0;
        for b in held {
            self.score(&b, out)?;
        }
        Ok(())
    }
}

fn names(s: &Schema) -> Vec<String> {
    s.fields().iter().map(|f| f.name().clone()).collect()
}

impl Operator for VersionsOperator {
    fn process_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        if input == 1 {
            return self.update(batch, out);
        }
        if self.serving.is_none() {
            return self.hold(batch);
        }
        self.score(&batch, out)
    }

    fn finish(&mut self, _out: &mut Output) -> ferroflow_engine::Result<()> {
        if self.held_rows > 0 {
            return Err(EngineError::Other(format!(
                "node '{}': {} rows arrived and no model version did",
                self.name, self.held_rows
            )));
        }
        Ok(())
    }

    /// The version served (and where it was loaded from) and the rows waiting for a first
    /// version.
    fn snapshot_state(&mut self) -> ferroflow_engine::Result<Option<OperatorState>> {
        let mut e = StateEncoder::new();
        match &self.serving {
            Some(s) => {
                e.bool(true)
                    .i64(s.version)
                    .str(s.uri.as_deref().unwrap_or(""));
            }
            None => {
                e.bool(false);
            }
        }
        Ok(Some(OperatorState {
            batches: self.held.iter().cloned().collect(),
            bytes: e.finish(),
        }))
    }

    /// The newest version any old instance served (reloaded from its uri); the waiting rows
    /// of the old instances this one stands for (old instance `k` goes to new instance
    /// `k % parallelism`).
    fn restore_state(
        &mut self,
        states: Vec<OperatorState>,
        ctx: &RestoreContext,
    ) -> ferroflow_engine::Result<()> {
        let what = format!("node '{}'", self.name);
        let mut best: Option<(i64, String)> = None;
        for (k, s) in states.into_iter().enumerate() {
            let mut d = StateDecoder::new(&s.bytes, &what);
            if d.bool()? {
                let version = d.i64()?;
                let uri = d.str()?.to_string();
                if best.as_ref().is_none_or(|(b, _)| version > *b) {
                    best = Some((version, uri));
                }
            }
            let own = if ctx.same_parallelism() {
                k == ctx.instance.index
            } else {
                k % ctx.instance.parallelism == ctx.instance.index
            };
            if own {
                for b in s.batches {
                    self.held_rows += b.num_rows();
                    self.held.push_back(b);
                }
            }
        }
        match best {
            // The model it was built with: nothing to load.
            Some((version, uri)) if uri.is_empty() => {
                self.serving = Some(Serving {
                    version,
                    uri: None,
                    stage: self
                        .serving
                        .take()
                        .map(|s| s.stage)
                        .ok_or_else(|| {
                            EngineError::State(format!(
                                "{what}: the checkpoint served the built-in model, which this run waits instead of serving"
                            ))
                        })?,
                });
            }
            Some((version, uri)) => {
                let stage = self.load(version, &uri)?;
                self.serving = Some(Serving {
                    version,
                    uri: Some(uri),
                    stage,
                });
            }
            None => {}
        }
        Ok(())
    }
}

/// The saved model (or transformer) of `version` at `uri` (a directory, or a `file://`
/// uri), for node `node`, loaded with `stages`.
pub(crate) fn load_version(
    node: &str,
    version: i64,
    uri: &str,
    stages: &StageRegistry,
) -> ferroflow_engine::Result<Arc<dyn AlgoOperator>> {
    let what = format!("node '{node}': version {version} at '{uri}'");
    let dir = uri.strip_prefix("file://").unwrap_or(uri);
    Ok(
        match stages
            .load(std::path::Path::new(dir))
            .map_err(|e| ml_err(&what, e))?
        {
            AnyStage::Model(m) => Arc::from(m as Box<dyn AlgoOperator>),
            AnyStage::Operator(o) => Arc::from(o),
            AnyStage::Estimator(e) => {
                return Err(EngineError::Other(format!(
                    "{what} is an estimator ({}), not a fitted model",
                    e.class_name()
                )));
            }
        },
    )
}
