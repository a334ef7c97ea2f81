//! End-to-end behaviour of keyed windows: parallelism, lateness, side outputs.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use ferroflow_connectors::{GenColumn, GeneratorSource, MemorySink, MemorySource};
use ferroflow_engine::{
    AggFunc, Aggregate, JobBuilder, JobConfig, JobReport, JobStatus, Runtime, WatermarkStrategy,
    WindowSpec,
};

fn events(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("amount", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

/// (user, window_start, count, sum) sorted.
fn rows_of(sink: &MemorySink) -> Vec<(String, i64, i64, i64)> {
    let mut out = Vec::new();
    for b in sink.batches() {
        let u = b.column_by_name("user").unwrap().as_string::<i32>();
        let s = b
            .column_by_name("window_start")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let c = b.column_by_name("n").unwrap().as_primitive::<Int64Type>();
        let t = b
            .column_by_name("total")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((u.value(i).to_string(), s.value(i), c.value(i), t.value(i)));
        }
    }
    out.sort();
    out
}

/// Run `count(*) AS n, sum(amount) AS total` per user in `spec` windows over `batches`
/// (event time with no out-of-orderness when `watermarks`): the sorted rows and the report.
fn run_window(
    batches: Vec<RecordBatch>,
    parallelism: usize,
    watermarks: bool,
    spec: WindowSpec,
) -> (Vec<(String, i64, i64, i64)>, JobReport) {
    let job = JobBuilder::with_config(
        "windows",
        JobConfig {
            parallelism,
            ..Default::default()
        },
    );
    let mut src = job
        .source(
            "events",
            Arc::new(MemorySource::from_batches(batches).unwrap()),
        )
        .unwrap();
    if watermarks {
        src = src
            .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                "ts",
                Duration::ZERO,
            ))
            .unwrap();
    }
    let sink = MemorySink::new();
    src.key_by(&["user"])
        .unwrap()
        .window(
            "w",
            spec,
            &[
                Aggregate::count_star("n"),
                Aggregate::new(AggFunc::Sum, "amount", "total"),
            ],
        )
        .unwrap()
        .sink("out", Arc::new(sink.clone()))
        .unwrap();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    assert_eq!(report.status, JobStatus::Finished);
    (rows_of(&sink), report)
}

fn run_tumbling(batches: Vec<RecordBatch>, parallelism: usize) -> Vec<(String, i64, i64, i64)> {
    let spec = WindowSpec::tumbling("ts", Duration::from_secs(10));
    run_window(batches, parallelism, true, spec).0
}

#[test]
fn tumbling_window_counts_and_sums_per_key() {
    let b = events(&[
        ("a", 1_000, 1),
        ("b", 2_000, 10),
        ("a", 9_999, 2),
        ("a", 10_000, 3),
        ("b", 25_000, 20),
    ]);
    let got = run_tumbling(vec![b], 1);
    assert_eq!(
        got,
        vec![
            ("a".into(), 0, 2, 3),
            ("a".into(), 10_000, 1, 3),
            ("b".into(), 0, 1, 10),
            ("b".into(), 20_000, 1, 20),
        ]
    );
}

#[test]
fn parallelism_one_and_four_agree() {
    let mut batches = Vec::new();
    let users = ["u1", "u2", "u3", "u4", "u5", "u6", "u7"];
    for k in 0..40 {
        let rows: Vec<(&str, i64, i64)> = (0..50)
            .map(|i| {
                let n = k * 50 + i;
                (users[(n * 7 % 11) as usize % users.len()], n * 37, n % 13)
            })
            .collect();
        batches.push(events(&rows));
    }
    let one = run_tumbling(batches.clone(), 1);
    let four = run_tumbling(batches, 4);
    assert!(!one.is_empty());
    assert_eq!(one, four);
}

