//! JSON lines decoding into Arrow with line-precise errors.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::{ReaderBuilder, infer_json_schema_from_seekable};
use arrow_schema::SchemaRef;

use crate::deadletter::DeadLetter;
use crate::error::{BoxError, ConnectorError, Result};
use crate::format::{BatchReader, BatchWriter, Format, ReadOptions, open_file};

/// Reads one JSON-lines file as batches of `schema`.
pub(crate) struct JsonFileReader {
    path: String,
    lines: std::io::Lines<BufReader<File>>,
    line_no: u64,
    bytes: u64,
    schema: SchemaRef,
    batch_size: usize,
    dead_letter: Option<Arc<DeadLetter>>,
    /// A bad line found after good ones: the good lines go out first, then this error.
    pending_error: Option<ConnectorError>,
}

impl JsonFileReader {
    pub(crate) fn open(
        path: &Path,
        schema: SchemaRef,
        batch_size: usize,
        dead_letter: Option<Arc<DeadLetter>>,
    ) -> Result<Self> {
        let display = path.display().to_string();
        let file = open_file(path)?;
        Ok(JsonFileReader {
            path: display,
            lines: BufReader::with_capacity(1 << 20, file).lines(),
            line_no: 0,
            bytes: 0,
            schema,
            batch_size,
            dead_letter,
            pending_error: None,
        })
    }

    fn decode(&self, lines: &[(u64, String)]) -> std::result::Result<Option<RecordBatch>, String> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(lines.len().max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for (_, l) in lines {
            decoder.decode(l.as_bytes()).map_err(|e| e.to_string())?;
            decoder.decode(b"\n").map_err(|e| e.to_string())?;
        }
        decoder.flush().map_err(|e| e.to_string())
    }
}

impl BatchReader for JsonFileReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let mut lines = Vec::with_capacity(self.batch_size);
        while lines.len() < self.batch_size {
            let Some(line) = self.lines.next() else { break };
            let line = line.map_err(|e| ConnectorError::io(&self.path, e))?;
            self.line_no += 1;
            self.bytes += line.len() as u64 + 1;
            if !line.trim().is_empty() {
                lines.push((self.line_no, line));
            }
        }
        if lines.is_empty() {
            return Ok(None);
        }
        // Arrow's JSON decoder is lenient (it accepts a missing comma, for one), so each line
        // is checked as strict JSON first; the check allocates nothing.
        let strict = lines
            .iter()
            .all(|(_, l)| serde_json::from_str::<serde::de::IgnoredAny>(l).is_ok());
        if strict && let Ok(b) = self.decode(&lines) {
            return Ok(b);
        }
        // Find the bad lines one by one; keep the good ones.
        let mut good = Vec::with_capacity(lines.len());
        for (n, l) in lines {
            let one = [(n, l)];
            let checked = serde_json::from_str::<serde::de::IgnoredAny>(&one[0].1)
                .map_err(|e| e.to_string())
                .and_then(|_| self.decode(&one));
            match checked {
                Ok(_) => good.push(one.into_iter().next().expect("one line")),
                Err(reason) => {
                    let [(n, l)] = one;
                    let (column, reason) = locate(&l, &reason);
                    match &self.dead_letter {
                        Some(dl) => dl.record(&self.path, n, &column, &reason, &l)?,
                        None => {
                            let e = ConnectorError::BadRow {
                                file: self.path.clone(),
                                line: n,
                                column,
                                reason,
                            };
                            if good.is_empty() {
                                return Err(e);
                            }
                            // Deliver the lines accepted before the bad one, then fail.
                            self.pending_error = Some(e);
                            break;
                        }
                    }
                }
            }
        }
        if good.is_empty() {
            return self.next_batch();
        }
        self.decode(&good)
            .map_err(|e| ConnectorError::format(&self.path, e))
    }

    fn position(&self) -> Option<u64> {
        Some(self.bytes)
    }
}

/// Name the field (or character position) a JSON decode error concerns.
fn locate(line: &str, reason: &str) -> (String, String) {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
        return (
            format!("char {}", e.column()),
            format!("malformed JSON: {e}"),
        );
    }
    if let Some(start) = reason.find("field '") {
        let rest = &reason[start + 7..];
        if let Some(end) = rest.find('\'') {
            return (rest[..end].to_string(), reason.to_string());
        }
    }
    ("?".into(), reason.to_string())
}

/// One JSON object per line.
pub(crate) struct JsonLines;

type LineWriter = arrow_json::LineDelimitedWriter<BufWriter<File>>;

impl Format for JsonLines {
    /// Arrow's inference over the first 1000 lines.
    fn schema_of(&self, path: &Path) -> Result<SchemaRef> {
        let display = path.display().to_string();
        let file = open_file(path)?;
        let (schema, _) = infer_json_schema_from_seekable(BufReader::new(file), Some(1000))
            .map_err(|e| ConnectorError::format(&display, e))?;
        Ok(Arc::new(schema))
    }

    fn open(&self, path: &Path, read: ReadOptions) -> Result<Box<dyn BatchReader>> {
        Ok(Box::new(JsonFileReader::open(
            path,
            read.schema,
            read.batch_size,
            read.dead_letter,
        )?))
    }

    fn create(&self, file: File, _: &SchemaRef, _: &str) -> Result<Box<dyn BatchWriter>> {
        Ok(Box::new(LineWriter::new(BufWriter::new(file))))
    }
}

impl BatchWriter for LineWriter {
    fn write(&mut self, batch: &RecordBatch) -> std::result::Result<(), BoxError> {
        Ok(arrow_json::LineDelimitedWriter::write(self, batch)?)
    }

    fn finish(mut self: Box<Self>) -> std::result::Result<File, BoxError> {
        arrow_json::LineDelimitedWriter::finish(&mut *self)?;
        Ok(self.into_inner().into_inner().map_err(|e| e.into_error())?)
    }
}
