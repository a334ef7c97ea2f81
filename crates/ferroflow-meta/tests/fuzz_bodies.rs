//! Fuzzing the bodies the API turns into store calls (bounded, on stable): event, batch and
//! model-version JSON, mutated from valid ones, is stored or refused with `Invalid`, never a
//! panic, on a real SQLite store.

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;

use ferroflow_meta::{
    MetaError, MetaStore, NewEvent, NewModelVersion, NewRecord, RecordKind, SqliteStore,
};
use proptest::prelude::*;

const EVENT: &str = r#"{"key": "ctr", "value": "{\"version\": 3}", "event_type": "MODEL_DEPLOYED", "namespace": "ads", "sender": "cli", "context": "run-1", "client_id": "c1", "sequence": 7}"#;
const VERSION: &str = r#"{"uri": "file:///models/ctr/3", "flavor": "onnx", "metrics": {"auc": 0.91}, "job_execution": "run-1.train.1", "datasets": ["clicks"]}"#;
const RECORD: &str = r#"{"project": "ads", "name": "clicks", "parent": null, "body": {"uri": "file:///clicks.csv", "format": "csv"}}"#;

/// A failure that is the client's (4xx), not the store's.
fn clients_fault(e: &MetaError) -> bool {
    matches!(
        e,
        MetaError::Invalid { .. }
            | MetaError::NotFound { .. }
            | MetaError::AlreadyExists { .. }
            | MetaError::Conflict(_)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz::cases(128), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_bodies_are_stored_or_refused(
        ev in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..8),
        ver in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..8),
        rec in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let store = SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
            store.register_model("ctr", "").await.unwrap();
            store.create_record(RecordKind::Project, NewRecord {
                project: "ads".into(), name: "ads".into(), parent: None, body: serde_json::json!({}),
            }).await.unwrap();
            if let Ok(e) = serde_json::from_str::<NewEvent>(&fuzz::mutate(EVENT, &ev)) {
                if let Err(err) = store.send_event(e.clone()).await {
                    prop_assert!(clients_fault(&err), "{err}");
                }
                if let Err(err) = store.send_events(vec![e.clone(), e]).await {
                    prop_assert!(clients_fault(&err), "{err}");
                }
            }
            if let Ok(v) = serde_json::from_str::<NewModelVersion>(&fuzz::mutate(VERSION, &ver))
                && let Err(err) = store.create_model_version("ctr", v).await
            {
                prop_assert!(clients_fault(&err), "{err}");
            }
            if let Ok(r) = serde_json::from_str::<NewRecord>(&fuzz::mutate(RECORD, &rec)) {
                for kind in [RecordKind::Dataset, RecordKind::Metric, RecordKind::Artifact] {
                    if let Err(err) = store.create_record(kind, r.clone()).await {
                        prop_assert!(clients_fault(&err), "{err}");
                    }
                }
            }
            Ok(())
        })?;
    }
}
