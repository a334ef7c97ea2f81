//! Runtime behaviour: backpressure, cancellation, failures, schema checks, joins, sorting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_connectors::{
    DiscardSink, FileSink, GenColumn, GeneratorSource, MemorySink, MemorySource,
};
use ferroflow_engine::{
    AggFunc, Aggregate, JobBuilder, JobConfig, JobStatus, JoinType, Runtime, SortKey,
    WatermarkStrategy,
};
use ferroflow_engine::{ChannelBound, EngineError};

fn generator(rows: Option<u64>, batch: usize) -> GeneratorSource {
    GeneratorSource::new(
        vec![
            ("id".into(), GenColumn::Sequence),
            ("key".into(), GenColumn::Int { min: 0, max: 99 }),
            ("v".into(), GenColumn::Float { min: 0.0, max: 1.0 }),
        ],
        rows,
        7,
    )
    .unwrap()
    .with_batch_size(batch)
}

#[test]
fn slow_sink_keeps_buffering_within_channel_bounds() {
    let bound = ChannelBound {
        max_rows: 2_000,
        max_bytes: usize::MAX,
    };
    let job = JobBuilder::with_config(
        "backpressure",
        JobConfig {
            parallelism: 2,
            channel_bound: bound,
        },
    );
    let batch = 500;
    let slow = DiscardSink::with_delay(Duration::from_millis(2));
    job.source("gen", Arc::new(generator(Some(100_000), batch)))
        .unwrap()
        .filter_fn("all", |b| Ok(BooleanArray::from(vec![true; b.num_rows()])))
        .unwrap()
        .sink("slow", Arc::new(slow.clone()))
        .unwrap();
    let handle = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    let report = handle.wait().unwrap();
    assert_eq!(slow.rows(), 100_000, "no row lost");
    let hw = handle.channel_high_water();
    // A channel accepts a message only if it fits, except one message into an empty channel.
    assert!(
        hw.rows <= bound.max_rows,
        "buffered {} rows > bound",
        hw.rows
    );
    assert!(hw.rows >= batch, "the channels did fill up: {hw:?}");
    // The source spent time blocked by the full channels.
    assert!(report.node("gen").unwrap().backpressure_ns > 0);
}

#[test]
fn cancelling_an_unbounded_job_stops_it_promptly() {
    let job = JobBuilder::with_config(
        "forever",
        JobConfig {
            parallelism: 2,
            ..Default::default()
        },
    );
    let sink = MemorySink::new();
    job.source("gen", Arc::new(generator(None, 1000)))
        .unwrap()
        .key_by(&["key"])
        .unwrap()
        .aggregate("sum", &[Aggregate::new(AggFunc::Sum, "v", "total")])
        .unwrap()
        .sink("mem", Arc::new(sink.clone()))
        .unwrap();
    let handle = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    let t = Instant::now();
    while sink.num_rows() == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        sink.num_rows() > 0,
        "unbounded aggregation emits updates as it goes"
    );
    assert_eq!(handle.status(), JobStatus::Running);
    let t = Instant::now();
    handle.cancel();
    let report = handle.wait().unwrap();
    assert_eq!(report.status, JobStatus::Cancelled);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn failing_user_function_fails_the_job_naming_the_node() {
    let job = JobBuilder::new("fails");
    let schema = generator(Some(10), 5).schema_for_test();
    job.source("gen", Arc::new(generator(Some(10_000), 100)))
        .unwrap()
        .map("explode", schema, |b| {
            let id = b.column(0).as_primitive::<Int64Type>();
            if id.values().contains(&5_000) {
                return Err(EngineError::Other("row 5000 is cursed".into()));
            }
            Ok(b)
        })
        .unwrap()
        .sink("mem", Arc::new(MemorySink::new()))
        .unwrap();
    let e = Runtime::new()
        .unwrap()
        .run(job.build().unwrap())
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("'explode'") && msg.contains("cursed"), "{msg}");
}

#[test]
fn panicking_user_function_is_an_error_not_a_hang() {
    let job = JobBuilder::new("panics");
    let schema = generator(Some(10), 5).schema_for_test();
    job.source("gen", Arc::new(generator(Some(1_000), 100)))
        .unwrap()
        .map("boom", schema, |_| panic!("kaboom"))
        .unwrap()
        .sink("mem", Arc::new(MemorySink::new()))
        .unwrap();
    let e = Runtime::new()
        .unwrap()
        .run(job.build().unwrap())
        .unwrap_err();
    assert!(
        matches!(&e, EngineError::Panic { node, message } if node == "boom" && message.contains("kaboom")),
        "{e}"
    );
}

