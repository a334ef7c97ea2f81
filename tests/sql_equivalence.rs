//! The engine's windows and streaming SQL give the same answers as DataFusion batch SQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use ferroflow::prelude::*;
use ferroflow::sql::{BatchSql, StreamingSql};

fn clicks_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("user", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
    ]))
}

fn source(path: &std::path::Path) -> FileSource {
    FileSource::with_declared_schema(path, FileFormat::Csv(Default::default()), clicks_schema())
        .unwrap()
        .with_batch_size(500)
}

/// Batch SQL over the same CSV: DataFusion reads ts as Int64 milliseconds.
fn batch_answer(csv: &std::path::Path, query: &str) -> Vec<Vec<String>> {
    let sql = BatchSql::new().unwrap();
    sql.register("clicks", csv).unwrap();
    common::rows(&sql.query(query).unwrap())
}

#[test]
fn csv_tumbling_window_to_parquet_equals_datafusion_sql() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("clicks.csv");
    common::write_clicks_csv(&csv, 20_000, 37, 25, 3_000);
    let out = dir.path().join("windows.parquet");

    for parallelism in [1, 4] {
        let _ = std::fs::remove_file(&out);
        let job = JobBuilder::with_config(
            "csv-window-parquet",
            JobConfig {
                parallelism,
                ..Default::default()
            },
        );
        job.source("clicks", Arc::new(source(&csv)))
            .unwrap()
            // Out-of-orderness covers the data's disorder: nothing is late, as in batch.
            .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                "ts",
                Duration::from_secs(5),
            ))
            .unwrap()
            .key_by(&["user"])
            .unwrap()
            .window(
                "per_user_minute",
                WindowSpec::tumbling("ts", Duration::from_secs(60)),
                &[
                    Aggregate::count_star("n"),
                    Aggregate::new(AggFunc::Sum, "amount", "total"),
                    Aggregate::new(AggFunc::Min, "amount", "lo"),
                    Aggregate::new(AggFunc::Max, "amount", "hi"),
                    Aggregate::new(AggFunc::Avg, "amount", "mean"),
                ],
            )
            .unwrap()
            .sink("parquet", Arc::new(FileSink::from_path(&out).unwrap()))
            .unwrap();
        let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
        assert_eq!(
            report.node("per_user_minute").unwrap().counters["late_records_dropped"],
            0
        );

        let engine = {
            let sql = BatchSql::new().unwrap();
            sql.register("windows", &out).unwrap();
            common::rows(
                &sql.query(
                    "SELECT user, CAST(window_start AS BIGINT), n, total, lo, hi, mean FROM windows",
                )
                .unwrap(),
            )
        };
        let expected = batch_answer(
            &csv,
            "SELECT user, CAST(date_bin(INTERVAL '1 minute', to_timestamp_millis(ts)) AS BIGINT) AS ws,
                    count(*), sum(amount), min(amount), max(amount), avg(amount)
             FROM clicks GROUP BY 1, 2",
        );
        assert!(
            expected.len() > 100,
            "too few windows to mean anything: {expected:?}"
        );
        assert_eq!(engine, expected, "parallelism {parallelism}");
    }
}

fn streaming_sql_rows(csv: &std::path::Path, query: &str, parallelism: usize) -> Vec<Vec<String>> {
    let job = JobBuilder::with_config(
        "streaming-sql",
        JobConfig {
            parallelism,
            ..Default::default()
        },
    );
    let clicks = job
        .source("clicks", Arc::new(source(csv)))
        .unwrap()
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::from_secs(5),
        ))
        .unwrap();
    let mut sql = StreamingSql::new();
    sql.register("clicks", clicks);
    let sink = MemorySink::new();
    let result = sql.query("q", query).unwrap();
    result.sink("out", Arc::new(sink.clone())).unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let batches = sink.batches();
    // Render window starts as epoch milliseconds, like the batch query.
    let batches: Vec<_> = batches
        .into_iter()
        .map(|b| {
            let cols = b
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    DataType::Timestamp(_, _) => arrow_cast::cast(c, &DataType::Int64).unwrap(),
                    _ => c.clone(),
                })
                .collect::<Vec<_>>();
            arrow_array::RecordBatch::try_from_iter(
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .zip(cols),
            )
            .unwrap()
        })
        .collect();
    common::rows(&batches)
}

#[test]
fn streaming_sql_tumble_equals_batch_sql() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("clicks.csv");
    common::write_clicks_csv(&csv, 10_000, 11, 40, 2_000);
    let stream = streaming_sql_rows(
        &csv,
        "SELECT user, TUMBLE_START(ts, INTERVAL '30' SECOND) AS ws, COUNT(*) AS n,
                SUM(amount) AS total, COUNT(DISTINCT amount) AS amounts
         FROM clicks WHERE amount > 10
         GROUP BY user, TUMBLE(ts, INTERVAL '30' SECOND)",
        3,
    );
    let batch = batch_answer(
        &csv,
        "SELECT user, CAST(date_bin(INTERVAL '30 seconds', to_timestamp_millis(ts)) AS BIGINT),
                count(*), sum(amount), count(DISTINCT amount)
         FROM clicks WHERE amount > 10 GROUP BY 1, 2",
    );
    assert!(batch.len() > 50);
    assert_eq!(stream, batch);
}

#[test]
fn streaming_sql_hop_equals_batch_sql() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("clicks.csv");
    common::write_clicks_csv(&csv, 4_000, 5, 50, 1_000);
    // HOP(ts, slide, size): 20 s windows every 10 s. In batch SQL: each row belongs to the
    // window starting at its 10 s bin and the one before.
    let stream = streaming_sql_rows(
        &csv,
        "SELECT user, HOP_START(ts, INTERVAL '10' SECOND, INTERVAL '20' SECOND) AS ws, COUNT(*) AS n
         FROM clicks GROUP BY user, HOP(ts, INTERVAL '10' SECOND, INTERVAL '20' SECOND)",
        2,
    );
    let batch = batch_answer(
        &csv,
        "WITH b AS (SELECT user, CAST(date_bin(INTERVAL '10 seconds', to_timestamp_millis(ts)) AS BIGINT) AS s FROM clicks),
              w AS (SELECT user, s AS ws FROM b UNION ALL SELECT user, s - 10000 AS ws FROM b)
         SELECT user, ws, count(*) FROM w GROUP BY 1, 2",
    );
    assert_eq!(stream, batch);
}

#[test]
fn unsupported_streaming_sql_is_refused_with_reason() {
    let job = JobBuilder::new("bad-sql");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("clicks.csv");
    common::write_clicks_csv(&csv, 10, 2, 1, 0);
    let clicks = job.source("clicks", Arc::new(source(&csv))).unwrap();
    let mut sql = StreamingSql::new();
    sql.register("clicks", clicks);
    let e = sql
        .query("q", "SELECT user, COUNT(*) FROM clicks GROUP BY user")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("needs a window"), "{e}");
    let e = sql
        .query(
            "q",
            "SELECT nope, COUNT(*) FROM clicks GROUP BY user, TUMBLE(ts, INTERVAL '1' SECOND)",
        )
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}
