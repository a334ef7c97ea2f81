//! A file that fails to decode keeps the decoder's error as the source, through the engine's
//! error too: callers can tell a Parquet error from an I/O error without reading text.

use std::error::Error;

use ferroflow_connectors::{FileFormat, FileSource};
use ferroflow_engine::EngineError;

/// Does `e` or one of its causes have type `T`?
fn caused_by<T: Error + 'static>(e: &(dyn Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(cause) = next {
        if cause.is::<T>() {
            return true;
        }
        next = cause.source();
    }
    false
}

#[test]
fn a_corrupt_parquet_file_keeps_parquets_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.parquet");
    std::fs::write(&path, b"PAR1 this is not a parquet file PAR1").unwrap();
    let err = FileSource::new(&path, FileFormat::Parquet).unwrap_err();
    assert!(err.to_string().contains("broken.parquet"), "{err}");
    assert!(caused_by::<parquet::errors::ParquetError>(&err), "{err:?}");
    let engine = EngineError::from(err);
    assert!(
        caused_by::<parquet::errors::ParquetError>(&engine),
        "{engine:?}"
    );
    assert!(!caused_by::<std::io::Error>(&engine), "{engine:?}");
}

#[test]
fn a_missing_file_is_an_io_error_with_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileSource::new(dir.path().join("none.csv"), FileFormat::JsonLines).unwrap_err();
    let engine = EngineError::from(err);
    let mut next: Option<&(dyn Error + 'static)> = Some(&engine);
    let mut kind = None;
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            kind = Some(io.kind());
        }
        next = cause.source();
    }
    assert_eq!(kind, Some(std::io::ErrorKind::NotFound), "{engine:?}");
}