#[test]
fn map_returning_wrong_schema_is_caught() {
    let job = JobBuilder::new("schema");
    let declared = Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)]));
    job.source("gen", Arc::new(generator(Some(10), 5)))
        .unwrap()
        .map("liar", declared, Ok)
        .unwrap()
        .sink("mem", Arc::new(MemorySink::new()))
        .unwrap();
    let e = Runtime::new()
        .unwrap()
        .run(job.build().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'liar'") && e.contains("declared output schema"),
        "{e}"
    );
}

#[test]
fn schema_mismatches_fail_at_build_time_naming_both_nodes() {
    let job = JobBuilder::new("mismatch");
    let a = job
        .source("numbers", Arc::new(generator(Some(10), 5)))
        .unwrap();
    let other = GeneratorSource::new(
        vec![("name".into(), GenColumn::Choice(vec!["x".into()]))],
        Some(1),
        0,
    )
    .unwrap();
    let b = job.source("names", Arc::new(other)).unwrap();
    let e = a.union("both", &[&b]).err().unwrap().to_string();
    assert!(e.contains("'numbers'") && e.contains("'names'"), "{e}");
    let e = a.clone().key_by(&["nope"]).err().unwrap().to_string();
    assert!(e.contains("'nope'") && e.contains("'numbers'"), "{e}");
    let e = b
        .hash_join("j", &a, &["name"], &["key"], JoinType::Inner)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("Utf8") && e.contains("Int64") && e.contains("'names'"),
        "{e}"
    );
    let e = JobBuilder::new("empty").build().err().unwrap().to_string();
    assert!(e.contains("no sink"), "{e}");
}

fn table(cols: Vec<(&str, Vec<i64>)>, names: Option<Vec<&str>>) -> RecordBatch {
    let mut v: Vec<(&str, arrow_array::ArrayRef)> = cols
        .into_iter()
        .map(|(n, c)| (n, Arc::new(Int64Array::from(c)) as _))
        .collect();
    if let Some(names) = names {
        v.push(("name", Arc::new(StringArray::from(names)) as _));
    }
    RecordBatch::try_from_iter(v).unwrap()
}

#[test]
fn hash_join_inner_and_left_at_any_parallelism() {
    for parallelism in [1, 3] {
        for jt in [JoinType::Inner, JoinType::Left] {
            let job = JobBuilder::with_config(
                "join",
                JobConfig {
                    parallelism,
                    ..Default::default()
                },
            );
            let users = table(
                vec![("uid", vec![1, 2, 3, 4])],
                Some(vec!["ann", "bo", "cy", "di"]),
            );
            let orders = table(
                vec![("user", vec![1, 1, 3, 9]), ("amount", vec![10, 20, 30, 40])],
                None,
            );
            let l = job
                .source(
                    "users",
                    Arc::new(MemorySource::from_batches(vec![users]).unwrap()),
                )
                .unwrap();
            let r = job
                .source(
                    "orders",
                    Arc::new(MemorySource::from_batches(vec![orders]).unwrap()),
                )
                .unwrap();
            let sink = MemorySink::new();
            l.hash_join("j", &r, &["uid"], &["user"], jt)
                .unwrap()
                .sink("mem", Arc::new(sink.clone()))
                .unwrap();
            Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
            let mut got: Vec<(i64, String, Option<i64>)> = Vec::new();
            for b in sink.batches() {
                let uid = b.column(0).as_primitive::<Int64Type>();
                let name = b.column(1).as_string::<i32>();
                let amount = b.column(3).as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    got.push((
                        uid.value(i),
                        name.value(i).into(),
                        arrow_array::Array::is_valid(amount, i).then(|| amount.value(i)),
                    ));
                }
            }
            got.sort();
            let mut want = vec![
                (1, "ann".to_string(), Some(10)),
                (1, "ann".into(), Some(20)),
                (3, "cy".into(), Some(30)),
            ];
            if jt == JoinType::Left {
                want.push((2, "bo".into(), None));
                want.push((4, "di".into(), None));
                want.sort();
            }
            assert_eq!(got, want, "{jt:?} parallelism {parallelism}");
        }
    }
}

