//! The flagship loop (`examples/ad_click_loop`) under the scheduler for about 30 s: online
//! training registers model versions, the evaluation job records each one's metrics and
//! deploys the good ones, and one serving run swaps to each deployed version without a
//! restart. A version planted in the Model Center that scores badly is never served.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::flow::{Flow, wait_until};
use ferroflow::ml::{AnyStage, io};
use serde_json::Value;

const THRESHOLD: f64 = 0.6;

/// The registered versions of `ctr`: number -> (stage, uri).
fn versions(flow: &Flow) -> BTreeMap<i64, (String, String)> {
    flow.json(&["models", "versions", "ctr"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                (
                    v["stage"].as_str().unwrap().to_string(),
                    v["uri"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Metric records of the project's model versions: version -> key -> value.
fn metrics(flow: &Flow) -> BTreeMap<i64, BTreeMap<String, f64>> {
    let mut out: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    for r in flow
        .json(&["meta", "list", "metric", "--project", "ads"])
        .as_array()
        .unwrap()
    {
        let parent = r["parent"].as_str().unwrap();
        let v: i64 = parent
            .strip_prefix("model:ctr/")
            .unwrap_or_else(|| panic!("parent {parent}"))
            .parse()
            .unwrap();
        out.entry(v).or_default().insert(
            r["body"]["key"].as_str().unwrap().to_string(),
            r["body"]["value"].as_f64().unwrap(),
        );
    }
    out
}

/// A version that predicts the opposite of `uri`'s: its coefficients negated.
fn inverted_model(uri: &str, dir: &Path) {
    let AnyStage::Model(mut model) = ferroflow::ml::load_stage(Path::new(uri)).unwrap() else {
        panic!("{uri} is not a model");
    };
    let data = model.model_data().unwrap();
    let mut rows = io::batch_to_rows(&data[0]).unwrap();
    let negate = |v: &mut Value| {
        if let Some(x) = v.as_f64() {
            *v = serde_json::json!(-x);
        }
    };
    match rows[0].get_mut("coefficient").unwrap() {
        Value::Array(values) => values.iter_mut().for_each(negate),
        Value::Object(sparse) => sparse["values"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .for_each(negate),
        other => panic!("coefficient {other}"),
    }
    model
        .set_model_data(&[io::rows_to_batch(&rows).unwrap()])
        .unwrap();
    model.save(dir).unwrap();
}

/// `(id, served_by)` of every committed scored row, by id.
fn scored(dir: &Path) -> Vec<(i64, i64)> {
    let mut rows = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".csv") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("id,ts,ad,click,prediction,served_by,scored_at"),
            "{name}"
        );
        for line in lines {
            let cols: Vec<&str> = line.split(',').collect();
            let served: i64 = cols[5]
                .parse()
                .unwrap_or_else(|_| panic!("{name}: a row without its version: {line}"));
            rows.push((cols[0].parse().unwrap(), served));
        }
    }
    rows.sort();
    rows
}

#[test]
fn the_loop_trains_evaluates_deploys_and_serves_versions_live() {
    let mut flow = Flow::new();
    let loop_dir = flow.path("loop");
    std::fs::create_dir_all(&loop_dir).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ad_click_loop");
    for f in ["workflow.yaml", "train.yaml", "evaluate.yaml", "serve.yaml"] {
        std::fs::copy(example.join(f), loop_dir.join(f)).unwrap();
    }
    let started = Instant::now();
    let exec = flow.launch(&loop_dir.join("workflow.yaml"), "ad_click_loop", "ads");

    // A few versions in, a version that predicts the opposite of the newest is registered
    // beside the trained ones: it must fail evaluation and never be served.
    wait_until("6 versions registered", Duration::from_secs(90), || {
        // The model exists once the first job to start has registered it.
        let out = flow.cmd(&["models", "versions", "ctr"]).output().unwrap();
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout)
                .unwrap()
                .as_array()
                .is_some_and(|v| v.len() >= 6)
    });
    let (newest, (_, uri)) = versions(&flow).into_iter().next_back().unwrap();
    let bad_dir = flow.path("bad_model");
    inverted_model(&uri, &bad_dir);
    let out = flow.json(&[
        "models",
        "create-version",
        "ctr",
        "--uri",
        bad_dir.to_str().unwrap(),
        "--flavor",
        "ferroflow-ml",
    ]);
    let bad = out["version"].as_i64().unwrap();
    assert!(bad > newest);

    let left = Duration::from_secs(30).saturating_sub(started.elapsed());
    std::thread::sleep(left.max(Duration::from_secs(10)));
    flow.ok(&["workflow", "stop", &exec, "--project", "ads"]);
    wait_until("execution STOPPED", Duration::from_secs(60), || {
        flow.status("ads", "ad_click_loop", &exec) == "STOPPED"
    });

    // Each job ran once: nothing restarted, the serving run swapped versions itself.
    for job in ["train", "evaluate", "serve"] {
        assert_eq!(flow.runs("ads", &exec, job), ["STOPPED"], "job {job}");
    }

    let versions = versions(&flow);
    let trained: Vec<i64> = versions
        .iter()
        .filter(|(_, (_, uri))| uri.contains("ad_click_loop-1.train"))
        .map(|(v, _)| *v)
        .collect();
    assert!(trained.len() >= 5, "versions {versions:?}");

    // Evaluation metrics for each version, up to the one or two registered just before
    // the stop (still waiting for their rows then).
    let metrics = metrics(&flow);
    let evaluated: BTreeSet<i64> = metrics.keys().copied().collect();
    let last_evaluated = *evaluated.iter().next_back().unwrap();
    for v in versions.keys().filter(|v| **v <= last_evaluated) {
        let m = &metrics[v];
        assert!(
            m.contains_key("auc") && m.contains_key("log_loss"),
            "v{v}: {m:?}"
        );
    }
    assert!(
        versions.keys().filter(|v| **v > last_evaluated).count() <= 2,
        "evaluated up to {last_evaluated} of {versions:?}"
    );

    // The planted version failed and was retired; no version below the threshold was
    // deployed.
    let bad_auc = metrics[&bad]["auc"];
    assert!(bad_auc < THRESHOLD, "the inverted model's AUC {bad_auc}");
    assert_eq!(versions[&bad].0, "DEPRECATED");

    // Every scored row carries the version that scored it, never going back, each row
    // once; one run served at least 3 versions, none that failed evaluation.
    let rows = scored(&flow.path("loop/out/scored"));
    assert!(rows.len() > 10_000, "{} rows scored", rows.len());
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        ids,
        (0..rows.len() as i64).collect::<Vec<_>>(),
        "each row once"
    );
    assert!(
        rows.windows(2).all(|w| w[0].1 <= w[1].1),
        "served versions go back"
    );
    let served: BTreeSet<i64> = rows.iter().map(|r| r.1).collect();
    assert!(served.len() >= 3, "served {served:?}");
    assert!(!served.contains(&bad), "the failed version was served");
    for v in &served {
        let auc = metrics[v]["auc"];
        assert!(auc >= THRESHOLD, "v{v} served with AUC {auc}");
    }

    // On the drifting stream, the last versions rank clicks at least as well as the first.
    let aucs: Vec<f64> = trained
        .iter()
        .filter_map(|v| metrics.get(v).map(|m| m["auc"]))
        .collect();
    let last3 = aucs[aucs.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(last3 >= aucs[0], "AUC first {} last three {last3}", aucs[0]);
}
