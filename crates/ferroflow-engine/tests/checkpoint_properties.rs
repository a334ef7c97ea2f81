//! Property test: a job cancelled (or stopped) at random moments and restored from its
//! checkpoints, any number of times, at any parallelism, commits exactly the rows of a run
//! without failures; and a stop that comes when every source has already ended stops
//! nothing, so the job reports finished.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferroflow_connectors::{FileFormat, FileSink, GenColumn, GeneratorSource};
use ferroflow_engine::{
    AggFunc, Aggregate, CheckpointConfig, EmitMode, JobBuilder, JobConfig, JobStatus, Runtime,
    WatermarkStrategy, WindowSpec,
};
use proptest::prelude::*;

fn job(
    out: &Path,
    ckpt: Option<&Path>,
    seed: u64,
    rows: u64,
    parallelism: usize,
) -> ferroflow_engine::JobGraph {
    let job = JobBuilder::with_config(
        "prop-restore",
        JobConfig {
            parallelism,
            ..Default::default()
        },
    );
    let job = match ckpt {
        Some(d) => job.with_checkpointing(CheckpointConfig::new(d, Duration::from_millis(5))),
        None => job,
    };
    let source = GeneratorSource::new(
        vec![
            ("id".into(), GenColumn::Sequence),
            ("k".into(), GenColumn::Int { min: 0, max: 40 }),
            ("v".into(), GenColumn::Int { min: 0, max: 9 }),
            (
                "ts".into(),
                GenColumn::EventTime {
                    start_ms: 0,
                    step_ms: 1,
                    max_disorder_ms: 10,
                },
            ),
        ],
        Some(rows),
        seed,
    )
    .unwrap()
    .with_batch_size(64)
    .with_rate(100_000.0);
    let events = job
        .source("gen", Arc::new(source))
        .unwrap()
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::from_millis(10),
        ))
        .unwrap();
    events
        .clone()
        .key_by(&["k"])
        .unwrap()
        .window(
            "w",
            WindowSpec::tumbling("ts", Duration::from_millis(50)),
            &[
                Aggregate::count_star("n"),
                Aggregate::new(AggFunc::Sum, "v", "s"),
                Aggregate::new(AggFunc::CountDistinct, "v", "d"),
            ],
        )
        .unwrap()
        .sink(
            "windows",
            Arc::new(FileSink::new(out.join("windows"), FileFormat::JsonLines)),
        )
        .unwrap();
    events
        .key_by(&["k"])
        .unwrap()
        .aggregate_with(
            "totals",
            &[Aggregate::new(AggFunc::Max, "id", "last")],
            EmitMode::Final,
        )
        .unwrap()
        .sink(
            "totals_out",
            Arc::new(FileSink::new(out.join("totals"), FileFormat::JsonLines)),
        )
        .unwrap();
    job.build().unwrap()
}

fn committed(dir: &Path) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    for sub in ["windows", "totals"] {
        let Ok(it) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in it.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            for l in std::fs::read_to_string(e.path()).unwrap().lines() {
                *rows.entry(format!("{sub}: {l}")).or_default() += 1;
            }
        }
    }
    rows
}

fn cases() -> u32 {
    std::env::var("FERROFLOW_PROP_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn restores_after_random_failures_commit_what_a_clean_run_commits(
        seed in 0u64..1_000,
        rows in 2_000u64..8_000,
        failures in proptest::collection::vec((0u64..60, 1usize..4, any::<bool>()), 1..5),
        last_parallelism in 1usize..4,
    ) {
        let runtime = Runtime::new().unwrap();
        let clean = tempfile::tempdir().unwrap();
        runtime.run(job(clean.path(), None, seed, rows, 2)).unwrap();
        let want = committed(clean.path());

        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("ckpt");
        for (delay_ms, parallelism, stop) in failures {
            let h = runtime
                .execute(job(dir.path(), Some(&ckpt), seed, rows, parallelism))
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            if stop { h.stop() } else { h.cancel() }
            let r = h.wait().unwrap();
            prop_assert!(matches!(
                r.status,
                JobStatus::Cancelled | JobStatus::Stopped | JobStatus::Finished
            ));
        }
        let r = runtime
            .run(job(dir.path(), Some(&ckpt), seed, rows, last_parallelism))
            .unwrap();
        prop_assert_eq!(r.status, JobStatus::Finished);
        let got = committed(dir.path());
        let missing: Vec<&String> = want.keys().filter(|k| got.get(*k) != want.get(*k)).take(5).collect();
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).take(5).collect();
        prop_assert!(
            got == want,
            "{} rows committed, {} expected; differing: {:?}; unexpected: {:?}",
            got.values().sum::<usize>(),
            want.values().sum::<usize>(),
            missing,
            extra
        );
    }
}

/// The stop comes while the last rows are still on their way (the sources have ended, a slow
/// operator holds them): no task is left to stop, so the job runs to its end and reports
/// finished, with every row committed (a fit sink, say, has fitted its model by then).
#[test]
fn a_stop_after_every_source_ended_reports_finished() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let source = GeneratorSource::new(vec![("id".into(), GenColumn::Sequence)], Some(10), 1)
        .unwrap()
        .with_batch_size(10);
    let schema = ferroflow_engine::Source::schema(&source);
    let job = JobBuilder::with_config("late-stop", JobConfig::default()).with_checkpointing(
        CheckpointConfig::new(dir.path().join("ckpt"), Duration::from_secs(3600)),
    );
    job.source("gen", Arc::new(source))
        .unwrap()
        .map("slow", schema, |b| {
            std::thread::sleep(Duration::from_millis(400));
            Ok(b)
        })
        .unwrap()
        .sink(
            "out",
            Arc::new(FileSink::new(out.clone(), FileFormat::JsonLines)),
        )
        .unwrap();
    let h = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    h.stop();
    let r = h.wait().unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    let rows: usize = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum();
    assert_eq!(rows, 10);
}
