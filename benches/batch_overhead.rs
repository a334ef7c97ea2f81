//! Engine overhead on a batch pipeline against DataFusion running the same query directly,
//! in the same run: scan Parquet -> filter -> group by.
//!
//! `cargo bench --bench batch_overhead`; the ratio is engine time / DataFusion time.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferroflow::prelude::*;
use ferroflow::sql::{BatchSql, ExprStreamExt};

const ROWS: u64 = 5_000_000;

fn write_input(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("input.parquet");
    let job = JobBuilder::new("make-input");
    let src = GeneratorSource::new(
        vec![
            ("key".into(), GenColumn::Int { min: 0, max: 9_999 }),
            ("v".into(), GenColumn::Float { min: 0.0, max: 1.0 }),
            ("w".into(), GenColumn::Int { min: 0, max: 1_000 }),
        ],
        Some(ROWS),
        3,
    )
    .unwrap()
    .with_batch_size(65_536);
    job.source("gen", Arc::new(src))
        .unwrap()
        .sink("file", Arc::new(FileSink::from_path(&path).unwrap()))
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    path
}

fn overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    let runtime = Runtime::new().unwrap();
    let mut g = c.benchmark_group("batch_overhead");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(10);
    g.bench_function("datafusion", |b| {
        let sql = BatchSql::new().unwrap();
        sql.register("t", &input).unwrap();
        b.iter(|| {
            let out = sql
                .query("SELECT key, count(*) AS n, sum(w) AS s FROM t WHERE v > 0.5 GROUP BY key")
                .unwrap();
            assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 10_000);
        })
    });
    g.bench_function("ferroflow", |b| {
        b.iter(|| {
            let job = JobBuilder::with_config(
                "overhead",
                JobConfig {
                    parallelism: runtime.cpu_threads(),
                    ..Default::default()
                },
            );
            let sink = DiscardSink::new();
            job.source(
                "scan",
                Arc::new(FileSource::from_path(&input).unwrap().with_batch_size(8192)),
            )
            .unwrap()
            .filter("filter", "v > 0.5")
            .unwrap()
            .key_by(&["key"])
            .unwrap()
            .aggregate(
                "group_by",
                &[
                    Aggregate::count_star("n"),
                    Aggregate::new(AggFunc::Sum, "w", "s"),
                ],
            )
            .unwrap()
            .sink("discard", Arc::new(sink.clone()))
            .unwrap();
            runtime.run(job.build().unwrap()).unwrap();
            assert_eq!(sink.rows(), 10_000);
        })
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
