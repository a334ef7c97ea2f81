//! End to end: a stream scored by ML-library models deployed in a Model Center on a SQLite
//! file. Deploying a version hot-swaps it into the running job; a job stopped with a
//! savepoint and restarted serves the version it served, with every row scored once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use ferroflow::connectors::{GenColumn, GeneratorSource, MemorySink};
use ferroflow::engine::{CheckpointConfig, JobBuilder, JobGraph, JobStatus, Runtime};
use ferroflow::inference::ModelCenterSource;
use ferroflow::meta::{MetaStore, ModelStage, NewModelVersion, SqliteStore};
use ferroflow::ml::stage::{AnyStage, save_stage};
use ferroflow::ml::{AlgoOperator, MlStreamExt, VersionedModel};
use ferroflow::ml::{load_stage, stage_from_json};
use serde_json::json;

const ROWS: u64 = 20_000;

/// Fits assembler + logistic regression on a grid labelled by `label(a)`, saves it to `dir`.
fn save_pipeline(dir: &Path, label: fn(f64) -> bool) {
    let spec = json!({"className": "Pipeline", "stages": [
        {"className": "VectorAssembler", "paramMap":
            {"inputCols": ["a", "b"], "outputCol": "features", "inputSizes": [1, 1]}},
        {"className": "org.apache.flink.ml.classification.logisticregression.LogisticRegression",
         "paramMap": {"maxIter": 50, "learningRate": 0.5}}
    ]});
    let AnyStage::Estimator(p) = stage_from_json(&spec).unwrap() else {
        panic!("a pipeline estimator")
    };
    let grid: Vec<(f64, f64)> = (0..400)
        .map(|i| ((i % 20) as f64 / 10.0 - 0.95, (i / 20) as f64 / 10.0 - 0.95))
        .collect();
    let col = |f: &dyn Fn(&(f64, f64)) -> f64| {
        Arc::new(Float64Array::from_iter_values(grid.iter().map(f))) as ArrayRef
    };
    let train = RecordBatch::try_from_iter(vec![
        ("a", col(&|r| r.0)),
        ("b", col(&|r| r.1)),
        ("label", col(&|r| f64::from(label(r.0)))),
    ])
    .unwrap();
    let model = p.fit(&[train]).unwrap();
    save_stage(&AnyStage::Model(model), dir).unwrap();
}

struct Center {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn MetaStore>,
}

impl Center {
    /// Registers `dir` as a new version of `lr`, validated and deployed, as a training job
    /// of the native runner does.
    fn deploy(&self, dir: &Path) -> i64 {
        let store = self.store.clone();
        let uri = dir.display().to_string();
        self.rt.block_on(async move {
            let v = store
                .create_model_version(
                    "lr",
                    NewModelVersion {
                        uri,
                        flavor: "ferroflow-ml".into(),
                        ..NewModelVersion::default()
                    },
                )
                .await
                .unwrap();
            for stage in [ModelStage::Validated, ModelStage::Deployed] {
                store.set_model_stage("lr", v.version, stage).await.unwrap();
            }
            v.version
        })
    }
}

fn job(center: &Center, template: &Path, ckpt: &Path, sink: &MemorySink) -> JobGraph {
    let job = JobBuilder::new("serve-lr")
        .with_checkpointing(CheckpointConfig::new(ckpt, Duration::from_millis(50)));
    let rows = GeneratorSource::new(
        vec![
            ("id".into(), GenColumn::Sequence),
            (
                "a".into(),
                GenColumn::Float {
                    min: -1.0,
                    max: 1.0,
                },
            ),
            (
                "b".into(),
                GenColumn::Float {
                    min: -1.0,
                    max: 1.0,
                },
            ),
        ],
        Some(ROWS),
        11,
    )
    .unwrap()
    .with_batch_size(50)
    .with_rate(10_000.0);
    let rows = job.source("rows", Arc::new(rows)).unwrap();
    let versions = job
        .source(
            "model-center",
            Arc::new(
                ModelCenterSource::new(
                    center.store.clone(),
                    "lr",
                    ModelStage::Deployed,
                    center.rt.handle().clone(),
                )
                .with_poll_interval(Duration::from_millis(10)),
            ),
        )
        .unwrap();
    let template: Arc<dyn AlgoOperator> = match load_stage(template).unwrap() {
        AnyStage::Model(m) => Arc::from(m as Box<dyn AlgoOperator>),
        _ => panic!("a model"),
    };
    rows.ml_transform_with_versions(
        "score",
        VersionedModel::new(template)
            .wait_for_first_version()
            .version_column("model_version"),
        &versions,
    )
    .unwrap()
    .sink("out", Arc::new(sink.clone()))
    .unwrap();
    job.build().unwrap()
}

