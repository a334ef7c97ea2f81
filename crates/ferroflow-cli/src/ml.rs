//! `ferroflow ml`: run Flink ML compatible stages on files.
//!
//! The contract (relied on by users and by the conformance tests):
//! - `ml transform --stage STAGE.json --input IN --output OUT` runs a stage that needs no fit;
//!   with `--model-data DATA.jsonl` a model whose data is given (Flink ML's `setModelData`);
//! - `ml fit --stage STAGE.json --input IN --model-dir DIR` fits an estimator and saves it;
//! - `ml transform --model-dir DIR --input IN --output OUT` applies a saved model;
//! - `ml model-data --model-dir DIR --output OUT.jsonl` writes a model's data as rows;
//! - `ml fit-online --stage STAGE.json --input TRAIN --model-data-output VERSIONS
//!   [--model-data INIT] [--event-time-col COL]` replays TRAIN in file order as a stream
//!   through an online estimator and writes every model-data row it emits, in order;
//! - `ml progressive --stage STAGE.json --input DATA --output PRED` scores every row with
//!   the current model before learning it (progressive validation).
//!
//! STAGE.json is Flink ML's metadata shape `{"className": ..., "paramMap": {...}}`. Files are
//! read and written by extension: `.jsonl` (the conformance encoding), `.parquet`, `.csv`.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow_array::RecordBatch;
use clap::Subcommand;
use ferroflow_engine::{DataStream, JobBuilder, JobConfig, Runtime};
use ferroflow_ml::{AnyStage, MlStreamExt, StageRegistry, io};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// `ferroflow ml ...`
#[derive(Debug, Subcommand)]
pub(crate) enum MlCommand {
    /// Transform a table with a stage that needs no fit, or with a saved or given model.
    Transform {
        /// The stage: `{"className": ..., "paramMap": {...}}`.
        #[arg(long, conflicts_with = "model_dir")]
        stage: Option<PathBuf>,
        /// A model saved by `ml fit`.
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// Model data for a model stage given by `--stage` (one file per model-data table).
        #[arg(long)]
        model_data: Vec<PathBuf>,
        /// The input table.
        #[arg(long)]
        input: PathBuf,
        /// Output tables, in the stage's order (repeat for stages with several outputs).
        #[arg(long, required = true)]
        output: Vec<PathBuf>,
    },
    /// Fit an estimator on a table and save the model.
    Fit {
        /// The estimator: `{"className": ..., "paramMap": {...}}`.
        #[arg(long)]
        stage: PathBuf,
        /// The training table.
        #[arg(long)]
        input: PathBuf,
        /// Where to save the model (must not exist).
        #[arg(long)]
        model_dir: PathBuf,
    },
    /// Train an online estimator on a table replayed in file order as a stream; write every
    /// model-data row it emits, in emission order, with its version column. A Pipeline
    /// fits each online estimator on the rows the stages before it give (their models fed
    /// their model data as it is emitted).
    FitOnline {
        /// The online estimator: `{"className": ..., "paramMap": {...}}`, or a Pipeline of
        /// stages that need no fit and online estimators (`{"className": "Pipeline",
        /// "stages": [...]}`).
        #[arg(long)]
        stage: PathBuf,
        /// The training rows, replayed in file order.
        #[arg(long)]
        input: PathBuf,
        /// Where the model-data rows go (JSON lines, Parquet or CSV by extension); for a
        /// Pipeline, one per online estimator, in stage order.
        #[arg(long, required = true)]
        model_data_output: Vec<PathBuf>,
        /// The initial model's data (instead of the `initialModelData` param); for a
        /// Pipeline, of its one online estimator.
        #[arg(long)]
        model_data: Option<PathBuf>,
        /// The event-time column (milliseconds); watermarks follow it.
        #[arg(long)]
        event_time_col: Option<String>,
    },
    /// Progressive validation: each row is scored with the current model before it is
    /// learned; one output row per input row, in input order. Prints rows/s on stderr.
    Progressive {
        /// An online estimator, or a Pipeline of stages that need no fit and online
        /// estimators.
        #[arg(long)]
        stage: PathBuf,
        /// The rows (.csv, .jsonl or .parquet), replayed in file order.
        #[arg(long)]
        input: PathBuf,
        /// The input columns plus the last online estimator's outputs.
        #[arg(long)]
        output: PathBuf,
    },
    /// Write a saved model's data as rows, with Flink ML's column names.
    ModelData {
        /// A model saved by `ml fit`.
        #[arg(long)]
        model_dir: PathBuf,
        /// Output tables (repeat for models with several model-data tables).
        #[arg(long, required = true)]
        output: Vec<PathBuf>,
    },
}

fn read_table(path: &Path) -> Result<RecordBatch, AnyError> {
    Ok(io::read_table(path)?)
}

