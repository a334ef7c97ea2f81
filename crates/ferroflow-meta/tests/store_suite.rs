//! The store's contract, run against both backends: a real SQLite file and a real
//! PostgreSQL server on loopback (started by `scripts/setup-postgres.sh` unless
//! `FERROFLOW_TEST_PG_URL` names one). The PostgreSQL tests fail, never skip, when no server
//! can be had.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroflow_meta::{
    EventFilter, MetaError, MetaStore, ModelStage, NewEvent, NewModelVersion, NewRecord, Notifier,
    PostgresStore, RecordKind, SqliteStore,
};

/// Where a test's store lives: a SQLite file in a temporary directory, or a fresh database
/// on the PostgreSQL server. Reopening gives a new connection to the same data.
#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Place {
    backend: Backend,
    dir: tempfile::TempDir,
    pg_url: Option<String>,
}

fn pg_server() -> String {
    if let Ok(url) = std::env::var("FERROFLOW_TEST_PG_URL") {
        return url;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/setup-postgres.sh"
    );
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .expect("run setup-postgres.sh");
    assert!(
        out.status.success(),
        "PostgreSQL could not be started: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Place {
    async fn new(backend: Backend) -> Place {
        let dir = tempfile::tempdir().unwrap();
        let pg_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let server = pg_server();
                let name = format!(
                    "ff_{}_{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                );
                let admin = sqlx::PgPool::connect(&server).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                let base = server.rsplit_once('/').unwrap().0;
                Some(format!("{base}/{name}"))
            }
        };
        Place {
            backend,
            dir,
            pg_url,
        }
    }

    async fn open(&self) -> Arc<dyn MetaStore> {
        match self.backend {
            Backend::Sqlite => Arc::new(
                SqliteStore::open(&self.dir.path().join("meta.db"))
                    .await
                    .unwrap(),
            ),
            Backend::Postgres => Arc::new(
                PostgresStore::connect(self.pg_url.as_ref().unwrap())
                    .await
                    .unwrap(),
            ),
        }
    }
}