#[test]
fn interval_join_matches_within_bounds() {
    use arrow_array::TimestampMillisecondArray;
    let mk = |ids: Vec<i64>, ts: Vec<i64>| {
        RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(Int64Array::from(ids)) as arrow_array::ArrayRef,
            ),
            ("ts", Arc::new(TimestampMillisecondArray::from(ts)) as _),
        ])
        .unwrap()
    };
    let job = JobBuilder::new("interval");
    let wm = || WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO);
    let impressions = job
        .source(
            "imp",
            Arc::new(
                MemorySource::from_batches(vec![
                    mk(vec![1, 2], vec![1_000, 1_000]),
                    mk(vec![3], vec![50_000]),
                ])
                .unwrap(),
            ),
        )
        .unwrap()
        .with_watermarks(wm())
        .unwrap();
    let clicks = job
        .source(
            "clk",
            Arc::new(
                MemorySource::from_batches(vec![
                    mk(vec![1, 2, 1], vec![3_000, 20_000, 500]),
                    mk(vec![3], vec![52_000]),
                ])
                .unwrap(),
            ),
        )
        .unwrap()
        .with_watermarks(wm())
        .unwrap();
    let sink = MemorySink::new();
    impressions
        .interval_join("ij", &clicks, &["id"], &["id"], "ts", "ts", 0, 5_000)
        .unwrap()
        .sink("mem", Arc::new(sink.clone()))
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let all = sink.concat().unwrap();
    let mut ids: Vec<i64> = all.column(0).as_primitive::<Int64Type>().values().to_vec();
    ids.sort();
    // id 1: click 2 s after (match), click before (no); id 2: 19 s after (no); id 3: match.
    assert_eq!(ids, vec![1, 3]);
    assert_eq!(all.schema().field(3).name(), "ts_right");
}

