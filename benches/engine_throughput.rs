//! Engine throughput without DataFusion: stateless pipeline events/s per core, and a keyed
//! tumbling-window count over one million distinct keys.
//!
//! `cargo bench --no-default-features --bench engine_throughput`

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferroflow::engine::RuntimeConfig;
use ferroflow::prelude::*;

fn stateless(c: &mut Criterion) {
    const N: u64 = 4_000_000;
    let runtime = Runtime::with_config(RuntimeConfig {
        cpu_threads: 1,
        ..Default::default()
    })
    .unwrap();
    let mut g = c.benchmark_group("stateless");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("generator_filter_project_discard", |b| {
        b.iter(|| {
            let job = JobBuilder::new("stateless");
            let src = GeneratorSource::new(
                vec![
                    ("id".into(), GenColumn::Sequence),
                    ("v".into(), GenColumn::Float { min: 0.0, max: 1.0 }),
                ],
                Some(N),
                1,
            )
            .unwrap()
            .with_batch_size(8192);
            let s = job.source("gen", Arc::new(src)).unwrap();
            let projected = Arc::new(arrow_schema::Schema::new(vec![s.schema().field(1).clone()]));
            let sink = DiscardSink::new();
            s.filter_fn("filter", |b| {
                let v = b.column(1).as_primitive::<Float64Type>();
                Ok(arrow_ord::cmp::lt(
                    v,
                    &arrow_array::Float64Array::new_scalar(0.9),
                )?)
            })
            .unwrap()
            .map("project", projected.clone(), move |b| {
                Ok(RecordBatch::try_new(
                    projected.clone(),
                    vec![b.column(1).clone()],
                )?)
            })
            .unwrap()
            .sink("discard", Arc::new(sink.clone()))
            .unwrap();
            runtime.run(job.build().unwrap()).unwrap();
            assert!(sink.rows() > N / 2);
        })
    });
    g.finish();
}

fn keyed_window(c: &mut Criterion) {
    const N: u64 = 4_000_000;
    let runtime = Runtime::with_config(RuntimeConfig {
        cpu_threads: 1,
        ..Default::default()
    })
    .unwrap();
    let mut g = c.benchmark_group("keyed_window");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("tumbling_count_1m_keys", |b| {
        b.iter(|| {
            let job = JobBuilder::new("keyed");
            let src = GeneratorSource::new(
                vec![
                    (
                        "key".into(),
                        GenColumn::Int {
                            min: 0,
                            max: 999_999,
                        },
                    ),
                    (
                        "ts".into(),
                        GenColumn::EventTime {
                            start_ms: 0,
                            step_ms: 1,
                            max_disorder_ms: 0,
                        },
                    ),
                ],
                Some(N),
                2,
            )
            .unwrap()
            .with_batch_size(8192);
            let sink = DiscardSink::new();
            job.source("gen", Arc::new(src))
                .unwrap()
                .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
                    "ts",
                    Duration::ZERO,
                ))
                .unwrap()
                .key_by(&["key"])
                .unwrap()
                .window(
                    "count",
                    WindowSpec::tumbling("ts", Duration::from_secs(1_000)),
                    &[Aggregate::count_star("n")],
                )
                .unwrap()
                .sink("discard", Arc::new(sink.clone()))
                .unwrap();
            runtime.run(job.build().unwrap()).unwrap();
            assert!(sink.rows() > 0);
        })
    });
    g.finish();
}

criterion_group!(benches, stateless, keyed_window);
criterion_main!(benches);
