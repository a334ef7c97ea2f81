//! A client of Flink's REST API, limited to paths and fields that exist from Flink 1.18 to
//! 2.x: `/overview`, `/jars/upload`, `/jars/<id>/run`, `/jars/<id>` (DELETE), `/jobs`,
//! `/jobs/<id>`, `/jobs/<id>/exceptions` (`exceptionHistory`), `PATCH /jobs/<id>?mode=cancel`,
//! `/jobs/<id>/stop` and `/jobs/<id>/savepoints/<trigger>`, `/jobs/<id>/checkpoints`.

use std::path::Path;
use std::time::{Duration, Instant};

use ferroflow_api::{HttpTransport, Method, Request, Transport};
use serde_json::{Value, json};

use crate::error::{FlinkError, Result};

/// A Flink cluster's REST endpoint, over the control plane's HTTP transport (no token:
/// Flink's REST API has none).
#[derive(Clone)]
pub struct FlinkRest {
    http: HttpTransport,
}

impl std::fmt::Debug for FlinkRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlinkRest({})", self.http.base())
    }
}

/// A job's state as Flink reports it (`INITIALIZING`, `RUNNING`, `FINISHED`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState(pub String);

impl JobState {
    /// FINISHED, FAILED, CANCELED or SUSPENDED: the job will not run again by itself.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.0.as_str(),
            "FINISHED" | "FAILED" | "CANCELED" | "SUSPENDED"
        )
    }

    /// Still going: anything that is not terminal.
    pub fn is_alive(&self) -> bool {
        !self.is_terminal()
    }
}

impl FlinkRest {
    /// A client of the cluster at `base` (e.g. `http://127.0.0.1:8081`).
    pub fn new(base: &str) -> Self {
        FlinkRest {
            http: HttpTransport::new(base, None, Duration::from_secs(120)),
        }
    }

    /// The REST URL.
    pub fn url(&self) -> &str {
        self.http.base()
    }

