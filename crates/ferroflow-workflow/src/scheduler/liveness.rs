//! Liveness: heartbeats, children that exited without reporting, launches that never
//! reported in, stops that hang.

use std::collections::HashSet;
use std::time::Instant;

use super::decide::{SENDER, active};
use super::launch::Handle;
use super::{Scheduler, log};
use crate::error::Result;
use crate::process_id::Signal;
use crate::records::{get_job_execution, update_job_execution};
use crate::status::JobStatus;

impl Scheduler {
    /// Heartbeats, exited children, stuck launches and stops.
    pub(super) async fn check_health(&mut self) -> Result<()> {
        let mut work: Vec<(String, String)> = vec![];
        for exec in self.execs.values() {
            for js in exec.body.jobs.values() {
                if let (Some(job_execution), true) = (&js.current, active(js.status)) {
                    work.push((exec.project.clone(), job_execution.clone()));
                }
            }
        }
        let live: HashSet<String> = work
            .iter()
            .map(|(p, job_execution)| format!("{p}/{job_execution}"))
            .collect();
        self.beats.retain(|k, _| live.contains(k));
        for (project, job_execution) in work {
            if let Err(e) = self.check_job_health(&project, &job_execution).await {
                if e.is_transient() {
                    return Err(e);
                }
                // This run's own trouble (a launch that cannot start, an unreadable record):
                // it fails; the rest go on.
                log(&format!("job execution {project}/{job_execution}: {e}"));
                let msg = e.to_string();
                update_job_execution(&*self.store, &project, &job_execution, SENDER, |b| {
                    if b.status.is_terminal() {
                        return false;
                    }
                    b.status = JobStatus::Failed;
                    b.error = Some(msg.clone());
                    true
                })
                .await
                .or_else(|e| if e.is_transient() { Err(e) } else { Ok(None) })?;
            }
        }
        Ok(())
    }

    async fn check_job_health(&mut self, project: &str, job_execution: &str) -> Result<()> {
        let key = format!("{project}/{job_execution}");
        let (_, b) = get_job_execution(&*self.store, project, job_execution).await?;
        if b.status.is_terminal() {
            return Ok(());
        }
        let exited = match self.handles.get_mut(&key) {
            Some(Handle::Child(c)) => c.try_wait().ok().flatten().map(|s| s.to_string()),
            Some(Handle::Task { join, .. }) => join.is_finished().then(|| "ended".to_string()),
            None => None,
        };
        let reason = if let Some(how) = exited {
            // Give a runner that just wrote its end a moment to be read.
            let (_, again) = get_job_execution(&*self.store, project, job_execution).await?;
            if again.status.is_terminal() {
                return Ok(());
            }
            Some(format!(
                "the job process (pid {}) exited ({how}) without reporting an end",
                again
                    .pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into())
            ))
        } else {
            match b.status {
                JobStatus::Running | JobStatus::Stopping => {
                    // Time since the heartbeat last *changed*, on our monotonic clock: the
                    // runner's wall clock and ours may disagree or jump.
                    let beat = b.heartbeat.unwrap_or(b.create_time);
                    let seen = self
                        .beats
                        .entry(key.clone())
                        .or_insert((beat, Instant::now()));
                    if seen.0 != beat {
                        *seen = (beat, Instant::now());
                    }
                    let silent = seen.1.elapsed();
                    (silent > self.cfg.heartbeat_timeout).then(|| {
                        format!(
                            "no heartbeat for {} ms: the job process (pid {}) is gone or hung",
                            silent.as_millis(),
                            b.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
                        )
                    })
                }
                JobStatus::Starting => match self.launched.get(&key) {
                    Some(t) if t.elapsed() > self.cfg.start_timeout => Some(format!(
                        "the job process did not report in within {:?}",
                        self.cfg.start_timeout
                    )),
                    Some(_) => None,
                    None => {
                        // Launched by a scheduler that is gone: launch again.
                        self.launch(project, job_execution).await?;
                        None
                    }
                },
                JobStatus::Init => {
                    self.launch(project, job_execution).await?;
                    None
                }
                _ => None,
            }
        };
        let stuck_stop = b.status == JobStatus::Stopping
            && self
                .stopping
                .get(&key)
                .is_some_and(|t| t.elapsed() > self.cfg.stop_timeout);
        if reason.is_none() && !stuck_stop {
            return Ok(());
        }
        // Make sure a hung runner is gone before its run is declared over.
        self.signal_runner(&key, &b, Signal::Kill);
        if let Some(Handle::Task { cancel, join }) = self.handles.get(&key) {
            cancel.cancel();
            join.abort();
        }
        let (status, error) = match reason {
            Some(r) if b.status != JobStatus::Stopping => (JobStatus::Failed, Some(r)),
            Some(_) | None => (JobStatus::Stopped, None),
        };
        update_job_execution(&*self.store, project, job_execution, SENDER, |b| {
            if b.status.is_terminal() {
                return false;
            }
            b.status = status;
            b.error = error.clone();
            true
        })
        .await?;
        Ok(())
    }
}
