//! Behaviour of the feature transformers without a Flink ML conformance vector.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use ferroflow_ml::io::{batch_to_rows, rows_to_batch};
use ferroflow_ml::{AnyStage, stage_from_json};
use serde_json::{Map, Value, json};

fn run(stage: Value, batch: &RecordBatch) -> Vec<RecordBatch> {
    match stage_from_json(&stage).unwrap() {
        AnyStage::Operator(op) => op.transform(std::slice::from_ref(batch)).unwrap(),
        _ => panic!("not a transformer"),
    }
}

fn estimator(stage: Value) -> Box<dyn ferroflow_ml::Estimator> {
    match stage_from_json(&stage).unwrap() {
        AnyStage::Estimator(e) => e,
        _ => panic!("not an estimator"),
    }
}

fn table(text: &str) -> RecordBatch {
    let rows: Vec<Map<String, Value>> = serde_json::from_str(text).unwrap();
    rows_to_batch(&rows).unwrap()
}

#[test]
fn binarizer_thresholds_numbers_and_vectors() {
    let b = table(
        r#"[{"x": 1.0, "v": [0.5, 2.0], "s": {"size": 4, "indices": [1, 3], "values": [3.0, 0.2]}},
                      {"x": 2.0, "v": [1.5, 1.0], "s": {"size": 4, "indices": [0], "values": [5.0]}}]"#,
    );
    let out = run(
        json!({"className": "Binarizer", "paramMap": {
        "inputCols": ["x", "v", "s"], "outputCols": ["bx", "bv", "bs"], "thresholds": [1.5, 1.0, 1.0]}}),
        &b,
    );
    let rows = batch_to_rows(&out[0]).unwrap();
    assert_eq!(rows[0]["bx"], json!(0.0));
    assert_eq!(rows[1]["bx"], json!(1.0));
    assert_eq!(rows[0]["bv"], json!([0.0, 1.0]));
    assert_eq!(
        rows[0]["bs"],
        json!({"size": 4, "indices": [1], "values": [1.0]}),
        "sparse stays sparse"
    );
}

#[test]
fn vector_slicer_keeps_the_kind_and_checks_indices() {
    let b = table(
        r#"[{"v": [2.1, 3.1, 1.2, 3.1, 4.6]}, {"v": {"size": 5, "indices": [1, 4], "values": [9.0, 8.0]}}]"#,
    );
    let out = run(
        json!({"className": "VectorSlicer", "paramMap": {"inputCol": "v", "outputCol": "o", "indices": [4, 1, 2]}}),
        &b,
    );
    let rows = batch_to_rows(&out[0]).unwrap();
    assert_eq!(rows[0]["o"], json!([4.6, 3.1, 1.2]));
    assert_eq!(
        rows[1]["o"],
        json!({"size": 3, "indices": [0, 1], "values": [8.0, 9.0]})
    );
    let AnyStage::Operator(op) = stage_from_json(&json!({"className": "VectorSlicer",
        "paramMap": {"inputCol": "v", "outputCol": "o", "indices": [7]}}))
    .unwrap() else {
        panic!()
    };
    let e = op.transform(&[b]).unwrap_err().to_string();
    assert!(e.contains("row 0") && e.contains("index 7"), "{e}");
}

#[test]
fn ngrams_of_token_arrays() {
    let mut l = ListBuilder::new(StringBuilder::new());
    for tokens in [vec!["a", "b", "c"], vec!["x"]] {
        for t in tokens {
            l.values().append_value(t);
        }
        l.append(true);
    }
    let b = RecordBatch::try_from_iter(vec![("t", Arc::new(l.finish()) as ArrayRef)]).unwrap();
    let out = run(
        json!({"className": "NGram", "paramMap": {"inputCol": "t", "outputCol": "g"}}),
        &b,
    );
    let rows = batch_to_rows(&out[0]).unwrap();
    assert_eq!(rows[0]["g"], json!(["a b", "b c"]));
    assert_eq!(rows[1]["g"], json!([]), "fewer tokens than n give none");
}

#[test]
fn feature_hasher_adds_numbers_and_counts_categories() {
    let b = RecordBatch::try_from_iter(vec![
        (
            "age",
            Arc::new(Float64Array::from(vec![30.0, 40.0])) as ArrayRef,
        ),
        (
            "city",
            Arc::new(StringArray::from(vec!["paris", "paris"])) as ArrayRef,
        ),
        ("code", Arc::new(Int64Array::from(vec![7, 8])) as ArrayRef),
    ])
    .unwrap();
    let out = run(
        json!({"className": "FeatureHasher", "paramMap": {
        "inputCols": ["age", "city", "code"], "categoricalCols": ["city", "code"], "outputCol": "f", "numFeatures": 1000}}),
        &b,
    );
    let f = ferroflow_ml::vector::read_vectors("f", out[0].column_by_name("f").unwrap()).unwrap();
    let (a, c) = (f[0].as_ref().unwrap(), f[1].as_ref().unwrap());
    assert_eq!(a.size(), 1000);
    let stored_a: Vec<(usize, f64)> = a.stored().collect();
    let stored_c: Vec<(usize, f64)> = c.stored().collect();
    // Three features each: the numeric age (its value), the city, the code as a category.
    assert_eq!(stored_a.len(), 3);
    assert!(stored_a.iter().any(|&(_, v)| v == 30.0) && stored_c.iter().any(|&(_, v)| v == 40.0));
    let age_index = stored_a.iter().find(|p| p.1 == 30.0).unwrap().0;
    assert!(
        stored_c.iter().any(|&(i, v)| i == age_index && v == 40.0),
        "same column, same index"
    );
    // Same city, same index; different codes, different indices (for these values).
    let ones = |s: &[(usize, f64)]| {
        s.iter()
            .filter(|p| p.1 == 1.0)
            .map(|p| p.0)
            .collect::<Vec<_>>()
    };
    let (oa, oc) = (ones(&stored_a), ones(&stored_c));
    assert_eq!(
        oa.iter().filter(|i| oc.contains(i)).count(),
        1,
        "{oa:?} {oc:?}"
    );
}

