//! The `native` job type: a job's nodes run in the job's process on ferroflow's ML library
//! (Flink ML compatible stages, SQL through DataFusion's SQLTransformer) and talk to the
//! Model Center.
//!
//! Nodes pass tables (Arrow record batches) along their data edges, in an order where every
//! node runs after its inputs. Paths are relative to the workflow spec's directory.
//!
//! | node | settings | input -> output |
//! |---|---|---|
//! | `read_dataset` | `path` (`.csv`, `.jsonl`, `.parquet`) or `dataset` (a dataset record's name) | -> table |
//! | `dataset_validate` | `columns`, `not_null`, `min_rows` | table -> same table, or the job fails naming the column |
//! | `transform` | `stage` (`{className, paramMap}`, a Pipeline, ...), `sql` (`SELECT ... FROM __THIS__`) or `model_dir` | table -> table |
//! | `train` | `model`, `estimator` (`{className, paramMap}` or a Pipeline), optional `evaluator` for training metrics | table -> the fitted model's output; saves the model under the data directory and registers a version (GENERATED, lineage = this job execution and the datasets read) |
//! | `model_validate` | `model`, `evaluator`, `metric`, `threshold`, optional `stage` (default GENERATED) and `reject` (`keep` or `deprecate`) | validation table -> metrics; the version becomes VALIDATED when `metric >= threshold` |
//! | `push_model` | `model`, optional `stage` (default VALIDATED), `require` | -> ; the version becomes DEPLOYED |
//!
//! "The version" of `model_validate` and `push_model` is the one named by the Model Center
//! event that started the job, when there is one and it is still in `stage`; otherwise the
//! newest version in `stage`.
//! | `predict` | `model` with optional `stage` (default DEPLOYED) or `version`, or `model_dir` | table -> scored table |
//! | `evaluate` | `evaluator` | table -> metrics table |
//! | `write_dataset` | `path` | table -> (written atomically) |
//! | `user_defined` | `function` (registered with [`NativePlugin::with_function`]) and its own settings | tables -> table |

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use ferroflow_meta::{
    MetaError, MetaStore, ModelStage, ModelVersion, NewModelVersion, NewRecord, RecordKind,
};
use ferroflow_ml::stage::AnyStage;
use ferroflow_workflow::{
    JobContext, JobPlugin, Node, NodeKind, Result, RunnableJob, SubGraph, WorkflowError,
};
use serde_json::{Value, json};

/// A user-defined node's function: input tables and the node's settings to one table.
pub type NodeFunction =
    Arc<dyn Fn(&[RecordBatch], &Value) -> std::result::Result<RecordBatch, String> + Send + Sync>;

/// The `native` job type.
#[derive(Clone, Default)]
pub struct NativePlugin {
    functions: HashMap<String, NodeFunction>,
}

impl NativePlugin {
    /// The job type with no user functions. Registers the SQL stages with the ML library.
    pub fn new() -> Self {
        ferroflow_sql::register_ml_stages();
        NativePlugin::default()
    }

    /// Make `function` available to `user_defined` nodes as `name`. A job run as a child
    /// process (`ferroflow job run`) sees only functions its binary registers.
    pub fn with_function(mut self, name: impl Into<String>, function: NodeFunction) -> Self {
        self.functions.insert(name.into(), function);
        self
    }
}

fn node_err(n: &Node, message: impl std::fmt::Display) -> WorkflowError {
    WorkflowError::Node {
        job: n.job.clone(),
        node: n.id.clone(),
        message: format!("node '{}' ({}): {message}", n.id, n.kind),
    }
}

fn str_setting<'a>(n: &'a Node, key: &str) -> Result<&'a str> {
    n.str_config(key)
        .ok_or_else(|| node_err(n, format!("needs '{key}' as a string")))
}

fn stage_setting(n: &Node, key: &str) -> Result<AnyStage> {
    let v = n
        .config
        .get(key)
        .ok_or_else(|| node_err(n, format!("needs '{key}' ({{className, paramMap}})")))?;
    ferroflow_ml::stage::stage_from_json(v).map_err(|e| node_err(n, format!("{key}: {e}")))
}

fn allowed(n: &Node, keys: &[&str]) -> Result<()> {
    let Some(map) = n.config.as_object() else {
        return Err(node_err(n, "settings must be a map"));
    };
    for k in map.keys() {
        if !keys.contains(&k.as_str()) {
            return Err(node_err(
                n,
                format!("unknown setting '{k}' (known: {})", keys.join(", ")),
            ));
        }
    }
    Ok(())
}

