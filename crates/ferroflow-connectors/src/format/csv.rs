//! CSV decoding into Arrow with row-precise errors.
//!
//! Each field is parsed into a staging slot of its column first and the row is committed only
//! when every field parsed, so a bad row is either a clear error (file, line, column) or goes
//! whole to the dead-letter file, and never leaves a half-written row behind.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, PrimitiveBuilder, StringBuilder};
use arrow_array::types::*;
use arrow_array::{ArrayRef, ArrowPrimitiveType, RecordBatch};
use arrow_cast::parse::Parser;
use arrow_schema::{DataType, SchemaRef, TimeUnit};

use crate::deadletter::DeadLetter;
use crate::error::{BoxError, ConnectorError, Result};
use crate::format::{BatchReader, BatchWriter, Format, ReadOptions, open_file};

/// CSV dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// The first line names the columns.
    pub has_header: bool,
    /// Field separator.
    pub delimiter: u8,
}

impl CsvOptions {
    /// A header line, comma separated.
    pub const DEFAULT: CsvOptions = CsvOptions {
        has_header: true,
        delimiter: b',',
    };
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions::DEFAULT
    }
}

trait ColumnBuilder: Send {
    /// Parse `s` into the staging slot.
    fn stage(&mut self, s: &str) -> std::result::Result<(), String>;
    fn stage_null(&mut self);
    /// Append the staged value.
    fn commit(&mut self);
    fn finish(&mut self) -> ArrayRef;
}

struct Prim<T: ArrowPrimitiveType> {
    builder: PrimitiveBuilder<T>,
    staged: Option<T::Native>,
    data_type: DataType,
}

impl<T: ArrowPrimitiveType + Parser> ColumnBuilder for Prim<T> {
    fn stage(&mut self, s: &str) -> std::result::Result<(), String> {
        match T::parse(s.trim()) {
            Some(v) => {
                self.staged = Some(v);
                Ok(())
            }
            None => Err(format!("cannot parse '{s}' as {}", self.data_type)),
        }
    }
    fn stage_null(&mut self) {
        self.staged = None;
    }
    fn commit(&mut self) {
        self.builder.append_option(self.staged.take());
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.builder.finish().with_data_type(self.data_type.clone()))
    }
}

struct Str {
    builder: StringBuilder,
    staged: Option<String>,
}

impl ColumnBuilder for Str {
    fn stage(&mut self, s: &str) -> std::result::Result<(), String> {
        let slot = self.staged.get_or_insert_with(String::new);
        slot.clear();
        slot.push_str(s);
        Ok(())
    }
    fn stage_null(&mut self) {
        self.staged = None;
    }
    fn commit(&mut self) {
        match &self.staged {
            Some(s) => self.builder.append_value(s),
            None => self.builder.append_null(),
        }
        self.staged = None;
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.builder.finish())
    }
}

struct Bool {
    builder: BooleanBuilder,
    staged: Option<bool>,
}

impl ColumnBuilder for Bool {
    fn stage(&mut self, s: &str) -> std::result::Result<(), String> {
        self.staged = Some(match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => true,
            "false" | "f" | "0" | "no" => false,
            _ => return Err(format!("cannot parse '{s}' as Boolean")),
        });
        Ok(())
    }
    fn stage_null(&mut self) {
        self.staged = None;
    }
    fn commit(&mut self) {
        self.builder.append_option(self.staged.take());
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.builder.finish())
    }
}

/// Timestamps: an integer is taken in the column's unit, anything else as a date-time string.
struct Ts<T: ArrowPrimitiveType<Native = i64>> {
    inner: Prim<T>,
}

impl<T: ArrowPrimitiveType<Native = i64> + Parser> ColumnBuilder for Ts<T> {
    fn stage(&mut self, s: &str) -> std::result::Result<(), String> {
        match s.trim().parse::<i64>() {
            Ok(v) => {
                self.inner.staged = Some(v);
                Ok(())
            }
            Err(_) => self.inner.stage(s),
        }
    }
    fn stage_null(&mut self) {
        self.inner.stage_null();
    }
    fn commit(&mut self) {
        self.inner.commit();
    }
    fn finish(&mut self) -> ArrayRef {
        self.inner.finish()
    }
}