#[test]
fn random_splitter_partitions_rows_by_weight_reproducibly() {
    let n = 20_000;
    let b = RecordBatch::try_from_iter(vec![(
        "id",
        Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))) as ArrayRef,
    )])
    .unwrap();
    let stage =
        json!({"className": "RandomSplitter", "paramMap": {"weights": [1.0, 3.0], "seed": 5}});
    let out = run(stage.clone(), &b);
    assert_eq!(out.len(), 2);
    let (a, c) = (out[0].num_rows(), out[1].num_rows());
    assert_eq!(a + c, n);
    assert!((a as f64 / n as f64 - 0.25).abs() < 0.02, "{a} of {n}");
    let again = run(stage, &b);
    assert_eq!(
        again[0].column(0).as_primitive::<Float64Type>().values(),
        out[0].column(0).as_primitive::<Float64Type>().values()
    );
    assert_eq!(out[0].column(0).null_count(), 0);
}

/// VectorAssembler's `handleInvalid` as Flink ML's AssemblerFunction: a NaN number, a null
/// or a vector of the wrong size makes a row invalid (a NaN inside a vector does not);
/// `skip` drops it, `error` fails naming the problem, `keep` keeps NaN numbers, fills nulls
/// with NaN of the declared size and takes wrong-sized vectors as they are.
#[test]
fn vector_assembler_handles_invalid_rows_as_flink_ml() {
    let b = table(
        r#"[{"id": 0, "x": 1.0, "v": [1.0, 2.0]},
            {"id": 1, "x": "NaN", "v": [1.0, 2.0]},
            {"id": 2, "x": 2.0, "v": null},
            {"id": 3, "x": 3.0, "v": [1.0, 2.0, 3.0]},
            {"id": 4, "x": 4.0, "v": [1.0, "NaN"]},
            {"id": 5, "x": null, "v": [0.0, 0.0]}]"#,
    );
    let stage = |handle: &str| {
        json!({"className": "VectorAssembler", "paramMap": {
            "inputCols": ["x", "v"], "outputCol": "o", "inputSizes": [1, 2], "handleInvalid": handle}})
    };
    let skip = batch_to_rows(&run(stage("skip"), &b)[0]).unwrap();
    let ids: Vec<&Value> = skip.iter().map(|r| &r["id"]).collect();
    assert_eq!(
        ids,
        [&json!(0), &json!(4)],
        "NaN number, null, wrong size skipped"
    );
    assert_eq!(
        skip[1]["o"],
        json!([4.0, 1.0, "NaN"]),
        "a NaN inside a vector is valid"
    );

    let keep = batch_to_rows(&run(stage("keep"), &b)[0]).unwrap();
    assert_eq!(keep.len(), 6);
    assert_eq!(keep[1]["o"], json!(["NaN", 1.0, 2.0]));
    assert_eq!(keep[2]["o"], json!([2.0, "NaN", "NaN"]));
    assert_eq!(keep[3]["o"], json!([3.0, 1.0, 2.0, 3.0]), "taken as it is");
    // A null number becomes NaN (and counts as stored: the output stays dense).
    assert_eq!(keep[5]["o"], json!(["NaN", 0.0, 0.0]));

    let err = match stage_from_json(&stage("error")).unwrap() {
        AnyStage::Operator(op) => op.transform(std::slice::from_ref(&b)).unwrap_err(),
        _ => unreachable!(),
    };
    assert!(err.to_string().contains("Encountered NaN"), "{err}");
    // The all-dense fast path checks NaN numbers too.
    let dense = table(r#"[{"x": 1.0, "v": [1.0, 2.0]}, {"x": "NaN", "v": [3.0, 4.0]}]"#);
    assert_eq!(run(stage("skip"), &dense)[0].num_rows(), 1);
    assert_eq!(run(stage("keep"), &dense)[0].num_rows(), 2);
}

