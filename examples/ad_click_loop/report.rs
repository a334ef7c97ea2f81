//! What a run of the online-learning loop did: the model versions with the metrics the
//! evaluation job recorded and their stages, how many predictions each version served, and
//! a chart of both (SVG). run.sh calls it after stopping the loop:
//!
//! ```sh
//! cargo run --example ad_click_report -- --data-dir out/.ferroflow --model ctr \
//!     --project ads --scored out/scored --chart out/loop.svg
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferroflow::meta::{EventFilter, MetaStore, RecordKind, SqliteStore};
use plotters::prelude::*;

type AnyError = Box<dyn std::error::Error>;

struct Args {
    data_dir: PathBuf,
    project: String,
    model: String,
    scored: PathBuf,
    chart: PathBuf,
}

fn need<T>(v: Option<T>, flag: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("--{flag} is required"))
}

fn args() -> Result<Args, AnyError> {
    let mut a = std::env::args().skip(1);
    let (mut data_dir, mut project, mut model, mut scored, mut chart) =
        (None, None, None, None, None);
    while let Some(flag) = a.next() {
        let value = a.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value)),
            "--project" => project = Some(value),
            "--model" => model = Some(value),
            "--scored" => scored = Some(PathBuf::from(value)),
            "--chart" => chart = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(Args {
        data_dir: need(data_dir, "data-dir")?,
        project: need(project, "project")?,
        model: need(model, "model")?,
        scored: need(scored, "scored")?,
        chart: need(chart, "chart")?,
    })
}

/// Predictions per serving version, from the committed CSV part files of the scored output
/// (the `served_by` column).
fn served(dir: &Path) -> Result<BTreeMap<i64, u64>, AnyError> {
    let mut count = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".csv") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let col = text
            .lines()
            .next()
            .and_then(|h| h.split(',').position(|c| c == "served_by"))
            .ok_or_else(|| format!("{name}: no served_by column"))?;
        for (i, line) in text.lines().enumerate().skip(1) {
            let v = line
                .split(',')
                .nth(col)
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| format!("{}:{}: no version in served_by", name, i + 1))?;
            *count.entry(v).or_insert(0u64) += 1;
        }
    }
    Ok(count)
}

fn main() -> Result<(), AnyError> {
    let a = args()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store: Arc<dyn MetaStore> =
        Arc::new(rt.block_on(SqliteStore::open(&a.data_dir.join("meta.db")))?);
    let versions = rt.block_on(store.list_model_versions(&a.model, None))?;
    let mut metrics: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    for r in
        rt.block_on(store.list_records(RecordKind::Metric, Some(&a.project), None, 0, 100_000))?
    {
        let prefix = format!("model:{}/", a.model);
        let Some(v) = r
            .parent
            .as_deref()
            .and_then(|p| p.strip_prefix(&prefix))
            .and_then(|v| v.parse::<i64>().ok())
        else {
            continue;
        };
        if let (Some(k), Some(x)) = (r.body["key"].as_str(), r.body["value"].as_f64()) {
            metrics.entry(v).or_default().insert(k.to_string(), x);
        }
    }
    // What the evaluation made of each version: the stage its MODEL_METRICS event names.
    let mut verdict: BTreeMap<i64, String> = BTreeMap::new();
    let filter = EventFilter {
        keys: vec![a.model.clone()],
        event_types: vec!["MODEL_METRICS".into()],
        ..EventFilter::default()
    };
    for e in rt.block_on(store.list_events(&filter, 0, 100_000))? {
        let v: serde_json::Value = serde_json::from_str(&e.value)?;
        if let (Some(n), Some(st)) = (v["version"].as_i64(), v["stage"].as_str()) {
            verdict.insert(n, st.to_string());
        }
    }
    let served = served(&a.scored)?;
    let t0 = versions.first().map(|v| v.create_time).unwrap_or(0);

    println!(
        "-- model versions of '{}': {} registered, {} evaluated, {} served",
        a.model,
        versions.len(),
        metrics.len(),
        served.len()
    );
    println!(
        "{:>7} {:>10} {:<11} {:<11} {:>7} {:>9} {:>11}  lineage",
        "version", "registered", "evaluation", "stage now", "auc", "log_loss", "predictions"
    );
    let fmt = |m: Option<&f64>| m.map_or("-".to_string(), |x| format!("{x:.4}"));
    for v in &versions {
        let m = metrics.get(&v.version);
        println!(
            "{:>7} {:>9.1}s {:<11} {:<11} {:>7} {:>9} {:>11}  {}",
            v.version,
            (v.create_time - t0) as f64 / 1000.0,
            match verdict.get(&v.version).map(String::as_str) {
                Some("DEPLOYED") => "deployed",
                Some("VALIDATED") => "validated",
                Some("DEPRECATED" | "GENERATED") => "rejected",
                Some(_) => "?",
                None => "-",
            },
            v.stage.as_str(),
            fmt(m.and_then(|m| m.get("auc"))),
            fmt(m.and_then(|m| m.get("log_loss"))),
            served.get(&v.version).copied().unwrap_or(0),
            v.job_execution.as_deref().unwrap_or("(registered by hand)")
        );
    }
    let total: u64 = served.values().sum();
    println!(
        "-- {total} predictions, by {} versions: {}",
        served.len(),
        served
            .iter()
            .map(|(v, n)| format!("v{v}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // AUC of each evaluated version at the time it was registered; predictions per version.
    let auc: Vec<(f64, f64)> = versions
        .iter()
        .filter_map(|v| {
            let x = metrics.get(&v.version)?.get("auc")?;
            Some(((v.create_time - t0) as f64 / 1000.0, *x))
        })
        .collect();
    let t_max = auc.iter().map(|p| p.0).fold(1.0, f64::max);
    let v_max = versions.last().map_or(1, |v| v.version) as f64 + 1.0;
    let n_max = served.values().copied().max().unwrap_or(1) as f64 * 1.1;
    let root = SVGBackend::new(&a.chart, (900, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(320);
    let mut c = ChartBuilder::on(&top)
        .caption(
            "AUC of each version on the impressions after it",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..t_max * 1.05, 0.4..1.0)?;
    c.configure_mesh()
        .x_desc("seconds since the first version")
        .y_desc("AUC")
        .draw()?;
    c.draw_series(LineSeries::new(auc.iter().copied(), &BLUE))?;
    c.draw_series(
        auc.iter()
            .map(|&(t, x)| Circle::new((t, x), 3, BLUE.filled())),
    )?;
    let mut c = ChartBuilder::on(&bottom)
        .caption("Predictions served by each version", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..v_max, 0.0..n_max)?;
    c.configure_mesh()
        .x_desc("model version")
        .y_desc("predictions")
        .draw()?;
    c.draw_series(served.iter().map(|(&v, &n)| {
        Rectangle::new(
            [(v as f64 - 0.4, 0.0), (v as f64 + 0.4, n as f64)],
            RED.mix(0.6).filled(),
        )
    }))?;
    root.present()?;
    println!("-- chart: {}", a.chart.display());
    Ok(())
}