#[test]
fn late_records_reach_the_side_output_and_lateness_updates_windows() {
    // Watermark = max ts - 0 - 1. After ts 20_000 the window [0, 10s) is closed; with 5 s
    // allowed lateness a record at 3_000 arriving when the watermark is 12_000 still counts
    // (and re-fires the window), one at 4_000 arriving after watermark 19_999 is late.
    let batches = vec![
        events(&[("a", 1_000, 1), ("a", 2_000, 1)]),
        events(&[("a", 12_001, 1)]),
        events(&[("a", 3_000, 1)]),
        events(&[("a", 20_000, 1)]),
        events(&[("a", 4_000, 1)]),
    ];
    let job = JobBuilder::new("late");
    let src = job
        .source(
            "events",
            Arc::new(MemorySource::from_batches(batches).unwrap()),
        )
        .unwrap()
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::ZERO,
        ))
        .unwrap();
    let windows = src
        .key_by(&["user"])
        .unwrap()
        .window(
            "w",
            WindowSpec::tumbling("ts", Duration::from_secs(10))
                .with_allowed_lateness(Duration::from_secs(5))
                .with_late_side_output(),
            &[
                Aggregate::count_star("n"),
                Aggregate::new(AggFunc::Sum, "amount", "total"),
            ],
        )
        .unwrap();
    let main = MemorySink::new();
    let late = MemorySink::new();
    windows.sink("main", Arc::new(main.clone())).unwrap();
    windows
        .side_output("late")
        .unwrap()
        .sink("late_sink", Arc::new(late.clone()))
        .unwrap();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let got = rows_of(&main);
    // First firing of [0,10s) with 2, late firing with 3, then [10s,20s) and [20s,30s).
    assert_eq!(
        got,
        vec![
            ("a".into(), 0, 2, 2),
            ("a".into(), 0, 3, 3),
            ("a".into(), 10_000, 1, 1),
            ("a".into(), 20_000, 1, 1),
        ]
    );
    let late_rows = late.concat().unwrap();
    assert_eq!(late_rows.num_rows(), 1);
    let ts = late_rows
        .column(1)
        .as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.value(0), 4_000);
    assert_eq!(
        report
            .node("w")
            .unwrap()
            .counters
            .get("late_records_side_output"),
        Some(&1)
    );
}

#[test]
fn dropped_late_records_are_counted() {
    let batches = vec![
        events(&[("a", 1_000, 1)]),
        events(&[("a", 30_000, 1)]),
        events(&[("a", 2_000, 1), ("b", 3_000, 1)]),
    ];
    let spec = WindowSpec::tumbling("ts", Duration::from_secs(10));
    let (rows, report) = run_window(batches, 1, true, spec);
    assert_eq!(
        report
            .node("w")
            .unwrap()
            .counters
            .get("late_records_dropped"),
        Some(&2)
    );
    assert_eq!(rows.len(), 2);
}

#[test]
fn session_windows_merge_by_gap() {
    let b = events(&[
        ("a", 1_000, 1),
        ("a", 3_000, 1),
        ("a", 20_000, 1),
        ("a", 2_000, 1),
        ("b", 1_000, 5),
    ]);
    let spec = WindowSpec::session("ts", Duration::from_secs(5));
    let (rows, _) = run_window(vec![b], 1, false, spec);
    assert_eq!(
        rows,
        vec![
            ("a".into(), 1_000, 3, 3),
            ("a".into(), 20_000, 1, 1),
            ("b".into(), 1_000, 1, 5),
        ]
    );
}

#[test]
fn sliding_windows_count_each_record_in_every_window() {
    let b = events(&[("a", 1_000, 1), ("a", 6_000, 1)]);
    let spec = WindowSpec::sliding("ts", Duration::from_secs(10), Duration::from_secs(5));
    let (rows, _) = run_window(vec![b], 1, false, spec);
    assert_eq!(
        rows,
        vec![
            ("a".into(), -5_000, 1, 1),
            ("a".into(), 0, 2, 2),
            ("a".into(), 5_000, 1, 1),
        ]
    );
}

#[test]
fn processing_time_windows_close_while_the_source_is_idle() {
    // An unbounded generator at 2 000 rows/s; one-second processing-time windows must fire
    // while the job runs, from the wall clock, not from data timestamps.
    let src = GeneratorSource::new(
        vec![(
            "user".into(),
            GenColumn::Choice(vec!["a".into(), "b".into()]),
        )],
        None,
        1,
    )
    .unwrap()
    .with_rate(2_000.0)
    .with_batch_size(100);
    let job = JobBuilder::new("proc-time");
    let sink = MemorySink::new();
    let s = job
        .source("gen", Arc::new(src))
        .unwrap()
        .with_processing_time("proc_ts")
        .unwrap();
    assert_eq!(s.schema().field(1).name(), "proc_ts");
    s.key_by(&["user"])
        .unwrap()
        .window(
            "per_second",
            WindowSpec::tumbling("proc_ts", Duration::from_millis(250)),
            &[Aggregate::count_star("n")],
        )
        .unwrap()
        .sink("out", Arc::new(sink.clone()))
        .unwrap();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let handle = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    let t = std::time::Instant::now();
    while sink.num_rows() < 4 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.cancel();
    handle.wait().unwrap();
    let all = sink.concat().expect("windows fired while running");
    let starts = all.column(1).as_primitive::<TimestampMillisecondType>();
    for i in 0..all.num_rows() {
        // Window starts are wall-clock times from this run.
        assert!(
            starts.value(i) >= started - 250,
            "{} < {started}",
            starts.value(i)
        );
    }
    let n: i64 = all
        .column(3)
        .as_primitive::<Int64Type>()
        .values()
        .iter()
        .sum();
    assert!(n > 0);
}
