//! The `flink` job type.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferroflow_workflow::{JobContext, JobPlugin, RunnableJob, SubGraph, WorkflowError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{FlinkError, Result};
use crate::rest::{FlinkRest, JobState};
use crate::translate::{check_node, translate};

/// The runner's entry class (see `java/FerroflowSqlRunner.java`).
pub const RUNNER_CLASS: &str = "FerroflowSqlRunner";
/// PyFlink's driver in `flink-python-*.jar`.
pub const PYTHON_DRIVER: &str = "org.apache.flink.client.python.PythonDriver";

/// The `flink` job type. Settings of a job (besides `type: flink`):
///
/// | setting | meaning |
/// |---|---|
/// | `rest_url` | the cluster (default `$FERROFLOW_FLINK_URL`, else `http://127.0.0.1:8081`) |
/// | `mode` | `batch` (default) or `streaming` |
/// | nodes, or `sql`, or `jar` (+ `entry_class`, `args`), or `pyflink` (+ `args`, `python_jar`) | what runs: translated nodes, Flink SQL as written, your jar, your PyFlink script |
/// | `runner_jar` | the SQL runner jar (default `$FERROFLOW_FLINK_RUNNER_JAR`, else the one `scripts/flink-local.sh` builds) |
/// | `savepoints` | a directory: a stop (STOP, RESTART, execution stop) takes a savepoint there |
/// | `resume` | start from the newest savepoint an earlier run of this job in the execution took |
/// | `poll` | how often the job's state is read (default 500ms) |
/// | `unreachable_timeout` | how long the cluster may not answer before the run fails (default 30s) |
#[derive(Debug, Clone, Copy, Default)]
pub struct FlinkPlugin;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    rest_url: Option<String>,
    #[serde(default)]
    mode: Mode,
    sql: Option<SqlText>,
    jar: Option<String>,
    entry_class: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    pyflink: Option<String>,
    python_jar: Option<String>,
    runner_jar: Option<String>,
    savepoints: Option<String>,
    #[serde(default)]
    resume: bool,
    #[serde(default, with = "humantime_serde_opt")]
    poll: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    unreachable_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Batch,
    Streaming,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SqlText {
    One(String),
    Many(Vec<String>),
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn job_err(job: &impl std::fmt::Display, e: impl std::fmt::Display) -> WorkflowError {
    WorkflowError::Job {
        job: job.to_string(),
        message: e.to_string(),
    }
}

fn settings(sub: &SubGraph<'_>) -> std::result::Result<Settings, WorkflowError> {
    let v = Value::Object(sub.job.properties.clone());
    let s: Settings = serde_json::from_value(v)
        .map_err(|e| job_err(&sub.job.name, format!("flink settings: {e}")))?;
    let given = [
        !sub.nodes.is_empty(),
        s.sql.is_some(),
        s.jar.is_some(),
        s.pyflink.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        return Err(job_err(
            &sub.job.name,
            "a flink job runs exactly one of: its nodes, `sql`, `jar`, `pyflink`",
        ));
    }
    if s.entry_class.is_some() && s.jar.is_none() {
        return Err(job_err(&sub.job.name, "`entry_class` goes with `jar`"));
    }
    if s.resume && s.savepoints.is_none() {
        return Err(job_err(
            &sub.job.name,
            "`resume` needs `savepoints` (where stops leave their savepoints)",
        ));
    }
    Ok(s)
}

impl JobPlugin for FlinkPlugin {
    fn job_type(&self) -> &str {
        "flink"
    }

    fn validate(&self, sub: &SubGraph<'_>) -> std::result::Result<(), WorkflowError> {
        settings(sub)?;
        sub.nodes
            .iter()
            .try_for_each(|n| check_node(n))
            .map_err(|e| match e {
                FlinkError::Untranslatable {
                    node,
                    kind,
                    message,
                } => WorkflowError::Node {
                    job: sub.job.name.clone(),
                    node: node.clone(),
                    message: format!("node '{node}' ({kind}) cannot run on Flink: {message}"),
                },
                other => job_err(&sub.job.name, other),
            })
    }

    /// Translated nodes run only ferroflow's SQL runner; a jar, a PyFlink script, Flink SQL
    /// as written (it can load function jars) or another runner jar is user code.
    fn host_access(&self, sub: &SubGraph<'_>) -> Option<String> {
        let s = match settings(sub) {
            Ok(s) => s,
            Err(e) => return Some(e.to_string()),
        };
        let what = if s.jar.is_some() {
            "runs a user jar"
        } else if s.pyflink.is_some() {
            "runs a PyFlink script"
        } else if s.sql.is_some() {
            "runs Flink SQL as written (it can load user function jars)"
        } else if s.runner_jar.is_some() || s.python_jar.is_some() {
            "names its own runner jar"
        } else {
            return None;
        };
        Some(format!("a flink job that {what}"))
    }

    fn generate(
        &self,
        sub: &SubGraph<'_>,
    ) -> std::result::Result<Box<dyn RunnableJob>, WorkflowError> {
        self.validate(sub)?;
        let s = settings(sub)?;
        let base_dir = sub.graph.base_dir.clone();
        let program = if !sub.nodes.is_empty() {
            // Translated when the job runs (on its blocking thread: the translation plans
            // the SQL over the input files, which exist by then).
            Program::Nodes {
                graph: sub.graph.clone(),
                job: sub.job.name.clone(),
            }
        } else if let Some(sql) = &s.sql {
            let stmts = match sql {
                SqlText::One(text) => split_statements(text),
                SqlText::Many(v) => v.clone(),
            };
            Program::Sql(stmts.iter().map(|s| format!("{s}\n;\n")).collect())
        } else if let Some(jar) = &s.jar {
            Program::Jar {
                jar: resolve(base_dir.as_deref(), jar),
                entry_class: s.entry_class.clone(),
                args: s.args.clone(),
            }
        } else {
            let script = resolve(
                base_dir.as_deref(),
                s.pyflink.as_deref().unwrap_or_default(),
            );
            Program::PyFlink {
                script,
                args: s.args.clone(),
            }
        };
        Ok(Box::new(FlinkJob {
            settings: s,
            program,
            base_dir,
        }))
    }
}

fn resolve(base: Option<&Path>, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match base {
        Some(b) if path.is_relative() => b.join(path),
        _ => path,
    }
}

/// Statements separated by `;` at the end of a line.
fn split_statements(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim_end();
        if let Some(body) = t.strip_suffix(';') {
            cur.push_str(body);
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_string());
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

enum Program {
    Nodes {
        graph: ferroflow_workflow::AiGraph,
        job: String,
    },
    Sql(String),
    Jar {
        jar: PathBuf,
        entry_class: Option<String>,
        args: Vec<String>,
    },
    PyFlink {
        script: PathBuf,
        args: Vec<String>,
    },
}

struct FlinkJob {
    settings: Settings,
    program: Program,
    base_dir: Option<PathBuf>,
}

fn default_url() -> String {
    std::env::var("FERROFLOW_FLINK_URL").unwrap_or_else(|_| "http://127.0.0.1:8081".into())
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("FERROFLOW_CACHE") {
        Some(c) => PathBuf::from(c),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ferroflow")
        }
    }
}

/// Where `scripts/flink-local.sh` builds the SQL runner jar.
pub fn default_runner_jar() -> PathBuf {
    std::env::var_os("FERROFLOW_FLINK_RUNNER_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("flink/ferroflow-sql-runner.jar"))
}

impl FlinkJob {
    /// The jar to upload, its entry class and program arguments.
    fn jar_and_args(&self) -> Result<(PathBuf, Option<String>, Vec<String>)> {
        match &self.program {
            Program::Nodes { graph, job } => {
                let sub = graph
                    .sub_graph(job)
                    .map_err(|e| FlinkError::Config(e.to_string()))?;
                self.sql_runner(&translate(&sub, self.base_dir.as_deref())?.script())
            }
            Program::Sql(script) => self.sql_runner(script),
            Program::Jar {
                jar,
                entry_class,
                args,
            } => Ok((jar.clone(), entry_class.clone(), args.clone())),
            Program::PyFlink { script, args } => {
                let jar = match &self.settings.python_jar {
                    Some(j) => resolve(self.base_dir.as_deref(), j),
                    None => find_python_jar()?,
                };
                let mut a = vec!["-py".to_string(), script.display().to_string()];
                a.extend(args.iter().cloned());
                Ok((jar, Some(PYTHON_DRIVER.to_string()), a))
            }
        }
    }

    /// The SQL runner jar and the arguments that make it run `script`.
    fn sql_runner(&self, script: &str) -> Result<(PathBuf, Option<String>, Vec<String>)> {
        use base64::Engine;
        let jar = self
            .settings
            .runner_jar
            .as_deref()
            .map(|j| resolve(self.base_dir.as_deref(), j))
            .unwrap_or_else(default_runner_jar);
        if !jar.exists() {
            return Err(FlinkError::Config(format!(
                "the SQL runner jar {} does not exist: `scripts/flink-local.sh runner-jar` builds it (set `runner_jar` or FERROFLOW_FLINK_RUNNER_JAR to use another)",
                jar.display()
            )));
        }
        let mode = match self.settings.mode {
            Mode::Batch => "batch",
            Mode::Streaming => "streaming",
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(script.as_bytes());
        Ok((
            jar,
            Some(RUNNER_CLASS.to_string()),
            vec!["--mode".into(), mode.into(), "--statements".into(), encoded],
        ))
    }
}

/// `opt/flink-python-*.jar` of the local distribution (`FLINK_HOME`, or the one
/// `scripts/flink-local.sh` installs).
fn find_python_jar() -> Result<PathBuf> {
    let homes: Vec<PathBuf> = std::env::var_os("FLINK_HOME")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::fs::read_dir(cache_dir().join("flink/venv/lib"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("site-packages/pyflink")),
        )
        .collect();
    for h in &homes {
        for e in std::fs::read_dir(h.join("opt"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("flink-python") && name.ends_with(".jar") {
                return Ok(e.path());
            }
        }
    }
    Err(FlinkError::Config(
        "no flink-python jar found (set `python_jar`, or FLINK_HOME to a distribution with opt/flink-python-*.jar)".into(),
    ))
}

impl RunnableJob for FlinkJob {
    fn run(self: Box<Self>, ctx: &JobContext) -> std::result::Result<(), WorkflowError> {
        let key = ctx.job_key();
        self.run_on_flink(ctx).map_err(|e| job_err(&key, e))
    }
}

impl FlinkJob {
    fn run_on_flink(&self, ctx: &JobContext) -> Result<()> {
        let wf = |e: WorkflowError| FlinkError::Config(e.to_string());
        let url = self.settings.rest_url.clone().unwrap_or_else(default_url);
        let rest = FlinkRest::new(&url);
        let version = rest.version()?;
        ctx.log
            .line(&format!("[flink] cluster {url}, Flink {version}"));

        // A run of this job that lost its runner (killed) may have left its Flink job
        // running: stop it first, so a RESTART leaves exactly one.
        let earlier = ctx.earlier_runs().map_err(wf)?;
        for run in &earlier {
            let ext = run.body.external.clone().unwrap_or(Value::Null);
            let (Some(id), true) = (
                ext["flink_job_id"].as_str(),
                ext["flink_url"].as_str() == Some(url.as_str()),
            ) else {
                continue;
            };
            if rest.job_state(id).map(|s| s.is_alive()).unwrap_or(false) {
                ctx.log.line(&format!(
                    "[flink] Flink job {id} of the earlier run {} still runs: stopping it",
                    run.name
                ));
                let mut fields = json!({"flink_state": "STOPPED_BY_NEXT_RUN"});
                let stopped = match &self.settings.savepoints {
                    Some(dir) => rest
                        .stop_with_savepoint(id, &self.savepoint_dir(dir), Duration::from_secs(120))
                        .map(|sp| {
                            fields["savepoint"] = json!(sp);
                        }),
                    None => rest.cancel(id),
                };
                if let Err(e) = stopped {
                    // It may have ended meanwhile; only a job still alive is an error.
                    if rest.job_state(id).map(|s| s.is_alive()).unwrap_or(true) {
                        return Err(e);
                    }
                    ctx.log
                        .line(&format!("[flink] Flink job {id} ended by itself meanwhile"));
                    continue;
                }
                self.wait_terminal(&rest, id)?;
                // Best effort: the Flink job is stopped either way.
                if let Err(e) = ctx.record_external_of(&run.name, fields) {
                    ctx.log
                        .line(&format!("[flink] could not update {}: {e}", run.name));
                }
            }
        }
        let resume_from = if self.settings.resume {
            let mut latest = None;
            for run in ctx.earlier_runs().map_err(wf)? {
                if let Some(sp) = run
                    .body
                    .external
                    .as_ref()
                    .and_then(|e| e["savepoint"].as_str())
                {
                    latest = Some(sp.to_string());
                }
            }
            latest
        } else {
            None
        };

        let (jar, entry_class, args) = self.jar_and_args()?;
        let jar_id = rest.upload_jar(&jar)?;
        if let Some(sp) = &resume_from {
            ctx.log
                .line(&format!("[flink] resuming from savepoint {sp}"));
        }
        let submitted = rest.run_jar(
            &jar_id,
            entry_class.as_deref(),
            &args,
            resume_from.as_deref(),
        );
        let _ = rest.delete_jar(&jar_id);
        let job_id = submitted?;
        ctx.log
            .line(&format!("[flink] submitted Flink job {job_id}"));
        ctx.record_external(json!({
            "flink_url": url,
            "flink_version": version,
            "flink_job_id": job_id,
            "restored_from": resume_from,
        }))
        .map_err(wf)?;

        let poll = self.settings.poll.unwrap_or(Duration::from_millis(500));
        let unreachable_for = self
            .settings
            .unreachable_timeout
            .unwrap_or(Duration::from_secs(30));
        let mut last_ok = Instant::now();
        let mut last_state = String::new();
        loop {
            if ctx.cancel.is_cancelled() {
                return self.stop(ctx, &rest, &job_id);
            }
            match rest.job_state(&job_id) {
                Ok(state) => {
                    last_ok = Instant::now();
                    if state.0 != last_state {
                        ctx.log
                            .line(&format!("[flink] Flink job {job_id}: {}", state.0));
                        last_state = state.0.clone();
                    }
                    if state.is_terminal() {
                        ctx.record_external(json!({"flink_state": state.0}))
                            .map_err(wf)?;
                        return match state.0.as_str() {
                            "FINISHED" => Ok(()),
                            "FAILED" => Err(FlinkError::JobFailed {
                                job_id: job_id.clone(),
                                state: "FAILED".into(),
                                message: rest.job_exception(&job_id).unwrap_or_else(|e| {
                                    format!("(its exception could not be read: {e})")
                                }),
                            }),
                            other => Err(FlinkError::JobFailed {
                                job_id: job_id.clone(),
                                state: other.into(),
                                message:
                                    "it ended without ferroflow asking (cancelled on the cluster?)"
                                        .into(),
                            }),
                        };
                    }
                }
                Err(e @ FlinkError::Unreachable { .. }) => {
                    if last_ok.elapsed() > unreachable_for {
                        return Err(FlinkError::Lost {
                            url: url.clone(),
                            job_id: job_id.clone(),
                            silent: last_ok.elapsed(),
                            source: Box::new(e),
                        });
                    }
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(poll);
        }
    }

    fn savepoint_dir(&self, dir: &str) -> String {
        let p = resolve(self.base_dir.as_deref(), dir);
        let p = std::path::absolute(&p).unwrap_or(p);
        format!("file://{}", p.display())
    }

    /// Stop on request: with a savepoint when configured, else cancel.
    fn stop(&self, ctx: &JobContext, rest: &FlinkRest, job_id: &str) -> Result<()> {
        let wf = |e: WorkflowError| FlinkError::Config(e.to_string());
        match &self.settings.savepoints {
            Some(dir) if self.settings.mode == Mode::Streaming => {
                ctx.log.line(&format!(
                    "[flink] stopping Flink job {job_id} with a savepoint"
                ));
                let sp = rest.stop_with_savepoint(
                    job_id,
                    &self.savepoint_dir(dir),
                    Duration::from_secs(120),
                )?;
                self.wait_terminal(rest, job_id)?;
                ctx.log.line(&format!("[flink] savepoint {sp}"));
                ctx.record_external(
                    json!({"savepoint": sp, "flink_state": "STOPPED_WITH_SAVEPOINT"}),
                )
                .map_err(wf)?;
            }
            _ => {
                ctx.log
                    .line(&format!("[flink] cancelling Flink job {job_id}"));
                rest.cancel(job_id)?;
                let state = self.wait_terminal(rest, job_id)?;
                ctx.record_external(json!({"flink_state": state.0}))
                    .map_err(wf)?;
            }
        }
        Ok(())
    }

    fn wait_terminal(&self, rest: &FlinkRest, job_id: &str) -> Result<JobState> {
        let started = Instant::now();
        loop {
            let s = rest.job_state(job_id)?;
            if s.is_terminal() {
                return Ok(s);
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(FlinkError::Config(format!(
                    "Flink job {job_id} is still {} 60 s after it was cancelled",
                    s.0
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_line_ending_semicolons() {
        let s = split_statements(
            "CREATE TABLE a (x INT) WITH ('k' = 'v;w');\nINSERT INTO a\nSELECT 1;\n",
        );
        assert_eq!(
            s,
            [
                "CREATE TABLE a (x INT) WITH ('k' = 'v;w')",
                "INSERT INTO a\nSELECT 1"
            ]
        );
    }
}
