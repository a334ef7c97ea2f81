//! File formats: one module per format, each implementing [`Format`]; [`FileFormat`] names
//! one (as a spec or a file extension does) and is the one place that maps a name to its
//! module.
//!
//! The file source and sink see a format only through [`Format`]: what a new format needs is a
//! module here, a [`FileFormat`] variant and its row in [`NAMES`].

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};

use crate::deadletter::DeadLetter;
use crate::error::{BoxError, ConnectorError, Result};

pub(crate) mod csv;
pub mod ipc;
pub(crate) mod json;
pub(crate) mod parquet;

pub use self::csv::CsvOptions;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma (or other) separated values.
    Csv(CsvOptions),
    /// One JSON object per line.
    JsonLines,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC file format (Feather v2).
    ArrowIpc,
}

const TSV: CsvOptions = CsvOptions {
    has_header: true,
    delimiter: b'\t',
};

/// Every format's names: the file extensions (also accepted as spec names), then the names
/// only a spec uses. The first extension is the one files are written with.
const NAMES: &[(&[&str], &[&str], FileFormat)] = &[
    (&["csv"], &[], FileFormat::Csv(CsvOptions::DEFAULT)),
    (&["tsv"], &[], FileFormat::Csv(TSV)),
    (
        &["jsonl", "json", "ndjson"],
        &["json_lines"],
        FileFormat::JsonLines,
    ),
    (&["parquet", "pq"], &[], FileFormat::Parquet),
    (
        &["arrow", "ipc", "feather"],
        &["arrow_ipc"],
        FileFormat::ArrowIpc,
    ),
];

impl FileFormat {
    /// Guess the format from a file extension (any case).
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        NAMES
            .iter()
            .find(|(exts, _, _)| exts.contains(&ext.as_str()))
            .map(|(_, _, f)| *f)
    }

    /// Parse a format name as written in job specs: an extension or a spec name, any case.
    pub fn parse(name: &str) -> Result<FileFormat> {
        let lower = name.to_ascii_lowercase();
        NAMES
            .iter()
            .find(|(exts, names, _)| {
                exts.contains(&lower.as_str()) || names.contains(&lower.as_str())
            })
            .map(|(_, _, f)| *f)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES
                    .iter()
                    .flat_map(|(e, n, _)| e.iter().chain(*n))
                    .copied()
                    .collect();
                ConnectorError::Config(format!(
                    "unknown file format '{name}' (known: {})",
                    known.join(", ")
                ))
            })
    }

    /// The usual extension: the first of its row in [`NAMES`] (a CSV dialect that has no
    /// row of its own takes the row with its delimiter, else plain CSV's).
    pub fn extension(&self) -> &'static str {
        let rank = |f: &FileFormat| match (f, self) {
            (a, b) if a == b => 0,
            (FileFormat::Csv(a), FileFormat::Csv(b)) if a.delimiter == b.delimiter => 1,
            (a, b) if a.same_kind(b) => 2,
            _ => 3,
        };
        NAMES
            .iter()
            .filter(|(_, _, f)| rank(f) < 3)
            .min_by_key(|(_, _, f)| rank(f))
            .map(|(exts, _, _)| exts[0])
            .expect("every format has a row in NAMES")
    }

    /// Same format, whatever its options (a CSV file matches any CSV dialect).
    fn same_kind(&self, other: &FileFormat) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// Is `path` a file of this format, by its extension.
    pub(crate) fn matches(&self, path: &Path) -> bool {
        FileFormat::from_path(path).is_some_and(|f| f.same_kind(self))
    }

    /// Read the schema of a file (stored for Parquet and IPC, inferred for CSV and JSON).
    pub fn schema_of(&self, path: &Path) -> Result<SchemaRef> {
        self.format().schema_of(path)
    }

    /// The module that reads and writes this format.
    pub(crate) fn format(&self) -> Box<dyn Format> {
        match self {
            FileFormat::Csv(o) => Box::new(csv::Csv(*o)),
            FileFormat::JsonLines => Box::new(json::JsonLines),
            FileFormat::Parquet => Box::new(parquet::Parquet),
            FileFormat::ArrowIpc => Box::new(ipc::ArrowIpc),
        }
    }
}

/// How the file source and sink read and write one format. Its methods run on the engine's
/// I/O threads.
pub(crate) trait Format: Send + Sync {
    /// The schema of a file: stored (Parquet, Arrow IPC) or inferred from its first rows.
    /// Called when a source is built without a declared schema.
    fn schema_of(&self, path: &Path) -> Result<SchemaRef>;

