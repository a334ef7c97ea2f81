//! File connectors end to end: round trips, malformed input, dead letters, directory watch.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::{DataType, Field, Schema};
use ferroflow_connectors::{
    CsvOptions, DirectoryWatchSource, FileFormat, FileSink, FileSource, MemorySink,
};
use ferroflow_engine::{JobBuilder, JobConfig, JobReport, JobStatus, Runtime};

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]))
}

fn run_to_memory(
    source: Arc<dyn ferroflow_engine::Source>,
) -> (ferroflow_engine::Result<JobReport>, MemorySink) {
    let job = JobBuilder::new("read");
    let sink = MemorySink::new();
    job.source("src", source)
        .unwrap()
        .sink("mem", Arc::new(sink.clone()))
        .unwrap();
    (Runtime::new().unwrap().run(job.build().unwrap()), sink)
}

#[test]
fn malformed_csv_row_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "id,name,amount\n1,a,1.5\n2,b,2.5\n3,c,not-a-number\n4,d,4.0\n",
    )
    .unwrap();
    let src =
        FileSource::with_declared_schema(&path, FileFormat::Csv(CsvOptions::default()), schema())
            .unwrap();
    let (r, sink) = run_to_memory(Arc::new(src));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("bad.csv:4"), "{e}");
    assert_eq!(
        sink.num_rows(),
        2,
        "rows accepted before the bad one are delivered"
    );
    assert!(e.contains("column 'amount'"), "{e}");
    assert!(e.contains("not-a-number"), "{e}");
    assert!(e.contains("'src'"), "error names the node: {e}");
}

#[test]
fn dead_letter_keeps_good_rows_and_records_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.csv");
    let mut text = String::from("id,name,amount\n");
    for i in 0..1000 {
        if i % 100 == 7 {
            text.push_str(&format!("oops{i},x,1.0\n"));
        } else if i % 100 == 50 {
            text.push_str(&format!("{i},too,many,fields\n"));
        } else {
            text.push_str(&format!("{i},n{i},{i}.5\n"));
        }
    }
    std::fs::write(&path, text).unwrap();
    let dl = dir.path().join("dead/letters.jsonl");
    let src =
        FileSource::with_declared_schema(&path, FileFormat::Csv(CsvOptions::default()), schema())
            .unwrap()
            .with_batch_size(64)
            .with_dead_letter(&dl);
    let (r, sink) = run_to_memory(Arc::new(src));
    r.unwrap();
    assert_eq!(sink.num_rows(), 980);
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 20);
    assert_eq!(letters[0]["line"], 9);
    assert_eq!(letters[0]["column"], "id");
    assert!(letters[1]["reason"].as_str().unwrap().contains("4 fields"));
}

#[test]
fn malformed_json_line_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.jsonl");
    std::fs::write(
        &path,
        "{\"id\": 1, \"name\": \"a\", \"amount\": 1.0}\n{\"id\": 2, \"name\": \"b\", \"amount\": 2.0}\n{\"id\": 3, \"name\": \"c\" \"amount\": 3.0}\n",
    )
    .unwrap();
    let src = FileSource::with_declared_schema(&path, FileFormat::JsonLines, schema()).unwrap();
    let (r, _) = run_to_memory(Arc::new(src));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("rows.jsonl:3"), "{e}");
    assert!(e.contains("malformed JSON"), "{e}");

    let typed = dir.path().join("typed.jsonl");
    std::fs::write(
        &typed,
        "{\"id\": 1, \"amount\": 1.0}\n{\"id\": \"x\", \"amount\": 2.0}\n",
    )
    .unwrap();
    let src = FileSource::with_declared_schema(&typed, FileFormat::JsonLines, schema()).unwrap();
    let e = run_to_memory(Arc::new(src)).0.unwrap_err().to_string();
    assert!(e.contains("typed.jsonl:2"), "{e}");
}