fn write_tables(tables: &[RecordBatch], outputs: &[PathBuf]) -> Result<(), AnyError> {
    if outputs.len() > tables.len() {
        return Err(format!(
            "{} outputs given, the stage produces {} table(s)",
            outputs.len(),
            tables.len()
        )
        .into());
    }
    for (table, path) in tables.iter().zip(outputs) {
        io::write_table(table, path)?;
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value, AnyError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn read_stage(stages: &StageRegistry, path: &Path) -> Result<AnyStage, AnyError> {
    let meta = read_json(path)?;
    Ok(stages
        .from_json(&meta)
        .map_err(|e| format!("{}: {e}", path.display()))?)
}

/// Replay `table` in row order as a stream (one source instance, `rows_per_batch` rows a
/// batch, watermarks following `event_time_col`) into the node `node` adds; returns what it
/// emits, in order.
fn run_online(
    table: &RecordBatch,
    rows_per_batch: usize,
    event_time_col: Option<&str>,
    node: impl FnOnce(&DataStream) -> ferroflow_engine::Result<Vec<DataStream>>,
) -> Result<Vec<RecordBatch>, AnyError> {
    let batches: Vec<RecordBatch> = (0..table.num_rows())
        .step_by(rows_per_batch)
        .map(|at| table.slice(at, rows_per_batch.min(table.num_rows() - at)))
        .collect();
    let job = JobBuilder::with_config(
        "ml-online",
        JobConfig {
            parallelism: 1,
            ..JobConfig::default()
        },
    );
    let mut stream = job.source(
        "input",
        Arc::new(ferroflow_connectors::MemorySource::new(
            table.schema(),
            batches,
        )?),
    )?;
    if let Some(col) = event_time_col {
        stream = stream.with_watermarks(
            ferroflow_engine::WatermarkStrategy::bounded_out_of_orderness(
                col,
                std::time::Duration::ZERO,
            ),
        )?;
    }
    let mut sinks = Vec::new();
    for (i, out) in node(&stream)?.into_iter().enumerate() {
        let sink = ferroflow_connectors::MemorySink::new();
        let schema = out.schema();
        out.sink(format!("output-{i}"), Arc::new(sink.clone()))?;
        sinks.push((sink, schema));
    }
    Runtime::new()?.run(job.build()?)?;
    Ok(sinks
        .into_iter()
        .map(|(sink, schema)| {
            sink.concat()
                .unwrap_or_else(|| RecordBatch::new_empty(schema))
        })
        .collect())
}

fn is_parquet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some("parquet")
}

/// Progressive validation from Parquet to Parquet as one streaming job: the file is read,
/// scored and written at once (the reader and the writer on threads of their own) instead
/// of one after the other. Parquet holds Arrow columns as they are, so the file connectors
/// read and write what [`io::read_table`] and [`io::write_table`] would. Returns the rows
/// scored.
fn progressive_parquet(
    input: &Path,
    output: &Path,
    stages: Vec<AnyStage>,
) -> Result<u64, AnyError> {
    use ferroflow_connectors::{FileFormat, FileSink, FileSource};
    let job = JobBuilder::with_config(
        "ml-progressive",
        JobConfig {
            parallelism: 1,
            ..JobConfig::default()
        },
    );
    let source = FileSource::new(input, FileFormat::Parquet)?.with_batch_size(8192);
    let scored = job
        .source("input", Arc::new(source))?
        .ml_progressive("progressive", stages)?;
    // Written as `io::write_table` writes (every `ml` command's output): not fsynced.
    let sink = FileSink::new(output, FileFormat::Parquet).without_sync_at_end();
    scored.sink("output", Arc::new(sink))?;
    let report = Runtime::new()?.run(job.build()?)?;
    Ok(report.node("output").map_or(0, |m| m.rows_in))
}

/// The stages of a Pipeline's JSON (`None` when `path` holds a single stage).
fn pipeline_stages(
    registry: &StageRegistry,
    path: &Path,
) -> Result<Option<Vec<AnyStage>>, AnyError> {
    let meta = read_json(path)?;
    let Some(stages) = meta.get("stages") else {
        return Ok(None);
    };
    Ok(Some(
        stages
            .as_array()
            .ok_or_else(|| format!("{}: 'stages' must be an array", path.display()))?
            .iter()
            .map(|s| registry.from_json(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?,
    ))
}

/// Run an `ml` command.
pub(crate) fn run(command: MlCommand) -> Result<(), AnyError> {
    // Every stage class the binary has, SQLTransformer included.
    let registry = ferroflow_sql::ml_stages();
    match command {
        MlCommand::Transform {
            stage,
            model_dir,
            model_data,
            input,
            output,
        } => {
            let stage = match (stage, model_dir) {
                (Some(s), None) => read_stage(&registry, &s)?,
                (None, Some(d)) => registry.load(&d)?,
                _ => return Err("give --stage or --model-dir".into()),
            };
            let table = read_table(&input)?;
            let tables = match stage {
                AnyStage::Operator(op) => {
                    if !model_data.is_empty() {
                        return Err(format!("{} takes no model data", op.class_name()).into());
                    }
                    op.transform(&[table])?
                }
                AnyStage::Model(mut m) => {
                    if !model_data.is_empty() {
                        let data = model_data
                            .iter()
                            .map(|p| read_table(p))
                            .collect::<Result<Vec<_>, _>>()?;
                        m.set_model_data(&data)?;
                    }
                    m.transform(&[table])?
                }
                AnyStage::Estimator(e) => {
                    return Err(format!(
                        "{} is an estimator: fit it first (ferroflow ml fit)",
                        e.class_name()
                    )
                    .into());
                }
            };
            write_tables(&tables, &output)
        }
        MlCommand::Fit {
            stage,
            input,
            model_dir,
        } => {
            let AnyStage::Estimator(est) = read_stage(&registry, &stage)? else {
                return Err(format!(
                    "{}: not an estimator (use ferroflow ml transform)",
                    stage.display()
                )
                .into());
            };
            let table = read_table(&input)?;
            let model = est.fit(&[table])?;
            model.save(&model_dir)?;
            Ok(())
        }
        MlCommand::FitOnline {
            stage,
            input,
            model_data_output,
            model_data,
            event_time_col,
        } => {
            let mut stages = match pipeline_stages(&registry, &stage)? {
                Some(stages) => stages,
                None => vec![read_stage(&registry, &stage)?],
            };
            let online: Vec<usize> = stages
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, AnyStage::Estimator(e) if e.as_online().is_some()))
                .map(|(i, _)| i)
                .collect();
            if online.is_empty() {
                return Err(format!("{}: no online estimator", stage.display()).into());
            }
            if online.len() != model_data_output.len() {
                return Err(format!(
                    "{}: {} online estimators, {} --model-data-output given (one each, in \
                     stage order)",
                    stage.display(),
                    online.len(),
                    model_data_output.len()
                )
                .into());
            }
            if let Some(p) = &model_data {
                let [i] = online[..] else {
                    return Err(format!(
                        "--model-data: {} has {} online estimators; give each its \
                         initialModelData in its paramMap",
                        stage.display(),
                        online.len()
                    )
                    .into());
                };
                let AnyStage::Estimator(e) = &mut stages[i] else {
                    unreachable!("an online estimator")
                };
                e.as_online_mut()
                    .expect("online")
                    .set_initial_model_data(&[read_table(p)?])
                    .map_err(|e| format!("{}: {e}", p.display()))?;
            }
            let table = read_table(&input)?;
            // One row per batch with event time, so watermarks follow every row.
            let rows_per_batch = if event_time_col.is_some() { 1 } else { 4096 };
            let et = event_time_col.as_deref();
            let versions = run_online(&table, rows_per_batch, et, |s| {
                if let [AnyStage::Estimator(_)] = &stages[..] {
                    let Some(AnyStage::Estimator(est)) = stages.pop() else {
                        unreachable!()
                    };
                    return Ok(vec![s.ml_fit_online("fit-online", Arc::from(est), et)?]);
                }
                Ok(s.ml_fit_pipeline_online("fit-online", stages, et)?
                    .into_iter()
                    .map(|f| f.model_data)
                    .collect())
            })?;
            for (v, path) in versions.iter().zip(&model_data_output) {
                io::write_table(v, path)?;
            }
            Ok(())
        }
        MlCommand::Progressive {
            stage,
            input,
            output,
        } => {
            let stages = match pipeline_stages(&registry, &stage)? {
                Some(stages) => stages,
                None => vec![read_stage(&registry, &stage)?],
            };
            let started = std::time::Instant::now();
            let rows = if is_parquet(&input) && is_parquet(&output) {
                progressive_parquet(&input, &output, stages)?
            } else {
                let table = read_table(&input)?;
                let scored = run_online(&table, 8192, None, |s| {
                    Ok(vec![s.ml_progressive("progressive", stages)?])
                })?;
                io::write_table(&scored[0], &output)?;
                table.num_rows() as u64
            };
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "progressive validation: {rows} rows in {secs:.3} s ({:.0} rows/s)",
                rows as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        MlCommand::ModelData { model_dir, output } => match registry.load(&model_dir)? {
            AnyStage::Model(m) => write_tables(&m.model_data()?, &output),
            _ => Err(format!("{}: not a model", model_dir.display()).into()),
        },
    }
}
