//! Workflows through the server's HTTP API: the CLI with `--server`, and the API's errors
//! and OpenAPI document. The scheduler runs on the same store.

mod common;

use std::time::Duration;

use common::flow::{Flow, wait_until};

const SPEC: &str = r#"
workflow: hello
project: web
jobs:
  greet: {type: process, command: 'echo hello from the server'}
  wait:
    type: process
    command: 'sleep 30'
    rules:
      - when: [ {after: {job: greet, status: FINISHED}} ]
        action: START
"#;

#[test]
fn cli_through_the_server() {
    let mut flow = Flow::new();
    let srv = flow.server(&[]);
    flow.start_scheduler();
    let spec = flow.path("hello.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let s = &srv.url;
    let out = flow.ok(&["workflow", "submit", spec.to_str().unwrap(), "--server", s]);
    assert!(
        out.contains("submitted workflow 'hello' to project 'web'"),
        "{out}"
    );
    let list = flow.json(&["workflow", "list", "--json", "--server", s]);
    assert_eq!(list[0]["name"], "hello");
    assert_eq!(list[0]["executions"], 0);
    let exec = flow
        .ok(&[
            "workflow",
            "start",
            "hello",
            "--project",
            "web",
            "--server",
            s,
        ])
        .trim()
        .to_string();
    assert_eq!(exec, "hello-1");
    wait_until("wait runs", Duration::from_secs(60), || {
        flow.json(&[
            "workflow",
            "jobs",
            &exec,
            "--project",
            "web",
            "--json",
            "--server",
            s,
        ])
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["job"] == "wait" && j["status"] == "RUNNING")
    });
    let log = flow.ok(&[
        "workflow",
        "logs",
        &exec,
        "greet",
        "--project",
        "web",
        "--server",
        s,
    ]);
    assert!(log.contains("hello from the server"), "{log}");
    let table = flow.ok(&[
        "workflow",
        "executions",
        "hello",
        "--project",
        "web",
        "--server",
        s,
    ]);
    assert!(
        table.contains("hello-1") && table.contains("RUNNING"),
        "{table}"
    );
    assert!(
        table.contains("greet=FINISHED") && table.contains("wait=RUNNING"),
        "{table}"
    );
    flow.ok(&["workflow", "stop", &exec, "--project", "web", "--server", s]);
    flow.wait(&exec, "web", &["--timeout", "60s", "--server", s]);
    let jobs = flow.json(&[
        "workflow",
        "jobs",
        &exec,
        "--project",
        "web",
        "--json",
        "--server",
        s,
    ]);
    let wait = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "wait")
        .unwrap();
    assert_eq!(wait["status"], "STOPPED");
    // Stopping an ended execution is a client error.
    let err = flow.fails(&["workflow", "stop", &exec, "--project", "web", "--server", s]);
    assert!(
        err.contains("409") && err.contains("already ended"),
        "{err}"
    );
}

#[test]
fn the_api_refuses_bad_specs_with_their_line_and_documents_its_routes() {
    let flow = Flow::new();
    let srv = flow.server(&[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // The admin token the server made at first start.
    let auth = format!(
        "Bearer {}",
        std::fs::read_to_string(flow.data_dir.join("token"))
            .unwrap()
            .trim()
    );
    let bad = SPEC.replace("job: greet", "job: greeet");
    let mut resp = agent
        .post(&format!("{}/api/workflows", srv.url))
        .header("authorization", &auth)
        .send_json(serde_json::json!({"spec": bad, "file": "hello.yaml"}))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.body_mut().read_json().unwrap();
    assert_eq!(body["code"], "invalid_workflow");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("hello.yaml:") && msg.contains("greeet"),
        "{msg}"
    );
    let resp = agent
        .post(&format!("{}/api/workflows/web/nothing/executions", srv.url))
        .header("authorization", &auth)
        .send_empty()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let mut resp = agent
        .get(&format!("{}/api/openapi.json", srv.url))
        .header("authorization", &auth)
        .call()
        .unwrap();
    let doc: serde_json::Value = resp.body_mut().read_json().unwrap();
    for path in [
        "/api/workflows",
        "/api/workflows/{project}/{workflow}/executions",
        "/api/executions/{project}/{execution}/stop",
        "/api/executions/{project}/{execution}/jobs/{job}/log",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}
