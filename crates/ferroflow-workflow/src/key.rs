//! [`JobKey`]: how events, errors and rules name a job of a workflow.

use std::fmt;
use std::str::FromStr;

/// A job of a workflow: `<workflow>.<job>` in event keys (`JOB_STATUS_CHANGED`), rules and
/// errors. Neither name may contain `.` (checked when a workflow is validated), so the text
/// form parses back unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    /// The workflow's name.
    pub workflow: String,
    /// The job's name in it.
    pub job: String,
}

impl JobKey {
    /// The key of `job` in `workflow`.
    pub fn new(workflow: impl Into<String>, job: impl Into<String>) -> Self {
        JobKey {
            workflow: workflow.into(),
            job: job.into(),
        }
    }

    /// The job named by event key `key` when it is a job of `workflow`.
    pub fn job_in<'k>(key: &'k str, workflow: &str) -> Option<&'k str> {
        key.strip_prefix(workflow)?.strip_prefix('.')
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.workflow, self.job)
    }
}

/// Text that is not `<workflow>.<job>` with two non-empty names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a job key (<workflow>.<job>)")]
pub struct BadJobKey(pub String);

impl FromStr for JobKey {
    type Err = BadJobKey;

    fn from_str(s: &str) -> Result<Self, BadJobKey> {
        match s.split_once('.') {
            Some((w, j)) if !w.is_empty() && !j.is_empty() && !j.contains('.') => {
                Ok(JobKey::new(w, j))
            }
            _ => Err(BadJobKey(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_parses_back() {
        let k = JobKey::new("daily", "train");
        assert_eq!(k.to_string(), "daily.train");
        assert_eq!("daily.train".parse::<JobKey>(), Ok(k));
        for bad in ["daily", ".train", "daily.", "a.b.c", ""] {
            assert!(bad.parse::<JobKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_is_a_job_of_its_workflow_only() {
        assert_eq!(JobKey::job_in("daily.train", "daily"), Some("train"));
        assert_eq!(JobKey::job_in("dailyx.train", "daily"), None);
        assert_eq!(JobKey::job_in("other.train", "daily"), None);
    }
}
