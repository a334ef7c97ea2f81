//! Which process a job execution's runner is, provably: a pid alone names whatever process
//! has it now, and after the runner died that may be anyone's. A runner records its pid, its
//! start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`), its process group and
//! the machine's boot id; the scheduler signals a recorded runner only when all of them still
//! match, so a recycled pid, a record from another host or a forged number is never signalled.

use serde::{Deserialize, Serialize};

/// A process as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessIdentity {
    /// Its pid.
    pub pid: u32,
    /// When it started, in clock ticks since boot.
    pub start_ticks: u64,
    /// Its process group.
    pub pgid: u32,
    /// The boot id of its machine (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
/// parentheses, so it ends at the last `)`): index 0 is field 3 (state).
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let end = text.rfind(')')?;
    Some(text[end + 1..].split_whitespace().collect())
}

impl ProcessIdentity {
    /// The calling process.
    pub fn current() -> Option<Self> {
        Self::of(std::process::id())
    }

    /// The process that has `pid` now, if any (and if this machine has `/proc`).
    pub fn of(pid: u32) -> Option<Self> {
        if !valid_pid(pid) {
            return None;
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let f = stat_fields(&text)?;
        Some(ProcessIdentity {
            pid,
            pgid: f.get(2)?.parse().ok()?,
            start_ticks: f.get(19)?.parse().ok()?,
            boot_id: boot_id()?,
        })
    }
}

/// A pid that may be signalled at all: not 0 (our group), not 1 (init), not negative once
/// cast (`kill(-1)` is every process), not this process.
fn valid_pid(pid: u32) -> bool {
    pid > 1 && pid <= i32::MAX as u32
}

/// Why a recorded runner is not signalled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalRefused {
    /// The record names no process identity.
    #[error("the record names no runner process")]
    Unrecorded,
    /// The pid could never be a runner's.
    #[error("pid {0} is not one a runner can have")]
    BadPid(u64),
    /// The runner ran on another machine (or before a reboot).
    #[error("the runner ran on another host or boot (boot id {0})")]
    OtherHost(String),
    /// No process has the pid now.
    #[error("pid {0} has exited")]
    Gone(u32),
    /// Another process has the pid now.
    #[error("pid {0} now belongs to another process (started at tick {1}, not {2})")]
    Recycled(u32, u64, u64),
    /// The pid is this scheduler's own.
    #[error("pid {0} is this scheduler itself (an in-process runner)")]
    Ourselves(u32),
}

/// A signal the control layer sends to a runner or to a command it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask it to stop (SIGTERM).
    Term,
    /// End it (SIGKILL).
    Kill,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// Send `signal` to `pid`, or with `group` to the process group it leads: the one place the
/// control layer calls kill(2). The caller knows the pid is the intended process (its own
/// child not yet reaped, or a runner checked by [`signal_recorded`]); pids that can never be
/// one process (0, 1, or `-1` once cast) are refused. Returns whether the signal was sent.
pub(crate) fn signal_child(pid: u32, group: bool, signal: Signal) -> bool {
    if !valid_pid(pid) {
        return false;
    }
    let target = if group { -(pid as i32) } else { pid as i32 };
    // SAFETY: kill(2) has no memory effects; the target is the caller's known process.
    unsafe { libc::kill(target, signal.raw()) == 0 }
}

/// Send `signal` to the recorded runner, and to its process group when it leads one (so a
/// SIGKILL also ends the commands it started), only if the process with that pid is the one
/// recorded.
pub fn signal_recorded(
    recorded: Option<&ProcessIdentity>,
    signal: Signal,
) -> Result<(), SignalRefused> {
    let r = recorded.ok_or(SignalRefused::Unrecorded)?;
    if !valid_pid(r.pid) {
        return Err(SignalRefused::BadPid(r.pid as u64));
    }
    if r.pid == std::process::id() {
        return Err(SignalRefused::Ourselves(r.pid));
    }
    if boot_id().as_deref() != Some(r.boot_id.as_str()) {
        return Err(SignalRefused::OtherHost(r.boot_id.clone()));
    }
    let now = ProcessIdentity::of(r.pid).ok_or(SignalRefused::Gone(r.pid))?;
    if now.start_ticks != r.start_ticks {
        return Err(SignalRefused::Recycled(
            r.pid,
            now.start_ticks,
            r.start_ticks,
        ));
    }
    // The very process (or the group it leads) that the runner recorded, checked above.
    let group = now.pgid == r.pid && r.pgid == r.pid;
    signal_child(r.pid, group, signal);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = ProcessIdentity::current().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_ticks > 0);
        assert_eq!(ProcessIdentity::current().unwrap(), me);
    }

    #[test]
    fn command_names_with_parentheses_parse() {
        let f = stat_fields("42 (a) b (c)) S 1 42 42 0 -1").unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[2], "42");
    }

    #[test]
    fn forged_and_stale_identities_are_refused() {
        let me = ProcessIdentity::current().unwrap();
        let with = |pid: u32| ProcessIdentity {
            pid,
            pgid: pid,
            ..me.clone()
        };
        for pid in [0, 1, u32::MAX, i32::MAX as u32 + 1] {
            assert!(
                matches!(
                    signal_recorded(Some(&with(pid)), Signal::Kill),
                    Err(SignalRefused::BadPid(_))
                ),
                "{pid}"
            );
        }
        assert_eq!(
            signal_recorded(Some(&me), Signal::Kill),
            Err(SignalRefused::Ourselves(me.pid))
        );
        assert_eq!(
            signal_recorded(None, Signal::Kill),
            Err(SignalRefused::Unrecorded)
        );
        // A live process whose start time differs from the record: a recycled pid.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let real = ProcessIdentity::of(child.id()).unwrap();
        let stale = ProcessIdentity {
            start_ticks: real.start_ticks.wrapping_sub(1),
            ..real.clone()
        };
        assert!(matches!(
            signal_recorded(Some(&stale), Signal::Kill),
            Err(SignalRefused::Recycled(..))
        ));
        let other_host = ProcessIdentity {
            boot_id: "another-machine".into(),
            ..real.clone()
        };
        assert!(matches!(
            signal_recorded(Some(&other_host), Signal::Kill),
            Err(SignalRefused::OtherHost(_))
        ));
        assert!(child.try_wait().unwrap().is_none(), "still alive");
        // The real identity is signalled.
        signal_recorded(Some(&real), Signal::Kill).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
