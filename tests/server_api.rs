//! The control-plane server as a real process on loopback, driven over HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

struct ServerProc {
    child: Child,
    base: String,
}

impl ServerProc {
    fn start(args: &[&str]) -> ServerProc {
        let (mut child, line) = common::spawn_until_ready(
            Command::new(env!("CARGO_BIN_EXE_ferroflow"))
                .arg("server")
                .args(["--bind", "127.0.0.1:0"])
                .args(args)
                .env("FERROFLOW_TOKEN", TOKEN)
                .stderr(Stdio::piped()),
        );
        let base = line
            .strip_prefix("ferroflow server listening on ")
            .unwrap_or_else(|| {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                panic!("server did not start: {line:?} {err}")
            })
            .to_string();
        ServerProc { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// kill -9.
    fn crash(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin token every test server here starts with (tests/server_security.rs covers the
/// token file, roles and the refusals).
const TOKEN: &str = "test-admin-token-0123456789";

/// Sends `Authorization: Bearer TOKEN` on every request.
fn with_token(
    mut req: ureq::http::Request<ureq::SendBody>,
    next: ureq::middleware::MiddlewareNext,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    if !req.headers().contains_key("authorization") {
        req.headers_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    }
    next.handle(req)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .middleware(with_token)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// (status, JSON body).
fn post(a: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut r = a.post(url).send_json(body).unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn get(a: &ureq::Agent, url: &str) -> (u16, Value) {
    let mut r = a.get(url).call().unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn put(a: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut r = a.put(url).send_json(body).unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn concurrent_senders(server: &ServerProc) {
    let url = Arc::new(server.url("/api/events"));
    let handles: Vec<_> = (0..100)
        .map(|client| {
            let url = url.clone();
            thread::spawn(move || {
                let a = agent();
                let mut offsets = Vec::new();
                for seq in 0..5 {
                    let body = json!({"key": format!("k{}", client % 5), "value": format!("{client}/{seq}"),
                                      "event_type": "TEST", "client_id": format!("c{client}"), "sequence": seq});
                    // The first answer is "lost"; the client retries the same (client, seq).
                    let (s1, first) = post(&a, &url, &body);
                    let (s2, retry) = post(&a, &url, &body);
                    assert_eq!((s1, s2), (200, 200), "{first} {retry}");
                    assert_eq!(first, retry);
                    offsets.push(first["offset"].as_i64().unwrap());
                }
                offsets
            })
        })
        .collect();
    let mut all: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (1..=500).collect::<Vec<_>>());
    let (_, listed) = get(&agent(), &server.url("/api/events?after=0&limit=10000"));
    let offsets: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, (1..=500).collect::<Vec<_>>());
}

#[test]
fn hundred_concurrent_senders_with_retries_get_gap_free_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    concurrent_senders(&server);
}

#[test]
fn postgres_backend_serves_the_same_contract() {
    let url = match std::env::var("FERROFLOW_TEST_PG_URL") {
        Ok(u) => u,
        Err(_) => {
            let out = Command::new("bash")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/scripts/setup-postgres.sh"
                ))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "PostgreSQL could not be started: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
    };
    let db = format!("ff_server_{}", std::process::id());
    let st = Command::new("psql")
        .arg(&url)
        .arg("-qc")
        .arg(format!("CREATE DATABASE {db}"))
        .status()
        .unwrap();
    assert!(st.success());
    let db_url = format!("{}/{db}", url.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database-url",
        &db_url,
    ]);
    concurrent_senders(&server);
}

#[test]
fn listen_wakes_on_a_new_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let a = agent();
    let t = Instant::now();
    let (s, empty) = get(
        &a,
        &server.url("/api/events/listen?keys=wanted&timeout_ms=200"),
    );
    assert_eq!((s, empty), (200, json!([])));
    assert!(t.elapsed() >= Duration::from_millis(200));

    let listen_url = server.url("/api/events/listen?keys=wanted&after=0&timeout_ms=20000");
    let listener = thread::spawn(move || {
        let t = Instant::now();
        let r = get(&agent(), &listen_url);
        (r, t.elapsed())
    });
    thread::sleep(Duration::from_millis(200));
    post(
        &a,
        &server.url("/api/events"),
        &json!({"key": "other", "value": "x"}),
    );
    let sent = Instant::now();
    post(
        &a,
        &server.url("/api/events"),
        &json!({"key": "wanted", "value": "y", "event_type": "PING"}),
    );
    let ((status, events), waited) = listener.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(events[0]["value"], "y");
    assert_eq!(events[0]["offset"], 2);
    assert!(waited < Duration::from_secs(10));
    assert!(sent.elapsed() < Duration::from_secs(5));
}

#[test]
fn deploys_over_http_keep_one_deployed_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let a = agent();
    let (s, m) = post(
        &a,
        &server.url("/api/models"),
        &json!({"name": "ctr", "description": "clicks"}),
    );
    assert_eq!(s, 201, "{m}");
    for i in 1..=6 {
        let (s, v) = post(
            &a,
            &server.url("/api/models/ctr/versions"),
            &json!({"uri": format!("file:///models/ctr/{i}"), "flavor": "onnx", "metrics": {"auc": 0.8}}),
        );
        assert_eq!((s, v["version"].as_i64()), (201, Some(i)));
        let (s, _) = put(
            &a,
            &server.url(&format!("/api/models/ctr/versions/{i}/stage")),
            &json!({"stage": "VALIDATED"}),
        );
        assert_eq!(s, 200);
    }
    let base = Arc::new(server.url("/api/models/ctr/versions"));
    let hs: Vec<_> = (1..=6)
        .map(|i| {
            let base = base.clone();
            thread::spawn(move || {
                put(
                    &agent(),
                    &format!("{base}/{i}/stage"),
                    &json!({"stage": "DEPLOYED"}),
                )
                .0
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 200);
    }
    let (_, deployed) = get(&a, &server.url("/api/models/ctr/versions?stage=DEPLOYED"));
    assert_eq!(deployed.as_array().unwrap().len(), 1);
    let (_, events) = get(
        &a,
        &server.url("/api/events?keys=ctr&event_types=MODEL_DEPLOYED"),
    );
    assert_eq!(events.as_array().unwrap().len(), 6);
}

#[test]
fn bad_input_gets_a_clear_4xx_never_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--body-limit",
        "4096",
    ]);
    let a = agent();
    let check = |(status, body): (u16, Value), want: u16, code: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    };
    check(get(&a, &server.url("/api/models/nope")), 404, "not_found");
    check(
        post(
            &a,
            &server.url("/api/models/nope/versions"),
            &json!({"uri": "x"}),
        ),
        404,
        "not_found",
    );
    post(&a, &server.url("/api/models"), &json!({"name": "m"}));
    check(
        post(&a, &server.url("/api/models"), &json!({"name": "m"})),
        409,
        "already_exists",
    );
    post(
        &a,
        &server.url("/api/models/m/versions"),
        &json!({"uri": "file:///1"}),
    );
    let (s, body) = put(
        &a,
        &server.url("/api/models/m/versions/1/stage"),
        &json!({"stage": "DEPLOYED"}),
    );
    check((s, body.clone()), 409, "invalid_transition");
    assert_eq!(body["details"]["allowed"], "VALIDATED, DEPRECATED, DELETED");
    check(
        post(&a, &server.url("/api/events"), &json!({"key": ""})),
        400,
        "invalid",
    );
    check(
        post(
            &a,
            &server.url("/api/models/m/versions"),
            &json!({"uri": "x", "flavor": "pickle"}),
        ),
        400,
        "invalid",
    );
    check(
        get(&a, &server.url("/api/models/m/versions/abc")),
        400,
        "bad_request",
    );
    check(
        get(&a, &server.url("/api/events?limit=-3")),
        400,
        "bad_request",
    );
    check(get(&a, &server.url("/api/nothing/here")), 404, "not_found");
    // Malformed JSON.
    let mut r = a
        .post(server.url("/api/events"))
        .header("content-type", "application/json")
        .send("{\"key\": \"k\", ")
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(
        (r.status().as_u16(), body["code"].as_str()),
        (400, Some("malformed_json")),
        "{body}"
    );
    // Oversized body.
    let big = json!({"key": "k", "value": "x".repeat(10_000)});
    check(
        post(&a, &server.url("/api/events"), &big),
        413,
        "payload_too_large",
    );
    // Models: update, and no delete while a version is live.
    let mut r = a
        .patch(server.url("/api/models/m"))
        .send_json(json!({"description": "new"}))
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(
        (r.status().as_u16(), body["description"].as_str()),
        (200, Some("new"))
    );
    let mut r = a.delete(server.url("/api/models/m")).call().unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(
        (r.status().as_u16(), body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    put(
        &a,
        &server.url("/api/models/m/versions/1/stage"),
        &json!({"stage": "DELETED"}),
    );
    assert_eq!(
        a.delete(server.url("/api/models/m"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    // The server is still healthy.
    assert_eq!(get(&a, &server.url("/api/health")).0, 200);
}

#[test]
fn openapi_document_and_prometheus_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let a = agent();
    let (s, doc) = get(&a, &server.url("/api/openapi.json"));
    assert_eq!(s, 200);
    for p in [
        "/api/events",
        "/api/events/listen",
        "/api/models/{name}/versions/{version}/stage",
    ] {
        assert!(doc["paths"][p].is_object(), "missing {p}");
    }
    assert!(doc["components"]["schemas"]["ModelVersion"].is_object());
    post(&a, &server.url("/api/events"), &json!({"key": "k"}));
    let mut r = a.get(server.url("/metrics")).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert!(text.contains("ferroflow_events_sent_total 1"), "{text}");
    assert!(
        text.contains("ferroflow_http_requests_total{status=\"2xx\"}"),
        "{text}"
    );
}

#[test]
fn kill_9_in_a_burst_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut server = ServerProc::start(&["--data-dir", &data]);
    let url = Arc::new(server.url("/api/events"));
    let senders: Vec<_> = (0..4)
        .map(|w| {
            let url = url.clone();
            thread::spawn(move || {
                let a: ureq::Agent = ureq::Agent::config_builder()
                    .middleware(with_token)
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .into();
                let mut acked = Vec::new();
                for i in 0.. {
                    let body = json!({"key": "burst", "value": format!("{w}/{i}")});
                    match a.post(url.as_str()).send_json(&body) {
                        Ok(mut r) => {
                            let e: Value = r.body_mut().read_json().unwrap();
                            acked.push((
                                e["offset"].as_i64().unwrap(),
                                e["value"].as_str().unwrap().to_string(),
                            ));
                        }
                        Err(_) => break, // the server is gone
                    }
                }
                acked
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(400));
    server.crash();
    let acked: Vec<(i64, String)> = senders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        acked.len() > 10,
        "the burst was under way when the server died"
    );

    let server = ServerProc::start(&["--data-dir", &data]);
    let (_, stored) = get(&agent(), &server.url("/api/events?after=0&limit=10000"));
    let stored: Vec<(i64, String)> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["offset"].as_i64().unwrap(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let offsets: Vec<i64> = stored.iter().map(|e| e.0).collect();
    assert_eq!(
        offsets,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "gap-free after restart"
    );
    for a in &acked {
        assert!(stored.contains(a), "acknowledged event {a:?} lost");
    }
    // The log goes on from where it was.
    let (_, e) = post(
        &agent(),
        &server.url("/api/events"),
        &json!({"key": "after"}),
    );
    assert_eq!(e["offset"].as_i64().unwrap(), stored.len() as i64 + 1);
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferroflow"))
        .args(args)
        .env_remove("FERROFLOW_SERVER")
        .env("FERROFLOW_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_client_against_a_server_and_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = ServerProc::start(&["--data-dir", data.to_str().unwrap()]);
    let s = server.base.clone();
    let (ok, out, err) = cli(&[
        "events",
        "send",
        "jobs.train",
        "{\"n\":1}",
        "--type",
        "DONE",
        "--server",
        &s,
    ]);
    assert!(ok, "{err}");
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["offset"], 1);
    let (ok, out, _) = cli(&["events", "list", "--keys", "jobs.train", "--server", &s]);
    assert!(ok && out.contains("\"DONE\""), "{out}");
    let (ok, out, _) = cli(&[
        "events",
        "listen",
        "--after",
        "0",
        "--timeout",
        "5",
        "--server",
        &s,
    ]);
    assert!(ok && out.contains("jobs.train"), "{out}");

    // Embedded: no server, the SQLite store in --data-dir.
    let local = dir.path().join("local");
    let d = local.to_str().unwrap();
    assert!(cli(&["models", "register", "ctr", "--data-dir", d]).0);
    let (ok, out, err) = cli(&[
        "models",
        "create-version",
        "ctr",
        "--uri",
        "file:///m/1",
        "--flavor",
        "onnx",
        "--metric",
        "auc=0.91",
        "--data-dir",
        d,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("\"GENERATED\"") && out.contains("0.91"),
        "{out}"
    );
    let (ok, _, err) = cli(&["models", "stage", "ctr", "1", "deployed", "--data-dir", d]);
    assert!(
        !ok && err.contains("cannot go from GENERATED to DEPLOYED"),
        "{err}"
    );
    assert!(cli(&["models", "stage", "ctr", "1", "validated", "--data-dir", d]).0);
    let (ok, out, _) = cli(&[
        "events",
        "list",
        "--types",
        "MODEL_VALIDATED",
        "--data-dir",
        d,
    ]);
    assert!(ok && out.contains("MODEL_VALIDATED"), "{out}");
    let (ok, _, err) = cli(&["models", "versions", "nope", "--server", &s]);
    assert!(!ok && err.contains("404") && err.contains("nope"), "{err}");
}

#[test]
fn metadata_records_and_batched_sends_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let a = agent();
    let (s, _) = post(
        &a,
        &server.url("/api/meta/project"),
        &json!({"project": "ads", "name": "ads"}),
    );
    assert_eq!(s, 201);
    let (s, d) = post(
        &a,
        &server.url("/api/meta/dataset"),
        &json!({"project": "ads", "name": "clicks", "body": {"uri": "file:///clicks.csv", "format": "csv"}}),
    );
    assert_eq!((s, d["revision"].as_i64()), (201, Some(1)));
    let (s, e) = post(
        &a,
        &server.url("/api/meta/dataset"),
        &json!({"project": "nope", "name": "x", "body": {"uri": "u", "format": "csv"}}),
    );
    assert_eq!((s, e["code"].as_str()), (404, Some("not_found")));
    let (s, e) = post(
        &a,
        &server.url("/api/meta/gadget"),
        &json!({"project": "ads", "name": "x"}),
    );
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid")), "{e}");
    let (s, u) = put(
        &a,
        &server.url("/api/meta/dataset/ads/clicks"),
        &json!({"body": {"uri": "file:///clicks2.csv", "format": "csv"}, "revision": 1}),
    );
    assert_eq!((s, u["revision"].as_i64()), (200, Some(2)));
    let (s, e) = put(
        &a,
        &server.url("/api/meta/dataset/ads/clicks"),
        &json!({"body": {"uri": "file:///late.csv", "format": "csv"}, "revision": 1}),
    );
    assert_eq!((s, e["code"].as_str()), (409, Some("conflict")));
    let (s, list) = get(&a, &server.url("/api/meta/dataset?project=ads"));
    assert_eq!((s, list.as_array().unwrap().len()), (200, 1));
    let r = a
        .delete(server.url("/api/meta/dataset/ads/clicks"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(get(&a, &server.url("/api/meta/dataset/ads/clicks")).0, 404);

    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"key": "b", "value": i.to_string()}))
        .collect();
    let (s, stored) = post(&a, &server.url("/api/events/batch"), &json!(batch));
    assert_eq!(s, 200);
    let offsets: Vec<i64> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, (1..=100).collect::<Vec<_>>());
    let (s, e) = post(
        &a,
        &server.url("/api/events/batch"),
        &json!([{"key": "ok"}, {"key": ""}]),
    );
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid")));
    assert_eq!(
        get(&a, &server.url("/api/events?after=100")).1,
        json!([]),
        "a refused batch stores nothing"
    );

    // The CLI speaks the same routes; the control layer's own records are not written
    // through them (tests/server_security.rs has the rest).
    let (ok, _, err) = cli(&[
        "meta",
        "create",
        "workflow",
        "ads",
        "ctr",
        "--body",
        "{\"spec\": \"v1\"}",
        "--server",
        &server.base,
    ]);
    assert!(
        !ok && err.contains("403") && err.contains("control layer's own"),
        "{err}"
    );
    // On the embedded store (whoever holds the files), records are still checked by kind.
    let local = dir.path().join("local");
    let d = local.to_str().unwrap();
    assert!(cli(&["meta", "create", "project", "ads", "ads", "--data-dir", d]).0);
    let (ok, out, err) = cli(&[
        "meta",
        "create",
        "workflow",
        "ads",
        "ctr",
        "--body",
        "{\"spec\": \"v1\"}",
        "--data-dir",
        d,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"workflow\""));
    let (ok, _, err) = cli(&[
        "meta",
        "create",
        "execution",
        "ads",
        "run-1",
        "--parent",
        "ctr",
        "--body",
        "{}",
        "--data-dir",
        d,
    ]);
    assert!(!ok && err.contains("'status' as a string"), "{err}");
}

#[test]
fn artifacts_are_stored_hashed_and_confined() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--body-limit",
        "1024",
    ]);
    let a = agent();
    post(
        &a,
        &server.url("/api/meta/project"),
        &json!({"project": "ads", "name": "ads"}),
    );
    // Larger than the JSON body limit: artifacts have their own.
    let payload = vec![7u8; 100_000];
    let mut r = a
        .put(server.url("/api/artifacts/ads/model.onnx?kind=model"))
        .send(&payload[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let rec: Value = r.body_mut().read_json().unwrap();
    assert_eq!(rec["body"]["size"], 100_000);
    assert_eq!(rec["body"]["kind"], "model");
    assert!(
        rec["body"]["content_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let uri = rec["body"]["uri"].as_str().unwrap();
    let stored = std::path::Path::new(uri.strip_prefix("file://").unwrap());
    assert!(stored.starts_with(dir.path().canonicalize().unwrap().join("artifacts")));
    let mut r = a
        .get(server.url("/api/artifacts/ads/model.onnx"))
        .call()
        .unwrap();
    assert_eq!(r.body_mut().read_to_vec().unwrap(), payload);
    // Traversal attempts never leave the root.
    for bad in [
        "/api/artifacts/ads/..",
        "/api/artifacts/ads/%2e%2e",
        "/api/artifacts/ads/..%2Fescape",
    ] {
        let r = a.put(server.url(bad)).send(&b"x"[..]).unwrap();
        let code = r.status().as_u16();
        assert!((400..500).contains(&code), "{bad}: {code}");
    }
    assert!(!dir.path().join("escape").exists());
    assert_eq!(
        a.put(server.url("/api/artifacts/nope/x"))
            .send(&b"x"[..])
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[test]
fn stream_delivers_events_as_server_sent_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let a = agent();
    post(
        &a,
        &server.url("/api/events"),
        &json!({"key": "s", "value": "first"}),
    );
    let url = server.url("/api/events/stream?after=0&keys=s");
    let reader = thread::spawn(move || {
        let mut r = agent().get(url).call().unwrap();
        assert_eq!(
            r.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        let mut lines = BufReader::new(r.body_mut().as_reader()).lines();
        let mut data = Vec::new();
        while data.len() < 2 {
            let line = lines.next().unwrap().unwrap();
            if let Some(d) = line.strip_prefix("data: ") {
                data.push(serde_json::from_str::<Value>(d).unwrap());
            }
        }
        data
    });
    thread::sleep(Duration::from_millis(200));
    post(
        &a,
        &server.url("/api/events"),
        &json!({"key": "other", "value": "x"}),
    );
    post(
        &a,
        &server.url("/api/events"),
        &json!({"key": "s", "value": "second"}),
    );
    let data = reader.join().unwrap();
    assert_eq!(data[0]["value"], "first");
    assert_eq!(
        (data[1]["value"].as_str(), data[1]["offset"].as_i64()),
        (Some("second"), Some(3))
    );
}

/// SIGTERM the server and wait for it to exit, at most `within`.
fn sigterm(server: &mut ServerProc, within: Duration) -> std::process::ExitStatus {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let t = Instant::now();
    loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            return s;
        }
        assert!(
            t.elapsed() < within,
            "the server did not stop on SIGTERM within {within:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    post(&agent(), &server.url("/api/events"), &json!({"key": "k"}));
    let status = sigterm(&mut server, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

/// An SSE connection opened by hand: (socket, the first bytes of the answer).
fn open_stream(server: &ServerProc) -> (std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let addr = server.base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/events/stream?after=0 HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn waiting_clients_are_capped_and_released_when_they_leave() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--max-listeners",
        "2",
    ]);
    let (first, head) = open_stream(&server);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_second, head) = open_stream(&server);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (s, body) = get(&agent(), &server.url("/api/events/listen?timeout_ms=10"));
    assert_eq!(
        (s, body["code"].as_str()),
        (429, Some("too_many_listeners"))
    );
    let (_, head) = open_stream(&server);
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    // Sends are not slowed or refused by the waiting clients.
    assert_eq!(
        post(&agent(), &server.url("/api/events"), &json!({"key": "k"})).0,
        200
    );
    // A client that leaves gives its place back.
    drop(first);
    let t = Instant::now();
    loop {
        let (s, _) = get(
            &agent(),
            &server.url("/api/events/listen?after=1000&timeout_ms=10"),
        );
        if s == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the stream of a client that left still holds its place"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_ends_streams_and_long_polls_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    let streams: Vec<_> = (0..5).map(|_| open_stream(&server)).collect();
    for (_, head) in &streams {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let polls: Vec<_> = (0..5)
        .map(|_| {
            let url = server.url("/api/events/listen?after=0&timeout_ms=60000");
            thread::spawn(move || get(&agent(), &url))
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    // Within the grace period, though streams and long polls are open.
    let status = sigterm(&mut server, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    for p in polls {
        assert_eq!(
            p.join().unwrap(),
            (200, json!([])),
            "a long poll ends empty"
        );
    }
}

#[test]
fn concurrent_uploads_of_one_artifact_leave_a_file_that_matches_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&["--data-dir", dir.path().to_str().unwrap()]);
    post(
        &agent(),
        &server.url("/api/meta/project"),
        &json!({"project": "ads", "name": "ads"}),
    );
    let url = Arc::new(server.url("/api/artifacts/ads/model.bin"));
    // Eight different contents of 3 MB each, uploaded at once to the same name.
    let uploads: Vec<_> = (0..8u8)
        .map(|i| {
            let url = url.clone();
            thread::spawn(move || {
                let payload = vec![i; 3 << 20];
                let r = agent().put(url.as_str()).send(&payload[..]).unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    for u in uploads {
        assert_eq!(u.join().unwrap(), 200);
    }
    let (_, rec) = get(&agent(), &server.url("/api/meta/artifact/ads/model.bin"));
    let uri = rec["body"]["uri"].as_str().unwrap();
    let bytes = std::fs::read(uri.strip_prefix("file://").unwrap()).unwrap();
    assert_eq!(bytes.len(), 3 << 20);
    assert!(
        bytes.iter().all(|b| *b == bytes[0]),
        "one upload's bytes, whole"
    );
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(rec["body"]["content_hash"], format!("sha256:{hash}"));
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("artifacts/ads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["model.bin".to_string()]);
    // What is read back streams the same bytes.
    let mut r = agent().get(url.as_str()).call().unwrap();
    assert_eq!(
        r.body_mut()
            .with_config()
            .limit(8 << 20)
            .read_to_vec()
            .unwrap(),
        bytes
    );
}
