//! Cross-check against scikit-learn on the datasets it bundles (tests/ml_fixtures, written by
//! scripts/make-ml-fixtures.py with scikit-learn's own metrics): ferroflow's stages, run
//! through the `ferroflow ml` command line, reach comparable metrics.
//!
//! "Comparable": Flink ML's linear models have no intercept term and train with plain SGD,
//! so they get a small margin below scikit-learn's (which has an intercept and a second-order
//! solver); KMeans and StandardScaler must match closely.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value, json};

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ml_fixtures"))
}

fn sklearn(name: &str) -> Value {
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("sklearn_metrics.json")).unwrap(),
    )
    .unwrap();
    m[name].clone()
}

fn ml(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferroflow"))
        .arg("ml")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rows(path: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Fit `stage` on `data` and transform `data` with the model; the output rows.
fn fit_transform(dir: &Path, stage: Value, data: &str) -> Vec<Map<String, Value>> {
    std::fs::write(dir.join("stage.json"), stage.to_string()).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    let input = fixtures().join(data).display().to_string();
    ml(&[
        "fit",
        "--stage",
        &p("stage.json"),
        "--input",
        &input,
        "--model-dir",
        &p("model"),
    ]);
    ml(&[
        "transform",
        "--model-dir",
        &p("model"),
        "--input",
        &input,
        "--output",
        &p("out.jsonl"),
    ]);
    rows(&dir.join("out.jsonl"))
}

/// Fit `stage` on fixture `data` into `dir/m` and return the model data's first row.
fn fit_model_data(dir: &Path, stage: Value, data: &str) -> Map<String, Value> {
    std::fs::write(dir.join("s.json"), stage.to_string()).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    let input = fixtures().join(data).display().to_string();
    ml(&[
        "fit",
        "--stage",
        &p("s.json"),
        "--input",
        &input,
        "--model-dir",
        &p("m"),
    ]);
    ml(&[
        "model-data",
        "--model-dir",
        &p("m"),
        "--output",
        &p("md.jsonl"),
    ]);
    rows(&dir.join("md.jsonl")).remove(0)
}

fn accuracy(rows: &[Map<String, Value>]) -> f64 {
    let right = rows
        .iter()
        .filter(|r| r["prediction"].as_f64() == r["label"].as_f64())
        .count();
    right as f64 / rows.len() as f64
}

fn scaled_then(model: Value) -> Value {
    json!({"className": "Pipeline", "stages": [
        {"className": "StandardScaler", "paramMap": {"inputCol": "features", "outputCol": "scaled", "withMean": true}},
        model
    ]})
}

#[test]
fn logistic_regression_on_breast_cancer() {
    let dir = tempfile::tempdir().unwrap();
    let out = fit_transform(
        dir.path(),
        scaled_then(json!({"className": "LogisticRegression", "paramMap": {
            "featuresCol": "scaled", "maxIter": 300, "learningRate": 0.5, "globalBatchSize": 569}})),
        "breast_cancer.jsonl",
    );
    let acc = accuracy(&out);
    let want = sklearn("breast_cancer_lr_accuracy").as_f64().unwrap();
    assert!(acc >= want - 0.04, "accuracy {acc} vs scikit-learn {want}");
    // AUC through our evaluator, against scikit-learn's.
    let d = dir.path();
    std::fs::write(
        d.join("eval.json"),
        json!({"className": "BinaryClassificationEvaluator",
        "paramMap": {"metricsNames": ["areaUnderROC"]}})
        .to_string(),
    )
    .unwrap();
    let p = |n: &str| d.join(n).display().to_string();
    ml(&[
        "transform",
        "--stage",
        &p("eval.json"),
        "--input",
        &p("out.jsonl"),
        "--output",
        &p("auc.jsonl"),
    ]);
    let auc = rows(&d.join("auc.jsonl"))[0]["areaUnderROC"]
        .as_f64()
        .unwrap();
    let want = sklearn("breast_cancer_lr_auc").as_f64().unwrap();
    assert!(auc >= want - 0.01, "AUC {auc} vs scikit-learn {want}");
}

#[test]
fn multinomial_logistic_regression_on_iris() {
    let dir = tempfile::tempdir().unwrap();
    // Three classes: `auto` picks multinomial (softmax) regression. Flink ML's linear models
    // have no intercept; a constant feature gives the model one (scikit-learn fits one).
    let stage = json!({"className": "Pipeline", "stages": [
        {"className": "StandardScaler", "paramMap": {"inputCol": "features", "outputCol": "scaled", "withMean": true}},
        {"className": "SQLTransformer", "paramMap": {"statement": "SELECT *, 1.0 AS bias FROM __THIS__"}},
        {"className": "VectorAssembler", "paramMap": {"inputCols": ["scaled", "bias"], "inputSizes": [4, 1], "outputCol": "x"}},
        {"className": "LogisticRegression", "paramMap": {
            "featuresCol": "x", "maxIter": 500, "learningRate": 0.5, "globalBatchSize": 150}}
    ]});
    let out = fit_transform(dir.path(), stage, "iris.jsonl");
    let acc = accuracy(&out);
    let want = sklearn("iris_multinomial_lr_accuracy").as_f64().unwrap();
    assert!(acc >= want - 0.04, "accuracy {acc} vs scikit-learn {want}");
    for r in &out {
        // rawPrediction: the three class probabilities; prediction: the most probable.
        let p: Vec<f64> = r["rawPrediction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(p.len(), 3);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
        let best = (0..3).fold(0, |b, c| if p[c] > p[b] { c } else { b });
        assert_eq!(r["prediction"].as_f64(), Some(best as f64));
    }
    // The model data: three coefficient vectors of four, and numClasses.
    let md = fit_model_data(
        dir.path(),
        json!({"className": "LogisticRegression", "paramMap": {"multiClass": "multinomial"}}),
        "iris.jsonl",
    );
    assert_eq!(md["numClasses"], 3);
    assert_eq!(md["coefficient"].as_array().unwrap().len(), 12);
    // binomial refuses a third class, naming the row.
    std::fs::write(
        dir.path().join("bin.json"),
        json!({"className": "LogisticRegression", "paramMap": {"multiClass": "binomial"}})
            .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferroflow"))
        .args(["ml", "fit", "--stage"])
        .arg(dir.path().join("bin.json"))
        .arg("--input")
        .arg(fixtures().join("iris.jsonl"))
        .arg("--model-dir")
        .arg(dir.path().join("bin"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("row 100") && err.contains("label 2: multiClass is binomial"),
        "{err}"
    );
}

#[test]
fn gbdt_on_held_out_breast_cancer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // scikit-learn's GradientBoostingClassifier trained on the first 400 rows, scored on the
    // other 169; the same split here.
    let all = std::fs::read_to_string(fixtures().join("breast_cancer.jsonl")).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    std::fs::write(d.join("train.jsonl"), lines[..400].join("\n") + "\n").unwrap();
    std::fs::write(d.join("test.jsonl"), lines[400..].join("\n") + "\n").unwrap();
    std::fs::write(
        d.join("gbdt.json"),
        json!({"className": "com.alibaba.alink.pipeline.classification.GbdtClassifier",
               "paramMap": {"numTrees": 100, "maxDepth": 3, "learningRate": 0.1, "minSamplesPerLeaf": 1}})
        .to_string(),
    )
    .unwrap();
    let p = |n: &str| d.join(n).display().to_string();
    ml(&[
        "fit",
        "--stage",
        &p("gbdt.json"),
        "--input",
        &p("train.jsonl"),
        "--model-dir",
        &p("m"),
    ]);
    ml(&[
        "transform",
        "--model-dir",
        &p("m"),
        "--input",
        &p("test.jsonl"),
        "--output",
        &p("out.jsonl"),
    ]);
    let acc = accuracy(&rows(&d.join("out.jsonl")));
    let want = sklearn("breast_cancer_gbdt_holdout_accuracy")
        .as_f64()
        .unwrap();
    assert!(
        acc >= want - 0.04,
        "held-out accuracy {acc} vs scikit-learn {want}"
    );
}

#[test]
fn linear_svc_on_breast_cancer() {
    let dir = tempfile::tempdir().unwrap();
    let out = fit_transform(
        dir.path(),
        scaled_then(json!({"className": "LinearSVC", "paramMap": {
            "featuresCol": "scaled", "maxIter": 300, "learningRate": 0.1, "globalBatchSize": 569}})),
        "breast_cancer.jsonl",
    );
    let acc = accuracy(&out);
    let want = sklearn("breast_cancer_svc_accuracy").as_f64().unwrap();
    assert!(acc >= want - 0.04, "accuracy {acc} vs scikit-learn {want}");
}

#[test]
fn naive_bayes_on_digits() {
    let dir = tempfile::tempdir().unwrap();
    let out = fit_transform(
        dir.path(),
        json!({"className": "NaiveBayes"}),
        "digits.jsonl",
    );
    let acc = accuracy(&out);
    let want = sklearn("digits_nb_accuracy").as_f64().unwrap();
    assert!(
        acc >= want - 0.02,
        "accuracy {acc} vs scikit-learn's CategoricalNB {want}"
    );
}

/// Adjusted Rand index of two labelings.
fn ari(a: &[i64], b: &[i64]) -> f64 {
    let mut table: HashMap<(i64, i64), f64> = HashMap::new();
    let mut ra: HashMap<i64, f64> = HashMap::new();
    let mut rb: HashMap<i64, f64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1.0;
        *ra.entry(x).or_default() += 1.0;
        *rb.entry(y).or_default() += 1.0;
    }
    let c2 = |n: f64| n * (n - 1.0) / 2.0;
    let index: f64 = table.values().map(|&n| c2(n)).sum();
    let (sa, sb): (f64, f64) = (
        ra.values().map(|&n| c2(n)).sum(),
        rb.values().map(|&n| c2(n)).sum(),
    );
    let expected = sa * sb / c2(a.len() as f64);
    (index - expected) / ((sa + sb) / 2.0 - expected)
}

#[test]
fn kmeans_on_iris() {
    let want = sklearn("iris_kmeans_ari").as_f64().unwrap();
    // Several seeds: random initialisation may land in a worse local optimum, as
    // scikit-learn's single runs can (it keeps the best of 10).
    let mut best: f64 = 0.0;
    for seed in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let out = fit_transform(
            dir.path(),
            json!({"className": "KMeans", "paramMap": {"k": 3, "seed": seed, "initMode": "k-means++", "maxIter": 100}}),
            "iris.jsonl",
        );
        let pred: Vec<i64> = out
            .iter()
            .map(|r| r["prediction"].as_i64().unwrap())
            .collect();
        let label: Vec<i64> = out
            .iter()
            .map(|r| r["label"].as_f64().unwrap() as i64)
            .collect();
        best = best.max(ari(&pred, &label));
    }
    assert!(
        (best - want).abs() < 0.02,
        "ARI {best} vs scikit-learn {want}"
    );
}

#[test]
fn standard_scaler_statistics_on_iris() {
    let dir = tempfile::tempdir().unwrap();
    let md = &fit_model_data(
        dir.path(),
        json!({"className": "StandardScaler", "paramMap": {"inputCol": "features"}}),
        "iris.jsonl",
    );
    for (ours, theirs) in [("mean", "iris_mean"), ("std", "iris_std_ddof1")] {
        let got: Vec<f64> = md[ours]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want: Vec<f64> = sklearn(theirs)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-9, "{ours}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn pca_on_iris() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let md = &fit_model_data(
        d,
        json!({"className": "PCA", "paramMap": {"inputCol": "features", "outputCol": "pc", "k": 2}}),
        "iris.jsonl",
    );
    let p = |n: &str| d.join(n).display().to_string();
    let input = fixtures().join("iris.jsonl").display().to_string();
    let close = |got: &Value, want: &Value| {
        let g: Vec<f64> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let w: Vec<f64> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(g.len(), w.len());
        assert!(
            g.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-6),
            "{g:?} vs {w:?}"
        );
    };
    close(
        &md["explainedVarianceRatio"],
        &sklearn("iris_pca_explained_variance_ratio"),
    );
    for (g, w) in md["components"]
        .as_array()
        .unwrap()
        .iter()
        .zip(sklearn("iris_pca_components").as_array().unwrap())
    {
        close(g, w);
    }
    ml(&[
        "transform",
        "--model-dir",
        &p("m"),
        "--input",
        &input,
        "--output",
        &p("out.jsonl"),
    ]);
    assert_eq!(
        rows(&d.join("out.jsonl"))[0]["pc"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