fn ts<T: ArrowPrimitiveType<Native = i64> + Parser>(dt: &DataType) -> Box<dyn ColumnBuilder> {
    Box::new(Ts::<T> {
        inner: Prim {
            builder: PrimitiveBuilder::new(),
            staged: None,
            data_type: dt.clone(),
        },
    })
}

fn prim<T: ArrowPrimitiveType + Parser>(dt: &DataType) -> Box<dyn ColumnBuilder> {
    Box::new(Prim::<T> {
        builder: PrimitiveBuilder::new(),
        staged: None,
        data_type: dt.clone(),
    })
}

fn builder_for(dt: &DataType, column: &str) -> Result<Box<dyn ColumnBuilder>> {
    Ok(match dt {
        DataType::Int8 => prim::<Int8Type>(dt),
        DataType::Int16 => prim::<Int16Type>(dt),
        DataType::Int32 => prim::<Int32Type>(dt),
        DataType::Int64 => prim::<Int64Type>(dt),
        DataType::UInt8 => prim::<UInt8Type>(dt),
        DataType::UInt16 => prim::<UInt16Type>(dt),
        DataType::UInt32 => prim::<UInt32Type>(dt),
        DataType::UInt64 => prim::<UInt64Type>(dt),
        DataType::Float32 => prim::<Float32Type>(dt),
        DataType::Float64 => prim::<Float64Type>(dt),
        DataType::Date32 => prim::<Date32Type>(dt),
        DataType::Date64 => prim::<Date64Type>(dt),
        DataType::Timestamp(TimeUnit::Second, _) => ts::<TimestampSecondType>(dt),
        DataType::Timestamp(TimeUnit::Millisecond, _) => ts::<TimestampMillisecondType>(dt),
        DataType::Timestamp(TimeUnit::Microsecond, _) => ts::<TimestampMicrosecondType>(dt),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => ts::<TimestampNanosecondType>(dt),
        DataType::Utf8 => Box::new(Str {
            builder: StringBuilder::new(),
            staged: None,
        }),
        DataType::Boolean => Box::new(Bool {
            builder: BooleanBuilder::new(),
            staged: None,
        }),
        other => {
            return Err(ConnectorError::Config(format!(
                "CSV column '{column}' has type {other}, which CSV cannot carry"
            )));
        }
    })
}

/// Reads one CSV file as batches of `schema`.
pub(crate) struct CsvFileReader {
    path: String,
    reader: csv::Reader<BufReader<File>>,
    schema: SchemaRef,
    builders: Vec<Box<dyn ColumnBuilder>>,
    batch_size: usize,
    record: csv::StringRecord,
    dead_letter: Option<Arc<DeadLetter>>,
    done: bool,
    /// A bad row found after good ones: the good rows go out first, then this error.
    pending_error: Option<ConnectorError>,
}

impl CsvFileReader {
    pub(crate) fn open(
        path: &Path,
        schema: SchemaRef,
        options: CsvOptions,
        batch_size: usize,
        dead_letter: Option<Arc<DeadLetter>>,
    ) -> Result<Self> {
        let display = path.display().to_string();
        let file = open_file(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(options.has_header)
            .delimiter(options.delimiter)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 20, file));
        if options.has_header {
            let header = reader
                .headers()
                .map_err(|e| ConnectorError::format(&display, e))?
                .clone();
            for (i, f) in schema.fields().iter().enumerate() {
                if header.get(i).map(str::trim) != Some(f.name().as_str()) {
                    return Err(ConnectorError::format(
                        &display,
                        format!(
                            "header column {} is '{}', the schema expects '{}'",
                            i + 1,
                            header.get(i).unwrap_or("<missing>"),
                            f.name()
                        ),
                    ));
                }
            }
        }
        let builders = schema
            .fields()
            .iter()
            .map(|f| builder_for(f.data_type(), f.name()))
            .collect::<Result<_>>()?;
        Ok(CsvFileReader {
            path: display,
            reader,
            schema,
            builders,
            batch_size,
            record: csv::StringRecord::new(),
            dead_letter,
            done: false,
            pending_error: None,
        })
    }

    /// Stage every field of the current record; the first failure is (column, reason).
    fn stage_row(&mut self) -> std::result::Result<(), (String, String)> {
        let n = self.schema.fields().len();
        if self.record.len() != n {
            return Err((
                self.schema
                    .field(self.record.len().min(n - 1))
                    .name()
                    .clone(),
                format!("row has {} fields, expected {n}", self.record.len()),
            ));
        }
        for (i, field) in self.schema.fields().iter().enumerate() {
            let raw = &self.record[i];
            let b = &mut self.builders[i];
            if raw.is_empty() && field.data_type() != &DataType::Utf8 {
                if !field.is_nullable() {
                    return Err((
                        field.name().clone(),
                        "empty value in a non-null column".into(),
                    ));
                }
                b.stage_null();
            } else {
                b.stage(raw).map_err(|r| (field.name().clone(), r))?;
            }
        }
        Ok(())
    }
}

