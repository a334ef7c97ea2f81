//! Flink ML conformance: test vectors taken from Flink ML's own unit tests
//! (tests/conformance/flinkml_vectors.json, documented in tests/conformance/README.md), run
//! through the `ferroflow ml` command line exactly as a user would.
//!
//! Every vector of an algorithm ferroflow implements must pass with the vector's tolerance.
//! Every vector runs: the online ones (OnlineLogisticRegression, OnlineKMeans,
//! OnlineStandardScaler) through `ml fit-online` and `ml transform --model-data`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};

/// Algorithms implemented so far, with their Flink ML class names.
const IMPLEMENTED: &[(&str, &str)] = &[
    (
        "StandardScaler",
        "org.apache.flink.ml.feature.standardscaler.StandardScaler",
    ),
    (
        "MinMaxScaler",
        "org.apache.flink.ml.feature.minmaxscaler.MinMaxScaler",
    ),
    (
        "MaxAbsScaler",
        "org.apache.flink.ml.feature.maxabsscaler.MaxAbsScaler",
    ),
    (
        "Normalizer",
        "org.apache.flink.ml.feature.normalizer.Normalizer",
    ),
    (
        "VectorAssembler",
        "org.apache.flink.ml.feature.vectorassembler.VectorAssembler",
    ),
    (
        "Bucketizer",
        "org.apache.flink.ml.feature.bucketizer.Bucketizer",
    ),
    (
        "ElementwiseProduct",
        "org.apache.flink.ml.feature.elementwiseproduct.ElementwiseProduct",
    ),
    (
        "PolynomialExpansion",
        "org.apache.flink.ml.feature.polynomialexpansion.PolynomialExpansion",
    ),
    ("DCT", "org.apache.flink.ml.feature.dct.DCT"),
    (
        "Interaction",
        "org.apache.flink.ml.feature.interaction.Interaction",
    ),
    (
        "Tokenizer",
        "org.apache.flink.ml.feature.tokenizer.Tokenizer",
    ),
    (
        "RegexTokenizer",
        "org.apache.flink.ml.feature.regextokenizer.RegexTokenizer",
    ),
    (
        "StringIndexer",
        "org.apache.flink.ml.feature.stringindexer.StringIndexer",
    ),
    (
        "IndexToStringModel",
        "org.apache.flink.ml.feature.stringindexer.IndexToStringModel",
    ),
    (
        "OneHotEncoder",
        "org.apache.flink.ml.feature.onehotencoder.OneHotEncoder",
    ),
    ("Imputer", "org.apache.flink.ml.feature.imputer.Imputer"),
    (
        "RobustScaler",
        "org.apache.flink.ml.feature.robustscaler.RobustScaler",
    ),
    (
        "VarianceThresholdSelector",
        "org.apache.flink.ml.feature.variancethresholdselector.VarianceThresholdSelector",
    ),
    (
        "LogisticRegression",
        "org.apache.flink.ml.classification.logisticregression.LogisticRegression",
    ),
    (
        "LinearSVC",
        "org.apache.flink.ml.classification.linearsvc.LinearSVC",
    ),
    (
        "LinearRegression",
        "org.apache.flink.ml.regression.linearregression.LinearRegression",
    ),
    (
        "BinaryClassificationEvaluator",
        "org.apache.flink.ml.evaluation.binaryclassification.BinaryClassificationEvaluator",
    ),
    (
        "KBinsDiscretizer",
        "org.apache.flink.ml.feature.kbinsdiscretizer.KBinsDiscretizer",
    ),
    (
        "VectorIndexer",
        "org.apache.flink.ml.feature.vectorindexer.VectorIndexer",
    ),
    (
        "HashingTF",
        "org.apache.flink.ml.feature.hashingtf.HashingTF",
    ),
    (
        "CountVectorizer",
        "org.apache.flink.ml.feature.countvectorizer.CountVectorizer",
    ),
    ("IDF", "org.apache.flink.ml.feature.idf.IDF"),
    (
        "NaiveBayes",
        "org.apache.flink.ml.classification.naivebayes.NaiveBayes",
    ),
    ("Knn", "org.apache.flink.ml.classification.knn.Knn"),
    ("ChiSqTest", "org.apache.flink.ml.stats.chisqtest.ChiSqTest"),
    ("ANOVATest", "org.apache.flink.ml.stats.anovatest.ANOVATest"),
    (
        "FValueTest",
        "org.apache.flink.ml.stats.fvaluetest.FValueTest",
    ),
    ("Swing", "org.apache.flink.ml.recommendation.swing.Swing"),
    (
        "AgglomerativeClustering",
        "org.apache.flink.ml.clustering.agglomerativeclustering.AgglomerativeClustering",
    ),
    (
        "StopWordsRemover",
        "org.apache.flink.ml.feature.stopwordsremover.StopWordsRemover",
    ),
    (
        "Alink StandardScalerTrainBatchOp/StandardScalerPredictBatchOp (pipeline StandardScaler)",
        "com.alibaba.alink.pipeline.dataproc.StandardScaler",
    ),
];

const ESTIMATORS: &[&str] = &[
    "StandardScaler",
    "MinMaxScaler",
    "MaxAbsScaler",
    "StringIndexer",
    "OneHotEncoder",
    "Imputer",
    "RobustScaler",
    "VarianceThresholdSelector",
    "LogisticRegression",
    "LinearSVC",
    "LinearRegression",
    "KBinsDiscretizer",
    "VectorIndexer",
    "CountVectorizer",
    "IDF",
    "NaiveBayes",
    "Knn",
    "Alink StandardScalerTrainBatchOp/StandardScalerPredictBatchOp (pipeline StandardScaler)",
];

