//! Peak memory of a 100 M-event streaming run whose sink is deliberately slow: the channels'
//! bounds, not the input size, must limit what is buffered.
//!
//! `cargo bench --no-default-features --bench bounded_memory [-- EVENTS]`
//! Prints peak RSS (VmHWM) before and after, the configured bound summed over all channels,
//! and the channels' high-water marks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroflow::engine::ChannelBound;
use ferroflow::prelude::*;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // Criterion-style harness flags (--bench) are ignored; an optional number sets the events.
    let events: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000_000);
    let bound = ChannelBound {
        max_rows: 256 * 1024,
        max_bytes: 8 << 20,
    };
    let before = vm_hwm_kib();
    let job = JobBuilder::with_config(
        "bounded-memory",
        JobConfig {
            parallelism: 2,
            channel_bound: bound,
        },
    );
    let src = GeneratorSource::new(
        vec![
            ("id".into(), GenColumn::Sequence),
            ("key".into(), GenColumn::Int { min: 0, max: 1_000 }),
            ("v".into(), GenColumn::Float { min: 0.0, max: 1.0 }),
        ],
        Some(events),
        9,
    )
    .unwrap()
    .with_batch_size(65_536);
    let s = job.source("gen", Arc::new(src)).unwrap();
    s.key_by(&["key"])
        .unwrap()
        .stream()
        .filter_fn("pass", |b| {
            Ok(arrow_array::BooleanArray::from(vec![true; b.num_rows()]))
        })
        .unwrap()
        .sink(
            "slow",
            Arc::new(DiscardSink::with_delay(Duration::from_millis(2))),
        )
        .unwrap();
    let runtime = Runtime::new().unwrap();
    let t = Instant::now();
    let handle = runtime.execute(job.build().unwrap()).unwrap();
    let report = handle.wait().unwrap();
    let after = vm_hwm_kib();
    let channels = handle.channel_count();
    let hw = handle.channel_high_water();
    println!("events:                 {events}");
    println!("elapsed:                {:.1} s", t.elapsed().as_secs_f64());
    println!(
        "throughput:             {:.2} M events/s",
        events as f64 / report.elapsed.as_secs_f64() / 1e6
    );
    println!("peak RSS before job:    {} MiB", before / 1024);
    println!("peak RSS after job:     {} MiB", after / 1024);
    println!(
        "channel bound:          {} channels x {} MiB = {} MiB",
        channels,
        bound.max_bytes >> 20,
        (channels * bound.max_bytes) >> 20
    );
    println!(
        "largest channel fill:   {} rows, {} KiB",
        hw.rows,
        hw.bytes / 1024
    );
    println!(
        "input size (3 x 8 B x events): {} MiB",
        events * 24 / (1 << 20)
    );
}
