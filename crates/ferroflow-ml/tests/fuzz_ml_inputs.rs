//! Fuzzing the ML library's readers (bounded, on stable): stage JSON, JSON-lines tables in
//! the conformance encoding (dense and sparse vectors), and saved model directories with
//! mutated metadata and model data give errors, never panics or unbounded allocations.

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;

use ferroflow_ml::io::read_jsonl;
use ferroflow_ml::stage::{AnyStage, save_stage};
use ferroflow_ml::{load_stage, stage_from_json};
use proptest::prelude::*;
use serde_json::json;

const STAGE: &str = r#"{"className": "Pipeline", "stages": [
  {"className": "VectorAssembler", "paramMap": {"inputCols": ["a", "b"], "outputCol": "v", "inputSizes": [1, 1]}},
  {"className": "PolynomialExpansion", "paramMap": {"inputCol": "v", "outputCol": "p", "degree": 3}},
  {"className": "StandardScaler", "paramMap": {"inputCol": "p", "outputCol": "scaled", "withMean": true}}]}"#;

const TABLE: &str = r#"{"a": 1.0, "b": 2.0, "v": [1.0, 2.0], "s": {"size": 4, "indices": [1, 3], "values": [5.0, -1.0]}}
{"a": -3.5, "b": 0.0, "v": [0.0, 1e300], "s": {"size": 4, "indices": [], "values": []}}
{"a": 0.25, "b": 7.0, "v": [2.0, 3.0], "s": [1.0, 2.0, 3.0, 4.0]}
"#;

/// Read a table and run a few stages over it (errors are fine).
fn exercise_table(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    std::fs::write(&path, text).unwrap();
    let Ok(table) = read_jsonl(&path) else { return };
    for input in ["v", "s"] {
        let spec = json!({"className": "PolynomialExpansion",
                          "paramMap": {"inputCol": input, "outputCol": "p", "degree": 3}});
        if let Ok(AnyStage::Operator(op)) = stage_from_json(&spec) {
            let _ = op.transform(std::slice::from_ref(&table));
        }
        let spec = json!({"className": "StandardScaler", "paramMap": {"inputCol": input, "outputCol": "o"}});
        if let Ok(AnyStage::Estimator(e)) = stage_from_json(&spec)
            && let Ok(m) = e.fit(std::slice::from_ref(&table))
        {
            let _ = m.transform(std::slice::from_ref(&table));
        }
    }
}

fn train_table() -> arrow_array::RecordBatch {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    std::fs::write(
        &path,
        "{\"a\": 1.0, \"b\": 10.0}\n{\"a\": 2.0, \"b\": 20.0}\n{\"a\": 3.0, \"b\": 35.0}\n",
    )
    .unwrap();
    read_jsonl(&path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz::cases(128), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_stage_json_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..10)) {
        let text = fuzz::mutate(STAGE, &edits);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Ok(AnyStage::Estimator(e)) = stage_from_json(&v)
        {
            let t = train_table();
            if let Ok(m) = e.fit(std::slice::from_ref(&t)) {
                let _ = m.transform(std::slice::from_ref(&t));
            }
        }
    }

    #[test]
    fn mutated_tables_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..10)) {
        exercise_table(&fuzz::mutate(TABLE, &edits));
    }

    #[test]
    fn mutated_model_directories_never_panic(
        meta_edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6),
        data_edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
    ) {
        // A fitted StandardScaler saved, then its files damaged.
        let spec = json!({"className": "StandardScaler", "paramMap": {"inputCol": "v", "outputCol": "o"}});
        let AnyStage::Estimator(e) = stage_from_json(&spec).unwrap() else { panic!() };
        let dir = tempfile::tempdir().unwrap();
        let table_path = dir.path().join("t.jsonl");
        std::fs::write(&table_path, TABLE).unwrap();
        let table = read_jsonl(&table_path).unwrap();
        let model = e.fit(std::slice::from_ref(&table)).unwrap();
        let saved = dir.path().join("model");
        save_stage(&AnyStage::Model(model), &saved).unwrap();
        let meta = saved.join("metadata");
        let text = std::fs::read_to_string(&meta).unwrap();
        std::fs::write(&meta, fuzz::mutate(&text, &meta_edits)).unwrap();
        for entry in walk(&saved.join("data")) {
            let mut bytes = std::fs::read(&entry).unwrap();
            for &(at, b) in &data_edits {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = b;
                }
            }
            std::fs::write(&entry, bytes).unwrap();
        }
        if let Ok(AnyStage::Model(m)) = load_stage(&saved) {
            let _ = m.transform(std::slice::from_ref(&table));
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