fn vectors() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/flinkml_vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ferroflow(args: &[&str]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ferroflow"))
        .arg("ml")
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A cell of a vector file in the JSON-lines encoding of the CLI contract.
fn cell(v: &Value) -> Value {
    match v.get("type").and_then(Value::as_str) {
        Some("dense") => v["values"].clone(),
        Some("sparse") => {
            json!({"size": v["size"], "indices": v["indices"], "values": v["values"]})
        }
        _ => v.clone(),
    }
}

fn write_rows(path: &Path, schema: &[Value], rows: &[Value]) {
    let mut text = String::new();
    for r in rows {
        let mut obj = Map::new();
        // A one-column table may list bare cells (objects) instead of rows.
        let cells = match r {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for (col, v) in schema.iter().zip(&cells) {
            obj.insert(col["name"].as_str().unwrap().to_string(), cell(v));
        }
        text.push_str(&serde_json::to_string(&obj).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn read_rows(path: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        _ => v.as_f64().unwrap_or_else(|| panic!("{v} is not a number")),
    }
}

/// One comparable element of a cell.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    N(f64),
    S(String),
    Null,
}

/// A cell as a comparable list: vectors as [kind, size, indices..., values...], string
/// arrays as their strings, numbers (and "NaN"-style strings) as numbers.
fn flat(v: &Value) -> Vec<Key> {
    let is_num =
        |x: &Value| x.is_number() || matches!(x.as_str(), Some("NaN" | "Infinity" | "-Infinity"));
    match v {
        Value::Null => vec![Key::Null],
        Value::Array(a) if a.iter().all(is_num) => std::iter::once(Key::N(0.0))
            .chain(a.iter().map(|x| Key::N(num(x))))
            .collect(),
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Object(o) if o.contains_key("indices") => {
            let mut out = vec![Key::N(1.0), Key::N(num(&o["size"]))];
            out.extend(
                o["indices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| Key::N(num(x))),
            );
            out.extend(
                o["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| Key::N(num(x))),
            );
            out
        }
        Value::Object(o) if o.contains_key("type") => flat(&cell(v)),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            keys.into_iter()
                .flat_map(|k| std::iter::once(Key::S(k.clone())).chain(flat(&o[k])))
                .collect()
        }
        Value::String(s) if !is_num(v) => vec![Key::S(s.clone())],
        Value::Bool(b) => vec![Key::S(b.to_string())],
        other => vec![Key::N(num(other))],
    }
}

fn close(a: &[Key], b: &[Key], abs: Option<f64>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y, abs) {
            // Java's Double.compare equality: NaN equals NaN, 0.0 differs from -0.0.
            (Key::N(x), Key::N(y), None) => {
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
            }
            (Key::N(x), Key::N(y), Some(t)) => {
                (x - y).abs() <= t || (x.is_nan() && y.is_nan()) || x == y
            }
            (x, y, _) => x == y,
        })
}

fn key_cmp(a: &Key, b: &Key) -> std::cmp::Ordering {
    match (a, b) {
        (Key::N(x), Key::N(y)) => x.total_cmp(y),
        (Key::S(x), Key::S(y)) => x.cmp(y),
        (Key::Null, Key::Null) => std::cmp::Ordering::Equal,
        (Key::Null, _) => std::cmp::Ordering::Less,
        (_, Key::Null) => std::cmp::Ordering::Greater,
        (Key::N(_), Key::S(_)) => std::cmp::Ordering::Less,
        (Key::S(_), Key::N(_)) => std::cmp::Ordering::Greater,
    }
}

fn sorted(mut v: Vec<Vec<Key>>) -> Vec<Vec<Key>> {
    v.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| key_cmp(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(a.len().cmp(&b.len()))
    });
    v
}

fn tolerance(v: &Value) -> Option<f64> {
    v["tolerance"].get("abs").and_then(Value::as_f64)
}

/// Run one vector; `Err` says what differs.
fn run_vector(v: &Value, class: &str, dir: &Path) -> Result<(), String> {
    let algo = v["algorithm"].as_str().unwrap();
    let stage = dir.join("stage.json");
    // Vector params as Flink ML saves them: {"values"} dense, {"n", "indices", "values"} sparse.
    let params: Map<String, Value> = v["params"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, p)| {
            !p.as_str()
                .is_some_and(|d| d.starts_with("any") || d.starts_with("default"))
        })
        .map(|(k, p)| {
            // Windows as Flink ML saves them.
            if let (true, Some(w)) = (k == "windows", p.as_str()) {
                return (
                    k.clone(),
                    json!({"class": format!("org.apache.flink.ml.common.window.{w}")}),
                );
            }
            let p = match p.get("type").and_then(Value::as_str) {
                Some("dense") => json!({"values": p["values"]}),
                Some("sparse") => {
                    json!({"n": p["size"], "indices": p["indices"], "values": p["values"]})
                }
                _ => p.clone(),
            };
            (k.clone(), p)
        })
        .collect();
    std::fs::write(
        &stage,
        serde_json::to_string(&json!({"className": class, "paramMap": params})).unwrap(),
    )
    .unwrap();
    let (train_schema, schema) = match &v["input_schema"] {
        Value::Object(o) => (
            o["train"].as_array().unwrap(),
            o["predict"].as_array().unwrap(),
        ),
        s => (s.as_array().unwrap(), s.as_array().unwrap()),
    };
    let (train, predict) = match &v["input_rows"] {
        Value::Array(rows) => (rows.clone(), rows.clone()),
        Value::Object(o) => (
            o.get("train")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            o["predict"].as_array().unwrap().clone(),
        ),
        other => panic!("input rows {other}"),
    };
    let (train_path, input_path) = (dir.join("train.jsonl"), dir.join("input.jsonl"));
    write_rows(&train_path, train_schema, &train);
    write_rows(&input_path, schema, &predict);
    // Model data given directly (Flink ML's setModelData).
    let given_model_data = v["input_rows"].get("model_data").map(|md| {
        let path = dir.join("given_model_data.jsonl");
        std::fs::write(&path, format!("{md}\n")).unwrap();
        path
    });
    let out = dir.join("out.jsonl");
    let model_dir = dir.join("model");
    let s = |p: &PathBuf| p.display().to_string();
    if ESTIMATORS.contains(&algo) {
        ferroflow(&[
            "fit",
            "--stage",
            &s(&stage),
            "--input",
            &s(&train_path),
            "--model-dir",
            &s(&model_dir),
        ])?;
        ferroflow(&[
            "transform",
            "--model-dir",
            &s(&model_dir),
            "--input",
            &s(&input_path),
            "--output",
            &s(&out),
        ])?;
    } else if let Some(md) = &given_model_data {
        ferroflow(&[
            "transform",
            "--stage",
            &s(&stage),
            "--model-data",
            &s(md),
            "--input",
            &s(&input_path),
            "--output",
            &s(&out),
        ])?;
    } else {
        ferroflow(&[
            "transform",
            "--stage",
            &s(&stage),
            "--input",
            &s(&input_path),
            "--output",
            &s(&out),
        ])?;
    }
    let rows = read_rows(&out);
    let e = &v["expected_output"];
    let abs = tolerance(v);
    if let (Some(col), Some(want)) = (e["column"].as_str(), e["rows"].as_array()) {
        let got = sorted(rows.iter().map(|r| flat(&r[col])).collect());
        let want = sorted(want.iter().map(flat).collect());
        if got.len() != want.len() || !got.iter().zip(&want).all(|(a, b)| close(a, b, abs)) {
            return Err(format!("column {col}: got {got:?}, want {want:?}"));
        }
    }
    if let (Some(col), Some(by_id)) = (e["column"].as_str(), e["by_id"].as_object()) {
        for (id, want) in by_id {
            let row = rows
                .iter()
                .find(|r| r["id"].as_i64() == id.parse::<i64>().ok())
                .ok_or_else(|| format!("no output row with id {id}"))?;
            if !close(&flat(&row[col]), &flat(want), abs) {
                return Err(format!("id {id}: got {}, want {}", row[col], cell(want)));
            }
        }
    }
    // Rows of [inputCols..., outputCols...] when the vector names no columns.
    let implied: Option<Vec<Value>> = match (e.get("columns"), e.get("column")) {
        (None, None) => Some(
            v["params"]["inputCols"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(v["params"]["outputCols"].as_array().into_iter().flatten())
                .cloned()
                .collect(),
        ),
        _ => None,
    };
    let cols = e["columns"].as_array().cloned().or(implied);
    let want_rows = e["rows"]
        .as_array()
        .or(e["rows_sorted_nulls_first_then_by_f0"].as_array());
    if let (Some(cols), Some(want)) = (cols.as_ref(), want_rows) {
        let project = |r: &Map<String, Value>| -> Vec<Key> {
            cols.iter()
                .flat_map(|c| flat(&r[c.as_str().unwrap()]))
                .collect()
        };
        let got = sorted(rows.iter().map(project).collect());
        let want = sorted(
            want.iter()
                .map(|r| r.as_array().unwrap().iter().flat_map(flat).collect())
                .collect(),
        );
        if got.len() != want.len() || !got.iter().zip(&want).all(|(a, b)| close(a, b, abs)) {
            return Err(format!("rows {cols:?}: got {got:?}, want {want:?}"));
        }
    }
    if let (Some(col), Some(want)) = (e["column"].as_str(), e["rows_non_null"].as_array()) {
        let got = sorted(
            rows.iter()
                .filter(|r| !r[col].is_null())
                .map(|r| flat(&r[col]))
                .collect(),
        );
        let want = sorted(want.iter().map(flat).collect());
        if got.len() != want.len() || !got.iter().zip(&want).all(|(a, b)| close(a, b, abs)) {
            return Err(format!(
                "column {col} (non-null rows): got {got:?}, want {want:?}"
            ));
        }
    }
    if let (Some(col), Some(pairs)) = (
        e["column"].as_str(),
        e["mapping_input_to_output"].as_array(),
    ) {
        let in_col = v["params"]["inputCols"][0].as_str().unwrap();
        for pair in pairs {
            let row = rows
                .iter()
                .find(|r| close(&flat(&r[in_col]), &flat(&pair[0]), Some(0.0)))
                .ok_or_else(|| format!("no output row for input {}", pair[0]))?;
            if !close(&flat(&row[col]), &flat(&pair[1]), abs) {
                return Err(format!(
                    "input {}: got {}, want {}",
                    pair[0],
                    row[col],
                    cell(&pair[1])
                ));
            }
        }
    }
    if let Some(want) = e["row"].as_array() {
        let names = e["columns"]
            .as_array()
            .or(v["params"]["metricsNames"].as_array())
            .unwrap();
        for (n, w) in names.iter().zip(want) {
            let n = n.as_str().unwrap();
            if !close(&flat(&rows[0][n]), &flat(w), abs) {
                return Err(format!("{n}: got {}, want {w}", rows[0][n]));
            }
        }
    }
    if let Some(pairs) = e["mapping_features_to_prediction"].as_array() {
        let (fcol, pcol) = (
            v["params"]["featuresCol"].as_str().unwrap_or("features"),
            v["params"]["predictionCol"]
                .as_str()
                .unwrap_or("prediction"),
        );
        for pair in pairs {
            let row = rows
                .iter()
                .find(|r| close(&flat(&r[fcol]), &flat(&pair[0]), Some(0.0)))
                .ok_or_else(|| format!("no output row for features {}", cell(&pair[0])))?;
            if !close(&flat(&row[pcol]), &flat(&pair[1]), abs) {
                return Err(format!(
                    "features {}: got {}, want {}",
                    cell(&pair[0]),
                    row[pcol],
                    pair[1]
                ));
            }
        }
    }
    if let Some(want) = e["predictions"].as_array() {
        let pcol = v["params"]["predictionCol"]
            .as_str()
            .unwrap_or("prediction");
        let got: Vec<Value> = rows.iter().map(|r| r[pcol].clone()).collect();
        if got.len() != want.len()
            || !got
                .iter()
                .zip(want)
                .all(|(a, b)| close(&flat(a), &flat(b), abs))
        {
            return Err(format!("predictions: got {got:?}, want {want:?}"));
        }
    }
    // Clusterings: the groups of rows with the same prediction, as a set of sets.
    let group_key = format!(
        "groups_{}_numClusters_{}",
        v["params"]["linkage"].as_str().unwrap_or("ward"),
        v["params"]["numClusters"]
    );
    if let Some(want) = e[&group_key].as_array() {
        let (fcol, pcol) = (
            v["params"]["featuresCol"].as_str().unwrap_or("features"),
            v["params"]["predictionCol"]
                .as_str()
                .unwrap_or("prediction"),
        );
        let mut groups: std::collections::BTreeMap<String, Vec<Vec<Key>>> = Default::default();
        for r in &rows {
            groups
                .entry(r[pcol].to_string())
                .or_default()
                .push(flat(&r[fcol]));
        }
        let got = sorted(groups.into_values().map(|g| sorted(g).concat()).collect());
        let want = sorted(
            want.iter()
                .map(|g| sorted(g.as_array().unwrap().iter().map(flat).collect()).concat())
                .collect(),
        );
        if got != want {
            return Err(format!("{group_key}: got {got:?}, want {want:?}"));
        }
    }
    if e["rule"]
        .as_str()
        .is_some_and(|r| r.starts_with("filtered == expected"))
    {
        for r in &rows {
            if flat(&r["filtered"]) != flat(&r["expected"]) {
                return Err(format!(
                    "filtered {} != expected {}",
                    r["filtered"], r["expected"]
                ));
            }
        }
    }
    if let Some(pairs) = e["pairs_input_output"].as_array() {
        let in_col = schema[0]["name"].as_str().unwrap();
        let out_col = v["params"]["outputCol"].as_str().unwrap_or("output");
        for pair in pairs {
            let (input, want) = (flat(&pair[0]), flat(&pair[1]));
            let row = rows
                .iter()
                .find(|r| close(&flat(&r[in_col]), &input, Some(0.0)))
                .ok_or_else(|| format!("no output row for input {}", cell(&pair[0])))?;
            if !close(&flat(&row[out_col]), &want, abs) {
                return Err(format!(
                    "input {}: got {}, want {}",
                    cell(&pair[0]),
                    row[out_col],
                    cell(&pair[1])
                ));
            }
        }
    }
    if let Some(md) = e.get("model_data").filter(|m| m.is_object()) {
        let md_out = dir.join("model_data.jsonl");
        ferroflow(&[
            "model-data",
            "--model-dir",
            &s(&model_dir),
            "--output",
            &s(&md_out),
        ])?;
        let got = read_rows(&md_out);
        let named: Vec<&str> = match md["columns"].as_array() {
            Some(cols) => cols.iter().map(|c| c.as_str().unwrap()).collect(),
            None => md.as_object().unwrap().keys().map(String::as_str).collect(),
        };
        for c in named {
            if !close(&flat(&got[0][c]), &flat(&md[c]), abs) {
                return Err(format!(
                    "model data {c}: got {}, want {}",
                    got[0][c],
                    cell(&md[c])
                ));
            }
        }
    }
    Ok(())
}

/// Values of the dense vectors in `rows[i][col]` (JSON lines as the CLI writes them).
fn dense_rows(rows: &[Map<String, Value>], col: &str) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| r[col].as_array().unwrap().iter().map(num).collect())
        .collect()
}

