//! Driving the `ferroflow` binary's control layer: a data directory, a scheduler process,
//! workflow commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A data directory and the scheduler processes started on it.
pub(crate) struct Flow {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    schedulers: Vec<Child>,
}

impl Flow {
    pub(crate) fn new() -> Flow {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("state");
        Flow {
            dir,
            data_dir,
            schedulers: vec![],
        }
    }

    /// `ferroflow ARGS` on this data directory.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferroflow"));
        c.args(args).env("FERROFLOW_DATA_DIR", &self.data_dir);
        c
    }

    /// Run and return stdout; panics with stderr on failure.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "ferroflow {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run expecting failure; returns stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let out: Output = self.cmd(args).output().unwrap();
        assert!(
            !out.status.success(),
            "ferroflow {args:?} should fail:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Run and parse stdout as JSON.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Start `ferroflow scheduler` (fast heartbeats) and wait until it runs; returns its pid.
    pub(crate) fn start_scheduler(&mut self) -> u32 {
        let (child, line) = super::spawn_until_ready(
            self.cmd(&[
                "scheduler",
                "--heartbeat",
                "200ms",
                "--heartbeat-timeout",
                "2s",
                "--stop-timeout",
                "5s",
            ])
            .stderr(Stdio::inherit()),
        );
        assert!(line.contains("scheduler running"), "{line}");
        let pid = child.id();
        self.schedulers.push(child);
        pid
    }

    /// Start a scheduler unless one runs, submit `spec`, start `workflow`: the execution.
    pub(crate) fn launch(&mut self, spec: &Path, workflow: &str, project: &str) -> String {
        if self.schedulers.is_empty() {
            self.start_scheduler();
        }
        self.ok(&["workflow", "submit", spec.to_str().unwrap()]);
        self.ok(&["workflow", "start", workflow, "--project", project])
            .trim()
            .to_string()
    }

    /// Write `text` to `name` in the scratch directory, then [`Flow::launch`] it.
    pub(crate) fn launch_text(
        &mut self,
        name: &str,
        text: &str,
        workflow: &str,
        project: &str,
    ) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        self.launch(&path, workflow, project)
    }

    /// `ferroflow workflow wait EXEC --project P [more]`, which must succeed.
    /// When it fails, the logs of the jobs it names as failed are in the panic message (a
    /// failure under CI load can then be read without re-running it).
    pub(crate) fn wait(&self, execution: &str, project: &str, more: &[&str]) -> String {
        let mut args = vec!["workflow", "wait", execution, "--project", project];
        args.extend_from_slice(more);
        let out = self.cmd(&args).output().unwrap();
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut logs = String::new();
        if let Some(rest) = err.split("job(s) failed: ").nth(1) {
            let line = rest.lines().next().unwrap_or_default();
            for job in line.split(", ").map(str::trim).filter(|j| !j.is_empty()) {
                let log = self
                    .cmd(&["workflow", "logs", execution, job, "--project", project])
                    .output()
                    .unwrap();
                logs.push_str(&format!(
                    "\n--- log of job '{job}' ---\n{}{}",
                    String::from_utf8_lossy(&log.stdout),
                    String::from_utf8_lossy(&log.stderr)
                ));
            }
        }
        panic!(
            "ferroflow {args:?} failed:\n{}{err}{logs}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// kill -9 every scheduler this flow started.
    pub(crate) fn kill_schedulers(&mut self) {
        for mut c in self.schedulers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The job executions of an execution.
    pub(crate) fn jobs(&self, project: &str, execution: &str) -> Vec<Value> {
        self.json(&[
            "workflow",
            "jobs",
            execution,
            "--project",
            project,
            "--json",
        ])
        .as_array()
        .unwrap()
        .clone()
    }

    /// Statuses of a job's runs, oldest first.
    pub(crate) fn runs(&self, project: &str, execution: &str, job: &str) -> Vec<String> {
        self.jobs(project, execution)
            .iter()
            .filter(|j| j["job"] == job)
            .map(|j| j["status"].as_str().unwrap().to_string())
            .collect()
    }

    /// An execution's status.
    pub(crate) fn status(&self, project: &str, workflow: &str, execution: &str) -> String {
        let list = self.json(&[
            "workflow",
            "executions",
            workflow,
            "--project",
            project,
            "--json",
        ]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == execution)
            .map(|e| e["status"].as_str().unwrap().to_string())
            .unwrap()
    }

    /// `ferroflow server` on this data directory (loopback, a free port; `extra` flags), as
    /// started for the first time: no token given, so it makes `<data_dir>/token`.
    pub(crate) fn server(&self, extra: &[&str]) -> Server {
        let (child, line) = super::spawn_until_ready(
            self.cmd(&["server", "--bind", "127.0.0.1:0"])
                .args(extra)
                .env_remove("FERROFLOW_TOKEN")
                .stderr(Stdio::inherit()),
        );
        let url = line.rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        Server { child, url }
    }

    /// Replace fields of a job execution's body behind the server's back (the embedded
    /// store: whoever holds the data directory).
    pub(crate) fn forge_job_execution(
        &self,
        project: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) {
        let rec = self.json(&["meta", "get", "job_execution", project, name]);
        let mut body = rec["body"].clone();
        edit(&mut body);
        self.ok(&[
            "meta",
            "update",
            "job_execution",
            project,
            name,
            "--body",
            &body.to_string(),
        ]);
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.kill_schedulers();
    }
}

/// A running `ferroflow server`, killed when dropped.
pub(crate) struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` every 100 ms until it holds; panics after `timeout` naming `what`.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let t = Instant::now();
    while !check() {
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copy a directory tree (an example) into `to`.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "out" {
                copy_dir(&e.path(), &target);
            }
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
