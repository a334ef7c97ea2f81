//! A source that watches a directory: files added while the job runs join the stream.
//!
//! Each file is read exactly once. A file is taken only when its size and modification time
//! were the same at two consecutive polls (or it was renamed into place, the recommended way
//! to publish a file); hidden files and `*.tmp`, `*.inprogress`, `*.partial` are ignored.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use arrow_schema::SchemaRef;
use ferroflow_engine::{InstanceInfo, Source, SourceEvent, SourceReader};

use crate::error::{ConnectorError, Result};
use crate::files::{FileSetReader, Unit, is_ignored, list_files};
use crate::format::FileFormat;
use crate::splits::FileSplit;
use ferroflow_engine::state::{StateDecoder, StateEncoder};

/// Watches `dir` for files of one format; unbounded.
#[derive(Debug, Clone)]
pub struct DirectoryWatchSource {
    dir: PathBuf,
    format: FileFormat,
    schema: SchemaRef,
    poll_interval: Duration,
    batch_size: usize,
}

impl DirectoryWatchSource {
    /// Watch `dir`. The schema is given, since the directory may start empty.
    pub fn new(dir: impl AsRef<Path>, format: FileFormat, schema: SchemaRef) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let meta = std::fs::metadata(&dir).map_err(|e| ConnectorError::io(dir.display(), e))?;
        if !meta.is_dir() {
            return Err(ConnectorError::Config(format!(
                "{}: not a directory",
                dir.display()
            )));
        }
        std::fs::read_dir(&dir).map_err(|e| ConnectorError::io(dir.display(), e))?;
        Ok(DirectoryWatchSource {
            dir,
            format,
            schema,
            poll_interval: Duration::from_millis(200),
            batch_size: 8192,
        })
    }

    /// How often to list the directory.
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Rows per batch.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

impl Source for DirectoryWatchSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn validate(&self) -> ferroflow_engine::Result<()> {
        std::fs::read_dir(&self.dir).map_err(|e| ConnectorError::io(self.dir.display(), e))?;
        Ok(())
    }

    fn create_reader(
        &self,
        instance: &InstanceInfo,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        Ok(Box::new(self.reader(instance, WatchState::default())))
    }

    fn supports_checkpoints(&self) -> bool {
        true
    }

    fn restore_reader(
        &self,
        instance: &InstanceInfo,
        splits: Vec<Vec<u8>>,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        let state = WatchState::merge(&splits, &instance.node)?;
        Ok(Box::new(self.reader(instance, state)))
    }

    /// Every new instance skips every file taken before; a file half read goes on at the
    /// instance that owns its name now.
    fn assign_splits(
        &self,
        splits: Vec<Vec<u8>>,
        parallelism: usize,
    ) -> ferroflow_engine::Result<Vec<Vec<Vec<u8>>>> {
        let all = WatchState::merge(&splits, "directory watch")?;
        (0..parallelism)
            .map(|i| {
                let mine = WatchState {
                    seen: all.seen.clone(),
                    pending: all
                        .pending
                        .iter()
                        .filter(|u| owner(&u.path, parallelism) == i)
                        .cloned()
                        .collect(),
                };
                Ok(vec![mine.encode()?])
            })
            .collect()
    }
}

impl DirectoryWatchSource {
    fn reader(&self, instance: &InstanceInfo, state: WatchState) -> WatchReader {
        let units: Vec<Unit> = state.pending.into_iter().map(Unit::from_split).collect();
        let total = units.iter().map(|u| u.bytes).sum();
        WatchReader {
            source: self.clone(),
            instance: instance.index,
            parallelism: instance.parallelism,
            seen: state.seen,
            candidates: HashMap::new(),
            files: FileSetReader::new(
                units,
                self.format,
                self.schema.clone(),
                self.batch_size,
                None,
                total,
            ),
            last_poll: None,
        }
    }
}

/// The instance of `parallelism` that reads the file at `p` (by a hash of its name).
fn owner(p: &Path, parallelism: usize) -> usize {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let h = name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    (h % parallelism.max(1) as u64) as usize
}

/// A watch reader's checkpointed position: the files taken, and what is left of them.
#[derive(Debug, Default)]
struct WatchState {
    seen: HashSet<PathBuf>,
    pending: Vec<FileSplit>,
}

impl WatchState {
    fn encode(&self) -> ferroflow_engine::Result<Vec<u8>> {
        let mut e = StateEncoder::new();
        let mut seen: Vec<&PathBuf> = self.seen.iter().collect();
        seen.sort();
        e.u64(seen.len() as u64);
        for p in seen {
            FileSplit {
                path: p.clone(),
                row_groups: None,
                skip_rows: 0,
            }
            .write(&mut e)?;
        }
        e.u64(self.pending.len() as u64);
        for s in &self.pending {
            s.write(&mut e)?;
        }
        Ok(e.finish())
    }

    /// The union of several readers' positions.
    fn merge(splits: &[Vec<u8>], what: &str) -> ferroflow_engine::Result<Self> {
        let mut out = WatchState::default();
        for b in splits {
            let mut d = StateDecoder::new(b, what);
            for _ in 0..d.count(18)? {
                out.seen.insert(FileSplit::read(&mut d)?.path);
            }
            for _ in 0..d.count(18)? {
                out.pending.push(FileSplit::read(&mut d)?);
            }
            d.end()?;
        }
        Ok(out)
    }
}

struct WatchReader {
    source: DirectoryWatchSource,
    instance: usize,
    parallelism: usize,
    /// Files already taken (read or queued).
    seen: HashSet<PathBuf>,
    /// Files seen once, with (size, mtime), waiting to be stable.
    candidates: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    files: FileSetReader,
    last_poll: Option<std::time::Instant>,
}

impl WatchReader {
    fn owns(&self, p: &Path) -> bool {
        owner(p, self.parallelism) == self.instance
    }

    fn poll(&mut self) -> Result<()> {
        self.last_poll = Some(std::time::Instant::now());
        let mut fresh = Vec::new();
        for p in list_files(&self.source.dir, &self.source.format)? {
            if self.seen.contains(&p) || is_ignored(&p) || !self.owns(&p) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            let stamp = (meta.len(), meta.modified().ok());
            match self.candidates.get(&p) {
                Some(prev) if *prev == stamp => {
                    self.candidates.remove(&p);
                    fresh.push(p);
                }
                _ => {
                    self.candidates.insert(p, stamp);
                }
            }
        }
        fresh.sort();
        for p in fresh {
            self.seen.insert(p.clone());
            self.files.total += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            self.files.files.push_back(Unit::file(p));
        }
        Ok(())
    }
}

impl SourceReader for WatchReader {
    fn next(&mut self) -> ferroflow_engine::Result<SourceEvent> {
        if let Some(b) = self.files.next_batch()? {
            return Ok(SourceEvent::Batch(b));
        }
        let due = self
            .last_poll
            .is_none_or(|t| t.elapsed() >= self.source.poll_interval);
        if due {
            self.poll()?;
            if let Some(b) = self.files.next_batch()? {
                return Ok(SourceEvent::Batch(b));
            }
        }
        Ok(SourceEvent::Idle(self.source.poll_interval))
    }

    fn snapshot(&mut self) -> ferroflow_engine::Result<Vec<Vec<u8>>> {
        let state = WatchState {
            seen: self.seen.clone(),
            pending: self.files.pending(),
        };
        Ok(vec![state.encode()?])
    }
}