fn close_all(got: &[f64], want: &[f64], tol: f64, what: &str) -> Result<(), String> {
    if got.len() != want.len() || got.iter().zip(want).any(|(a, b)| (a - b).abs() > tol) {
        return Err(format!("{what}: got {got:?}, want {want:?}"));
    }
    Ok(())
}

fn write_stage(path: &Path, class: &str, params: Value) {
    std::fs::write(
        path,
        json!({"className": class, "paramMap": params}).to_string(),
    )
    .unwrap();
}

/// The online vectors, through `ml fit-online` (and `ml transform --model-data` with the
/// versions it wrote, for OnlineLogisticRegression).
fn run_online_vector(v: &Value, dir: &Path) -> Result<(), String> {
    let tol = v["tolerance"]["abs"].as_f64().unwrap();
    let stage = dir.join("stage.json");
    let versions = dir.join("versions.jsonl");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let fit = |input: &Path, extra: &[&str]| {
        let (st, inp, out) = (s(&stage), s(input), s(&versions));
        let mut args = vec![
            "fit-online",
            "--stage",
            &st,
            "--input",
            &inp,
            "--model-data-output",
            &out,
        ];
        args.extend_from_slice(extra);
        ferroflow(&args).map(|_| read_rows(&versions))
    };
    match v["algorithm"].as_str().unwrap() {
        "OnlineLogisticRegression" => {
            let mut params = v["params"].clone();
            params["initialModelData"]["coefficient"] =
                json!({"values": v["params"]["initialModelData"]["coefficient"]["values"]});
            write_stage(
                &stage,
                "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression",
                params,
            );
            let model = dir.join("model.json");
            write_stage(
                &model,
                "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegressionModel",
                json!({"featuresCol": "features"}),
            );
            let schema = v["input_schema"].as_array().unwrap();
            let rows = &v["input_rows"];
            let predict = dir.join("predict.jsonl");
            write_rows(&predict, schema, rows["predict"].as_array().unwrap());
            let mut train = Vec::new();
            for (batch, version) in [("train_batch_1", 1), ("train_batch_2", 2)] {
                train.extend(rows[batch].as_array().unwrap().iter().cloned());
                let input = dir.join(format!("{batch}.jsonl"));
                write_rows(&input, schema, &train);
                let got = fit(&input, &[])?;
                let last = got.last().ok_or("no version emitted")?;
                if got.len() != version || last["modelVersion"] != json!(version) {
                    return Err(format!("{batch}: versions {got:?}"));
                }
                let out = dir.join(format!("out{version}.jsonl"));
                ferroflow(&[
                    "transform",
                    "--stage",
                    &s(&model),
                    "--model-data",
                    &s(&versions),
                    "--input",
                    &s(&predict),
                    "--output",
                    &s(&out),
                ])?;
                let scored = read_rows(&out);
                if scored.iter().any(|r| r["modelVersion"] != json!(version)) {
                    return Err(format!("scored with another version: {scored:?}"));
                }
                // Compared as Flink's test does: both lists sorted.
                let mut got = dense_rows(&scored, "rawPrediction");
                let key = format!("rawPrediction_after_batch_{version}");
                let mut want: Vec<Vec<f64>> = v["expected_output"][&key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["values"].as_array().unwrap().iter().map(num).collect())
                    .collect();
                let by = |a: &Vec<f64>, b: &Vec<f64>| a[0].total_cmp(&b[0]);
                got.sort_by(by);
                want.sort_by(by);
                for (g, w) in got.iter().zip(&want) {
                    close_all(g, w, tol, &key)?;
                }
            }
            Ok(())
        }
        "OnlineKMeans" => {
            let mut params = v["params"].clone();
            // KMeansModelData.generateRandomModelData(tEnv, k=2, dim=2, weight=0.0, seed=0).
            params["initialModelData"] = json!({"random": {"dim": 2, "weight": 0.0, "seed": 0}});
            write_stage(
                &stage,
                "org.apache.flink.ml.clustering.kmeans.OnlineKMeans",
                params,
            );
            let input = dir.join("train.jsonl");
            write_rows(
                &input,
                v["input_schema"].as_array().unwrap(),
                v["input_rows"]["train_batch_1"].as_array().unwrap(),
            );
            let got = fit(&input, &[])?;
            // The initial model, then the model after the batch.
            if got.len() != 2 || got[0]["modelVersion"] != json!(0) {
                return Err(format!("versions: {got:?}"));
            }
            let want = &v["expected_output"]["model_data_after_batch_1"];
            let mut centroids: Vec<Vec<f64>> = got[1]["centroids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_array().unwrap().iter().map(num).collect())
                .collect();
            centroids.sort_by(|a, b| a[0].total_cmp(&b[0]));
            for (g, w) in centroids.iter().zip(want["centroids"].as_array().unwrap()) {
                let w: Vec<f64> = w["values"].as_array().unwrap().iter().map(num).collect();
                close_all(g, &w, tol, "centroid")?;
            }
            let weights: Vec<f64> = got[1]["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(num)
                .collect();
            let w: Vec<f64> = want["weights"]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(num)
                .collect();
            close_all(&weights, &w, tol, "weights")
        }
        "OnlineStandardScaler" => {
            let input = dir.join("train.jsonl");
            let rows: Vec<Value> = v["input_rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| json!([r[0], r[1]]))
                .collect();
            write_rows(&input, v["input_schema"].as_array().unwrap(), &rows);
            let want = v["expected_output"]["model_data_stream"]
                .as_array()
                .unwrap();
            let mut params = v["params"].clone();
            let pkg = "org.apache.flink.ml.common.window.";
            // EventTimeTumblingWindows.of(Time.milliseconds(3000)), and the count-window
            // variant the test also runs (same versions, timestamps Long.MAX_VALUE).
            for (window, extra, event_time) in [
                (
                    json!({"class": format!("{pkg}EventTimeTumblingWindows"), "size": 3000}),
                    &["--event-time-col", "id"][..],
                    true,
                ),
                (
                    json!({"class": format!("{pkg}CountTumblingWindows"), "size": 3}),
                    &[][..],
                    false,
                ),
            ] {
                params["windows"] = window;
                write_stage(
                    &stage,
                    "org.apache.flink.ml.feature.standardscaler.OnlineStandardScaler",
                    params.clone(),
                );
                let got = fit(&input, extra)?;
                if got.len() != want.len() {
                    return Err(format!(
                        "{} versions, want {}: {got:?}",
                        got.len(),
                        want.len()
                    ));
                }
                for (g, w) in got.iter().zip(want) {
                    if g["version"] != w["version"] {
                        return Err(format!(
                            "version {} where {} was due",
                            g["version"], w["version"]
                        ));
                    }
                    let ts = if event_time {
                        w["timestamp"].clone()
                    } else {
                        json!(i64::MAX)
                    };
                    if g["timestamp"] != ts {
                        return Err(format!("timestamp {} where {ts} was due", g["timestamp"]));
                    }
                    for c in ["mean", "std"] {
                        let gv: Vec<f64> = g[c].as_array().unwrap().iter().map(num).collect();
                        let wv: Vec<f64> =
                            w[c]["values"].as_array().unwrap().iter().map(num).collect();
                        close_all(&gv, &wv, tol, c)?;
                    }
                }
            }
            Ok(())
        }
        other => Err(format!("no online runner for {other}")),
    }
}

#[test]
fn flink_ml_vectors_pass_through_the_command_line() {
    let all = vectors();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut pending: Vec<String> = Vec::new();
    let mut ran_online = 0;
    for v in &all {
        let algo = v["algorithm"].as_str().unwrap();
        // Loss functions are not stages: ferroflow-ml's optimizer unit tests check these
        // vectors (optimizer::tests).
        if algo == "BinaryLogisticLoss" || algo == "HingeLoss" {
            continue;
        }
        if algo.starts_with("Online") {
            ran_online += 1;
            let dir = tempfile::tempdir().unwrap();
            if let Err(e) = run_online_vector(v, dir.path()) {
                failures.push(format!("{algo} ({}): {e}", v["test_method"]));
            }
            continue;
        }
        let Some((_, class)) = IMPLEMENTED.iter().find(|(a, _)| *a == algo) else {
            pending.push(algo.to_string());
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        ran += 1;
        if let Err(e) = run_vector(v, class, dir.path()) {
            failures.push(format!("{algo} ({}): {e}", v["test_method"]));
        }
    }
    eprintln!(
        "conformance: {ran} vectors run, {} not implemented yet: {}",
        pending.len(),
        pending.join(", ")
    );
    assert_eq!(
        ran,
        IMPLEMENTED.len(),
        "every implemented algorithm has its vector"
    );
    assert_eq!(ran_online, 3, "the three online vectors ran");
    assert!(pending.is_empty(), "vectors left out: {pending:?}");
    assert!(
        failures.is_empty(),
        "failing vectors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn bad_stages_fail_with_the_reason_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"input\": [1.0, 2.0]}\n").unwrap();
    let stage = dir.path().join("stage.json");
    let out = dir.path().join("out.jsonl");
    let run = |meta: Value| {
        std::fs::write(&stage, meta.to_string()).unwrap();
        ferroflow(&[
            "transform",
            "--stage",
            stage.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .unwrap_err()
    };
    let e = run(json!({"className": "Normalizer", "paramMap": {"p": 0.5}}));
    assert!(e.contains("'p'") && e.contains(">= 1"), "{e}");
    let e = run(json!({"className": "Normalizer", "paramMap": {"pp": 2}}));
    assert!(e.contains("'pp'") && e.contains("inputCol"), "{e}");
    let e = run(json!({"className": "org.apache.flink.ml.feature.NoSuchThing"}));
    assert!(e.contains("unknown stage class"), "{e}");
    let e = run(json!({"className": "StandardScaler"}));
    assert!(e.contains("estimator"), "{e}");
    let e = run(json!({"className": "Normalizer", "paramMap": {"inputCol": "nope"}}));
    assert!(e.contains("'nope'") && e.contains("not found"), "{e}");
}

#[test]
fn pipelines_fit_save_load_and_transform() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two well separated classes on the first feature.
    let mut text = String::new();
    for i in 0..40 {
        let label = (i % 2) as f64;
        let x0 = if label == 1.0 {
            10.0 + i as f64 * 0.1
        } else {
            1.0 + i as f64 * 0.1
        };
        text.push_str(&format!(
            "{{\"features\": [{x0}, {}], \"label\": {label}, \"id\": {i}}}\n",
            (i % 5) as f64
        ));
    }
    std::fs::write(d.join("train.jsonl"), &text).unwrap();
    std::fs::write(
        d.join("pipeline.json"),
        json!({"className": "Pipeline", "stages": [
            {"className": "StandardScaler", "paramMap": {"inputCol": "features", "outputCol": "scaled", "withMean": true}},
            {"className": "org.apache.flink.ml.classification.logisticregression.LogisticRegression",
             "paramMap": {"featuresCol": "scaled", "maxIter": 50, "learningRate": 0.5}}
        ]})
        .to_string(),
    )
    .unwrap();
    let p = |name: &str| d.join(name).display().to_string();
    ferroflow(&[
        "fit",
        "--stage",
        &p("pipeline.json"),
        "--input",
        &p("train.jsonl"),
        "--model-dir",
        &p("model"),
    ])
    .unwrap();
    // Flink ML's layout: metadata with numStages, stages/<i> each with their own metadata.
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("model/metadata")).unwrap()).unwrap();
    assert_eq!(
        meta["className"],
        "org.apache.flink.ml.builder.PipelineModel"
    );
    assert_eq!(meta["numStages"], 2);
    let s1: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("model/stages/1/metadata")).unwrap())
            .unwrap();
    assert_eq!(
        s1["className"],
        "org.apache.flink.ml.classification.logisticregression.LogisticRegressionModel"
    );
    assert_eq!(s1["paramMap"]["featuresCol"], "scaled");
    ferroflow(&[
        "transform",
        "--model-dir",
        &p("model"),
        "--input",
        &p("train.jsonl"),
        "--output",
        &p("out.jsonl"),
    ])
    .unwrap();
    let rows = read_rows(&d.join("out.jsonl"));
    assert_eq!(rows.len(), 40);
    for r in &rows {
        assert_eq!(r["prediction"].as_f64(), r["label"].as_f64(), "{r:?}");
        assert!(r["scaled"].is_array() && r["rawPrediction"].is_array());
    }
    // The model data of a pipeline is its last model's: the coefficients.
    ferroflow(&[
        "model-data",
        "--model-dir",
        &p("model"),
        "--output",
        &p("md.jsonl"),
    ])
    .unwrap();
    let md = read_rows(&d.join("md.jsonl"));
    assert_eq!(md[0]["coefficient"].as_array().unwrap().len(), 2);
    assert!(
        md[0]["coefficient"][0].as_f64().unwrap() > 0.0,
        "feature 0 separates the classes"
    );
}

#[test]
fn a_flink_ml_metadata_file_loads_with_its_params() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // As Flink ML's Stage.save() writes it: full class name, timestamp, every param.
    std::fs::create_dir_all(d.join("stage")).unwrap();
    std::fs::write(
        d.join("stage/metadata"),
        r#"{"className":"org.apache.flink.ml.feature.normalizer.Normalizer","timestamp":1700000000000,"paramMap":{"inputCol":"v","outputCol":"n","p":1.0}}"#,
    )
    .unwrap();
    std::fs::write(d.join("in.jsonl"), "{\"v\": [1.0, 3.0]}\n").unwrap();
    let p = |name: &str| d.join(name).display().to_string();
    ferroflow(&[
        "transform",
        "--model-dir",
        &p("stage"),
        "--input",
        &p("in.jsonl"),
        "--output",
        &p("out.jsonl"),
    ])
    .unwrap();
    let rows = read_rows(&d.join("out.jsonl"));
    assert_eq!(rows[0]["n"], json!([0.25, 0.75]));
}

