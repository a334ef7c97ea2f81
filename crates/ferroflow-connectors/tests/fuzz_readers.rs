//! Fuzzing the CSV and JSON-lines readers (bounded, on stable): whatever bytes a file holds,
//! reading it ends with rows or an error, never a panic, a hang or an unbounded allocation.

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use ferroflow_connectors::{CsvOptions, FileFormat, FileSource, MemorySink};
use ferroflow_engine::{JobBuilder, Runtime};
use proptest::prelude::*;

const CSV: &str = "ts,user,amount,flag\n1700000000000,u1,1.5,true\n1700000000100,u2,,false\n1700000000200,\"u,3\",3e2,true\n";
const JSON: &str = "{\"ts\": 1700000000000, \"user\": \"u1\", \"amount\": 1.5, \"flag\": true}\n{\"ts\": 2, \"user\": null, \"amount\": -0.0, \"flag\": false}\n";

fn declared() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("user", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
    ]))
}

fn read(rt: &Runtime, bytes: &[u8], format: FileFormat, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    for schema in [None, Some(declared())] {
        let src = match &schema {
            None => FileSource::new(&path, format),
            Some(s) => FileSource::with_declared_schema(&path, format, s.clone()),
        };
        let Ok(src) = src else { continue };
        let job = JobBuilder::new("fuzz");
        let sink = MemorySink::new();
        let built = job
            .source("src", Arc::new(src))
            .and_then(|s| s.sink("mem", Arc::new(sink.clone())))
            .and_then(|_| job.build());
        if let Ok(graph) = built
            && let Err(e) = rt.run(graph)
        {
            assert!(!e.to_string().is_empty());
        }
    }
}

/// A valid Arrow IPC file of the declared schema.
fn ipc_bytes() -> Vec<u8> {
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
    let batch = RecordBatch::try_new(
        declared(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])),
            Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.0), None])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        ],
    )
    .unwrap();
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::FileWriter::try_new(&mut out, &declared()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz::cases(64), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_csv_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..10)) {
        let rt = Runtime::new().unwrap();
        read(&rt, fuzz::mutate(CSV, &edits).as_bytes(), FileFormat::Csv(CsvOptions::default()), "f.csv");
    }

    #[test]
    fn mutated_json_lines_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..10)) {
        let rt = Runtime::new().unwrap();
        read(&rt, fuzz::mutate(JSON, &edits).as_bytes(), FileFormat::JsonLines, "f.jsonl");
    }

    #[test]
    fn damaged_arrow_ipc_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = ipc_bytes();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        let rt = Runtime::new().unwrap();
        read(&rt, &bytes, FileFormat::ArrowIpc, "f.arrow");
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let rt = Runtime::new().unwrap();
        read(&rt, &bytes, FileFormat::Csv(CsvOptions::default()), "r.csv");
        read(&rt, &bytes, FileFormat::JsonLines, "r.jsonl");
    }
}
