//! The `process` job type: any command, with arguments, environment and working directory.
//!
//! ```yaml
//! jobs:
//!   report:
//!     type: process
//!     command: [python3, report.py, --day, today]   # or one string, run by `sh -c`
//!     env: { MODEL: churn }
//!     workdir: scripts            # relative to the spec's directory (default: it)
//!     stop_grace: 5s              # SIGTERM, then SIGKILL after this long
//! ```
//!
//! stdout and stderr go to the job execution's log. The command dies with its runner
//! (`PR_SET_PDEATHSIG`), so a killed runner never leaves it behind.

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{Result, WorkflowError};
use crate::graph::SubGraph;
use crate::plugin::{JobContext, JobPlugin, RunnableJob};

/// The `process` job type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessPlugin;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CommandSpec {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessConfig {
    command: CommandSpec,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    stop_grace: Option<Duration>,
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn config(sub: &SubGraph<'_>) -> Result<ProcessConfig> {
    let key = crate::JobKey::new(&sub.graph.name, &sub.job.name).to_string();
    if !sub.nodes.is_empty() {
        return Err(WorkflowError::job(
            key,
            "a process job runs a command and has no nodes",
        ));
    }
    let cfg: ProcessConfig =
        serde_json::from_value(serde_json::Value::Object(sub.job.properties.clone()))
            .map_err(|e| WorkflowError::job(&key, format!("process job settings: {e}")))?;
    match &cfg.command {
        CommandSpec::Argv(v) if v.is_empty() => {
            return Err(WorkflowError::job(key, "'command' is empty"));
        }
        CommandSpec::Shell(s) if s.trim().is_empty() => {
            return Err(WorkflowError::job(key, "'command' is empty"));
        }
        _ => {}
    }
    Ok(cfg)
}

impl JobPlugin for ProcessPlugin {
    fn job_type(&self) -> &str {
        "process"
    }

    fn validate(&self, sub: &SubGraph<'_>) -> Result<()> {
        config(sub).map(|_| ())
    }

    fn host_access(&self, _sub: &SubGraph<'_>) -> Option<String> {
        Some("a process job runs a command on the scheduler's host".into())
    }

    fn generate(&self, sub: &SubGraph<'_>) -> Result<Box<dyn RunnableJob>> {
        let cfg = config(sub)?;
        let argv = match cfg.command {
            CommandSpec::Shell(s) => vec!["sh".into(), "-c".into(), s],
            CommandSpec::Argv(v) => v,
        };
        let workdir = match &cfg.workdir {
            Some(w) => sub.graph.resolve_path(w),
            None => sub
                .graph
                .base_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        Ok(Box::new(ProcessJob {
            argv,
            env: cfg.env,
            workdir,
            stop_grace: cfg.stop_grace.unwrap_or(Duration::from_secs(5)),
        }))
    }
}

struct ProcessJob {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    workdir: PathBuf,
    stop_grace: Duration,
}

impl RunnableJob for ProcessJob {
    fn run(self: Box<Self>, ctx: &JobContext) -> Result<()> {
        let key = ctx.job_key();
        ctx.log.line(&format!(
            "[ferroflow] running {:?} in {}",
            self.argv,
            self.workdir.display()
        ));
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .envs(&self.env)
            .env("FERROFLOW_PROJECT", &ctx.project)
            .env("FERROFLOW_WORKFLOW", &ctx.workflow)
            .env("FERROFLOW_EXECUTION", &ctx.execution)
            .env("FERROFLOW_JOB", &ctx.job)
            .env("FERROFLOW_JOB_EXECUTION", &ctx.job_execution)
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(ctx.log.file()?)
            .stderr(ctx.log.file()?);
        // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            WorkflowError::job(
                &key,
                format!(
                    "cannot start {:?} in {}: {e}",
                    self.argv[0],
                    self.workdir.display()
                ),
            )
        })?;
        let mut term_sent: Option<Instant> = None;
        let status = loop {
            if let Some(st) = child
                .try_wait()
                .map_err(|e| WorkflowError::job(&key, format!("waiting for the command: {e}")))?
            {
                break st;
            }
            if ctx.cancel.is_cancelled() {
                match term_sent {
                    None => {
                        // Our own child, not reaped yet (we are its only waiter).
                        crate::process_id::signal_child(
                            child.id(),
                            false,
                            crate::process_id::Signal::Term,
                        );
                        term_sent = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > self.stop_grace => {
                        let _ = child.kill();
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        *ctx.exit_code.lock() = status.code();
        if ctx.cancel.is_cancelled() {
            ctx.log.line(&format!(
                "[ferroflow] stopped; the command ended with {status}"
            ));
            return Ok(());
        }
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(WorkflowError::job(
                key,
                format!("command exited with code {code}"),
            )),
            (None, Some(sig)) => Err(WorkflowError::job(
                key,
                format!("command killed by signal {sig}"),
            )),
            (None, None) => Err(WorkflowError::job(key, format!("command ended: {status}"))),
        }
    }
}