/// The other clusterings Flink ML's AgglomerativeClusteringTest checks on the same points.
#[test]
fn agglomerative_clustering_variants_match_flink_ml() {
    let all = vectors();
    let v = all
        .iter()
        .find(|v| v["algorithm"] == "AgglomerativeClustering")
        .unwrap();
    let e = &v["expected_output"];
    let run = |params: Value| -> Vec<Vec<Key>> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let schema = v["input_schema"].as_array().unwrap();
        write_rows(
            &d.join("in.jsonl"),
            schema,
            v["input_rows"].as_array().unwrap(),
        );
        let stage = json!({"className": "AgglomerativeClustering", "paramMap": params});
        std::fs::write(d.join("stage.json"), stage.to_string()).unwrap();
        let p = |n: &str| d.join(n).display().to_string();
        ferroflow(&[
            "transform",
            "--stage",
            &p("stage.json"),
            "--input",
            &p("in.jsonl"),
            "--output",
            &p("out.jsonl"),
            "--output",
            &p("merges.jsonl"),
        ])
        .unwrap();
        let merges = read_rows(&d.join("merges.jsonl"));
        assert!(!merges.is_empty() && merges[0].contains_key("sizeOfMergedCluster"));
        let mut groups: std::collections::BTreeMap<String, Vec<Vec<Key>>> = Default::default();
        for r in read_rows(&d.join("out.jsonl")) {
            groups
                .entry(r["pred"].to_string())
                .or_default()
                .push(flat(&r["features"]));
        }
        sorted(groups.into_values().map(|g| sorted(g).concat()).collect())
    };
    let want = |key: &str| -> Vec<Vec<Key>> {
        sorted(
            e[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| sorted(g.as_array().unwrap().iter().map(flat).collect()).concat())
                .collect(),
        )
    };
    assert_eq!(
        run(json!({"predictionCol": "pred", "linkage": "average"})),
        want("groups_average_numClusters_2")
    );
    assert_eq!(
        run(json!({"predictionCol": "pred", "numClusters": null, "distanceThreshold": 2.0})),
        want("groups_ward_distanceThreshold_2.0_numClusters_null")
    );
    // Count windows of 5: as Flink ML, the sixth point's window never fills, so it is not
    // clustered and leaves no output row: exactly the groups Flink's test expects.
    assert_eq!(
        run(json!({"predictionCol": "pred", "windows": {
            "class": "org.apache.flink.ml.common.window.CountTumblingWindows", "size": 5}})),
        want("groups_ward_CountTumblingWindows_5_parallelism_1")
    );
    // Windows of 4 over 6 points: one window fires; the last two points are dropped.
    let size = |n: u64| -> usize {
        run(json!({"predictionCol": "pred", "windows": {
            "class": "org.apache.flink.ml.common.window.CountTumblingWindows", "size": n}}))
        .iter()
        .map(Vec::len)
        .sum()
    };
    let all = run(json!({"predictionCol": "pred"}))
        .iter()
        .map(Vec::len)
        .sum::<usize>();
    assert_eq!(size(4) * 6, all * 4, "4 of the 6 points kept");
    assert_eq!(size(6), all, "a full window keeps them all");
}

