//! Checkpoints: settings, the on-disk layout, and the coordinator of a running job.
//!
//! Protocol (aligned barriers, one checkpoint in flight at a time):
//! 1. The coordinator asks every source instance for barrier `n` (on an interval, or once for
//!    a stop). A source snapshots its reader's position and watermark between two reads,
//!    acknowledges, and sends the barrier behind the data it already sent.
//! 2. A task whose gate aligned barrier `n` on all inputs snapshots each operator of its chain,
//!    acknowledges per operator, and forwards the barrier. A sink pre-commits (closes its
//!    part files under hidden names) and acknowledges with what is to commit.
//! 3. Acknowledged state is written on I/O threads: one file per node instance in
//!    `chk-<n>/`. When every instance has acknowledged (an instance that has ended counts with
//!    its final state) and every file is synced, the manifest is written last (temporary
//!    file, fsync, rename, fsync of the directory): a checkpoint without a readable manifest
//!    whose files match it is never restored.
//! 4. Then the sinks commit checkpoint `n`'s pre-committed output (renames), old checkpoints
//!    beyond `retain` are deleted, and the next checkpoint may start.
//!
//! A stop takes a last checkpoint (a savepoint) whose barrier tells every task to end after
//! it; the job then reports [`crate::JobStatus::Stopped`] (or finished, when every task had
//! reached end of input before the barrier met it: nothing was stopped). A bounded job with checkpoints ends
//! with a final manifest marked finished, so re-running it commits what was pending and runs
//! nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::hash::key_group_owner;
use crate::operator::OperatorState;
use crate::state::{StateDecoder, StateEncoder, decode_state, encode_state};

/// Default number of key groups (Flink's max parallelism): keyed state can be restored at
/// any parallelism up to this.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// Which checkpoint a starting job restores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RestoreFrom {
    /// The newest complete checkpoint in the directory, if any.
    #[default]
    Latest,
    /// None: start from scratch (older checkpoints are left alone).
    Fresh,
    /// This checkpoint or savepoint directory (`.../chk-<n>`).
    Path(PathBuf),
}

/// Checkpointing of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Where checkpoints go; `None` keeps no state (a stop still commits the sinks' output).
    pub dir: Option<PathBuf>,
    /// Time between checkpoints; `None` takes only the stop's savepoint.
    pub interval: Option<Duration>,
    /// Complete checkpoints kept (at least 1).
    pub retain: usize,
    /// What to restore at start.
    pub restore: RestoreFrom,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: None,
            interval: None,
            retain: 3,
            restore: RestoreFrom::Latest,
        }
    }
}

impl CheckpointConfig {
    /// Checkpoints in `dir` every `interval`, keeping 3, resuming from the newest.
    pub fn new(dir: impl Into<PathBuf>, interval: Duration) -> Self {
        CheckpointConfig {
            dir: Some(dir.into()),
            interval: Some(interval),
            ..Default::default()
        }
    }

    /// Keep this many complete checkpoints.
    pub fn with_retain(mut self, n: usize) -> Self {
        self.retain = n.max(1);
        self
    }

    /// Choose what to restore.
    pub fn with_restore(mut self, r: RestoreFrom) -> Self {
        self.restore = r;
        self
    }
}

/// Figures of one completed checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointStats {
    /// Checkpoint id.
    pub id: u64,
    /// Taken by a stop (the job ended after it).
    pub savepoint: bool,
    /// From trigger to committed.
    pub duration: Duration,
    /// Bytes of state written.
    pub bytes: u64,
    /// Longest time a task waited between its first and last barrier (alignment).
    pub alignment: Duration,
}

/// What a starting job restored.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// Checkpoint id.
    pub id: u64,
    /// Its directory.
    pub path: PathBuf,
    /// It was a savepoint.
    pub savepoint: bool,
    /// It was the end of a finished bounded job: nothing was run again.
    pub finished: bool,
    /// Newer checkpoints passed over, and why (incomplete or damaged).
    pub skipped: Vec<String>,
}

/// `checkpoint 7 (DIR/chk-0000000007)` or `savepoint 7 (...)`, as logs say what a job
/// resumed from.
impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.savepoint {
            "savepoint"
        } else {
            "checkpoint"
        };
        write!(f, "{kind} {} ({})", self.id, self.path.display())
    }
}

// ---------------------------------------------------------------------------------------
// On disk.

