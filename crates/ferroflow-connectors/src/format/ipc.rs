//! Arrow IPC files from untrusted places: checked before arrow-ipc decodes them.
//!
//! arrow-ipc trusts what a file declares: a corrupt row count or buffer length makes it
//! allocate terabytes (an abort no `catch_unwind` can stop) or slice past its buffers (a
//! panic). So before a file is decoded, its footer and every batch's header are read
//! (flatbuffers verified) and checked against the file's size: each block inside the file,
//! each buffer inside its block's body, row counts no larger than the body could hold
//! (8 rows per byte, the densest encoding, a validity bit), no compression (this build
//! decodes none). The decode itself runs under `catch_unwind` for anything left.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::{BoxError, ConnectorError, Result};
use crate::format::{BatchReader, BatchWriter, Format, ReadOptions, check_file_schema, open_file};

/// Rows a batch may declare per byte of its body, beyond a small allowance for columns
/// without buffers (all-null and empty columns).
const ROWS_PER_BODY_BYTE: i64 = 8;
const ROW_ALLOWANCE: i64 = 1 << 16;

const MAGIC: &[u8; 6] = b"ARROW1";

fn bad(path: &str, message: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::format(path, format!("corrupt Arrow IPC file: {message}"))
}

/// Check `file` (rewound afterwards) as described in the module documentation.
pub fn check_ipc_file(file: &mut File, path: &str) -> Result<()> {
    let io = |e| ConnectorError::io(path, e);
    let len = file.seek(SeekFrom::End(0)).map_err(io)? as i64;
    if len < 2 * MAGIC.len() as i64 + 4 {
        return Err(bad(path, format!("{len} bytes is too short")));
    }
    let mut tail = [0u8; 10];
    file.seek(SeekFrom::End(-10)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    if &tail[4..] != MAGIC {
        return Err(bad(path, "no ARROW1 trailer"));
    }
    let footer_len = i32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as i64;
    if footer_len <= 0 || footer_len > len - 10 - MAGIC.len() as i64 {
        return Err(bad(
            path,
            format!("footer length {footer_len} does not fit"),
        ));
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::Start((len - 10 - footer_len) as u64))
        .map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    let footer = arrow_ipc::root_as_footer(&footer).map_err(|e| bad(path, e))?;
    let blocks = footer
        .recordBatches()
        .into_iter()
        .flatten()
        .chain(footer.dictionaries().into_iter().flatten());
    for (i, block) in blocks.enumerate() {
        let (offset, meta_len, body_len) = (
            block.offset(),
            block.metaDataLength() as i64,
            block.bodyLength(),
        );
        let fits = offset >= 0
            && meta_len >= 8
            && body_len >= 0
            && offset
                .checked_add(meta_len)
                .and_then(|x| x.checked_add(body_len))
                .is_some_and(|end| end <= len);
        if !fits {
            return Err(bad(path, format!("block {i} lies outside the file")));
        }
        let mut meta = vec![0u8; meta_len as usize];
        file.seek(SeekFrom::Start(offset as u64)).map_err(io)?;
        file.read_exact(&mut meta).map_err(io)?;
        // A continuation marker and the message's length precede it.
        let (start, msg_len) = if meta[..4] == [0xff; 4] {
            (
                8,
                i32::from_le_bytes(meta[4..8].try_into().expect("4 bytes")) as i64,
            )
        } else {
            (
                4,
                i32::from_le_bytes(meta[..4].try_into().expect("4 bytes")) as i64,
            )
        };
        if msg_len <= 0 || start as i64 + msg_len > meta_len {
            return Err(bad(path, format!("block {i}: message length {msg_len}")));
        }
        let msg = arrow_ipc::root_as_message(&meta[start..start + msg_len as usize])
            .map_err(|e| bad(path, format!("block {i}: {e}")))?;
        let batch = match (
            msg.header_as_record_batch(),
            msg.header_as_dictionary_batch(),
        ) {
            (Some(b), _) => b,
            (None, Some(d)) => d
                .data()
                .ok_or_else(|| bad(path, format!("block {i}: dictionary without data")))?,
            (None, None) => return Err(bad(path, format!("block {i} is not a batch"))),
        };
        if batch.compression().is_some() {
            return Err(ConnectorError::format(
                path,
                "compressed Arrow IPC buffers are not supported by this build",
            ));
        }
        let max_rows = body_len
            .saturating_mul(ROWS_PER_BODY_BYTE)
            .saturating_add(ROW_ALLOWANCE);
        if !(0..=max_rows).contains(&batch.length()) {
            return Err(bad(
                path,
                format!(
                    "block {i} declares {} rows in a body of {body_len} bytes",
                    batch.length()
                ),
            ));
        }
        for node in batch.nodes().into_iter().flatten() {
            if !(0..=max_rows).contains(&node.length())
                || !(0..=node.length()).contains(&node.null_count())
            {
                return Err(bad(
                    path,
                    format!(
                        "block {i}: a column of {} values ({} null) in a body of {body_len} bytes",
                        node.length(),
                        node.null_count()
                    ),
                ));
            }
        }
        for buf in batch.buffers().into_iter().flatten() {
            let inside = buf.offset() >= 0
                && buf.length() >= 0
                && buf
                    .offset()
                    .checked_add(buf.length())
                    .is_some_and(|end| end <= body_len);
            if !inside {
                return Err(bad(
                    path,
                    format!("block {i}: a buffer lies outside its body"),
                ));
            }
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(())
}

/// Run an arrow-ipc decode, turning a panic on a corrupt file into an error naming it.
pub fn guard_decode<T>(path: &str, decode: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .map_err(|_| bad(path, "what it declares does not fit its bytes"))
}

/// Open an Arrow IPC file checked by [`check_ipc_file`] first.
fn open_checked(path: &Path) -> Result<arrow_ipc::reader::FileReader<File>> {
    let display = path.display().to_string();
    let mut file = open_file(path)?;
    check_ipc_file(&mut file, &display)?;
    guard_decode(&display, || {
        arrow_ipc::reader::FileReader::try_new(file, None)
    })?
    .map_err(|e| ConnectorError::format(&display, e))
}

/// The Arrow IPC file format (Feather v2), every file checked before it is decoded.
pub(crate) struct ArrowIpc;

impl Format for ArrowIpc {
    /// The schema stored in the file.
    fn schema_of(&self, path: &Path) -> Result<SchemaRef> {
        Ok(open_checked(path)?.schema())
    }

    fn open(&self, path: &Path, read: ReadOptions) -> Result<Box<dyn BatchReader>> {
        let reader = open_checked(path)?;
        let display = path.display().to_string();
        check_file_schema(&display, &reader.schema(), &read.schema)?;
        Ok(Box::new(IpcReader {
            reader,
            path: display,
        }))
    }

    fn create(&self, file: File, schema: &SchemaRef, path: &str) -> Result<Box<dyn BatchWriter>> {
        let w = arrow_ipc::writer::FileWriter::try_new(BufWriter::new(file), schema)
            .map_err(|e| ConnectorError::format(path, e))?;
        Ok(Box::new(w))
    }
}

struct IpcReader {
    reader: arrow_ipc::reader::FileReader<File>,
    path: String,
}

impl BatchReader for IpcReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        // arrow-ipc trusts a file's buffer offsets and panics on some corrupt files: a
        // damaged file must fail its read, naming it, not the process.
        let reader = &mut self.reader;
        guard_decode(&self.path, || reader.next().transpose())?
            .map_err(|e| ConnectorError::format(&self.path, e))
    }
}

impl BatchWriter for arrow_ipc::writer::FileWriter<BufWriter<File>> {
    fn write(&mut self, batch: &RecordBatch) -> std::result::Result<(), BoxError> {
        Ok(arrow_ipc::writer::FileWriter::write(self, batch)?)
    }

    fn finish(mut self: Box<Self>) -> std::result::Result<File, BoxError> {
        arrow_ipc::writer::FileWriter::finish(&mut *self)?;
        Ok(self
            .into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};

    use super::*;

    fn valid() -> Vec<u8> {
        let batch = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])),
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut out, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    }

    fn read(bytes: &[u8]) -> Result<usize> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.arrow");
        std::fs::write(&path, bytes).unwrap();
        let mut f = File::open(&path).unwrap();
        check_ipc_file(&mut f, "f.arrow")?;
        guard_decode("f.arrow", || {
            let r = arrow_ipc::reader::FileReader::try_new(f, None)?;
            r.map(|b| b.map(|b| b.num_rows()))
                .sum::<std::result::Result<usize, _>>()
        })?
        .map_err(|e| ConnectorError::format("f.arrow", e))
    }

    #[test]
    fn a_valid_file_passes_and_short_ones_do_not() {
        assert_eq!(read(&valid()).unwrap(), 3);
        let v = valid();
        assert!(read(&v[..v.len() - 3]).is_err());
        assert!(read(b"ARROW1").is_err());
    }

    /// Regression for what fuzzing found: single damaged bytes made arrow-ipc allocate
    /// terabytes (an abort) or slice past its buffers (a panic). Every position, three
    /// values: never either.
    #[test]
    fn every_single_damaged_byte_is_an_error_or_still_readable() {
        let v = valid();
        for at in 0..v.len() {
            for b in [0x00, 0x7f, 0xff] {
                let mut bad = v.clone();
                bad[at] = b;
                let _ = read(&bad);
            }
        }
    }
}