/// UnivariateFeatureSelector on the rows of Flink ML's FValueTest and ANOVATest vectors picks
/// the features those tests give the smallest p-values.
#[test]
fn univariate_feature_selector_agrees_with_the_test_vectors() {
    let all = vectors();
    for (algo, feature_type, label_type) in [
        ("FValueTest", "continuous", "continuous"),
        ("ANOVATest", "continuous", "categorical"),
    ] {
        let v = all.iter().find(|v| v["algorithm"] == algo).unwrap();
        let p_values: Vec<f64> = v["expected_output"]["row"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let mut want: Vec<usize> = (0..p_values.len()).collect();
        want.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
        let mut want = want[..2].to_vec();
        want.sort();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_rows(
            &d.join("in.jsonl"),
            v["input_schema"].as_array().unwrap(),
            v["input_rows"].as_array().unwrap(),
        );
        std::fs::write(
            d.join("s.json"),
            json!({"className": "UnivariateFeatureSelector", "paramMap": {
                "featureType": feature_type, "labelType": label_type, "selectionThreshold": 2}})
            .to_string(),
        )
        .unwrap();
        let p = |n: &str| d.join(n).display().to_string();
        ferroflow(&[
            "fit",
            "--stage",
            &p("s.json"),
            "--input",
            &p("in.jsonl"),
            "--model-dir",
            &p("m"),
        ])
        .unwrap();
        ferroflow(&[
            "model-data",
            "--model-dir",
            &p("m"),
            "--output",
            &p("md.jsonl"),
        ])
        .unwrap();
        let got: Vec<usize> = read_rows(&d.join("md.jsonl"))[0]["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(got, want, "{algo}");
    }
}

/// The CLI contract's three table formats carry the same rows: a fit and transform through
/// Parquet and CSV files give what JSON lines give.
#[test]
fn parquet_and_csv_inputs_and_outputs_agree_with_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |n: &str| d.join(n).display().to_string();
    let iris = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ml_fixtures/iris.jsonl");
    std::fs::write(
        d.join("scale.json"),
        json!({"className": "StandardScaler", "paramMap": {"inputCol": "features", "outputCol": "scaled", "withMean": true}}).to_string(),
    )
    .unwrap();
    // The same table as Parquet (the features a vector column), through a no-op transform.
    std::fs::write(
        d.join("same.json"),
        json!({"className": "Normalizer", "paramMap": {"inputCol": "features", "outputCol": "unit"}}).to_string(),
    )
    .unwrap();
    let iris = iris.display().to_string();
    ferroflow(&[
        "transform",
        "--stage",
        &p("same.json"),
        "--input",
        &iris,
        "--output",
        &p("iris.parquet"),
    ])
    .unwrap();
    let runs = [
        (iris.clone(), p("a.jsonl")),
        (p("iris.parquet"), p("b.jsonl")),
        (iris.clone(), p("c.csv")),
    ];
    for (input, output) in &runs {
        let model = format!("{output}.model");
        ferroflow(&[
            "fit",
            "--stage",
            &p("scale.json"),
            "--input",
            input,
            "--model-dir",
            &model,
        ])
        .unwrap();
        ferroflow(&[
            "transform",
            "--model-dir",
            &model,
            "--input",
            input,
            "--output",
            output,
        ])
        .unwrap();
    }
    let scaled_jsonl = |path: &str| -> Vec<Vec<f64>> {
        read_rows(Path::new(path))
            .iter()
            .map(|r| {
                r["scaled"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    let a = scaled_jsonl(&p("a.jsonl"));
    assert_eq!(a.len(), 150);
    assert_eq!(scaled_jsonl(&p("b.jsonl")), a, "Parquet input");
    // CSV output writes a vector cell as its JSON text.
    let csv = std::fs::read_to_string(d.join("c.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().contains("scaled"));
    let first = lines.next().unwrap();
    let text = first.rsplit("\"[").next().unwrap().trim_end_matches("]\"");
    let got: Vec<f64> = text.split(',').map(|v| v.trim().parse().unwrap()).collect();
    assert_eq!(got.len(), a[0].len());
    for (x, y) in got.iter().zip(&a[0]) {
        assert!((x - y).abs() < 1e-12, "CSV output: {first}");
    }
}

/// `ml progressive`: every row is scored by the model learned from the rows before it (the
/// score of row i equals scoring row i with the newest version `fit-online` gives on rows
/// 0..i), one output row per input row, in order; a Pipeline mixing stateless stages and
/// online estimators runs too.
#[test]
fn progressive_validation_scores_each_row_before_learning_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let mut state = 11u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let n = 40;
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            let (a, b) = (next(), next());
            json!({"id": i, "a": a, "b": b, "one": 1.0, "features": [a, b],
                   "label": if a - b > 0.1 { 1.0 } else { 0.0 }})
        })
        .collect();
    let write = |path: &Path, rows: &[Value]| {
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(path, text).unwrap();
    };
    write(&p("all.jsonl"), &rows);
    let olr = json!({"className": "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression",
        "paramMap": {"globalBatchSize": 3, "alpha": 0.5, "beta": 1.0, "reg": 0.01,
                     "initialModelData": {"coefficient": {"values": [0.2, -0.1]}, "modelVersion": 0}}});
    std::fs::write(p("olr.json"), olr.to_string()).unwrap();
    ferroflow(&[
        "progressive",
        "--stage",
        &s(&p("olr.json")),
        "--input",
        &s(&p("all.jsonl")),
        "--output",
        &s(&p("pred.jsonl")),
    ])
    .unwrap();
    let pred = read_rows(&p("pred.jsonl"));
    assert_eq!(pred.len(), n);
    let model = json!({"className": "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegressionModel",
        "paramMap": {}});
    std::fs::write(p("model.json"), model.to_string()).unwrap();
    for (i, row) in pred.iter().enumerate() {
        assert_eq!(row["id"], json!(i), "input order");
        let keys: Vec<&String> = row.keys().collect();
        assert_eq!(
            keys,
            [
                "id",
                "a",
                "b",
                "one",
                "features",
                "label",
                "prediction",
                "rawPrediction",
                "modelVersion"
            ]
        );
        // Batches of 3: rows 0..3 meet the initial model, rows 3..6 version 1, ...
        assert_eq!(row["modelVersion"], json!(i / 3), "row {i}");
    }
    // Row i scored with what rows 0..i taught (checked where a version was just emitted).
    for i in [3, 9, 21, 39] {
        write(&p("head.jsonl"), &rows[..i]);
        write(&p("row.jsonl"), &rows[i..=i]);
        ferroflow(&[
            "fit-online",
            "--stage",
            &s(&p("olr.json")),
            "--input",
            &s(&p("head.jsonl")),
            "--model-data-output",
            &s(&p("v.jsonl")),
        ])
        .unwrap();
        ferroflow(&[
            "transform",
            "--stage",
            &s(&p("model.json")),
            "--model-data",
            &s(&p("v.jsonl")),
            "--input",
            &s(&p("row.jsonl")),
            "--output",
            &s(&p("one.jsonl")),
        ])
        .unwrap();
        let one = read_rows(&p("one.jsonl"));
        assert_eq!(one[0]["rawPrediction"], pred[i]["rawPrediction"], "row {i}");
        assert_eq!(one[0]["modelVersion"], pred[i]["modelVersion"], "row {i}");
    }

    // The benchmark's pipeline: VectorAssembler | OnlineStandardScaler | VectorAssembler
    // (+ a bias column) | OnlineLogisticRegression, from CSV.
    let csv: String = std::iter::once("id,a,b,one,label\n".to_string())
        .chain(rows.iter().map(|r| {
            format!(
                "{},{},{},{},{}\n",
                r["id"], r["a"], r["b"], r["one"], r["label"]
            )
        }))
        .collect();
    std::fs::write(p("all.csv"), csv).unwrap();
    let pipeline = json!({"className": "org.apache.flink.ml.builder.Pipeline", "stages": [
        {"className": "VectorAssembler", "paramMap": {"inputCols": ["a", "b"], "outputCol": "raw", "inputSizes": [1, 1]}},
        {"className": "OnlineStandardScaler", "paramMap": {"inputCol": "raw", "outputCol": "scaled", "withMean": true,
            "windows": {"class": "org.apache.flink.ml.common.window.CountTumblingWindows", "size": 1}}},
        {"className": "VectorAssembler", "paramMap": {"inputCols": ["scaled", "one"], "outputCol": "features", "inputSizes": [2, 1]}},
        {"className": "OnlineLogisticRegression", "paramMap": {"globalBatchSize": 1,
            "initialModelData": {"coefficient": {"values": [0.0, 0.0, 0.0]}, "modelVersion": 0}}}
    ]});
    std::fs::write(p("pipeline.json"), pipeline.to_string()).unwrap();
    ferroflow(&[
        "progressive",
        "--stage",
        &s(&p("pipeline.json")),
        "--input",
        &s(&p("all.csv")),
        "--output",
        &s(&p("pp.jsonl")),
    ])
    .unwrap();
    let pp = read_rows(&p("pp.jsonl"));
    assert_eq!(pp.len(), n);
    let columns = [
        "id",
        "a",
        "b",
        "one",
        "label",
        "prediction",
        "rawPrediction",
        "modelVersion",
    ];
    for (i, row) in pp.iter().enumerate() {
        let keys: Vec<&String> = row.keys().collect();
        assert_eq!(keys, columns);
        assert_eq!(row["id"], json!(i));
        assert_eq!(row["modelVersion"], json!(i), "one version per row");
    }
    // Parquet in and out runs as one streaming job (read, score and write at once); it
    // scores as the in-memory path does, to the bit, over several row groups.
    {
        use arrow_array::{Array, Float64Array, Int64Array, ListArray, RecordBatch};
        use std::sync::Arc;
        let col = |k: &str| -> Arc<dyn Array> {
            Arc::new(Float64Array::from(
                rows.iter()
                    .map(|r| r[k].as_f64().unwrap())
                    .collect::<Vec<_>>(),
            ))
        };
        let ids: Arc<dyn Array> = Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>()));
        let batch = RecordBatch::try_from_iter([
            ("id", ids),
            ("a", col("a")),
            ("b", col("b")),
            ("one", col("one")),
            ("label", col("label")),
        ])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(7))
            .build();
        let file = std::fs::File::create(p("all.parquet")).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        // CSV in, Parquet out takes the in-memory path; Parquet in and out streams.
        for (input, output) in [("all.csv", "mem.parquet"), ("all.parquet", "pp.parquet")] {
            ferroflow(&[
                "progressive",
                "--stage",
                &s(&p("pipeline.json")),
                "--input",
                &s(&p(input)),
                "--output",
                &s(&p(output)),
            ])
            .unwrap();
        }
        // Per row: the bits of rawPrediction and the version.
        let scores = |name: &str| -> Vec<(Vec<u64>, i64)> {
            let file = std::fs::File::open(p(name)).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            let mut out = Vec::new();
            for b in reader {
                let b = b.unwrap();
                let schema = b.schema();
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                assert_eq!(names, columns, "{name}");
                let raw = b.column_by_name("rawPrediction").unwrap();
                let raw = raw.as_any().downcast_ref::<ListArray>().unwrap();
                let version = b.column_by_name("modelVersion").unwrap();
                let version = version.as_any().downcast_ref::<Int64Array>().unwrap();
                for r in 0..b.num_rows() {
                    let cell = raw.value(r);
                    let cell = cell.as_any().downcast_ref::<Float64Array>().unwrap();
                    let bits = cell.values().iter().map(|x| x.to_bits()).collect();
                    out.push((bits, version.value(r)));
                }
            }
            out
        };
        let (mem, streamed) = (scores("mem.parquet"), scores("pp.parquet"));
        assert_eq!(streamed.len(), n);
        assert_eq!(mem, streamed);
        for (i, (_, v)) in streamed.iter().enumerate() {
            assert_eq!(*v, i as i64, "one version per row");
        }
    }
    // Online estimators are refused where they cannot stream: an unknown stage class fails
    // naming it.
    let bad = json!({"className": "Pipeline", "stages": [{"className": "KMeans", "paramMap": {}}]});
    std::fs::write(p("bad.json"), bad.to_string()).unwrap();
    let err = ferroflow(&[
        "progressive",
        "--stage",
        &s(&p("bad.json")),
        "--input",
        &s(&p("all.csv")),
        "--output",
        &s(&p("x.jsonl")),
    ])
    .unwrap_err();
    assert!(
        err.contains("KMeans") && err.contains("fit it first"),
        "{err}"
    );
}

/// An online model's emitted version is a valid starting point: OnlineKMeans trained on the
/// first half, stopped, and resumed from its last version (`--model-data`) on the second
/// half ends where one run over all rows ends (the model saved with its stream position:
/// the version number goes on too).
#[test]
fn an_emitted_kmeans_version_resumes_training_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let rows: Vec<Value> = (0..24)
        .map(|i| {
            let c = if i % 2 == 0 { 10.0 } else { -10.0 };
            json!({"features": [c + (i % 5) as f64 * 0.1, (i % 3) as f64 * 0.2]})
        })
        .collect();
    let write = |path: &Path, rows: &[Value]| {
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(path, text).unwrap();
    };
    write(&p("all.jsonl"), &rows);
    write(&p("head.jsonl"), &rows[..12]);
    write(&p("tail.jsonl"), &rows[12..]);
    let stage = |init: Value| {
        json!({"className": "org.apache.flink.ml.clustering.kmeans.OnlineKMeans",
               "paramMap": {"k": 2, "globalBatchSize": 4, "decayFactor": 0.5, "initialModelData": init}})
    };
    std::fs::write(
        p("start.json"),
        stage(json!({"centroids": [[1.0, 0.0], [-1.0, 0.0]], "weights": [0.0, 0.0]})).to_string(),
    )
    .unwrap();
    let fit = |input: &str, out: &str, init: Option<&str>| {
        let mut args = vec![
            "fit-online".to_string(),
            "--stage".into(),
            s(&p("start.json")),
            "--input".into(),
            s(&p(input)),
            "--model-data-output".into(),
            s(&p(out)),
        ];
        if let Some(i) = init {
            args.extend(["--model-data".into(), s(&p(i))]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ferroflow(&args).unwrap();
        read_rows(&p(out))
    };
    let whole = fit("all.jsonl", "whole.jsonl", None);
    let head = fit("head.jsonl", "head-v.jsonl", None);
    write(
        &p("last.jsonl"),
        &[Value::Object(head.last().unwrap().clone())],
    );
    let tail = fit("tail.jsonl", "tail-v.jsonl", Some("last.jsonl"));
    assert_eq!(whole.len(), 7, "version 0 and one per 4 rows: {whole:?}");
    assert_eq!(head.len(), 4);
    // The resumed run starts with the version it was given, then goes on from it.
    assert_eq!(tail[0], *head.last().unwrap());
    assert_eq!(tail.last().unwrap(), whole.last().unwrap());
    assert_eq!(whole.last().unwrap()["modelVersion"], json!(6));
}

/// `ml fit-online` of a Pipeline: stateless stages transform the rows each online
/// estimator trains on; each online estimator's versions go to its own output, in stage
/// order; an online scaler's model, fed its versions, scales the rows the next estimator
/// learns from.
#[test]
fn fit_online_of_a_pipeline_trains_each_online_estimator_on_what_the_stages_before_give() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: &Path| path.to_str().unwrap().to_string();
    let mut state = 3u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let n = 1_000;
    let rows: Vec<Value> = (0..n)
        .map(|_| {
            let (a, b) = (next(), next());
            json!({"a": a, "b": b, "features": [a, b], "label": if a + 2.0 * b > 0.0 { 1.0 } else { 0.0 }})
        })
        .collect();
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(p("train.jsonl"), text).unwrap();
    let olr = json!({"className": "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression",
        "paramMap": {"globalBatchSize": 10, "alpha": 0.5,
                     "initialModelData": {"coefficient": {"values": [0.0, 0.0]}, "modelVersion": 0}}});
    let assembler = json!({"className": "VectorAssembler", "paramMap":
        {"inputCols": ["a", "b"], "outputCol": "features", "inputSizes": [1, 1]}});
    let fit = |stage: &Value, outputs: &[&str]| {
        std::fs::write(p("stage.json"), stage.to_string()).unwrap();
        let mut args = vec![
            "fit-online".to_string(),
            "--stage".into(),
            s(&p("stage.json")),
            "--input".into(),
            s(&p("train.jsonl")),
        ];
        for o in outputs {
            args.push("--model-data-output".into());
            args.push(s(&p(o)));
        }
        ferroflow(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Assembler | OLR: what OLR alone gives on the assembled column, bit for bit.
    fit(&olr, &["alone.jsonl"]).unwrap();
    let mut no_features = rows.clone();
    for r in &mut no_features {
        r.as_object_mut().unwrap().remove("features");
    }
    let text: String = no_features.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(p("train.jsonl"), text).unwrap();
    fit(
        &json!({"className": "Pipeline", "stages": [assembler, olr]}),
        &["piped.jsonl"],
    )
    .unwrap();
    let (alone, piped) = (read_rows(&p("alone.jsonl")), read_rows(&p("piped.jsonl")));
    assert_eq!(alone.len(), n / 10);
    assert_eq!(piped, alone);

    // Assembler | OnlineStandardScaler | OLR on the scaled column: two outputs.
    let scaler = json!({"className": "org.apache.flink.ml.feature.standardscaler.OnlineStandardScaler",
        "paramMap": {"inputCol": "features", "outputCol": "scaled", "withMean": true,
            "windows": {"class": "org.apache.flink.ml.common.window.CountTumblingWindows", "size": 100}}});
    let mut olr_scaled = olr.clone();
    olr_scaled["paramMap"]["featuresCol"] = json!("scaled");
    let three = json!({"className": "Pipeline", "stages": [assembler, scaler, olr_scaled]});
    let err = fit(&three, &["one.jsonl"]).unwrap_err();
    assert!(
        err.contains("2 online estimators, 1 --model-data-output"),
        "{err}"
    );
    fit(&three, &["scaler.jsonl", "olr.jsonl"]).unwrap();
    fit(
        &json!({"className": "Pipeline", "stages": [assembler, scaler]}),
        &["scaler-alone.jsonl"],
    )
    .unwrap();
    let scaled_versions = read_rows(&p("scaler.jsonl"));
    assert_eq!(scaled_versions.len(), n / 100);
    assert_eq!(scaled_versions, read_rows(&p("scaler-alone.jsonl")));
    // Every row reaches OLR once scaled (rows before the first scaler version wait).
    let versions = read_rows(&p("olr.jsonl"));
    assert_eq!(versions.len(), n / 10);
    assert_eq!(versions.last().unwrap()["modelVersion"], json!(n / 10));
    let c: Vec<f64> = versions.last().unwrap()["coefficient"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(c[0] > 0.0 && c[1] > c[0], "learned a + 2b > 0: {c:?}");

    // A batch estimator in the pipeline is refused, naming it.
    let batch = json!({"className": "org.apache.flink.ml.feature.standardscaler.StandardScaler",
        "paramMap": {"inputCol": "features", "outputCol": "scaled"}});
    let err = fit(
        &json!({"className": "Pipeline", "stages": [assembler, batch, olr_scaled]}),
        &["x.jsonl"],
    )
    .unwrap_err();
    assert!(
        err.contains("stage 1") && err.contains("StandardScaler"),
        "{err}"
    );
}