async fn concurrent_senders_with_retries_get_gap_free_unique_offsets(backend: Backend) {
    let place = Place::new(backend).await;
    let s = place.open().await;
    let mut tasks = Vec::new();
    for client in 0..100 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for seq in 0..5 {
                let mut e = NewEvent::new(
                    format!("k{}", client % 7),
                    format!("{client}-{seq}"),
                    "TEST",
                );
                e.client_id = Some(format!("client-{client}"));
                e.sequence = Some(seq);
                // A client that did not see the acknowledgement retries: same (client, seq).
                let first = s.send_event(e.clone()).await.unwrap();
                let retry = s.send_event(e).await.unwrap();
                assert_eq!(first, retry, "a retried send returns the stored event");
                offsets.push(first.offset);
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(
        all,
        (1..=500).collect::<Vec<i64>>(),
        "gap-free, no duplicates"
    );
    assert_eq!(s.latest_offset().await.unwrap(), 500);
    let listed = s
        .list_events(&EventFilter::default(), 0, 10_000)
        .await
        .unwrap();
    assert_eq!(listed.len(), 500);
    assert!(listed.windows(2).all(|w| w[1].offset == w[0].offset + 1));
}

async fn filters_and_offsets(backend: Backend) {
    let place = Place::new(backend).await;
    let s = place.open().await;
    for (k, t, ns) in [
        ("a", "X", "p1"),
        ("b", "X", "p1"),
        ("a", "Y", "p2"),
        ("c", "Y", "p1"),
    ] {
        let mut e = NewEvent::new(k, "v", t);
        e.namespace = ns.into();
        e.sender = "tester".into();
        s.send_event(e).await.unwrap();
    }
    let f = EventFilter {
        keys: vec!["a".into()],
        ..Default::default()
    };
    let got: Vec<i64> = s
        .list_events(&f, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(got, vec![1, 3]);
    let f = EventFilter {
        event_types: vec!["Y".into()],
        namespaces: vec!["p1".into()],
        ..Default::default()
    };
    let got: Vec<i64> = s
        .list_events(&f, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(got, vec![4]);
    let got: Vec<i64> = s
        .list_events(&EventFilter::default(), 2, 1)
        .await
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(got, vec![3]);
    let e = s.send_event(NewEvent::new("", "v", "X")).await.unwrap_err();
    assert!(matches!(e, MetaError::Invalid { field: "key", .. }), "{e}");
}

async fn listen_wakes_on_a_new_event_and_times_out_empty(backend: Backend) {
    let place = Place::new(backend).await;
    let n = Notifier::new(place.open().await);
    let f = EventFilter {
        keys: vec!["wanted".into()],
        ..Default::default()
    };
    let t = Instant::now();
    assert!(
        n.listen(&f, 0, 10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(50));

    let listener = {
        let n = n.clone();
        let f = f.clone();
        tokio::spawn(async move { n.listen(&f, 0, 10, Duration::from_secs(10)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    n.send(NewEvent::new("other", "x", "T")).await.unwrap();
    n.send(NewEvent::new("wanted", "y", "T")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), listener)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, "y");

    let mut sub = n.subscribe(EventFilter::default(), 1);
    let e = sub.recv().await.unwrap().unwrap();
    assert_eq!(e.offset, 2);
    n.send(NewEvent::new("later", "z", "T")).await.unwrap();
    assert_eq!(sub.recv().await.unwrap().unwrap().key, "later");
}

/// Two handles on one database stand for two servers (or a server and a scheduler): a
/// listener on one is woken by a send through the other (PostgreSQL through NOTIFY, SQLite
/// through its offset watch), and tokens made through one work through the other.
async fn listeners_wake_on_events_written_elsewhere(backend: Backend) {
    let place = Place::new(backend).await;
    let here = Notifier::new(place.open().await);
    let there = place.open().await;
    let f = EventFilter {
        keys: vec!["remote".into()],
        ..Default::default()
    };
    for round in 0..3 {
        let listener = {
            let (n, f) = (here.clone(), f.clone());
            tokio::spawn(async move { n.listen(&f, round, 10, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        there
            .send_event(NewEvent::new("remote", round.to_string(), "T"))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), listener)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1, "round {round}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "woken after {:?}",
            t.elapsed()
        );
    }
    let hash = ferroflow_meta::secret_hash("fft_example-secret-0123456789");
    there
        .create_token("bot", ferroflow_meta::Role::Operator, &hash)
        .await
        .unwrap();
    let t = here.store().token_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(
        (t.name.as_str(), t.role),
        ("bot", ferroflow_meta::Role::Operator)
    );
    assert!(matches!(
        here.store()
            .create_token("bot", ferroflow_meta::Role::Viewer, "other")
            .await,
        Err(MetaError::AlreadyExists { .. })
    ));
    here.store().revoke_token("bot").await.unwrap();
    assert!(there.token_by_hash(&hash).await.unwrap().is_none());
    assert!(matches!(
        there.revoke_token("bot").await,
        Err(MetaError::NotFound { .. })
    ));
}

async fn events_survive_reopening(backend: Backend) {
    let place = Place::new(backend).await;
    {
        let s = place.open().await;
        for i in 0..10 {
            s.send_event(NewEvent::new("k", i.to_string(), "T"))
                .await
                .unwrap();
        }
    }
    let s = place.open().await;
    assert_eq!(s.latest_offset().await.unwrap(), 10);
    assert_eq!(
        s.send_event(NewEvent::new("k", "x", "T"))
            .await
            .unwrap()
            .offset,
        11
    );
}

fn version(uri: &str) -> NewModelVersion {
    NewModelVersion {
        uri: uri.into(),
        flavor: "onnx".into(),
        metrics: [("auc".to_string(), 0.9)].into(),
        job_execution: Some("train-1".into()),
        datasets: vec!["clicks".into()],
    }
}

async fn versions_are_numbered_per_model_under_concurrency(backend: Backend) {
    let place = Place::new(backend).await;
    let s = place.open().await;
    s.register_model("ctr", "click-through").await.unwrap();
    s.register_model("other", "").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_model_version(
                if i % 4 == 0 { "other" } else { "ctr" },
                version(&format!("file:///m/{i}")),
            )
            .await
            .unwrap()
        }));
    }
    let mut ctr = BTreeSet::new();
    let mut other = BTreeSet::new();
    for t in tasks {
        let v = t.await.unwrap();
        assert_eq!(v.stage, ModelStage::Generated);
        if v.model == "ctr" {
            ctr.insert(v.version)
        } else {
            other.insert(v.version)
        };
    }
    assert_eq!(ctr, (1..=15).collect());
    assert_eq!(other, (1..=5).collect());
    let e = s.register_model("ctr", "again").await.unwrap_err();
    assert!(matches!(e, MetaError::AlreadyExists { .. }), "{e}");
    let e = s
        .create_model_version("nope", version("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetaError::NotFound { kind: "model", .. }),
        "{e}"
    );
    let mut bad = version("x");
    bad.flavor = "pickle".into();
    let e = s
        .create_model_version("ctr", bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("pickle") && e.contains("onnx"), "{e}");
}

async fn stage_changes_follow_the_rules_and_write_their_events(backend: Backend) {
    let place = Place::new(backend).await;
    let s = place.open().await;
    s.register_model("m", "").await.unwrap();
    let v1 = s
        .create_model_version("m", version("file:///1"))
        .await
        .unwrap();
    let e = s
        .set_model_stage("m", v1.version, ModelStage::Deployed)
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::InvalidTransition { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("allowed from GENERATED: VALIDATED, DEPRECATED, DELETED"),
        "{e}"
    );
    s.set_model_stage("m", 1, ModelStage::Validated)
        .await
        .unwrap();
    s.set_model_stage("m", 1, ModelStage::Deployed)
        .await
        .unwrap();
    s.create_model_version("m", version("file:///2"))
        .await
        .unwrap();
    s.set_model_stage("m", 2, ModelStage::Validated)
        .await
        .unwrap();
    // Deploying v2 deprecates v1 in the same transaction.
    let v2 = s
        .set_model_stage("m", 2, ModelStage::Deployed)
        .await
        .unwrap();
    assert_eq!(v2.stage, ModelStage::Deployed);
    assert_eq!(
        s.get_model_version("m", 1).await.unwrap().stage,
        ModelStage::Deprecated
    );
    // Setting the same stage again changes nothing and writes no event.
    s.set_model_stage("m", 2, ModelStage::Deployed)
        .await
        .unwrap();
    let f = EventFilter {
        keys: vec!["m".into()],
        ..Default::default()
    };
    let events = s.list_events(&f, 0, 100).await.unwrap();
    let kinds: Vec<(String, i64)> = events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.value).unwrap();
            (e.event_type.clone(), v["version"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("MODEL_GENERATED".into(), 1),
            ("MODEL_VALIDATED".into(), 1),
            ("MODEL_DEPLOYED".into(), 1),
            ("MODEL_GENERATED".into(), 2),
            ("MODEL_VALIDATED".into(), 2),
            ("MODEL_DEPRECATED".into(), 1),
            ("MODEL_DEPLOYED".into(), 2),
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&events[6].value).unwrap();
    assert_eq!(v["stage"], "DEPLOYED");
    assert_eq!(v["job_execution"], "train-1");
    let e = s.get_model_version("m", 9).await.unwrap_err();
    assert!(matches!(e, MetaError::NotFound { .. }));

    // A model goes only once all its versions are DELETED.
    assert_eq!(
        s.update_model("m", "ranked").await.unwrap().description,
        "ranked"
    );
    let e = s.delete_model("m").await.unwrap_err();
    assert!(matches!(e, MetaError::Conflict(_)), "{e}");
    s.set_model_stage("m", 2, ModelStage::Deprecated)
        .await
        .unwrap();
    for v in [1, 2] {
        s.set_model_stage("m", v, ModelStage::Deleted)
            .await
            .unwrap();
    }
    s.delete_model("m").await.unwrap();
    assert!(matches!(
        s.get_model("m").await.unwrap_err(),
        MetaError::NotFound { .. }
    ));
    // The name is free again, and numbering starts over.
    s.register_model("m", "").await.unwrap();
    assert_eq!(
        s.create_model_version("m", version("file:///new"))
            .await
            .unwrap()
            .version,
        1
    );
}

async fn concurrent_deploys_leave_exactly_one_deployed(backend: Backend) {
    let place = Place::new(backend).await;
    let s = place.open().await;
    s.register_model("m", "").await.unwrap();
    for i in 1..=10 {
        s.create_model_version("m", version(&format!("file:///{i}")))
            .await
            .unwrap();
        s.set_model_stage("m", i, ModelStage::Validated)
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 1..=10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.set_model_stage("m", i, ModelStage::Deployed).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            // A version deprecated by a concurrent deploy can still be redeployed, so every
            // call succeeds; anything else is a failure of the invariant.
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 10);
    let deployed = s
        .list_model_versions("m", Some(ModelStage::Deployed))
        .await
        .unwrap();
    assert_eq!(deployed.len(), 1);
    let deprecated = s
        .list_model_versions("m", Some(ModelStage::Deprecated))
        .await
        .unwrap();
    assert_eq!(deprecated.len(), 9);
    // Every DEPLOYED event but the last was followed by the DEPRECATED event of that version.
    let f = EventFilter {
        keys: vec!["m".into()],
        event_types: vec!["MODEL_DEPLOYED".into(), "MODEL_DEPRECATED".into()],
        ..Default::default()
    };
    let events = s.list_events(&f, 0, 100).await.unwrap();
    assert_eq!(events.len(), 19);
    assert_eq!(events.last().unwrap().event_type, "MODEL_DEPLOYED");
}

fn rec(project: &str, name: &str, parent: Option<&str>, body: serde_json::Value) -> NewRecord {
    NewRecord {
        project: project.into(),
        name: name.into(),
        parent: parent.map(String::from),
        body,
    }
}

async fn metadata_records_follow_their_kinds(backend: Backend) {
    use serde_json::json;
    let place = Place::new(backend).await;
    let s = place.open().await;
    // Everything lives in a project that must exist.
    let e = s
        .create_record(
            RecordKind::Dataset,
            rec(
                "ads",
                "clicks",
                None,
                json!({"uri": "file:///c.csv", "format": "csv"}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                kind: "project",
                ..
            }
        ),
        "{e}"
    );
    s.create_record(
        RecordKind::Project,
        rec("ads", "ads", None, json!({"description": "ads team"})),
    )
    .await
    .unwrap();
    let ds = s
        .create_record(
            RecordKind::Dataset,
            rec("ads", "clicks", None, json!({"uri": "file:///c.csv", "format": "csv",
                "schema": [{"name": "user", "type": "utf8", "nullable": false}], "properties": {"owner": "bo"}})),
        )
        .await
        .unwrap();
    assert_eq!(ds.revision, 1);
    let e = s
        .create_record(
            RecordKind::Dataset,
            rec("ads", "bad", None, json!({"uri": 3, "format": "csv"})),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("'uri' as a string"), "{e}");
    let e = s
        .create_record(
            RecordKind::Dataset,
            rec("ads", "clicks", None, json!({"uri": "x", "format": "csv"})),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::AlreadyExists { .. }), "{e}");

    // Workflows, immutable snapshots and executions hang off each other.
    s.create_record(
        RecordKind::Workflow,
        rec("ads", "ctr", None, json!({"spec": "v1"})),
    )
    .await
    .unwrap();
    let e = s
        .create_record(
            RecordKind::WorkflowSnapshot,
            rec("ads", "ctr@1", Some("nope"), json!({"spec": "v1"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                kind: "workflow",
                ..
            }
        ),
        "{e}"
    );
    s.create_record(
        RecordKind::WorkflowSnapshot,
        rec(
            "ads",
            "ctr@1",
            Some("ctr"),
            json!({"spec": "v1", "hash": "ab"}),
        ),
    )
    .await
    .unwrap();
    let e = s
        .update_record(
            RecordKind::WorkflowSnapshot,
            "ads",
            "ctr@1",
            json!({"spec": "v2"}),
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("immutable"), "{e}");
    s.create_record(
        RecordKind::Execution,
        rec(
            "ads",
            "run-1",
            Some("ctr"),
            json!({"snapshot": "ctr@1", "status": "RUNNING"}),
        ),
    )
    .await
    .unwrap();
    s.create_record(
        RecordKind::JobExecution,
        rec(
            "ads",
            "run-1.train",
            Some("run-1"),
            json!({"job": "train", "status": "FINISHED", "exit_code": 0}),
        ),
    )
    .await
    .unwrap();
    s.create_record(
        RecordKind::Metric,
        rec(
            "ads",
            "auc@ctr.1",
            Some("model:ctr/1"),
            json!({"key": "auc", "value": 0.91, "timestamp": 1}),
        ),
    )
    .await
    .unwrap();

    // Optimistic updates.
    let r = s
        .update_record(
            RecordKind::Execution,
            "ads",
            "run-1",
            json!({"snapshot": "ctr@1", "status": "SUCCEEDED"}),
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(r.revision, 2);
    let e = s
        .update_record(
            RecordKind::Execution,
            "ads",
            "run-1",
            json!({"snapshot": "ctr@1", "status": "FAILED"}),
            Some(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::Conflict(_)), "{e}");
    assert_eq!(
        s.get_record(RecordKind::Execution, "ads", "run-1")
            .await
            .unwrap()
            .body["status"],
        "SUCCEEDED"
    );

    // Listing with filters and pages.
    for i in 0..5 {
        s.create_record(
            RecordKind::Artifact,
            rec(
                "ads",
                &format!("a{i}"),
                None,
                json!({"uri": format!("file:///a/{i}")}),
            ),
        )
        .await
        .unwrap();
    }
    let page: Vec<String> = s
        .list_records(RecordKind::Artifact, Some("ads"), None, 1, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(page, vec!["a1", "a2"]);
    let jobs = s
        .list_records(RecordKind::JobExecution, None, Some("run-1"), 0, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);

    // Owners cannot go before what they own.
    let e = s
        .delete_record(RecordKind::Execution, "ads", "run-1")
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::Conflict(_)), "{e}");
    s.delete_record(RecordKind::JobExecution, "ads", "run-1.train")
        .await
        .unwrap();
    s.delete_record(RecordKind::Execution, "ads", "run-1")
        .await
        .unwrap();
    let e = s
        .get_record(RecordKind::Execution, "ads", "run-1")
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::NotFound { .. }), "{e}");
    assert!(
        s.delete_record(RecordKind::Project, "ads", "ads")
            .await
            .is_err()
    );
}

async fn commit_writes_records_and_events_all_or_nothing(backend: Backend) {
    use ferroflow_meta::RecordWrite;
    use serde_json::json;
    let place = Place::new(backend).await;
    let s = place.open().await;
    s.create_record(RecordKind::Project, rec("p", "p", None, json!({})))
        .await
        .unwrap();
    let wf = s
        .create_record(RecordKind::Workflow, rec("p", "wf", None, json!({})))
        .await
        .unwrap();
    let before = s.latest_offset().await.unwrap();
    let ok = s
        .commit(
            vec![
                RecordWrite::Create {
                    kind: RecordKind::Execution,
                    record: rec("p", "wf-1", Some("wf"), json!({"status": "RUNNING"})),
                },
                RecordWrite::Update {
                    kind: RecordKind::Workflow,
                    project: "p".into(),
                    name: "wf".into(),
                    body: json!({"executions": 1}),
                    expected_revision: Some(wf.revision),
                },
            ],
            vec![NewEvent::new("wf", "RUNNING", "EXECUTION_STATUS_CHANGED")],
        )
        .await
        .unwrap();
    assert_eq!(ok.records.len(), 2);
    assert_eq!(ok.records[1].revision, wf.revision + 1);
    assert_eq!(ok.events[0].offset, before + 1);
    // A stale revision in the second write undoes the first write and the event.
    let e = s
        .commit(
            vec![
                RecordWrite::Create {
                    kind: RecordKind::Execution,
                    record: rec("p", "wf-2", Some("wf"), json!({"status": "RUNNING"})),
                },
                RecordWrite::Update {
                    kind: RecordKind::Workflow,
                    project: "p".into(),
                    name: "wf".into(),
                    body: json!({"executions": 2}),
                    expected_revision: Some(wf.revision),
                },
            ],
            vec![NewEvent::new("wf", "RUNNING", "EXECUTION_STATUS_CHANGED")],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::Conflict(_)), "{e}");
    assert!(
        s.get_record(RecordKind::Execution, "p", "wf-2")
            .await
            .is_err()
    );
    assert_eq!(s.latest_offset().await.unwrap(), before + 1);
    assert_eq!(
        s.get_record(RecordKind::Workflow, "p", "wf")
            .await
            .unwrap()
            .body,
        json!({"executions": 1})
    );
}

macro_rules! suite {
    ($backend:ident, $variant:expr, [$($test:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($variant).await
                }
            )*
        }
    };
}

macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        suite!(sqlite, Backend::Sqlite, [$($test),*]);
        suite!(postgres, Backend::Postgres, [$($test),*]);
    };
}

both_backends!(
    metadata_records_follow_their_kinds,
    concurrent_senders_with_retries_get_gap_free_unique_offsets,
    filters_and_offsets,
    listen_wakes_on_a_new_event_and_times_out_empty,
    listeners_wake_on_events_written_elsewhere,
    events_survive_reopening,
    versions_are_numbered_per_model_under_concurrency,
    stage_changes_follow_the_rules_and_write_their_events,
    concurrent_deploys_leave_exactly_one_deployed,
    commit_writes_records_and_events_all_or_nothing,
);
