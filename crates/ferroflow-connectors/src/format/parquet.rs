//! Apache Parquet: files split by row group among parallel readers, written in row groups of
//! 64 Ki rows.

use std::fs::File;
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{BoxError, ConnectorError, Result};
use crate::format::{BatchReader, BatchWriter, Format, ReadOptions, check_file_schema, open_file};

/// Rows per Parquet row group written. A writer holds a whole row group's encoded pages in
/// memory until it is complete; the parquet crate's default (about a million rows) made a
/// streaming sink hold that much and grow its buffers by copying.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// How Parquet files are written here: row groups of 64 Ki rows, dictionary encoding only
/// for string columns, where values repeat (on doubles it costs most of the write and falls
/// back to plain pages).
pub fn parquet_writer_properties(schema: &Schema) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for f in schema.fields() {
        if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
        }
    }
    props.build()
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    ParquetRecordBatchReaderBuilder::try_new(open_file(path)?)
        .map_err(|e| ConnectorError::format(path.display(), e))
}

/// Apache Parquet.
pub(crate) struct Parquet;

impl Format for Parquet {
    /// The schema stored in the file.
    fn schema_of(&self, path: &Path) -> Result<SchemaRef> {
        Ok(builder(path)?.schema().clone())
    }

    fn open(&self, path: &Path, read: ReadOptions) -> Result<Box<dyn BatchReader>> {
        let display = path.display().to_string();
        let b = builder(path)?;
        check_file_schema(&display, b.schema(), &read.schema)?;
        let b = match read.row_groups {
            Some(rg) => b.with_row_groups(rg),
            None => b,
        };
        let reader = b
            .with_batch_size(read.batch_size)
            .build()
            .map_err(|e| ConnectorError::format(&display, e))?;
        Ok(Box::new(ParquetReader {
            reader,
            path: display,
        }))
    }

    fn row_groups(&self, path: &Path) -> Result<Option<Vec<u64>>> {
        let b = builder(path)?;
        let sizes = b.metadata().row_groups().iter();
        Ok(Some(
            sizes.map(|rg| rg.compressed_size().max(0) as u64).collect(),
        ))
    }

    fn create(&self, file: File, schema: &SchemaRef, path: &str) -> Result<Box<dyn BatchWriter>> {
        let props = parquet_writer_properties(schema);
        let w = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| ConnectorError::format(path, e))?;
        Ok(Box::new(w))
    }
}

struct ParquetReader {
    reader: ParquetRecordBatchReader,
    path: String,
}

impl BatchReader for ParquetReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        self.reader
            .next()
            .transpose()
            .map_err(|e| ConnectorError::format(&self.path, e))
    }
}

impl BatchWriter for ArrowWriter<File> {
    fn write(&mut self, batch: &RecordBatch) -> std::result::Result<(), BoxError> {
        Ok(ArrowWriter::write(self, batch)?)
    }

    fn finish(self: Box<Self>) -> std::result::Result<File, BoxError> {
        Ok(self.into_inner()?)
    }
}
