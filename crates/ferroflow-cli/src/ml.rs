//! `ferroflow ml`: run Flink ML compatible stages on files.
//!
//! The contract (relied on by users and by the conformance tests):
//! - `ml transform --stage STAGE.json --input IN --output OUT` runs a stage that needs no fit;
//!   with `--model-data DATA.jsonl` a model whose data is given (Flink ML's `setModelData`);
//! - `ml fit --stage STAGE.json --input IN --model-dir DIR` fits an estimator and saves it;
//! - `ml transform --model-dir DIR --input IN --output OUT` applies a saved model;
//! - `ml model-data --model-dir DIR --output OUT.jsonl` writes a model's data as rows.
//!
//! STAGE.json is Flink ML's metadata shape `{"className": ..., "paramMap": {...}}`. Files are
//! read and written by extension: `.jsonl` (the conformance encoding), `.parquet`, `.csv`.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use clap::Subcommand;
use ferroflow_ml::{AnyStage, io};

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

fn read_stage(path: &Path) -> Result<AnyStage, AnyError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(ferroflow_ml::stage_from_json(&meta).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// Run an `ml` command.
pub(crate) fn run(command: MlCommand) -> Result<(), AnyError> {
    ferroflow_sql::register_ml_stages();
    match command {
        MlCommand::Transform {
            stage,
            model_dir,
            model_data,
            input,
            output,
        } => {
            let stage = match (stage, model_dir) {
                (Some(s), None) => read_stage(&s)?,
                (None, Some(d)) => ferroflow_ml::load_stage(&d)?,
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
            let AnyStage::Estimator(est) = read_stage(&stage)? else {
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
        MlCommand::ModelData { model_dir, output } => match ferroflow_ml::load_stage(&model_dir)? {
            AnyStage::Model(m) => write_tables(&m.model_data()?, &output),
            _ => Err(format!("{}: not a model", model_dir.display()).into()),
        },
    }
}