const MANIFEST: &str = "_manifest.json";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NodeRole {
    Source,
    Operator,
    Sink,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InstanceEntry {
    pub(crate) index: usize,
    pub(crate) finished: bool,
    /// State file in the checkpoint directory (`None`: no state).
    pub(crate) file: Option<String>,
    pub(crate) bytes: u64,
    pub(crate) crc32: u32,
}

impl InstanceEntry {
    /// An instance without a state file.
    pub(crate) fn stateless(index: usize, finished: bool) -> Self {
        InstanceEntry {
            index,
            finished,
            file: None,
            bytes: 0,
            crc32: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeEntry {
    pub(crate) name: String,
    pub(crate) role: NodeRole,
    pub(crate) parallelism: usize,
    pub(crate) instances: Vec<InstanceEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) job: String,
    pub(crate) id: u64,
    /// Names this job's run across restores (sinks name their files with it).
    pub(crate) run: String,
    pub(crate) savepoint: bool,
    pub(crate) finished: bool,
    pub(crate) timestamp_ms: i64,
    pub(crate) max_parallelism: u32,
    pub(crate) nodes: Vec<NodeEntry>,
}

fn ck_err(path: &Path, message: impl Into<String>) -> EngineError {
    EngineError::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::io(path.display().to_string(), e)
}

pub(crate) fn chk_name(id: u64) -> String {
    format!("chk-{id:010}")
}

fn parse_chk(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Write `bytes` to `path` durably: a temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(dir)
}

/// A complete checkpoint found on disk, its files checked against its manifest.
pub(crate) struct LoadedCheckpoint {
    pub(crate) path: PathBuf,
    pub(crate) manifest: Manifest,
    /// (node name, instance) -> decoded state and whether the instance had finished.
    pub(crate) states: HashMap<(String, usize), (bool, Option<OperatorState>)>,
}

impl LoadedCheckpoint {
    /// Load and check the checkpoint in `path`.
    pub(crate) fn load(path: &Path) -> Result<LoadedCheckpoint> {
        let mpath = path.join(MANIFEST);
        let text = std::fs::read(&mpath).map_err(|e| ck_err(path, format!("no manifest: {e}")))?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| ck_err(&mpath, format!("unreadable manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(ck_err(
                &mpath,
                format!(
                    "manifest format {} is not supported (this build reads {FORMAT})",
                    manifest.format
                ),
            ));
        }
        let mut states = HashMap::new();
        for node in &manifest.nodes {
            for inst in &node.instances {
                let state = match &inst.file {
                    None => None,
                    Some(f) => {
                        if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                            return Err(ck_err(&mpath, format!("bad state file name '{f}'")));
                        }
                        let fp = path.join(f);
                        let bytes = std::fs::read(&fp).map_err(|e| ck_err(&fp, e.to_string()))?;
                        if bytes.len() as u64 != inst.bytes || crc32fast::hash(&bytes) != inst.crc32
                        {
                            return Err(ck_err(
                                &fp,
                                "state file does not match the manifest (torn or changed)",
                            ));
                        }
                        let what = format!("{} instance {} ({})", node.name, inst.index, f);
                        Some(decode_state(&bytes, &what)?)
                    }
                };
                states.insert((node.name.clone(), inst.index), (inst.finished, state));
            }
        }
        Ok(LoadedCheckpoint {
            path: path.to_path_buf(),
            manifest,
            states,
        })
    }

    /// The newest complete checkpoint of `job` in `dir`; newer incomplete or damaged ones are
    /// listed in the second value.
    pub(crate) fn latest(dir: &Path, job: &str) -> Result<(Option<LoadedCheckpoint>, Vec<String>)> {
        let mut skipped = Vec::new();
        if !dir.exists() {
            return Ok((None, skipped));
        }
        for id in list_ids(dir)?.into_iter().rev() {
            let p = dir.join(chk_name(id));
            match LoadedCheckpoint::load(&p) {
                Ok(c) if c.manifest.job != job => {
                    return Err(ck_err(
                        &p,
                        format!(
                            "holds checkpoints of job '{}', not '{job}'; give this job its own directory",
                            c.manifest.job
                        ),
                    ));
                }
                Ok(c) => return Ok((Some(c), skipped)),
                Err(e) => skipped.push(e.to_string()),
            }
        }
        Ok((None, skipped))
    }

    pub(crate) fn node(&self, name: &str) -> Option<&NodeEntry> {
        self.manifest.nodes.iter().find(|n| n.name == name)
    }
}

fn list_ids(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        if let Some(id) = e.file_name().to_str().and_then(parse_chk)
            && e.path().is_dir()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The checkpoint directory of one job.
pub(crate) struct Storage {
    pub(crate) dir: PathBuf,
    retain: usize,
    /// Held while the job runs: two runs of one job on one directory would discard each
    /// other's pending output.
    lock: parking_lot::Mutex<Option<std::fs::File>>,
}

impl Storage {
    pub(crate) fn new(dir: PathBuf, retain: usize) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ck_err(
                    &dir,
                    "is in use by another running job; stop it first or give this one another directory",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, e)),
        }
        Ok(Storage {
            dir,
            retain: retain.max(1),
            lock: parking_lot::Mutex::new(Some(lock)),
        })
    }

    /// The run that last started in this directory (`run` file), if any.
    pub(crate) fn last_run(&self) -> Result<Option<String>> {
        let p = self.dir.join("run");
        match std::fs::read_to_string(&p) {
            Ok(t) => {
                let t = t.trim();
                if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(ck_err(&p, "the run file holds no run id"));
                }
                Ok(Some(t.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    /// Record the run starting now, so a crash before its first checkpoint can be cleaned up.
    pub(crate) fn record_run(&self, run: &str) -> Result<()> {
        if self.last_run()?.as_deref() == Some(run) {
            return Ok(());
        }
        write_durable(&self.dir.join("run"), run.as_bytes())
    }

    /// The job is over: another run may use the directory.
    pub(crate) fn release(&self) {
        self.lock.lock().take();
    }

    pub(crate) fn path(&self, id: u64) -> PathBuf {
        self.dir.join(chk_name(id))
    }

    /// The highest checkpoint id in the directory (0: none).
    pub(crate) fn newest_id(&self) -> Result<u64> {
        Ok(list_ids(&self.dir)?.last().copied().unwrap_or(0))
    }

    /// Remove checkpoints newer than `restored` (left by a run that failed before completing
    /// them), so their ids can be used again.
    pub(crate) fn discard_after(&self, restored: u64) -> Result<()> {
        for id in list_ids(&self.dir)? {
            if id > restored {
                let p = self.path(id);
                std::fs::remove_dir_all(&p).map_err(|e| io_err(&p, e))?;
            }
        }
        Ok(())
    }

    /// Write one instance's state file of checkpoint `id`.
    pub(crate) fn write_state(
        &self,
        id: u64,
        node_index: usize,
        instance: usize,
        finished: bool,
        state: Option<&OperatorState>,
    ) -> Result<InstanceEntry> {
        let Some(state) = state else {
            return Ok(InstanceEntry::stateless(instance, finished));
        };
        let dir = self.path(id);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let bytes = encode_state(state)?;
        let name = format!("{node_index}-{instance}.state");
        let path = dir.join(&name);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&path).map_err(|e| io_err(&path, e))?;
            f.write_all(&bytes).map_err(|e| io_err(&path, e))?;
            f.sync_all().map_err(|e| io_err(&path, e))?;
        }
        Ok(InstanceEntry {
            index: instance,
            finished,
            file: Some(name),
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        })
    }

    /// Make checkpoint `manifest.id` complete, then drop checkpoints beyond `retain`.
    pub(crate) fn complete(&self, manifest: &Manifest) -> Result<()> {
        let dir = self.path(manifest.id);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        // State files were synced one by one; their directory entries now.
        sync_dir(&dir)?;
        let text = serde_json::to_vec_pretty(manifest)
            .map_err(|e| ck_err(&dir, format!("encoding the manifest: {e}")))?;
        write_durable(&dir.join(MANIFEST), &text)?;
        sync_dir(&self.dir)?;
        let ids = list_ids(&self.dir)?;
        let complete: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| *id <= manifest.id && self.path(*id).join(MANIFEST).exists())
            .collect();
        let keep_from = complete
            .len()
            .checked_sub(self.retain)
            .map(|i| complete[i])
            .unwrap_or(0);
        for id in ids {
            if id < keep_from {
                let p = self.path(id);
                std::fs::remove_dir_all(&p).map_err(|e| io_err(&p, e))?;
            }
        }
        Ok(())
    }
}