impl BatchReader for CsvFileReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        let mut rows = 0;
        while rows < self.batch_size {
            let more = self
                .reader
                .read_record(&mut self.record)
                .map_err(|e| ConnectorError::format(&self.path, e))?;
            if !more {
                self.done = true;
                break;
            }
            let line = self.record.position().map_or(0, |p| p.line());
            match self.stage_row() {
                Ok(()) => {
                    for b in &mut self.builders {
                        b.commit();
                    }
                    rows += 1;
                }
                Err((column, reason)) => match &self.dead_letter {
                    Some(dl) => {
                        let raw: Vec<&str> = self.record.iter().collect();
                        dl.record(&self.path, line, &column, &reason, &raw.join(","))?;
                    }
                    None => {
                        let e = ConnectorError::BadRow {
                            file: self.path.clone(),
                            line,
                            column,
                            reason,
                        };
                        if rows == 0 {
                            return Err(e);
                        }
                        // Deliver the rows accepted before the bad one, then fail.
                        self.pending_error = Some(e);
                        break;
                    }
                },
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        let cols = self.builders.iter_mut().map(|b| b.finish()).collect();
        RecordBatch::try_new(self.schema.clone(), cols)
            .map(Some)
            .map_err(|e| ConnectorError::format(&self.path, e))
    }

    fn position(&self) -> Option<u64> {
        Some(self.reader.position().byte())
    }
}

/// CSV in one dialect.
pub(crate) struct Csv(pub(crate) CsvOptions);

impl Format for Csv {
    /// Arrow's inference over the first 1000 rows.
    fn schema_of(&self, path: &Path) -> Result<SchemaRef> {
        let display = path.display().to_string();
        let file = open_file(path)?;
        let format = arrow_csv::reader::Format::default()
            .with_header(self.0.has_header)
            .with_delimiter(self.0.delimiter);
        let (schema, _) = format
            .infer_schema(BufReader::new(file), Some(1000))
            .map_err(|e| ConnectorError::format(&display, e))?;
        Ok(Arc::new(schema))
    }

    fn open(&self, path: &Path, read: ReadOptions) -> Result<Box<dyn BatchReader>> {
        Ok(Box::new(CsvFileReader::open(
            path,
            read.schema,
            self.0,
            read.batch_size,
            read.dead_letter,
        )?))
    }

    /// Nested columns have no CSV form.
    fn check_writable(&self, schema: &arrow_schema::Schema) -> Result<()> {
        match schema.fields().iter().find(|f| f.data_type().is_nested()) {
            Some(f) => Err(ConnectorError::Config(format!(
                "column '{}' of type {} cannot be written as CSV",
                f.name(),
                f.data_type()
            ))),
            None => Ok(()),
        }
    }

    fn create(&self, file: File, _: &SchemaRef, _: &str) -> Result<Box<dyn BatchWriter>> {
        Ok(Box::new(
            arrow_csv::WriterBuilder::new()
                .with_header(self.0.has_header)
                .with_delimiter(self.0.delimiter)
                .build(std::io::BufWriter::new(file)),
        ))
    }
}

impl BatchWriter for arrow_csv::Writer<std::io::BufWriter<File>> {
    fn write(&mut self, batch: &RecordBatch) -> std::result::Result<(), BoxError> {
        Ok(arrow_csv::Writer::write(self, batch)?)
    }

    fn finish(self: Box<Self>) -> std::result::Result<File, BoxError> {
        Ok(self.into_inner().into_inner().map_err(|e| e.into_error())?)
    }
}