    /// Send one request; an answer of 400 or more is [`FlinkError::Api`] with Flink's
    /// `errors`, root cause first.
    fn call(&self, method: Method, path: &str, body: Option<(String, Vec<u8>)>) -> Result<Value> {
        let resp = self
            .http
            .send(Request {
                method,
                path: path.to_string(),
                body,
            })
            .map_err(|source| FlinkError::Unreachable {
                url: self.url().to_string(),
                source,
            })?;
        let text = String::from_utf8_lossy(&resp.body);
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()));
        if resp.status >= 400 {
            let message = match body.get("errors").and_then(Value::as_array) {
                Some(errors) => errors
                    .iter()
                    .map(|e| {
                        e.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| e.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                None => body.to_string(),
            };
            return Err(FlinkError::Api {
                method: method.as_str(),
                path: path.to_string(),
                status: resp.status,
                message: root_cause(&message),
            });
        }
        Ok(body)
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::Get, path, None)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let json = (
            "application/json".to_string(),
            body.to_string().into_bytes(),
        );
        self.call(Method::Post, path, Some(json))
    }

    /// `/overview`: the cluster's version, TaskManagers and slots.
    pub fn overview(&self) -> Result<Value> {
        self.get("/overview")
    }

    /// The cluster's Flink version (`2.3.0`).
    pub fn version(&self) -> Result<String> {
        Ok(self.overview()?["flink-version"]
            .as_str()
            .unwrap_or("unknown")
            .to_string())
    }

    /// Upload a jar; returns its id for [`FlinkRest::run_jar`].
    pub fn upload_jar(&self, jar: &Path) -> Result<String> {
        let bytes = std::fs::read(jar).map_err(|source| FlinkError::Io {
            path: jar.display().to_string(),
            source,
        })?;
        let name = jar
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("job.jar")
            .replace('"', "");
        // multipart/form-data with one part, `jarfile`, as the REST API expects.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let boundary = format!("ferroflow-{nanos:x}");
        let mut body = Vec::with_capacity(bytes.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"{name}\"\r\nContent-Type: application/x-java-archive\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let v = self.call(Method::Post, "/jars/upload", Some((content_type, body)))?;
        let file = v["filename"].as_str().unwrap_or_default();
        let id = file.rsplit('/').next().unwrap_or_default();
        if id.is_empty() {
            return Err(FlinkError::Api {
                method: "POST",
                path: "/jars/upload".into(),
                status: 200,
                message: format!("no jar id in the answer: {v}"),
            });
        }
        Ok(id.to_string())
    }

    /// Run an uploaded jar's `entry_class` with `args`; restores from `savepoint` when given.
    /// Returns the Flink job id.
    pub fn run_jar(
        &self,
        jar_id: &str,
        entry_class: Option<&str>,
        args: &[String],
        savepoint: Option<&str>,
    ) -> Result<String> {
        let mut body = json!({ "programArgsList": args });
        if let Some(c) = entry_class {
            body["entryClass"] = json!(c);
        }
        if let Some(s) = savepoint {
            body["savepointPath"] = json!(s);
            body["allowNonRestoredState"] = json!(false);
        }
        let path = format!("/jars/{jar_id}/run");
        let v = self.post(&path, &body)?;
        v["jobid"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| FlinkError::Api {
                method: "POST",
                path,
                status: 200,
                message: format!("no job id in the answer: {v}"),
            })
    }

    /// Remove an uploaded jar.
    pub fn delete_jar(&self, jar_id: &str) -> Result<()> {
        let path = format!("/jars/{jar_id}");
        self.call(Method::Delete, &path, None).map(|_| ())
    }

    /// A job's state.
    pub fn job_state(&self, job_id: &str) -> Result<JobState> {
        let v = self.get(&format!("/jobs/{job_id}"))?;
        Ok(JobState(
            v["state"].as_str().unwrap_or("UNKNOWN").to_string(),
        ))
    }

    /// Every job the cluster knows: (id, state).
    pub fn jobs(&self) -> Result<Vec<(String, JobState)>> {
        let v = self.get("/jobs")?;
        Ok(v["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| {
                (
                    j["id"].as_str().unwrap_or_default().to_string(),
                    JobState(j["status"].as_str().unwrap_or("UNKNOWN").to_string()),
                )
            })
            .collect())
    }

    /// The exception that failed a job, root cause first (`exceptionHistory`, which every
    /// version from 1.13 has; 2.x dropped `root-exception`).
    pub fn job_exception(&self, job_id: &str) -> Result<String> {
        let v = self.get(&format!("/jobs/{job_id}/exceptions"))?;
        let entry = &v["exceptionHistory"]["entries"][0];
        let mut traces = vec![];
        if let Some(t) = entry["stacktrace"].as_str() {
            traces.push(t.to_string());
        }
        for c in entry["concurrentExceptions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(t) = c["stacktrace"].as_str() {
                traces.push(t.to_string());
            }
        }
        if traces.is_empty()
            && let Some(t) = v["root-exception"].as_str()
        {
            traces.push(t.to_string());
        }
        Ok(traces
            .iter()
            .map(|t| root_cause(t))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// Cancel a job (`PATCH /jobs/<id>?mode=cancel`).
    pub fn cancel(&self, job_id: &str) -> Result<()> {
        let path = format!("/jobs/{job_id}?mode=cancel");
        self.call(Method::Patch, &path, None).map(|_| ())
    }

    /// Stop a job with a savepoint in `dir` and wait for it; returns the savepoint's path.
    pub fn stop_with_savepoint(
        &self,
        job_id: &str,
        dir: &str,
        timeout: Duration,
    ) -> Result<String> {
        let v = self.post(
            &format!("/jobs/{job_id}/stop"),
            &json!({"targetDirectory": dir, "drain": false}),
        )?;
        let trigger = v["request-id"].as_str().unwrap_or_default().to_string();
        let started = Instant::now();
        loop {
            let s = self.get(&format!("/jobs/{job_id}/savepoints/{trigger}"))?;
            if s["status"]["id"] == "COMPLETED" {
                let op = &s["operation"];
                if let Some(loc) = op["location"].as_str() {
                    return Ok(loc.to_string());
                }
                return Err(FlinkError::JobFailed {
                    job_id: job_id.into(),
                    state: "could not take a savepoint".into(),
                    message: root_cause(
                        op["failure-cause"]["stack-trace"]
                            .as_str()
                            .unwrap_or(&op.to_string()),
                    ),
                });
            }
            if started.elapsed() > timeout {
                return Err(FlinkError::Config(format!(
                    "the savepoint of Flink job {job_id} did not complete within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The savepoint or checkpoint a job was restored from, if any.
    pub fn restored_from(&self, job_id: &str) -> Result<Option<String>> {
        let v = self.get(&format!("/jobs/{job_id}/checkpoints"))?;
        Ok(v["latest"]["restored"]["external_path"]
            .as_str()
            .map(String::from))
    }
}

/// The first line of a Java stack trace and every `Caused by:` line, deepest first: what a
/// person needs from a Flink error.
pub fn root_cause(trace: &str) -> String {
    let mut lines = trace.lines();
    let first = lines.next().unwrap_or_default().trim().to_string();
    let mut causes: Vec<String> = trace
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Caused by: ").map(String::from))
        .collect();
    if causes.is_empty() {
        return first;
    }
    causes.reverse();
    causes.push(first);
    causes.dedup();
    causes.join("\n  caused: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cause_puts_the_deepest_cause_first() {
        let t = "org.apache.flink.runtime.JobException: Recovery is suppressed\n\tat x.y(Z.java:1)\nCaused by: java.lang.RuntimeException: Fail to deserialize at field: amount.\n\tat a\nCaused by: java.lang.NumberFormatException: For input string: \"abc\"\n\tat b";
        let r = root_cause(t);
        assert!(r.starts_with("java.lang.NumberFormatException: For input string: \"abc\""));
        assert!(r.contains("Fail to deserialize at field: amount."));
        assert!(r.ends_with("Recovery is suppressed"));
        assert_eq!(root_cause("just one line"), "just one line");
    }

    #[test]
    fn states() {
        assert!(JobState("FINISHED".into()).is_terminal());
        assert!(JobState("RESTARTING".into()).is_alive());
    }
}
