//! The built-in source and sink types, each with its typed settings.

use std::sync::Arc;

use ferroflow_connectors::{
    AdClicks, DirectoryWatchSource, FileFormat, FileSink, FileSource, GenColumn, GeneratorSource,
    PrintSink,
};
use ferroflow_engine::{Sink, Source};
use serde::Deserialize;

use crate::error::Result;
use crate::registry::{BuildContext, Factories, SinkFactory, SourceFactory};
use crate::spec::{ColumnSpec, Settings};

impl Factories {
    /// This crate's types: sources `file`, `directory` (also `dir`, `directory_watch`) and
    /// `generator` and `ad_clicks`; sinks `file` and `print` (also `stdout`).
    pub fn builtin() -> Self {
        let directory = Arc::new(DirectorySourceType);
        Factories::empty()
            .with_source("file", Arc::new(FileSourceType))
            .with_source("directory", directory.clone())
            .with_source("dir", directory.clone())
            .with_source("directory_watch", directory)
            .with_source("generator", Arc::new(GeneratorType))
            .with_source("ad_clicks", Arc::new(AdClicksType))
            .with_sink("file", Arc::new(FileSinkType))
            .with_sink("print", Arc::new(PrintSinkType))
            .with_sink("stdout", Arc::new(PrintSinkType))
    }
}

fn format(ctx: &BuildContext<'_>, name: &str) -> Result<FileFormat> {
    FileFormat::parse(name).map_err(|e| ctx.err_from(e))
}

/// `type: file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSourceSettings {
    /// A file, or a directory of files of one format (relative to the spec file).
    path: String,
    /// csv, tsv, json, parquet, arrow (default: from the extension).
    format: Option<String>,
    /// Declared schema (inferred from the files when absent).
    schema: Option<Vec<ColumnSpec>>,
    /// Rows per batch.
    batch_size: Option<usize>,
    /// Malformed rows go to this JSON-lines file instead of failing the job.
    dead_letter: Option<String>,
}

struct FileSourceType;

impl SourceFactory for FileSourceType {
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Source>> {
        let s: FileSourceSettings = ctx.parse(settings)?;
        let path = ctx.path(&s.path);
        let format = match &s.format {
            Some(f) => format(ctx, f)?,
            None => FileFormat::from_path(&path)
                .or_else(|| {
                    // A directory: take the format of its first data file.
                    std::fs::read_dir(&path)
                        .ok()?
                        .filter_map(|d| d.ok())
                        .find_map(|d| FileFormat::from_path(&d.path()))
                })
                .ok_or_else(|| {
                    ctx.err(format!(
                        "{}: cannot tell the format; set 'format'",
                        path.display()
                    ))
                })?,
        };
        let mut src = match &s.schema {
            Some(cols) => FileSource::with_declared_schema(&path, format, ctx.schema(cols)?),
            None => FileSource::new(&path, format),
        }
        .map_err(|e| ctx.err_from(e))?;
        if let Some(b) = s.batch_size {
            src = src.with_batch_size(b);
        }
        if let Some(d) = &s.dead_letter {
            src = src.with_dead_letter(ctx.path(d));
        }
        Ok(Arc::new(src))
    }
}

/// `type: directory`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectorySourceSettings {
    /// The watched directory (relative to the spec file).
    path: String,
    /// The format of its files.
    format: String,
    /// The schema (the directory may start empty).
    schema: Vec<ColumnSpec>,
    /// How often to list the directory (default 200ms).
    poll_interval: Option<String>,
    /// Rows per batch.
    batch_size: Option<usize>,
}

struct DirectorySourceType;

impl SourceFactory for DirectorySourceType {
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Source>> {
        let s: DirectorySourceSettings = ctx.parse(settings)?;
        let mut src = DirectoryWatchSource::new(
            ctx.path(&s.path),
            format(ctx, &s.format)?,
            ctx.schema(&s.schema)?,
        )
        .map_err(|e| ctx.err_from(e))?;
        if let Some(p) = &s.poll_interval {
            src = src.with_poll_interval(ctx.duration(p)?);
        }
        if let Some(b) = s.batch_size {
            src = src.with_batch_size(b);
        }
        Ok(Arc::new(src))
    }
}

/// `type: generator`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratorSettings {
    /// Rows in all (absent: unbounded).
    rows: Option<u64>,
    /// Rows per second, shared by the instances (absent: as fast as it goes).
    rate: Option<f64>,
    /// Seed (default 0).
    #[serde(default)]
    seed: u64,
    /// Rows per batch.
    batch_size: Option<usize>,
    /// The columns, in order.
    columns: Vec<GenColumnSettings>,
}

/// A generated column, by `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum GenColumnSettings {
    /// 0, 1, 2, ... (int64).
    Sequence { name: String },
    /// Uniform integers in `[min, max]`.
    Int { name: String, min: i64, max: i64 },
    /// Uniform floats in `[min, max)`.
    Float { name: String, min: f64, max: f64 },
    /// One of `values`, uniformly.
    Choice { name: String, values: Vec<String> },
    /// Event time: `start_ms + row * step_ms`, shuffled by up to `max_disorder_ms`.
    EventTime {
        name: String,
        #[serde(default)]
        start_ms: i64,
        #[serde(default = "one")]
        step_ms: i64,
        #[serde(default)]
        max_disorder_ms: i64,
    },
}

