//! Cost of exactly-once: throughput of a windowed job with checkpoints every second against
//! none, checkpoint duration and size with one million keys of window state, and the time
//! from a restart to the first new committed output.
//!
//! `cargo bench --no-default-features --bench checkpoints` (`FERROFLOW_BENCH_RUNS`, default 5)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroflow::prelude::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// generator -> key_by -> tumbling window (count, sum) -> file sink (a directory).
fn windowed(
    out: &Path,
    ckpt: Option<&Path>,
    rows: Option<u64>,
    keys: i64,
    window: Duration,
    rate: Option<f64>,
) -> ferroflow::engine::JobGraph {
    let job = JobBuilder::with_config(
        "bench-checkpoints",
        JobConfig {
            parallelism: 2,
            ..Default::default()
        },
    );
    let job = match ckpt {
        Some(d) => job.with_checkpointing(CheckpointConfig::new(d, Duration::from_secs(1))),
        None => job,
    };
    let mut src = GeneratorSource::new(
        vec![
            (
                "k".into(),
                GenColumn::Int {
                    min: 0,
                    max: keys - 1,
                },
            ),
            ("v".into(), GenColumn::Int { min: 0, max: 100 }),
            (
                "ts".into(),
                GenColumn::EventTime {
                    start_ms: 0,
                    step_ms: 1,
                    max_disorder_ms: 0,
                },
            ),
        ],
        rows,
        5,
    )
    .unwrap()
    .with_batch_size(8192);
    if let Some(r) = rate {
        src = src.with_rate(r);
    }
    job.source("gen", Arc::new(src))
        .unwrap()
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::ZERO,
        ))
        .unwrap()
        .key_by(&["k"])
        .unwrap()
        .window(
            "w",
            WindowSpec::tumbling("ts", window),
            &[
                Aggregate::count_star("n"),
                Aggregate::new(AggFunc::Sum, "v", "s"),
            ],
        )
        .unwrap()
        .sink("out", Arc::new(FileSink::new(out, FileFormat::ArrowIpc)))
        .unwrap();
    job.build().unwrap()
}

fn main() {
    let runs: usize = std::env::var("FERROFLOW_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = Runtime::new().unwrap();

    // 1. Throughput, checkpoints every 1 s vs none (runs alternate to share the noise).
    const ROWS: u64 = 40_000_000;
    let (mut plain, mut with) = (Vec::new(), Vec::new());
    let mut checkpoints = 0;
    for _ in 0..runs {
        for ck in [false, true] {
            let d = tempfile::tempdir().unwrap();
            let ckpt = d.path().join("ckpt");
            let t = Instant::now();
            let r = runtime
                .run(windowed(
                    &d.path().join("out"),
                    ck.then_some(ckpt.as_path()),
                    Some(ROWS),
                    10_000,
                    Duration::from_secs(1),
                    None,
                ))
                .unwrap();
            let eps = ROWS as f64 / t.elapsed().as_secs_f64();
            if ck {
                checkpoints += r.checkpoints.len();
                with.push(eps);
            } else {
                plain.push(eps);
            }
        }
    }
    let (p, w) = (median(plain), median(with));
    println!(
        "windowed job, 10k keys, {ROWS} rows, parallelism 2: no checkpoints {:.2} M events/s, checkpoints every 1 s {:.2} M events/s ({} checkpoints in {runs} runs); overhead {:.1} %",
        p / 1e6,
        w / 1e6,
        checkpoints,
        (1.0 - w / p) * 100.0
    );

    // 2. One million keys in one open window: checkpoint duration and size.
    let d = tempfile::tempdir().unwrap();
    let ckpt = d.path().join("ckpt");
    let r = runtime
        .run(windowed(
            &d.path().join("out"),
            Some(&ckpt),
            Some(30_000_000),
            1_000_000,
            Duration::from_secs(100_000),
            None,
        ))
        .unwrap();
    let big: Vec<_> = r
        .checkpoints
        .iter()
        .filter(|c| c.bytes > 10_000_000)
        .collect();
    if big.is_empty() {
        println!("1 M keys: no checkpoint held the full state (job too short)");
    } else {
        println!(
            "1 M keys of window state: {} checkpoints, median duration {:.0} ms, median alignment {:.1} ms, size {:.1} MiB",
            big.len(),
            median(big.iter().map(|c| c.duration.as_secs_f64() * 1e3).collect()),
            median(
                big.iter()
                    .map(|c| c.alignment.as_secs_f64() * 1e3)
                    .collect()
            ),
            big.iter().map(|c| c.bytes).max().unwrap() as f64 / (1 << 20) as f64
        );
    }

    // 3. Restart to the first new committed output (abort after 3 s, restore at once).
    let mut restarts = Vec::new();
    for _ in 0..runs {
        let d = tempfile::tempdir().unwrap();
        let ckpt = d.path().join("ckpt");
        let out = d.path().join("out");
        let job = || {
            windowed(
                &out,
                Some(&ckpt),
                None,
                1_000,
                Duration::from_millis(100),
                Some(200_000.0),
            )
        };
        let h = runtime.execute(job()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        h.cancel();
        h.wait().ok();
        let count = || {
            std::fs::read_dir(&out)
                .map(|it| {
                    it.flatten()
                        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        .count()
                })
                .unwrap_or(0)
        };
        let before = count();
        let t = Instant::now();
        let h = runtime.execute(job()).unwrap();
        while count() == before {
            std::thread::sleep(Duration::from_millis(1));
        }
        restarts.push(t.elapsed().as_secs_f64() * 1e3);
        h.cancel();
        h.wait().ok();
    }
    println!(
        "restart to first new committed output (checkpoints every 1 s): median {:.0} ms over {runs} restarts",
        median(restarts)
    );
}
