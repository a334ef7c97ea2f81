//! ferroflow inside your own program: no server, no config files, no DataFusion.
//!
//! Builds a streaming job in Rust (generated click events -> per-user 1-second windows),
//! runs it in-process on bounded input and reads the results from memory.
//!
//! Run: `cargo run --example embedded --no-default-features`

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use ferroflow::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events = GeneratorSource::new(
        vec![
            (
                "user".into(),
                GenColumn::Choice(vec!["ann".into(), "bo".into(), "cy".into()]),
            ),
            (
                "amount".into(),
                GenColumn::Float {
                    min: 0.0,
                    max: 100.0,
                },
            ),
            (
                "ts".into(),
                GenColumn::EventTime {
                    start_ms: 0,
                    step_ms: 1,
                    max_disorder_ms: 20,
                },
            ),
        ],
        Some(100_000),
        42,
    )?;

    let job = JobBuilder::new("embedded");
    let results = MemorySink::new();
    job.source("events", Arc::new(events))?
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::from_millis(20),
        ))?
        .filter_fn("big_spenders", |b| {
            let amount = b.column(1).as_primitive::<Float64Type>();
            Ok(amount.iter().map(|v| v.map(|v| v > 50.0)).collect())
        })?
        .key_by(&["user"])?
        .window(
            "per_user_second",
            WindowSpec::tumbling("ts", Duration::from_secs(1)),
            &[
                Aggregate::count_star("purchases"),
                Aggregate::new(AggFunc::Avg, "amount", "mean_amount"),
            ],
        )?
        .sink("results", Arc::new(results.clone()))?;

    let runtime = Runtime::new()?;
    let report = runtime.run(job.build()?)?;
    let rows = results.num_rows();
    println!(
        "{} windows from 100000 events in {:.1} ms ({} CPU threads)",
        rows,
        report.elapsed.as_secs_f64() * 1e3,
        runtime.cpu_threads()
    );
    if let Some(all) = results.concat() {
        println!(
            "{}",
            arrow_cast::pretty::pretty_format_batches(&[all.slice(0, 6.min(rows))])?
        );
    }
    Ok(())
}