/// Encode a sink instance's checkpointed state: what it pre-committed, then its writer's
/// own state when it keeps one ([`crate::SinkWriter::snapshot_state`]; its batches are the
/// state's batches).
pub(crate) fn encode_sink_state(c: &[Vec<u8>], writer: Option<OperatorState>) -> OperatorState {
    let mut e = StateEncoder::new();
    e.u64(c.len() as u64);
    for x in c {
        e.bytes(x);
    }
    let mut batches = Vec::new();
    if let Some(w) = writer {
        e.bool(true);
        e.bytes(&w.bytes);
        batches = w.batches;
    }
    OperatorState {
        batches,
        bytes: e.finish(),
    }
}

/// The committables and the writer state in a sink instance's checkpointed state.
pub(crate) fn decode_sink_state(
    s: &OperatorState,
    what: &str,
) -> Result<(Vec<Vec<u8>>, Option<OperatorState>)> {
    let mut d = StateDecoder::new(&s.bytes, what);
    let n = d.count(8)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(d.bytes()?.to_vec());
    }
    let writer = if d.is_empty() {
        None
    } else {
        d.bool()?;
        Some(OperatorState {
            batches: s.batches.clone(),
            bytes: d.bytes()?.to_vec(),
        })
    };
    d.end()?;
    Ok((out, writer))
}

