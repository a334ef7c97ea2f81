//! Encoding of checkpointed state: a small checked binary codec for positions and counters
//! ([`StateEncoder`], [`StateDecoder`]), and the file format of one operator instance's
//! [`OperatorState`] (its tabular part as Arrow IPC streams).
//!
//! State files are only ever read after the manifest that lists them was found complete and
//! their length and CRC-32 matched it, but the decoder still checks every length against the
//! bytes it has: a bad file fails the restore with an error, never a panic or a huge
//! allocation.

use std::io::Cursor;

use arrow_array::RecordBatch;

use crate::error::{EngineError, Result};
use crate::operator::OperatorState;

const MAGIC: &[u8; 4] = b"FFST";
const VERSION: u8 = 1;

/// Writes values in a fixed little-endian layout.
#[derive(Debug, Default, Clone)]
pub struct StateEncoder {
    buf: Vec<u8>,
}

impl StateEncoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a `u8`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Append a `bool`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }

    /// Append a `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Append an `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Append length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// Append a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads what a [`StateEncoder`] wrote; every read is bounds-checked.
#[derive(Debug)]
pub struct StateDecoder<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> StateDecoder<'a> {
    /// Decode `buf`; `what` names the state in errors (e.g. the node).
    pub fn new(buf: &'a [u8], what: &'a str) -> Self {
        StateDecoder { buf, pos: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return Err(EngineError::State(format!(
                "{}: state ends after {} bytes, {} more expected",
                self.what,
                self.buf.len(),
                n
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Read a `u8`.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// Read a `bool`.
    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(EngineError::State(format!(
                "{}: {v} is not a boolean",
                self.what
            ))),
        }
    }

    /// Read a `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Read an `i64`.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Read a count of items that each take at least `min_item_bytes`: a count the remaining
    /// bytes cannot hold is refused before anything is allocated for it.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left / min_item_bytes.max(1) as u64 {
            return Err(EngineError::State(format!(
                "{}: {n} items cannot fit in the {left} bytes left",
                self.what
            )));
        }
        Ok(n as usize)
    }

    /// Read length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u64()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(EngineError::State(format!(
                "{}: a field of {n} bytes is longer than the state",
                self.what
            )));
        }
        self.take(n as usize)
    }

    /// Read a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str> {
        let what = self.what;
        std::str::from_utf8(self.bytes()?)
            .map_err(|e| EngineError::State(format!("{what}: a string is not UTF-8: {e}")))
    }

    /// `true` when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Fail unless every byte was read (trailing bytes mean a different layout).
    pub fn end(&self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(EngineError::State(format!(
                "{}: {} unexpected bytes after the state",
                self.what,
                self.buf.len() - self.pos
            )))
        }
    }
}

/// Encode an instance's state as the bytes of its state file.
pub(crate) fn encode_state(state: &OperatorState) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    let mut e = StateEncoder::new();
    e.u64(state.batches.len() as u64);
    for b in &state.batches {
        let mut buf = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &b.schema())?;
            w.write(b)?;
            w.finish()?;
        }
        e.bytes(&buf);
    }
    e.bytes(&state.bytes);
    out.extend_from_slice(&e.finish());
    Ok(out)
}

/// Decode a state file written by [`encode_state`]; `what` names it in errors.
pub(crate) fn decode_state(bytes: &[u8], what: &str) -> Result<OperatorState> {
    if bytes.len() < 5 || &bytes[..4] != MAGIC {
        return Err(EngineError::State(format!(
            "{what}: not a ferroflow state file"
        )));
    }
    if bytes[4] != VERSION {
        return Err(EngineError::State(format!(
            "{what}: state format {} is not supported (this build reads {VERSION})",
            bytes[4]
        )));
    }
    let mut d = StateDecoder::new(&bytes[5..], what);
    let n = d.count(8)?;
    let mut batches = Vec::with_capacity(n);
    for _ in 0..n {
        let ipc = d.bytes()?;
        let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(ipc), None)
            .map_err(|e| EngineError::State(format!("{what}: {e}")))?;
        for b in reader {
            let b: RecordBatch = b.map_err(|e| EngineError::State(format!("{what}: {e}")))?;
            batches.push(b);
        }
    }
    let rest = d.bytes()?.to_vec();
    d.end()?;
    Ok(OperatorState {
        batches,
        bytes: rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn state_round_trips() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
            ],
        )
        .unwrap();
        let mut e = StateEncoder::new();
        e.i64(-5).str("x").bool(true);
        let s = OperatorState {
            batches: vec![b.clone()],
            bytes: e.finish(),
        };
        let back = decode_state(&encode_state(&s).unwrap(), "t").unwrap();
        assert_eq!(back.batches, vec![b]);
        let mut d = StateDecoder::new(&back.bytes, "t");
        assert_eq!(d.i64().unwrap(), -5);
        assert_eq!(d.str().unwrap(), "x");
        assert!(d.bool().unwrap());
        d.end().unwrap();
    }

    #[test]
    fn truncated_or_lying_state_is_an_error() {
        let s = OperatorState {
            batches: vec![],
            bytes: vec![1, 2, 3],
        };
        let bytes = encode_state(&s).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_state(&bytes[..cut], "t").is_err(), "cut at {cut}");
        }
        let mut d = StateDecoder::new(&[255, 255, 255, 255, 255, 255, 255, 127], "t");
        assert!(d.count(1).is_err());
    }
}
