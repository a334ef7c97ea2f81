//! Sources and sinks for ferroflow jobs.
//!
//! | connector | source | sink |
//! |---|---|---|
//! | CSV / TSV, JSON lines, Parquet, Arrow IPC files | [`FileSource`] | [`FileSink`] |
//! | a directory that receives files while the job runs | [`DirectoryWatchSource`] | |
//! | a deterministic, seeded, rate-limited generator (columns by rule, or any [`RowGenerator`] such as [`AdClicks`]) | [`GeneratorSource`] | |
//! | memory (tests, embedding) | [`MemorySource`] | [`MemorySink`] |
//! | standard output | | [`PrintSink`] |
//! | nowhere (counts rows; optionally slow, for backpressure tests) | | [`DiscardSink`] |
//!
//! Sources and sinks do blocking I/O and run on the engine's I/O threads, never on its CPU pool.

mod ad_clicks;
mod deadletter;
mod dirwatch;
mod discard;
mod error;
mod files;
mod format;
mod generator;
mod memory;
mod print;
mod splits;

pub use ad_clicks::AdClicks;
pub use deadletter::DeadLetter;
pub use dirwatch::DirectoryWatchSource;
pub use discard::DiscardSink;
pub use error::{ConnectorError, Result};
pub use files::{FileSink, FileSource};
pub use format::parquet::parquet_writer_properties;
pub use format::{CsvOptions, FileFormat, ipc};
pub use generator::{GenColumn, GeneratorSource, RowGenerator};
pub use memory::{MemorySink, MemorySource};
pub use print::PrintSink;