#[test]
fn sort_and_top_n_over_parallel_input() {
    let job = JobBuilder::with_config(
        "sort",
        JobConfig {
            parallelism: 3,
            ..Default::default()
        },
    );
    let src = job
        .source("gen", Arc::new(generator(Some(5_000), 300)))
        .unwrap();
    let top = MemorySink::new();
    let all = MemorySink::new();
    src.top_n("top", &[SortKey::desc("v"), SortKey::asc("id")], 10)
        .unwrap()
        .sink("top_sink", Arc::new(top.clone()))
        .unwrap();
    src.sort("sorted", &[SortKey::asc("key"), SortKey::desc("id")])
        .unwrap()
        .sink("all_sink", Arc::new(all.clone()))
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let t = top.concat().unwrap();
    assert_eq!(t.num_rows(), 10);
    let v = t.column(2).as_primitive::<Float64Type>().values().to_vec();
    assert!(v.windows(2).all(|w| w[0] >= w[1]));
    let a = all.concat().unwrap();
    assert_eq!(a.num_rows(), 5_000);
    let vmax = a
        .column(2)
        .as_primitive::<Float64Type>()
        .values()
        .iter()
        .cloned()
        .fold(f64::MIN, f64::max);
    assert_eq!(v[0], vmax);
    let keys = a.column(1).as_primitive::<Int64Type>().values().to_vec();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn keyed_aggregate_and_count_window_on_bounded_input() {
    let job = JobBuilder::with_config(
        "agg",
        JobConfig {
            parallelism: 2,
            ..Default::default()
        },
    );
    let src = job
        .source("gen", Arc::new(generator(Some(10_000), 1000)))
        .unwrap();
    let agg = MemorySink::new();
    let cw = MemorySink::new();
    src.clone()
        .key_by(&["key"])
        .unwrap()
        .aggregate(
            "per_key",
            &[
                Aggregate::count_star("n"),
                Aggregate::new(AggFunc::CountDistinct, "id", "ids"),
            ],
        )
        .unwrap()
        .sink("agg_sink", Arc::new(agg.clone()))
        .unwrap();
    src.key_by(&["key"])
        .unwrap()
        .count_window("every_7", 7, &[Aggregate::count_star("n")])
        .unwrap()
        .sink("cw_sink", Arc::new(cw.clone()))
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let a = agg.concat().unwrap();
    assert_eq!(a.num_rows(), 100, "final mode: one row per key");
    let n: i64 = a
        .column(1)
        .as_primitive::<Int64Type>()
        .values()
        .iter()
        .sum();
    let ids: i64 = a
        .column(2)
        .as_primitive::<Int64Type>()
        .values()
        .iter()
        .sum();
    assert_eq!((n, ids), (10_000, 10_000));
    let c = cw.concat().unwrap();
    let counts = c.column(1).as_primitive::<Int64Type>().values();
    assert_eq!(counts.iter().sum::<i64>(), 10_000);
    // Every key has at most one partial (last) window.
    assert!(counts.iter().filter(|n| **n != 7).count() <= 100);
}

trait SchemaForTest {
    fn schema_for_test(&self) -> SchemaRef;
}

impl SchemaForTest for GeneratorSource {
    fn schema_for_test(&self) -> SchemaRef {
        ferroflow_engine::Source::schema(self)
    }
}

#[test]
fn cancelled_file_sink_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.parquet");
    let job = JobBuilder::new("cancel-file");
    job.source("gen", Arc::new(generator(None, 1000)))
        .unwrap()
        .sink("file", Arc::new(FileSink::from_path(&out).unwrap()))
        .unwrap();
    let handle = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    let t = Instant::now();
    while handle.metrics()[1].1.rows_in == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    assert_eq!(handle.wait().unwrap().status, JobStatus::Cancelled);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn non_blocking_sinks_run_inside_the_producing_chain_and_still_finish() {
    use ferroflow_engine::Sink;
    assert!(MemorySink::new().inline());
    assert!(DiscardSink::new().inline());
    assert!(
        !DiscardSink::with_delay(Duration::from_millis(1)).inline(),
        "a sink that sleeps must not run on the CPU pool"
    );
    let job = JobBuilder::with_config(
        "inline",
        JobConfig {
            parallelism: 2,
            ..JobConfig::default()
        },
    );
    let sink = MemorySink::new();
    job.source("gen", Arc::new(generator(Some(10_000), 100)))
        .unwrap()
        .filter_fn("even", |b| {
            let id = b.column(0).as_primitive::<Int64Type>();
            Ok(id.iter().map(|v| v.map(|v| v % 2 == 0)).collect())
        })
        .unwrap()
        .sink("mem", Arc::new(sink.clone()))
        .unwrap();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    assert_eq!(sink.num_rows(), 5_000);
    assert_eq!(
        sink.finished_writers(),
        2,
        "each instance's writer finished"
    );
    assert_eq!(report.node("mem").unwrap().rows_in, 5_000);
}

/// Emits one row (the wall-clock time it fired) 100 ms after its first input row, by timer.
struct TimerOp {
    schema: SchemaRef,
    due: Option<i64>,
    fired: bool,
}

impl ferroflow_engine::Operator for TimerOp {
    fn process_batch(
        &mut self,
        _: usize,
        _: RecordBatch,
        _: &mut ferroflow_engine::Output,
    ) -> ferroflow_engine::Result<()> {
        if !self.fired && self.due.is_none() {
            self.due = Some(now_ms() + 100);
        }
        Ok(())
    }

    fn next_timer(&self) -> Option<i64> {
        self.due
    }

    fn on_timer(
        &mut self,
        now: i64,
        out: &mut ferroflow_engine::Output,
    ) -> ferroflow_engine::Result<()> {
        assert!(now >= self.due.unwrap(), "fired early");
        self.due = None;
        self.fired = true;
        out.emit(
            RecordBatch::try_new(
                self.schema.clone(),
                vec![Arc::new(Int64Array::from(vec![now]))],
            )
            .unwrap(),
        );
        Ok(())
    }
}

struct TimerFactory(SchemaRef);

impl ferroflow_engine::OperatorFactory for TimerFactory {
    fn output_schema(&self) -> SchemaRef {
        self.0.clone()
    }
    fn create(
        &self,
        _: &ferroflow_engine::InstanceInfo,
    ) -> ferroflow_engine::Result<Box<dyn ferroflow_engine::Operator>> {
        Ok(Box::new(TimerOp {
            schema: self.0.clone(),
            due: None,
            fired: false,
        }))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn processing_time_timers_fire_without_input() {
    // One row now, the next in 5 s: the timer must fire in between, with no input to wake it.
    let job = JobBuilder::new("timers");
    let sink = MemorySink::new();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "fired_at",
        DataType::Int64,
        false,
    )]));
    let started = now_ms();
    job.source("slow", Arc::new(generator(None, 1).with_rate(0.2)))
        .unwrap()
        .transform("timer", Arc::new(TimerFactory(schema)))
        .unwrap()
        .sink("mem", Arc::new(sink.clone()))
        .unwrap();
    let runtime = Runtime::new().unwrap();
    let handle = runtime.execute(job.build().unwrap()).unwrap();
    let t = Instant::now();
    while sink.num_rows() == 0 && t.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    handle.wait().unwrap();
    let b = sink.concat().expect("the timer fired");
    let fired = b.column(0).as_primitive::<Int64Type>().value(0);
    assert!(fired - started >= 100, "fired after {} ms", fired - started);
    assert!(
        fired - started < 3_000,
        "fired after {} ms",
        fired - started
    );
}