/// The committables in a sink instance's checkpointed state.
pub(crate) fn decode_committables(s: &OperatorState, what: &str) -> Result<Vec<Vec<u8>>> {
    Ok(decode_sink_state(s, what)?.0)
}

/// A source instance's checkpointed position: its reader's splits and its event-time clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourcePosition {
    pub(crate) splits: Vec<Vec<u8>>,
    pub(crate) max_ts: i64,
    pub(crate) last_wm: i64,
}

impl SourcePosition {
    pub(crate) fn encode(&self) -> OperatorState {
        let mut e = StateEncoder::new();
        e.u64(self.splits.len() as u64);
        for s in &self.splits {
            e.bytes(s);
        }
        e.i64(self.max_ts).i64(self.last_wm);
        OperatorState {
            batches: Vec::new(),
            bytes: e.finish(),
        }
    }

    pub(crate) fn decode(s: &OperatorState, what: &str) -> Result<Self> {
        let mut d = StateDecoder::new(&s.bytes, what);
        let n = d.count(8)?;
        let mut splits = Vec::with_capacity(n);
        for _ in 0..n {
            splits.push(d.bytes()?.to_vec());
        }
        let max_ts = d.i64()?;
        let last_wm = d.i64()?;
        d.end()?;
        Ok(SourcePosition {
            splits,
            max_ts,
            last_wm,
        })
    }
}

/// Old instances whose key groups overlap new instance `index` of `new_par`.
pub(crate) fn overlapping_instances(
    max: u32,
    old_par: usize,
    new_par: usize,
    index: usize,
) -> Vec<usize> {
    let mut out: Vec<usize> = (0..max)
        .filter(|kg| key_group_owner(*kg, max, new_par) == index)
        .map(|kg| key_group_owner(kg, max, old_par))
        .collect();
    out.dedup();
    out
}

/// A fresh run id: names the part files of this run of the job.
pub(crate) fn new_run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = ahash::RandomState::new().hash_one((t, std::process::id()));
    format!("{:08x}", (h ^ (h >> 32)) as u32)
}

/// A written acknowledgement: its manifest entry, and the state kept for committing (sinks).
pub(crate) type Written = (InstanceEntry, Option<OperatorState>);

/// Per-checkpoint bookkeeping of the coordinator.
pub(crate) struct InFlight {
    pub(crate) id: u64,
    pub(crate) stop: bool,
    pub(crate) started: Instant,
    /// (node, instance) -> written entry (`None` while its file is being written).
    pub(crate) acks: HashMap<(usize, usize), Option<Written>>,
    pub(crate) bytes: u64,
    pub(crate) alignment: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_cover_every_instance_and_overlaps_are_exact() {
        for old in 1..6 {
            for new in 1..6 {
                let mut seen = vec![false; old];
                for j in 0..new {
                    for i in overlapping_instances(128, old, new, j) {
                        seen[i] = true;
                    }
                }
                assert!(seen.iter().all(|x| *x), "{old} -> {new}");
            }
        }
        assert_eq!(overlapping_instances(128, 2, 2, 1), vec![1]);
        assert_eq!(overlapping_instances(128, 2, 1, 0), vec![0, 1]);
    }

    #[test]
    fn torn_manifest_falls_back_to_the_previous_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let s = Storage::new(d.path().to_path_buf(), 5).unwrap();
        for id in 1..=3 {
            let st = OperatorState {
                batches: vec![],
                bytes: vec![id as u8],
            };
            let e = s.write_state(id, 0, 0, false, Some(&st)).unwrap();
            s.complete(&Manifest {
                format: FORMAT,
                job: "j".into(),
                id,
                run: "r".into(),
                savepoint: false,
                finished: false,
                timestamp_ms: 0,
                max_parallelism: 128,
                nodes: vec![NodeEntry {
                    name: "n".into(),
                    role: NodeRole::Operator,
                    parallelism: 1,
                    instances: vec![e],
                }],
            })
            .unwrap();
        }
        // Torn manifest of 3, missing manifest of 4, state file of 2 changed.
        let m3 = s.path(3).join(MANIFEST);
        let text = std::fs::read(&m3).unwrap();
        std::fs::write(&m3, &text[..text.len() / 2]).unwrap();
        std::fs::create_dir_all(s.path(4)).unwrap();
        let (c, skipped) = LoadedCheckpoint::latest(d.path(), "j").unwrap();
        assert_eq!(c.unwrap().manifest.id, 2);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        std::fs::write(s.path(2).join("0-0.state"), b"FFST\x01garbage").unwrap();
        let (c, _) = LoadedCheckpoint::latest(d.path(), "j").unwrap();
        assert_eq!(c.unwrap().manifest.id, 1);
        assert!(LoadedCheckpoint::latest(d.path(), "other").is_err());
    }
}
