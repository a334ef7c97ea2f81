//! Batch SQL through DataFusion over files (`ferroflow sql`).

use std::path::Path;

use arrow_array::RecordBatch;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use ferroflow_connectors::FileFormat;

use crate::error::{Result, SqlError};

/// A DataFusion session with files registered as tables.
pub struct BatchSql {
    ctx: SessionContext,
    rt: tokio::runtime::Runtime,
}

impl BatchSql {
    /// A new session. Queries run on an internal single-threaded runtime plus DataFusion's
    /// own partitions.
    pub fn new() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SqlError::Table(format!("starting the SQL runtime: {e}")))?;
        Ok(BatchSql {
            ctx: SessionContext::new(),
            rt,
        })
    }

    /// Register a file (or a directory of files of one format) as table `name`; the format
    /// comes from the extension.
    pub fn register(&self, name: &str, path: &Path) -> Result<()> {
        let format = if path.is_dir() {
            std::fs::read_dir(path)
                .map_err(|e| SqlError::Table(format!("{}: {e}", path.display())))?
                .filter_map(|e| e.ok())
                .filter_map(|e| FileFormat::from_path(&e.path()))
                .next()
        } else {
            FileFormat::from_path(path)
        }
        .ok_or_else(|| {
            SqlError::Table(format!(
                "{}: unknown file format (use .csv, .tsv, .json/.jsonl, .parquet)",
                path.display()
            ))
        })?;
        if !path.exists() {
            return Err(SqlError::Table(format!(
                "table '{name}': {} does not exist",
                path.display()
            )));
        }
        let p = path.to_string_lossy().to_string();
        let ctx = &self.ctx;
        let ctxs = format!("registering table '{name}' from {p}");
        self.rt
            .block_on(async {
                match format {
                    FileFormat::Csv(o) => {
                        let ext = if o.delimiter == b'\t' { ".tsv" } else { ".csv" };
                        ctx.register_csv(
                            name,
                            &p,
                            CsvReadOptions::new()
                                .has_header(o.has_header)
                                .delimiter(o.delimiter)
                                .file_extension(ext),
                        )
                        .await
                    }
                    FileFormat::JsonLines => {
                        let ext = Path::new(&p)
                            .extension()
                            .map(|e| format!(".{}", e.to_string_lossy()))
                            .unwrap_or_else(|| ".json".into());
                        ctx.register_json(name, &p, JsonReadOptions::default().file_extension(&ext))
                            .await
                    }
                    FileFormat::Parquet => {
                        ctx.register_parquet(name, &p, ParquetReadOptions::default())
                            .await
                    }
                    FileFormat::ArrowIpc => Err(datafusion::error::DataFusionError::Plan(
                        "Arrow IPC tables are not supported by batch SQL yet".into(),
                    )),
                }
            })
            .map_err(|e| SqlError::df(ctxs, e))
    }

    /// Run a query and collect its result.
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.rt.block_on(async {
            let df = self
                .ctx
                .sql(sql)
                .await
                .map_err(|e| SqlError::df(format!("query '{sql}'"), e))?;
            df.collect()
                .await
                .map_err(|e| SqlError::df(format!("query '{sql}'"), e))
        })
    }

    /// The schema a query would produce, planned without running it.
    pub fn schema_of(&self, sql: &str) -> Result<arrow_schema::SchemaRef> {
        self.rt.block_on(async {
            let df = self
                .ctx
                .sql(sql)
                .await
                .map_err(|e| SqlError::df(format!("query '{sql}'"), e))?;
            Ok(std::sync::Arc::new(df.schema().as_arrow().clone()))
        })
    }

    /// The DataFusion session, for anything beyond registering files and querying.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}
