//! A source that watches a directory: files added while the job runs join the stream.
//!
//! Each file is read exactly once. A file is taken only when its size and modification time
//! were the same at two consecutive polls (or it was renamed into place, the recommended way
//! to publish a file); hidden files and `*.tmp`, `*.inprogress`, `*.partial` are ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use arrow_schema::SchemaRef;
use ferroflow_engine::{InstanceInfo, Source, SourceEvent, SourceReader};

use crate::error::{ConnectorError, Result};
use crate::files::{FileFormat, FileSetReader, Unit, is_ignored, list_files};

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
        Ok(Box::new(WatchReader {
            source: self.clone(),
            instance: instance.index,
            parallelism: instance.parallelism,
            seen: HashSet::new(),
            candidates: HashMap::new(),
            files: FileSetReader {
                files: VecDeque::new(),
                current: None,
                format: self.format,
                schema: self.schema.clone(),
                batch_size: self.batch_size,
                dead_letter: None,
                done_bytes: 0,
                current_size: 0,
                total: 0,
            },
            last_poll: None,
        }))
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
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let h = name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        (h % self.parallelism as u64) as usize == self.instance
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
}
