//! Running a native job: its steps in sub-graph order, each on its inputs' tables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::{Array, RecordBatch};
use ferroflow_meta::{MetaError, ModelStage, NewModelVersion, NewRecord, RecordKind};
use ferroflow_workflow::{JobContext, Node, Result, RunnableJob};
use serde_json::json;

use crate::NodeFunction;
use crate::center::Center;
use crate::settings::{DatasetValidate, node_err};
use crate::step::{Input, ModelCheck, Scorer, Step, Training};
use crate::tables::{first_metric, metrics_map, read_path, transform_with};

/// A native job: its nodes (for messages and inputs) with what each does.
pub(crate) struct NativeJob {
    pub(crate) steps: Vec<(Node, Step)>,
    pub(crate) base_dir: Option<PathBuf>,
    pub(crate) functions: HashMap<String, NodeFunction>,
    /// What stages and saved models are read with.
    pub(crate) stages: ferroflow_ml::StageRegistry,
}

/// What a step has to work with.
struct Run<'a> {
    job: &'a NativeJob,
    center: Center<'a>,
    /// Files read so far (lineage of a trained version).
    datasets: Vec<String>,
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

impl RunnableJob for NativeJob {
    fn run(self: Box<Self>, ctx: &JobContext) -> Result<()> {
        let mut run = Run {
            job: &self,
            center: Center { ctx },
            datasets: vec![],
        };
        let mut tables: HashMap<String, RecordBatch> = HashMap::new();
        for (n, step) in &self.steps {
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
            let output = run.step(n, step, &inputs)?;
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

impl Run<'_> {
    fn ctx(&self) -> &JobContext {
        self.center.ctx
    }

    fn log(&self, line: String) {
        self.ctx().log.line(&line);
    }

    /// Run one step; its output table, if it has one.
    fn step(
        &mut self,
        n: &Node,
        step: &Step,
        inputs: &[RecordBatch],
    ) -> Result<Option<RecordBatch>> {
        Ok(match step {
            Step::Read(input) => Some(self.read(n, input)?),
            Step::ValidateData(s) => Some(validate_data(n, s, &inputs[0])?),
            Step::Transform(stage) => Some(transform_with(n, stage, &inputs[0])?),
            Step::TransformDir(dir) => {
                let stage = self
                    .job
                    .stages
                    .load(&self.job.path(dir))
                    .map_err(|e| node_err(n, e))?;
                Some(transform_with(n, &stage, &inputs[0])?)
            }
            Step::Train(t) => Some(self.train(n, t, &inputs[0])?),
            Step::ValidateModel(c) => Some(self.validate_model(n, c, &inputs[0])?),
            Step::Push {
                model,
                stage,
                require,
            } => {
                self.push(n, model, *stage, *require)?;
                None
            }
            Step::Predict(scorer) => Some(self.predict(n, scorer, &inputs[0])?),
            Step::Evaluate(ev) => {
                let m = transform_with(n, ev, &inputs[0])?;
                self.log(format!("[native] {}: {:?}", n.id, metrics_map(&m)));
                Some(m)
            }
            Step::Write(path) => {
                self.write(n, path, &inputs[0])?;
                None
            }
            Step::User(f) => {
                let f = &self.job.functions[f];
                Some(f(inputs, &n.config).map_err(|e| node_err(n, e))?)
            }
        })
    }

    fn read(&mut self, n: &Node, input: &Input) -> Result<RecordBatch> {
        let path = match input {
            Input::Path(p) => self.job.path(p),
            Input::Dataset(d) => {
                let ctx = self.ctx();
                let rec = self
                    .center
                    .block(ctx.store.get_record(RecordKind::Dataset, &ctx.project, d))
                    .map_err(|e| node_err(n, e))?;
                let uri = rec.body["uri"].as_str().unwrap_or_default();
                self.job.path(uri.strip_prefix("file://").unwrap_or(uri))
            }
        };
        self.datasets.push(path.display().to_string());
        read_path(n, &path)
    }

    fn push(&self, n: &Node, model: &str, stage: ModelStage, require: bool) -> Result<()> {
        let ctx = self.ctx();
        match self.center.target(n, model, stage)? {
            Some(v) => {
                self.center
                    .block(
                        ctx.store
                            .set_model_stage(model, v.version, ModelStage::Deployed),
                    )
                    .map_err(|e| node_err(n, e))?;
                self.log(format!(
                    "[native] {}: deployed {model} version {}",
                    n.id, v.version
                ));
            }
            None if require => {
                return Err(node_err(n, format!("no version of '{model}' is {stage}")));
            }
            None => self.log(format!(
                "[native] {}: no version of {model} is {stage}; nothing to deploy",
                n.id
            )),
        }
        Ok(())
    }

    fn predict(&self, n: &Node, scorer: &Scorer, input: &RecordBatch) -> Result<RecordBatch> {
        let ctx = self.ctx();
        let (stage, from) = match scorer {
            Scorer::Dir(dir) => {
                let p = self.job.path(dir);
                (
                    self.job.stages.load(&p).map_err(|e| node_err(n, e))?,
                    p.display().to_string(),
                )
            }
            Scorer::Center {
                model,
                version,
                stage,
            } => {
                let v = match version {
                    Some(ver) => self
                        .center
                        .block(ctx.store.get_model_version(model, *ver))
                        .map_err(|e| node_err(n, e))?,
                    None => self.center.newest(n, model, *stage)?.ok_or_else(|| {
                        node_err(n, format!("no version of '{model}' is {stage}"))
                    })?,
                };
                (
                    self.job
                        .stages
                        .load(Path::new(&v.uri))
                        .map_err(|e| node_err(n, e))?,
                    format!("{model} version {}", v.version),
                )
            }
        };
        let out = transform_with(n, &stage, input)?;
        self.log(format!(
            "[native] {}: scored {} rows with {from}",
            n.id,
            out.num_rows()
        ));
        Ok(out)
    }

    fn write(&self, n: &Node, path: &str, table: &RecordBatch) -> Result<()> {
        let path = self.job.path(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| node_err(n, format!("{}: {e}", dir.display())))?;
        }
        // Written beside the target and renamed: readers see the old or the new file.
        let name = path.file_name().and_then(|f| f.to_str()).unwrap_or("out");
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", self.ctx().job_execution));
        let tmp = tmp.with_extension(path.extension().unwrap_or_default());
        ferroflow_ml::io::write_table(table, &tmp).map_err(|e| node_err(n, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| node_err(n, format!("{}: {e}", path.display())))
    }

    fn train(&self, n: &Node, t: &Training, input: &RecordBatch) -> Result<RecordBatch> {
        let ctx = self.ctx();
        let model = t.model.as_str();
        let fitted = t
            .estimator
            .fit(std::slice::from_ref(input))
            .map_err(|e| node_err(n, e))?;
        let out = fitted
            .transform(std::slice::from_ref(input))
            .map_err(|e| node_err(n, e))?
            .into_iter()
            .next()
            .ok_or_else(|| node_err(n, "the model produced no table"))?;
        let metrics = match &t.evaluator {
            Some(ev) => metrics_map(&transform_with(n, ev, &out)?),
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
        match self
            .center
            .block(ctx.store.register_model(model, &t.description))
        {
            Ok(_) | Err(MetaError::AlreadyExists { .. }) => {}
            Err(e) => return Err(node_err(n, e)),
        }
        let v = self
            .center
            .block(ctx.store.create_model_version(
                model,
                NewModelVersion {
                    uri: dir.display().to_string(),
                    flavor: "ferroflow-ml".into(),
                    metrics: metrics.clone(),
                    job_execution: Some(format!("{}/{}", ctx.project, ctx.job_execution)),
                    datasets: self.datasets.clone(),
                },
            ))
            .map_err(|e| node_err(n, e))?;
        self.log(format!(
            "[native] {}: registered {model} version {} ({}) metrics {metrics:?}",
            n.id,
            v.version,
            dir.display()
        ));
        Ok(out)
    }

    fn validate_model(&self, n: &Node, c: &ModelCheck, input: &RecordBatch) -> Result<RecordBatch> {
        let ctx = self.ctx();
        let (model, metric, threshold) = (c.model.as_str(), c.metric.as_str(), c.threshold);
        let v = self
            .center
            .target(n, model, c.stage)?
            .ok_or_else(|| node_err(n, format!("no version of '{model}' is {}", c.stage)))?;
        let fitted = self
            .job
            .stages
            .load(Path::new(&v.uri))
            .map_err(|e| node_err(n, e))?;
        let scored = transform_with(n, &fitted, input)?;
        let metrics = transform_with(n, &c.evaluator, &scored)?;
        let value = first_metric(n, &metrics, metric)?;
        // The metric, kept with the version (Metadata Service metrics).
        let rec = NewRecord {
            project: ctx.project.clone(),
            name: format!("{model}-v{}-{metric}-{}", v.version, ctx.job_execution),
            parent: Some(format!("model:{model}/{}", v.version)),
            body: json!({"key": metric, "value": value, "timestamp": now_ms(), "job_execution": ctx.job_execution}),
        };
        match self
            .center
            .block(ctx.store.create_record(RecordKind::Metric, rec))
        {
            Ok(_) | Err(MetaError::AlreadyExists { .. }) => {}
            Err(e) => return Err(node_err(n, e)),
        }
        let set_stage = |stage: ModelStage| {
            self.center
                .block(ctx.store.set_model_stage(model, v.version, stage))
                .map_err(|e| node_err(n, e))
        };
        if value >= threshold {
            set_stage(ModelStage::Validated)?;
            self.log(format!(
                "[native] {}: {model} version {} {metric} = {value:.4} >= {threshold}: VALIDATED",
                n.id, v.version
            ));
        } else {
            if c.deprecate {
                set_stage(ModelStage::Deprecated)?;
            }
            self.log(format!(
                "[native] {}: {model} version {} {metric} = {value:.4} < {threshold}: rejected{}",
                n.id,
                v.version,
                if c.deprecate { " (DEPRECATED)" } else { "" }
            ));
        }
        Ok(metrics)
    }
}

/// `dataset_validate`: the table itself, or an error naming the column.
fn validate_data(n: &Node, s: &DatasetValidate, t: &RecordBatch) -> Result<RecordBatch> {
    for c in &s.columns {
        if t.column_by_name(c).is_none() {
            return Err(node_err(n, format!("column '{c}' is missing")));
        }
    }
    for c in &s.not_null {
        let col = t
            .column_by_name(c)
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
    if let Some(min) = s.min_rows
        && (t.num_rows() as u64) < min
    {
        return Err(node_err(
            n,
            format!("{} rows, at least {min} needed", t.num_rows()),
        ));
    }
    Ok(t.clone())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