    /// Open a file to read as batches of `read.schema`. Called when a reader reaches the
    /// file (or a row-group unit of it).
    fn open(&self, path: &Path, read: ReadOptions) -> Result<Box<dyn BatchReader>>;

    /// The compressed sizes of a file's row groups, which parallel readers may share; `None`
    /// when the format is read by whole files only. Called when a source has more readers
    /// than files.
    fn row_groups(&self, _path: &Path) -> Result<Option<Vec<u64>>> {
        Ok(None)
    }

    /// Refuse a schema this format cannot write. Called when a job with the sink is built.
    fn check_writable(&self, _schema: &Schema) -> Result<()> {
        Ok(())
    }

    /// Start writing `file` (shown as `path` in errors) with rows of `schema`. Called when a
    /// sink writer opens a part file.
    fn create(&self, file: File, schema: &SchemaRef, path: &str) -> Result<Box<dyn BatchWriter>>;
}

/// What a reader of one file is asked for.
pub(crate) struct ReadOptions {
    /// The rows to produce (a file that differs in names or types is refused).
    pub(crate) schema: SchemaRef,
    /// Rows per batch.
    pub(crate) batch_size: usize,
    /// Where malformed rows go instead of failing the read (row-oriented formats).
    pub(crate) dead_letter: Option<Arc<DeadLetter>>,
    /// Only these row groups (formats that report [`Format::row_groups`]).
    pub(crate) row_groups: Option<Vec<usize>>,
}

/// Reads one file.
pub(crate) trait BatchReader: Send {
    /// The next batch, `None` at the end of the file.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;

    /// Bytes of the file consumed so far, where the format can tell (for progress).
    fn position(&self) -> Option<u64> {
        None
    }
}

/// Writes one file.
pub(crate) trait BatchWriter: Send {
    /// Append a batch.
    fn write(&mut self, batch: &RecordBatch) -> std::result::Result<(), BoxError>;

    /// Write what the format needs at the end (a footer), flush, and hand back the file so
    /// that the sink can sync it.
    fn finish(self: Box<Self>) -> std::result::Result<File, BoxError>;
}

/// Refuse a file whose stored schema differs from the source's in names or types.
pub(crate) fn check_file_schema(path: &str, found: &Schema, schema: &Schema) -> Result<()> {
    let same = found.fields().len() == schema.fields().len()
        && found
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if same {
        return Ok(());
    }
    Err(ConnectorError::format(
        path,
        format!("file schema ({found}) differs from the source schema ({schema})"),
    ))
}

/// Open `path` for reading, the error naming it.
pub(crate) fn open_file(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| ConnectorError::io(path.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_extension_and_spec_name_parses_and_extensions_round_trip() {
        for (exts, names, format) in NAMES {
            for n in exts.iter().chain(*names) {
                assert_eq!(FileFormat::parse(n).unwrap(), *format, "{n}");
                assert_eq!(
                    FileFormat::parse(&n.to_uppercase()).unwrap(),
                    *format,
                    "{n}"
                );
            }
            for e in *exts {
                let p = format!("data/part-0.{e}");
                assert_eq!(FileFormat::from_path(Path::new(&p)), Some(*format), "{e}");
            }
            assert_eq!(format.extension(), exts[0]);
            let written = format!("x.{}", format.extension());
            assert_eq!(FileFormat::from_path(Path::new(&written)), Some(*format));
        }
        assert_eq!(FileFormat::from_path(Path::new("x.txt")), None);
        assert_eq!(FileFormat::from_path(Path::new("noext")), None);
        let e = FileFormat::parse("avro").unwrap_err().to_string();
        assert!(
            e.contains("'avro'") && e.contains("parquet") && e.contains("json_lines"),
            "{e}"
        );
    }

    #[test]
    fn any_csv_dialect_matches_csv_files() {
        let semicolon = FileFormat::Csv(CsvOptions {
            has_header: false,
            delimiter: b';',
        });
        assert_eq!(semicolon.extension(), "csv");
        let headerless_tabs = FileFormat::Csv(CsvOptions {
            has_header: false,
            delimiter: b'\t',
        });
        assert_eq!(headerless_tabs.extension(), "tsv");
        assert!(semicolon.matches(Path::new("a.csv")) && semicolon.matches(Path::new("a.tsv")));
        assert!(!FileFormat::Parquet.matches(Path::new("a.csv")));
        assert!(FileFormat::JsonLines.matches(Path::new("a.ndjson")));
    }
}