/// RobustScaler leaves NaN out of its medians and ranges (Flink ML's testNaNData: the same
/// rows, the same output), and refuses a dimension that holds nothing else.
#[test]
fn robust_scaler_ignores_nan_when_fitting() {
    let b = table(
        r#"[{"input": [0.0, "NaN"]}, {"input": ["NaN", 0.0]}, {"input": [1.0, -1.0]},
            {"input": [2.0, -2.0]}, {"input": [3.0, -3.0]}, {"input": [4.0, -4.0]}]"#,
    );
    let est = estimator(json!({"className": "RobustScaler", "paramMap": {}}));
    let model = est.fit(std::slice::from_ref(&b)).unwrap();
    let out = batch_to_rows(&model.transform(std::slice::from_ref(&b)).unwrap()[0]).unwrap();
    let got: Vec<&Value> = out.iter().map(|r| &r["output"]).collect();
    assert_eq!(
        got,
        [
            &json!([0.0, "NaN"]),
            &json!(["NaN", 0.0]),
            &json!([0.5, -0.5]),
            &json!([1.0, -1.0]),
            &json!([1.5, -1.5]),
            &json!([2.0, -2.0])
        ]
    );
    let all_nan = table(r#"[{"input": [1.0, "NaN"]}, {"input": [2.0, "NaN"]}]"#);
    let err = est.fit(std::slice::from_ref(&all_nan)).err().unwrap();
    assert!(err.to_string().contains("dimension 1"), "{err}");
}

/// KBinsDiscretizer on the rows of Flink ML's KBinsDiscretizerTest (numBins 3): the bins
/// its test expects for the uniform, quantile and kmeans strategies.
#[test]
fn kbins_discretizer_strategies_bin_as_flink_ml() {
    let train = table(
        r#"[{"input": [1, 10, 0]}, {"input": [1, 10, 0]}, {"input": [1, 10, 0]},
            {"input": [4, 10, 0]}, {"input": [5, 10, 0]}, {"input": [6, 10, 0]},
            {"input": [7, 10, 0]}, {"input": [10, 10, 0]}, {"input": [13, 10, 3]}]"#,
    );
    let test = table(
        r#"[{"input": [-1, 0, 0]}, {"input": [1, 1, 1]}, {"input": [1.5, 1, 2]},
            {"input": [5, 2, 3]}, {"input": [7.25, 3, 4]}, {"input": [13, 4, 5]},
            {"input": [15, 4, 6]}]"#,
    );
    let uniform = json!([
        [0, 0, 0],
        [0, 0, 1],
        [0, 0, 2],
        [1, 0, 2],
        [1, 0, 2],
        [2, 0, 2],
        [2, 0, 2]
    ]);
    let quantile = json!([
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 1],
        [1, 0, 1],
        [2, 0, 1],
        [2, 0, 1],
        [2, 0, 1]
    ]);
    for (strategy, want) in [
        ("uniform", &uniform),
        ("quantile", &quantile),
        ("kmeans", &uniform),
    ] {
        let est = estimator(json!({"className": "KBinsDiscretizer",
            "paramMap": {"numBins": 3, "strategy": strategy}}));
        let model = est.fit(std::slice::from_ref(&train)).unwrap();
        let out = batch_to_rows(&model.transform(std::slice::from_ref(&test)).unwrap()[0]).unwrap();
        let got: Vec<Vec<f64>> = out
            .iter()
            .map(|r| {
                r["output"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let want: Vec<Vec<f64>> = serde_json::from_value(want.clone()).unwrap();
        assert_eq!(got, want, "{strategy}");
    }
}

/// FeatureHasher on Flink ML's FeatureHasherTest rows gives the indices that test expects
/// (murmur3 of the UTF-16 text, floorMod of its absolute value); a string or boolean
/// column not named categorical is refused, as Flink ML fails on it.
#[test]
fn feature_hasher_matches_flink_ml_and_refuses_non_numeric_numeric_columns() {
    let b = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![0, 1])) as ArrayRef),
        (
            "f0",
            Arc::new(StringArray::from(vec!["a", "c"])) as ArrayRef,
        ),
        (
            "f1",
            Arc::new(Float64Array::from(vec![1.0, 1.0])) as ArrayRef,
        ),
        (
            "f2",
            Arc::new(arrow_array::BooleanArray::from(vec![true, false])) as ArrayRef,
        ),
    ])
    .unwrap();
    let stage = |categorical: Value| {
        json!({"className": "FeatureHasher", "paramMap": {
            "inputCols": ["f0", "f1", "f2"], "categoricalCols": categorical,
            "outputCol": "vec", "numFeatures": 1000}})
    };
    let out = batch_to_rows(&run(stage(json!(["f0", "f2"])), &b)[0]).unwrap();
    assert_eq!(
        out[0]["vec"],
        json!({"size": 1000, "indices": [607, 635, 913], "values": [1.0, 1.0, 1.0]})
    );
    assert_eq!(
        out[1]["vec"],
        json!({"size": 1000, "indices": [242, 869, 913], "values": [1.0, 1.0, 1.0]})
    );
    let err = match stage_from_json(&stage(json!(["f0"]))).unwrap() {
        AnyStage::Operator(op) => op.transform(std::slice::from_ref(&b)).unwrap_err(),
        _ => unreachable!(),
    };
    assert!(err.to_string().contains("f2"), "{err}");
}