impl NativePlugin {
    fn check_node(&self, n: &Node) -> Result<()> {
        let need_inputs = |count: usize| {
            if n.inputs.len() != count {
                return Err(node_err(
                    n,
                    format!("reads {count} input(s), has {}", n.inputs.len()),
                ));
            }
            Ok(())
        };
        match n.kind {
            NodeKind::ReadDataset => {
                allowed(n, &["path", "dataset"])?;
                need_inputs(0)?;
                if n.str_config("path").is_some() == n.str_config("dataset").is_some() {
                    return Err(node_err(n, "give exactly one of 'path' and 'dataset'"));
                }
            }
            NodeKind::WriteDataset => {
                allowed(n, &["path"])?;
                need_inputs(1)?;
                str_setting(n, "path")?;
            }
            NodeKind::DatasetValidate => {
                allowed(n, &["columns", "not_null", "min_rows"])?;
                need_inputs(1)?;
            }
            NodeKind::Transform => {
                allowed(n, &["stage", "sql", "model_dir"])?;
                need_inputs(1)?;
                let given = ["stage", "sql", "model_dir"]
                    .iter()
                    .filter(|k| n.config.get(**k).is_some())
                    .count();
                if given != 1 {
                    return Err(node_err(
                        n,
                        "give exactly one of 'stage', 'sql' and 'model_dir'",
                    ));
                }
                if n.config.get("stage").is_some() {
                    stage_setting(n, "stage")?;
                }
            }
            NodeKind::Train => {
                allowed(n, &["model", "estimator", "evaluator", "description"])?;
                need_inputs(1)?;
                str_setting(n, "model")?;
                if !matches!(stage_setting(n, "estimator")?, AnyStage::Estimator(_)) {
                    return Err(node_err(
                        n,
                        "'estimator' is not an estimator (nothing to fit)",
                    ));
                }
                if n.config.get("evaluator").is_some() {
                    stage_setting(n, "evaluator")?;
                }
            }
            NodeKind::ModelValidate => {
                allowed(
                    n,
                    &[
                        "model",
                        "evaluator",
                        "metric",
                        "threshold",
                        "stage",
                        "reject",
                    ],
                )?;
                need_inputs(1)?;
                str_setting(n, "model")?;
                str_setting(n, "metric")?;
                stage_setting(n, "evaluator")?;
                n.config
                    .get("threshold")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| node_err(n, "needs 'threshold' as a number"))?;
                stage_of(n, ModelStage::Generated)?;
                if let Some(r) = n.str_config("reject")
                    && !["keep", "deprecate"].contains(&r)
                {
                    return Err(node_err(n, format!("reject '{r}': use keep or deprecate")));
                }
            }
            NodeKind::PushModel => {
                allowed(n, &["model", "stage", "require"])?;
                need_inputs(0)?;
                str_setting(n, "model")?;
                stage_of(n, ModelStage::Validated)?;
            }
            NodeKind::Predict => {
                allowed(n, &["model", "stage", "version", "model_dir"])?;
                need_inputs(1)?;
                if n.str_config("model").is_some() == n.str_config("model_dir").is_some() {
                    return Err(node_err(n, "give exactly one of 'model' and 'model_dir'"));
                }
                stage_of(n, ModelStage::Deployed)?;
            }
            NodeKind::Evaluate => {
                allowed(n, &["evaluator"])?;
                need_inputs(1)?;
                stage_setting(n, "evaluator")?;
            }
            NodeKind::UserDefined => {
                let f = str_setting(n, "function")?;
                if !self.functions.contains_key(f) {
                    return Err(node_err(
                        n,
                        format!(
                            "unknown function '{f}' (registered: {})",
                            self.functions
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn stage_of(n: &Node, default: ModelStage) -> Result<ModelStage> {
    match n.str_config("stage") {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e| node_err(n, e)),
    }
}

impl JobPlugin for NativePlugin {
    fn job_type(&self) -> &str {
        "native"
    }

    fn validate(&self, sub: &SubGraph<'_>) -> Result<()> {
        if let Some(k) = sub.job.properties.keys().next() {
            return Err(WorkflowError::Job {
                job: sub.job.name.clone(),
                message: format!("unknown setting '{k}' for a native job (it takes nodes)"),
            });
        }
        if sub.nodes.is_empty() {
            return Err(WorkflowError::Job {
                job: sub.job.name.clone(),
                message: "a native job needs nodes".into(),
            });
        }
        for n in &sub.nodes {
            self.check_node(n)?;
        }
        Ok(())
    }

    /// Native nodes run ferroflow's stages, SQL and the functions compiled into the binary
    /// (`user_defined` names one registered in Rust; a spec cannot bring code), but a node
    /// with a `path`, `model_dir` or `dataset` reads or writes files the spec names.
    fn host_access(&self, sub: &SubGraph<'_>) -> Option<String> {
        sub.nodes.iter().find_map(|n| {
            ["path", "model_dir", "dataset"]
                .into_iter()
                .find(|k| n.str_config(k).is_some())
                .map(|k| format!("node '{}' reads or writes host files (its '{k}')", n.id))
        })
    }

    fn generate(&self, sub: &SubGraph<'_>) -> Result<Box<dyn RunnableJob>> {
        self.validate(sub)?;
        Ok(Box::new(NativeJob {
            nodes: sub.nodes.iter().map(|n| (*n).clone()).collect(),
            base_dir: sub.graph.base_dir.clone(),
            functions: self.functions.clone(),
        }))
    }
}

struct NativeJob {
    nodes: Vec<Node>,
    base_dir: Option<PathBuf>,
    functions: HashMap<String, NodeFunction>,
}

impl NativeJob {
    fn path(&self, p: &str) -> PathBuf {
        let path = PathBuf::from(p);
        match &self.base_dir {
            Some(b) if path.is_relative() => b.join(path),
            _ => path,
        }
    }
}

/// Calls into the store from the job's blocking thread.
struct Center<'a> {
    ctx: &'a JobContext,
}

impl Center<'_> {
    fn store(&self) -> &dyn MetaStore {
        &*self.ctx.store
    }

    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.ctx.handle.block_on(f)
    }

    /// The version a model node acts on: the one the triggering Model Center event names,
    /// if it is still in `stage`; otherwise the newest version in `stage`. (Two trainings
    /// close together each get their own version validated or pushed.)
    fn target(&self, n: &Node, model: &str, stage: ModelStage) -> Result<Option<ModelVersion>> {
        let trigger = self.ctx.trigger.as_ref();
        if let Some(version) = trigger.and_then(|t| t.model_version(model)) {
            let v = self
                .block(self.store().get_model_version(model, version))
                .map_err(|e| node_err(n, e))?;
            if v.stage == stage {
                self.ctx.log.line(&format!(
                    "[native] {}: {model} version {version}, from the event at offset {}",
                    n.id,
                    trigger.map(|t| t.offset).unwrap_or_default()
                ));
                return Ok(Some(v));
            }
            self.ctx.log.line(&format!(
                "[native] {}: the triggering event's version {version} of {model} is {} now, not {stage}; taking the newest {stage} version",
                n.id, v.stage
            ));
        }
        self.newest(n, model, stage)
    }

    /// The newest version of `model` in `stage`.
    fn newest(&self, n: &Node, model: &str, stage: ModelStage) -> Result<Option<ModelVersion>> {
        let versions = self
            .block(self.store().list_model_versions(model, Some(stage)))
            .map_err(|e| node_err(n, e))?;
        Ok(versions.into_iter().max_by_key(|v| v.version))
    }
}

fn read_path(n: &Node, path: &Path) -> Result<RecordBatch> {
    ferroflow_ml::io::read_table(path).map_err(|e| node_err(n, e))
}

fn first_metric(n: &Node, metrics: &RecordBatch, name: &str) -> Result<f64> {
    let col = metrics.column_by_name(name).ok_or_else(|| {
        node_err(
            n,
            format!(
                "the evaluator gave no '{name}' (it gave: {})",
                metrics
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let col = arrow_cast_f64(col).map_err(|e| node_err(n, e))?;
    if col.is_empty() || col.is_null(0) {
        return Err(node_err(n, format!("'{name}' is empty")));
    }
    Ok(col.value(0))
}

/// A numeric metric column as doubles (arrow's cast kernel: any integer or float type).
fn arrow_cast_f64(col: &Arc<dyn Array>) -> std::result::Result<arrow_array::Float64Array, String> {
    use arrow_array::cast::AsArray;
    if !col.data_type().is_numeric() {
        return Err(format!(
            "a metric of type {} is not a number",
            col.data_type()
        ));
    }
    let doubles = arrow_cast::cast(col, &DataType::Float64).map_err(|e| e.to_string())?;
    Ok(doubles
        .as_primitive::<arrow_array::types::Float64Type>()
        .clone())
}

fn metrics_map(metrics: &RecordBatch) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for (f, c) in metrics.schema().fields().iter().zip(metrics.columns()) {
        if let Ok(v) = arrow_cast_f64(c)
            && !v.is_empty()
            && !v.is_null(0)
        {
            out.insert(f.name().clone(), v.value(0));
        }
    }
    out
}

fn transform_with(n: &Node, stage: &AnyStage, input: &RecordBatch) -> Result<RecordBatch> {
    let out = match stage {
        AnyStage::Operator(op) => op.transform(std::slice::from_ref(input)),
        AnyStage::Model(m) => m.transform(std::slice::from_ref(input)),
        AnyStage::Estimator(_) => {
            return Err(node_err(
                n,
                "this stage must be fitted first (use a train node)",
            ));
        }
    }
    .map_err(|e| node_err(n, e))?;
    out.into_iter()
        .next()
        .ok_or_else(|| node_err(n, "the stage produced no table"))
}

impl RunnableJob for NativeJob {
    fn run(self: Box<Self>, ctx: &JobContext) -> Result<()> {
        let center = Center { ctx };
        let mut tables: HashMap<String, RecordBatch> = HashMap::new();
        let mut datasets: Vec<String> = vec![];
        for n in &self.nodes {
            if ctx.cancel.is_cancelled() {
                ctx.log
                    .line("[native] stop requested; not running further nodes");
                return Ok(());
            }
            let started = Instant::now();
            let inputs: Vec<RecordBatch> = n
                .inputs
                .iter()
                .map(|i| tables[i].clone()) // inputs ran first (sub-graph order)
                .collect();
            let output: Option<RecordBatch> = match n.kind {
                NodeKind::ReadDataset => {
                    let path = match (n.str_config("path"), n.str_config("dataset")) {
                        (Some(p), _) => self.path(p),
                        (None, Some(d)) => {
                            let rec = center
                                .block(ctx.store.get_record(RecordKind::Dataset, &ctx.project, d))
                                .map_err(|e| node_err(n, e))?;
                            let uri = rec.body["uri"].as_str().unwrap_or_default();
                            self.path(uri.strip_prefix("file://").unwrap_or(uri))
                        }
                        _ => unreachable!("checked by validate"),
                    };
                    datasets.push(path.display().to_string());
                    Some(read_path(n, &path)?)
                }
                NodeKind::DatasetValidate => {
                    let t = &inputs[0];
                    let names = |key: &str| -> Vec<String> {
                        n.config
                            .get(key)
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    for c in names("columns") {
                        if t.column_by_name(&c).is_none() {
                            return Err(node_err(n, format!("column '{c}' is missing")));
                        }
                    }
                    for c in names("not_null") {
                        let col = t
                            .column_by_name(&c)
                            .ok_or_else(|| node_err(n, format!("column '{c}' is missing")))?;
                        if col.null_count() > 0 {
                            let row = (0..col.len()).find(|i| col.is_null(*i)).unwrap_or(0);
                            return Err(node_err(
                                n,
                                format!(
                                    "column '{c}' has {} null(s), the first at row {row}",
                                    col.null_count()
                                ),
                            ));
                        }
                    }
                    if let Some(min) = n.config.get("min_rows").and_then(Value::as_u64)
                        && (t.num_rows() as u64) < min
                    {
                        return Err(node_err(
                            n,
                            format!("{} rows, at least {min} needed", t.num_rows()),
                        ));
                    }
                    Some(t.clone())
                }
                NodeKind::Transform => {
                    let stage = if let Some(sql) = n.str_config("sql") {
                        ferroflow_ml::stage::stage_from_json(&json!({
                            "className": "SQLTransformer",
                            "paramMap": {"statement": sql},
                        }))
                        .map_err(|e| node_err(n, e))?
                    } else if let Some(dir) = n.str_config("model_dir") {
                        ferroflow_ml::load_stage(&self.path(dir)).map_err(|e| node_err(n, e))?
                    } else {
                        stage_setting(n, "stage")?
                    };
                    Some(transform_with(n, &stage, &inputs[0])?)
                }
                NodeKind::Train => Some(self.train(n, &center, &inputs[0], &datasets)?),
                NodeKind::ModelValidate => Some(self.validate_model(n, &center, &inputs[0])?),
                NodeKind::PushModel => {
                    let model = str_setting(n, "model")?;
                    let stage = stage_of(n, ModelStage::Validated)?;
                    match center.target(n, model, stage)? {
                        Some(v) => {
                            center
                                .block(ctx.store.set_model_stage(
                                    model,
                                    v.version,
                                    ModelStage::Deployed,
                                ))
                                .map_err(|e| node_err(n, e))?;
                            ctx.log.line(&format!(
                                "[native] {}: deployed {model} version {}",
                                n.id, v.version
                            ));
                        }
                        None if n.config.get("require").and_then(Value::as_bool) == Some(true) => {
                            return Err(node_err(n, format!("no version of '{model}' is {stage}")));
                        }
                        None => ctx.log.line(&format!(
                            "[native] {}: no version of {model} is {stage}; nothing to deploy",
                            n.id
                        )),
                    }
                    None
                }
                NodeKind::Predict => {
                    let (stage, from) = if let Some(dir) = n.str_config("model_dir") {
                        let p = self.path(dir);
                        (
                            ferroflow_ml::load_stage(&p).map_err(|e| node_err(n, e))?,
                            p.display().to_string(),
                        )
                    } else {
                        let model = str_setting(n, "model")?;
                        let v = match n.config.get("version").and_then(Value::as_i64) {
                            Some(ver) => center
                                .block(ctx.store.get_model_version(model, ver))
                                .map_err(|e| node_err(n, e))?,
                            None => {
                                let stage = stage_of(n, ModelStage::Deployed)?;
                                center.newest(n, model, stage)?.ok_or_else(|| {
                                    node_err(n, format!("no version of '{model}' is {stage}"))
                                })?
                            }
                        };
                        (
                            ferroflow_ml::load_stage(Path::new(&v.uri))
                                .map_err(|e| node_err(n, e))?,
                            format!("{model} version {}", v.version),
                        )
                    };
                    let out = transform_with(n, &stage, &inputs[0])?;
                    ctx.log.line(&format!(
                        "[native] {}: scored {} rows with {from}",
                        n.id,
                        out.num_rows()
                    ));
                    Some(out)
                }
                NodeKind::Evaluate => {
                    let ev = stage_setting(n, "evaluator")?;
                    let m = transform_with(n, &ev, &inputs[0])?;
                    ctx.log
                        .line(&format!("[native] {}: {:?}", n.id, metrics_map(&m)));
                    Some(m)
                }
                NodeKind::WriteDataset => {
                    let path = self.path(str_setting(n, "path")?);
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| node_err(n, format!("{}: {e}", dir.display())))?;
                    }
                    // Written beside the target and renamed: readers see the old or the new file.
                    let name = path.file_name().and_then(|f| f.to_str()).unwrap_or("out");
                    let tmp = path.with_file_name(format!(".{name}.{}.tmp", ctx.job_execution));
                    let tmp = tmp.with_extension(path.extension().unwrap_or_default());
                    ferroflow_ml::io::write_table(&inputs[0], &tmp).map_err(|e| node_err(n, e))?;
                    std::fs::rename(&tmp, &path)
                        .map_err(|e| node_err(n, format!("{}: {e}", path.display())))?;
                    None
                }
                NodeKind::UserDefined => {
                    let f = &self.functions[str_setting(n, "function")?];
                    Some(f(&inputs, &n.config).map_err(|e| node_err(n, e))?)
                }
            };
            ctx.log.line(&format!(
                "[native] node '{}' ({}) done in {:?}{}",
                n.id,
                n.kind,
                started.elapsed(),
                output
                    .as_ref()
                    .map(|t| format!(", {} rows", t.num_rows()))
                    .unwrap_or_default()
            ));
            if let Some(t) = output {
                tables.insert(n.id.clone(), t);
            }
        }
        Ok(())
    }
}

impl NativeJob {
    fn train(
        &self,
        n: &Node,
        center: &Center<'_>,
        input: &RecordBatch,
        datasets: &[String],
    ) -> Result<RecordBatch> {
        let ctx = center.ctx;
        let model = str_setting(n, "model")?;
        let AnyStage::Estimator(est) = stage_setting(n, "estimator")? else {
            return Err(node_err(n, "'estimator' is not an estimator"));
        };
        let fitted = est
            .fit(std::slice::from_ref(input))
            .map_err(|e| node_err(n, e))?;
        let out = fitted
            .transform(std::slice::from_ref(input))
            .map_err(|e| node_err(n, e))?
            .into_iter()
            .next()
            .ok_or_else(|| node_err(n, "the model produced no table"))?;
        let metrics = match n.config.get("evaluator") {
            Some(_) => {
                let ev = stage_setting(n, "evaluator")?;
                metrics_map(&transform_with(n, &ev, &out)?)
            }
            None => Default::default(),
        };
        let dir = ctx
            .data_dir
            .join("models")
            .join(model)
            .join(&ctx.job_execution);
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        if dir.exists() {
            // A retried run of the same job execution: its files are replaced.
            std::fs::remove_dir_all(&dir)
                .map_err(|e| node_err(n, format!("{}: {e}", dir.display())))?;
        }
        fitted.save(&dir).map_err(|e| node_err(n, e))?;
        let description = n.str_config("description").unwrap_or_default().to_string();
        match center.block(ctx.store.register_model(model, &description)) {
            Ok(_) | Err(MetaError::AlreadyExists { .. }) => {}
            Err(e) => return Err(node_err(n, e)),
        }
        let v = center
            .block(ctx.store.create_model_version(
                model,
                NewModelVersion {
                    uri: dir.display().to_string(),
                    flavor: "ferroflow-ml".into(),
                    metrics: metrics.clone(),
                    job_execution: Some(format!("{}/{}", ctx.project, ctx.job_execution)),
                    datasets: datasets.to_vec(),
                },
            ))
            .map_err(|e| node_err(n, e))?;
        ctx.log.line(&format!(
            "[native] {}: registered {model} version {} ({}) metrics {metrics:?}",
            n.id,
            v.version,
            dir.display()
        ));
        Ok(out)
    }

    fn validate_model(
        &self,
        n: &Node,
        center: &Center<'_>,
        input: &RecordBatch,
    ) -> Result<RecordBatch> {
        let ctx = center.ctx;
        let model = str_setting(n, "model")?;
        let stage = stage_of(n, ModelStage::Generated)?;
        let metric = str_setting(n, "metric")?;
        let threshold = n.config["threshold"].as_f64().unwrap_or(f64::INFINITY);
        let v = center
            .target(n, model, stage)?
            .ok_or_else(|| node_err(n, format!("no version of '{model}' is {stage}")))?;
        let fitted = ferroflow_ml::load_stage(Path::new(&v.uri)).map_err(|e| node_err(n, e))?;
        let scored = transform_with(n, &fitted, input)?;
        let ev = stage_setting(n, "evaluator")?;
        let metrics = transform_with(n, &ev, &scored)?;
        let value = first_metric(n, &metrics, metric)?;
        // The metric, kept with the version (Metadata Service metrics).
        let rec = NewRecord {
            project: ctx.project.clone(),
            name: format!("{model}-v{}-{metric}-{}", v.version, ctx.job_execution),
            parent: Some(format!("model:{model}/{}", v.version)),
            body: json!({"key": metric, "value": value, "timestamp": now_ms(), "job_execution": ctx.job_execution}),
        };
        match center.block(ctx.store.create_record(RecordKind::Metric, rec)) {
            Ok(_) | Err(MetaError::AlreadyExists { .. }) => {}
            Err(e) => return Err(node_err(n, e)),
        }
        let set_stage = |stage: ModelStage| {
            center
                .block(ctx.store.set_model_stage(model, v.version, stage))
                .map_err(|e| node_err(n, e))
        };
        if value >= threshold {
            set_stage(ModelStage::Validated)?;
            ctx.log.line(&format!(
                "[native] {}: {model} version {} {metric} = {value:.4} >= {threshold}: VALIDATED",
                n.id, v.version
            ));
        } else {
            let deprecate = n.str_config("reject") == Some("deprecate");
            if deprecate {
                set_stage(ModelStage::Deprecated)?;
            }
            ctx.log.line(&format!(
                "[native] {}: {model} version {} {metric} = {value:.4} < {threshold}: rejected{}",
                n.id,
                v.version,
                if deprecate { " (DEPRECATED)" } else { "" }
            ));
        }
        Ok(metrics)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The job types of a ferroflow binary: the built-in `process` and `native`.
pub fn job_types() -> ferroflow_workflow::PluginRegistry {
    let mut r = ferroflow_workflow::PluginRegistry::with_builtin();
    r.register(Arc::new(NativePlugin::new()));
    r
}