/// `id → (version, prediction, a)` of every row the sink got.
fn scored(sink: &MemorySink) -> Vec<(u64, i64, f64, f64)> {
    let mut out = Vec::new();
    for b in sink.batches() {
        let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let v = b
            .column_by_name("model_version")
            .unwrap()
            .as_primitive::<Int64Type>();
        let p = b
            .column_by_name("prediction")
            .unwrap()
            .as_primitive::<Float64Type>();
        let a = b.column_by_name("a").unwrap().as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((id.value(i) as u64, v.value(i), p.value(i), a.value(i)));
        }
    }
    out
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn deployed_versions_hot_swap_and_survive_a_stop_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (dir.path().join("v1"), dir.path().join("v2"));
    save_pipeline(&v1, |a| a > 0.0);
    save_pipeline(&v2, |a| a < 0.0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn MetaStore> = Arc::new(
        rt.block_on(SqliteStore::open(&dir.path().join("meta.db")))
            .unwrap(),
    );
    rt.block_on(store.register_model("lr", "scores rows"))
        .unwrap();
    let center = Center { rt, store };
    assert_eq!(center.deploy(&v1), 1);
    let ckpt = dir.path().join("ckpt");

    // Run 1: version 1 serves, version 2 is deployed while the job runs, then a stop.
    let first = MemorySink::new();
    let handle = Runtime::new()
        .unwrap()
        .execute(job(&center, &v1, &ckpt, &first))
        .unwrap();
    wait_until("rows scored by version 1", || first.num_rows() >= 2_000);
    assert_eq!(center.deploy(&v2), 2);
    wait_until("rows scored by version 2", || {
        scored(&first).iter().any(|r| r.1 == 2)
    });
    handle.stop();
    let report = handle.wait().unwrap();
    assert_eq!(report.status, JobStatus::Stopped, "{report:?}");
    let before = scored(&first);
    assert!((before.len() as u64) < ROWS, "stopped mid-way");

    // Run 2 restores: nothing new is deployed, yet version 2 serves every remaining row.
    let second = MemorySink::new();
    let handle = Runtime::new()
        .unwrap()
        .execute(job(&center, &v1, &ckpt, &second))
        .unwrap();
    assert!(handle.restored().is_some(), "restored from the savepoint");
    let rest = ROWS as usize - before.len();
    wait_until("the remaining rows", || second.num_rows() >= rest);
    std::thread::sleep(Duration::from_millis(100));
    handle.cancel();
    let _ = handle.wait();
    let after = scored(&second);
    assert!(
        after.iter().all(|r| r.1 == 2),
        "the restored job serves version 2"
    );

    // Every row exactly once, scored as its version scores it (v1: a > 0, v2: a < 0, the
    // grid's boundary being a = 0).
    let mut all: BTreeMap<u64, (i64, f64, f64)> = BTreeMap::new();
    for (id, v, p, a) in before.into_iter().chain(after) {
        assert!(all.insert(id, (v, p, a)).is_none(), "row {id} twice");
    }
    assert_eq!(all.len() as u64, ROWS);
    assert_eq!(*all.keys().last().unwrap(), ROWS - 1);
    let wrong = all
        .values()
        .filter(|(v, p, a)| a.abs() > 0.1 && (*p == 1.0) != ((*v == 1) == (*a > 0.0)))
        .count();
    assert_eq!(wrong, 0, "rows scored against their version");
    let versions: Vec<i64> = all.values().map(|r| r.0).collect();
    assert_eq!(versions[0], 1);
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "one instance: versions never go back"
    );
}