#[test]
fn missing_input_fails_before_the_job_starts() {
    let e = FileSource::new(
        "/nonexistent/dir/x.csv",
        FileFormat::Csv(CsvOptions::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/dir/x.csv"), "{e}");
    let e = DirectoryWatchSource::new("/nonexistent/watch", FileFormat::JsonLines, schema())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/watch"), "{e}");
}

#[test]
fn every_format_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    common::write_clicks_csv(&csv, 3000, 7, 10, 0);
    let expected = {
        let (r, sink) = run_to_memory(Arc::new(FileSource::from_path(&csv).unwrap()));
        r.unwrap();
        common::rows(&sink.batches())
    };
    for ext in ["parquet", "jsonl", "arrow", "csv", "tsv"] {
        let out = dir.path().join(format!("copy.{ext}"));
        let job = JobBuilder::new("copy");
        job.source(
            "in",
            Arc::new(FileSource::from_path(&csv).unwrap().with_batch_size(700)),
        )
        .unwrap()
        .sink("out", Arc::new(FileSink::from_path(&out).unwrap()))
        .unwrap();
        Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
        let fmt = FileFormat::from_path(&out).unwrap();
        let back = FileSource::with_declared_schema(
            &out,
            fmt,
            FileSource::from_path(&csv).unwrap().schema_ref(),
        )
        .unwrap();
        let (r, sink) = run_to_memory(Arc::new(back));
        r.unwrap();
        assert_eq!(common::rows(&sink.batches()), expected, "format {ext}");
    }
}

#[test]
fn directory_watch_reads_files_added_while_running_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, from: i64, n: i64| {
        // Publish atomically: write a hidden temp file, then rename into place.
        let tmp = dir.path().join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).unwrap();
        for i in from..from + n {
            writeln!(f, "{{\"id\": {i}, \"name\": \"n{i}\", \"amount\": {i}.0}}").unwrap();
        }
        drop(f);
        std::fs::rename(&tmp, dir.path().join(name)).unwrap();
    };
    write("a.jsonl", 0, 100);
    let src = DirectoryWatchSource::new(dir.path(), FileFormat::JsonLines, schema())
        .unwrap()
        .with_poll_interval(Duration::from_millis(20));
    let job = JobBuilder::new("watch");
    let sink = MemorySink::new();
    job.source("dir", Arc::new(src))
        .unwrap()
        .sink("mem", Arc::new(sink.clone()))
        .unwrap();
    let handle = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    let wait_for = |n: usize| {
        let t = Instant::now();
        while sink.num_rows() < n && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(100);
    write("b.jsonl", 100, 50);
    write("c.jsonl", 150, 25);
    wait_for(175);
    // Give the watcher a few more polls: nothing may be read twice.
    std::thread::sleep(Duration::from_millis(200));
    handle.cancel();
    let report = handle.wait().unwrap();
    assert_eq!(report.status, JobStatus::Cancelled);
    let mut ids: Vec<i64> = sink
        .batches()
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (0..175).collect::<Vec<_>>());
}

#[test]
fn parquet_row_groups_are_split_across_parallel_readers() {
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many_groups.parquet");
    let batch = arrow_array::RecordBatch::try_from_iter(vec![(
        "id",
        Arc::new(arrow_array::Int64Array::from_iter_values(0..10_000)) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(1_000))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let job = JobBuilder::with_config(
        "pq",
        JobConfig {
            parallelism: 3,
            ..Default::default()
        },
    );
    let sink = MemorySink::new();
    job.source("pq", Arc::new(FileSource::from_path(&path).unwrap()))
        .unwrap()
        .sink("mem", Arc::new(sink.clone()))
        .unwrap();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let mut ids: Vec<i64> = sink
        .batches()
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (0..10_000).collect::<Vec<_>>());
    // All three instances read: ten row groups, so more than one batch per instance on average.
    assert!(report.node("pq").unwrap().batches_out >= 10);
}