fn one() -> i64 {
    1
}

struct GeneratorType;

impl SourceFactory for GeneratorType {
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Source>> {
        let s: GeneratorSettings = ctx.parse(settings)?;
        let columns = s
            .columns
            .into_iter()
            .map(|c| {
                Ok(match c {
                    GenColumnSettings::Sequence { name } => (name, GenColumn::Sequence),
                    GenColumnSettings::Int { name, min, max } => (name, GenColumn::Int { min, max }),
                    GenColumnSettings::Float { name, min, max } => {
                        if !(min.is_finite() && max.is_finite() && min <= max) {
                            return Err(ctx.err(format!(
                                "generator column '{name}': min {min} and max {max} must be finite with min <= max"
                            )));
                        }
                        (name, GenColumn::Float { min, max })
                    }
                    GenColumnSettings::Choice { name, values } => (name, GenColumn::Choice(values)),
                    GenColumnSettings::EventTime {
                        name,
                        start_ms,
                        step_ms,
                        max_disorder_ms,
                    } => {
                        if max_disorder_ms < 0 {
                            return Err(ctx.err(format!(
                                "generator column '{name}': max_disorder_ms must not be negative"
                            )));
                        }
                        (
                            name,
                            GenColumn::EventTime {
                                start_ms,
                                step_ms,
                                max_disorder_ms,
                            },
                        )
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut g = GeneratorSource::new(columns, s.rows, s.seed).map_err(|e| ctx.err_from(e))?;
        if let Some(r) = s.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(ctx.err(format!(
                    "rate {r} must be a positive number of rows per second"
                )));
            }
            g = g.with_rate(r);
        }
        if let Some(b) = s.batch_size {
            g = g.with_batch_size(b);
        }
        Ok(Arc::new(g))
    }
}

/// `type: ad_clicks`: simulated ad impressions with clicks from a drifting click model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdClicksSettings {
    /// Rows in all (absent: unbounded).
    rows: Option<u64>,
    /// Rows per second, shared by the instances (absent: as fast as it goes).
    rate: Option<f64>,
    /// Seed (default 0).
    #[serde(default)]
    seed: u64,
    /// Rows per batch.
    batch_size: Option<usize>,
    /// Distinct users (default 1000).
    users: Option<u64>,
    /// Distinct ads (default 100).
    ads: Option<u64>,
    /// Rows over which the ad effects turn by a quarter (default 100000; 0: no drift).
    drift_rows: Option<u64>,
    /// Click rate of an impression whose effects are all 0 (default 0.05).
    base_rate: Option<f64>,
    /// Event time of row 0, ms since the epoch (default 2026-01-01 00:00 UTC).
    start_ms: Option<i64>,
    /// Event time between two rows, ms (default 100).
    step_ms: Option<i64>,
}

struct AdClicksType;

impl SourceFactory for AdClicksType {
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Source>> {
        let s: AdClicksSettings = ctx.parse(settings)?;
        let mut g = AdClicks::new(s.users.unwrap_or(1000), s.ads.unwrap_or(100), s.seed)
            .map_err(|e| ctx.err_from(e))?;
        if let Some(start) = s.start_ms {
            g = g.with_start_ms(start);
        }
        if let Some(step) = s.step_ms {
            g = g.with_step_ms(step).map_err(|e| ctx.err_from(e))?;
        }
        if let Some(d) = s.drift_rows {
            g = g.with_drift_rows(d);
        }
        if let Some(r) = s.base_rate {
            g = g.with_base_rate(r).map_err(|e| ctx.err_from(e))?;
        }
        let mut src = GeneratorSource::from_generator(Arc::new(g), s.rows);
        if let Some(r) = s.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(ctx.err(format!(
                    "rate {r} must be a positive number of rows per second"
                )));
            }
            src = src.with_rate(r);
        }
        if let Some(b) = s.batch_size {
            src = src.with_batch_size(b);
        }
        Ok(Arc::new(src))
    }
}

/// `type: file` (sink).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSinkSettings {
    /// Output file, or a directory of part files (relative to the spec file).
    path: String,
    /// csv, tsv, json, parquet, arrow (default: from the extension).
    format: Option<String>,
}

struct FileSinkType;

impl SinkFactory for FileSinkType {
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>> {
        let s: FileSinkSettings = ctx.parse(settings)?;
        let path = ctx.path(&s.path);
        Ok(match &s.format {
            Some(f) => Arc::new(FileSink::new(&path, format(ctx, f)?)),
            None => Arc::new(FileSink::from_path(&path).map_err(|e| ctx.err_from(e))?),
        })
    }
}

/// `type: print`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrintSinkSettings {
    /// Most rows to print.
    max_rows: Option<usize>,
}

struct PrintSinkType;

impl SinkFactory for PrintSinkType {
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>> {
        let s: PrintSinkSettings = ctx.parse(settings)?;
        Ok(Arc::new(match s.max_rows {
            Some(n) => PrintSink::with_max_rows(n),
            None => PrintSink::new(),
        }))
    }
}
