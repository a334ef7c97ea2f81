//! File sources and sinks: CSV, JSON lines, Parquet and Arrow IPC.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use ferroflow_engine::{
    InstanceInfo, Progress, Sink, SinkWriter, Source, SourceEvent, SourceReader,
};

use crate::deadletter::DeadLetter;
use crate::error::{ConnectorError, Result};
use crate::format::{BatchReader, BatchWriter, FileFormat, ReadOptions, open_file};
use crate::splits::FileSplit;

/// Is this a file a reader should skip: hidden, or still being written by convention.
pub(crate) fn is_ignored(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.')
        || name.starts_with('_')
        || name.ends_with(".tmp")
        || name.ends_with(".inprogress")
        || name.ends_with(".partial")
}

/// The files of `path`: itself if it is a file, else the matching files in it, sorted.
pub(crate) fn list_files(path: &Path, format: &FileFormat) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| ConnectorError::io(path.display(), e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| ConnectorError::io(path.display(), e))? {
        let entry = entry.map_err(|e| ConnectorError::io(path.display(), e))?;
        let p = entry.path();
        if p.is_file() && !is_ignored(&p) && format.matches(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one file in its format, as rows of the source's schema.
pub(crate) struct FileReader {
    inner: Box<dyn BatchReader>,
    path: String,
}

impl FileReader {
    pub(crate) fn open(path: &Path, format: &FileFormat, read: ReadOptions) -> Result<Self> {
        Ok(FileReader {
            inner: format.format().open(path, read)?,
            path: path.display().to_string(),
        })
    }

    pub(crate) fn next_batch(&mut self, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        // Files may differ from the declared schema in metadata or nullability only.
        Ok(match self.inner.next_batch()? {
            Some(b) if b.schema() != *schema => Some(
                RecordBatch::try_new(schema.clone(), b.columns().to_vec())
                    .map_err(|e| ConnectorError::format(&self.path, e))?,
            ),
            other => other,
        })
    }

    pub(crate) fn position(&self) -> Option<u64> {
        self.inner.position()
    }
}

/// A bounded source over a file or a directory of files of one format.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    files: Vec<PathBuf>,
    format: FileFormat,
    schema: SchemaRef,
    batch_size: usize,
    dead_letter: Option<PathBuf>,
}

impl FileSource {
    /// Read `path` (a file, or every matching file of a directory) in `format`; the schema
    /// comes from the first file. Fails at once if the path is missing or unreadable.
    pub fn new(path: impl AsRef<Path>, format: FileFormat) -> Result<Self> {
        Self::open(path.as_ref(), format, None)
    }

    /// Read `path` in `format` as rows of `schema` (no inference: a malformed first file is
    /// reported row by row when read, not refused up front).
    pub fn with_declared_schema(
        path: impl AsRef<Path>,
        format: FileFormat,
        schema: SchemaRef,
    ) -> Result<Self> {
        Self::open(path.as_ref(), format, Some(schema))
    }

    fn open(path: &Path, format: FileFormat, schema: Option<SchemaRef>) -> Result<Self> {
        let path = path.to_path_buf();
        let files = list_files(&path, &format)?;
        let first = files.first().ok_or_else(|| {
            ConnectorError::Config(format!(
                "{}: no .{} files to read",
                path.display(),
                format.extension()
            ))
        })?;
        let schema = match schema {
            Some(s) => s,
            None => format.schema_of(first)?,
        };
        Ok(FileSource {
            path,
            files,
            format,
            schema,
            batch_size: 8192,
            dead_letter: None,
        })
    }

    /// Like [`FileSource::new`], with the format taken from the extension.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        let probe = if p.is_dir() {
            list_any(p)?
        } else {
            p.to_path_buf()
        };
        let format = FileFormat::from_path(&probe).ok_or_else(|| {
            ConnectorError::Config(format!(
                "{}: cannot tell the file format from the extension; name it",
                p.display()
            ))
        })?;
        Self::new(p, format)
    }

    /// Rows per batch.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Send malformed rows to this JSON-lines file instead of failing the job.
    pub fn with_dead_letter(mut self, path: impl AsRef<Path>) -> Self {
        self.dead_letter = Some(path.as_ref().to_path_buf());
        self
    }

    /// The path given (a file or a directory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema the source produces.
    pub fn schema_ref(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The files this source reads.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// A piece of input one instance reads: a file, or some row groups of a Parquet file.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub(crate) path: PathBuf,
    pub(crate) row_groups: Option<Vec<usize>>,
    pub(crate) bytes: u64,
    /// Rows already read (restored from a checkpoint): skipped when the unit is opened.
    pub(crate) skip_rows: u64,
}

impl Unit {
    pub(crate) fn file(path: PathBuf) -> Self {
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Unit {
            path,
            row_groups: None,
            bytes,
            skip_rows: 0,
        }
    }

    pub(crate) fn from_split(s: FileSplit) -> Self {
        let bytes = std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
        Unit {
            path: s.path,
            row_groups: s.row_groups,
            bytes,
            skip_rows: s.skip_rows,
        }
    }

    pub(crate) fn split(&self, rows_read: u64) -> FileSplit {
        FileSplit {
            path: self.path.clone(),
            row_groups: self.row_groups.clone(),
            skip_rows: rows_read,
        }
    }
}

impl FileSource {
    /// Split the input for `parallelism` readers: whole files, except that Parquet files are
    /// split by row group when there are fewer files than readers.
    fn units(&self, parallelism: usize) -> Result<Vec<Unit>> {
        let whole = || Ok(self.files.iter().cloned().map(Unit::file).collect());
        if self.files.len() >= parallelism {
            return whole();
        }
        let format = self.format.format();
        let mut units = Vec::new();
        for f in &self.files {
            let Some(groups) = format.row_groups(f)? else {
                return whole();
            };
            for (i, bytes) in groups.into_iter().enumerate() {
                units.push(Unit {
                    path: f.clone(),
                    row_groups: Some(vec![i]),
                    bytes,
                    skip_rows: 0,
                });
            }
        }
        Ok(units)
    }
}

fn list_any(dir: &Path) -> Result<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ConnectorError::io(dir.display(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !is_ignored(p) && FileFormat::from_path(p).is_some())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .next()
        .ok_or_else(|| ConnectorError::Config(format!("{}: no readable data files", dir.display())))
}

impl Source for FileSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn validate(&self) -> ferroflow_engine::Result<()> {
        for f in &self.files {
            open_file(f)?;
        }
        Ok(())
    }

    fn create_reader(
        &self,
        instance: &InstanceInfo,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        let units = self.units(instance.parallelism)?;
        let files: Vec<Unit> = units
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % instance.parallelism == instance.index)
            .map(|(_, u)| u)
            .collect();
        self.reader(files)
    }

    fn supports_checkpoints(&self) -> bool {
        true
    }

    fn restore_reader(
        &self,
        instance: &InstanceInfo,
        splits: Vec<Vec<u8>>,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        let units = splits
            .iter()
            .map(|b| FileSplit::decode(b, &instance.node).map(Unit::from_split))
            .collect::<ferroflow_engine::Result<Vec<_>>>()?;
        self.reader(units)
    }
}

impl FileSource {
    fn reader(&self, files: Vec<Unit>) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        let total = files.iter().map(|u| u.bytes).sum();
        let dead_letter = match &self.dead_letter {
            Some(p) => Some(Arc::new(DeadLetter::open(p)?)),
            None => None,
        };
        Ok(Box::new(FileSetReader::new(
            files,
            self.format,
            self.schema.clone(),
            self.batch_size,
            dead_letter,
            total,
        )))
    }
}

/// Reads a list of files one after the other.
pub(crate) struct FileSetReader {
    pub(crate) files: std::collections::VecDeque<Unit>,
    pub(crate) current: Option<FileReader>,
    /// The unit being read and the rows it has given so far (its checkpointed position).
    current_unit: Option<(Unit, u64)>,
    pub(crate) format: FileFormat,
    pub(crate) schema: SchemaRef,
    pub(crate) batch_size: usize,
    pub(crate) dead_letter: Option<Arc<DeadLetter>>,
    pub(crate) done_bytes: u64,
    pub(crate) current_size: u64,
    pub(crate) total: u64,
}

impl FileSetReader {
    pub(crate) fn new(
        files: Vec<Unit>,
        format: FileFormat,
        schema: SchemaRef,
        batch_size: usize,
        dead_letter: Option<Arc<DeadLetter>>,
        total: u64,
    ) -> Self {
        FileSetReader {
            files: files.into_iter().collect(),
            current: None,
            current_unit: None,
            format,
            schema,
            batch_size,
            dead_letter,
            done_bytes: 0,
            current_size: 0,
            total,
        }
    }

    /// Next batch from the files, `None` when all are read.
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.current.is_none() {
                let Some(unit) = self.files.pop_front() else {
                    return Ok(None);
                };
                self.current_size = unit.bytes;
                let read = ReadOptions {
                    schema: self.schema.clone(),
                    batch_size: self.batch_size,
                    dead_letter: self.dead_letter.clone(),
                    row_groups: unit.row_groups.clone(),
                };
                self.current = Some(FileReader::open(&unit.path, &self.format, read)?);
                self.current_unit = Some((unit, 0));
            }
            let r = self.current.as_mut().expect("opened above");
            let (unit, read) = self.current_unit.as_mut().expect("opened above");
            match r.next_batch(&self.schema)? {
                Some(b) => {
                    let n = b.num_rows() as u64;
                    let start = *read;
                    *read += n;
                    // Rows before the restored position were emitted by an earlier run.
                    if *read <= unit.skip_rows {
                        continue;
                    }
                    let skip = unit.skip_rows.saturating_sub(start);
                    return Ok(Some(if skip > 0 {
                        b.slice(skip as usize, (n - skip) as usize)
                    } else {
                        b
                    }));
                }
                None => {
                    if let Some((unit, read)) = self.current_unit.take()
                        && read < unit.skip_rows
                    {
                        return Err(ConnectorError::format(
                            unit.path.display(),
                            format!(
                                "has {read} rows, fewer than the {} a checkpoint says were read: the file changed since",
                                unit.skip_rows
                            ),
                        ));
                    }
                    self.current = None;
                    self.done_bytes += self.current_size;
                    self.current_size = 0;
                }
            }
        }
    }

    /// What is left to read: the current unit with the rows read, then the queued ones.
    pub(crate) fn pending(&self) -> Vec<FileSplit> {
        let current = self
            .current_unit
            .iter()
            .map(|(unit, read)| unit.split((*read).max(unit.skip_rows)));
        current
            .chain(self.files.iter().map(|u| u.split(u.skip_rows)))
            .collect()
    }

    /// What is left to read, as checkpoint splits.
    pub(crate) fn splits(&self) -> ferroflow_engine::Result<Vec<Vec<u8>>> {
        self.pending().iter().map(FileSplit::encode).collect()
    }
}

impl SourceReader for FileSetReader {
    fn next(&mut self) -> ferroflow_engine::Result<SourceEvent> {
        Ok(match self.next_batch()? {
            Some(b) => SourceEvent::Batch(b),
            None => SourceEvent::End,
        })
    }

    fn snapshot(&mut self) -> ferroflow_engine::Result<Vec<Vec<u8>>> {
        self.splits()
    }

    fn progress(&self) -> Option<Progress> {
        let within = self
            .current
            .as_ref()
            .and_then(|c| c.position())
            .unwrap_or(0)
            .min(self.current_size);
        Some(Progress {
            done: self.done_bytes + within,
            total: Some(self.total),
        })
    }
}

/// Writes batches to files of one format.
///
/// With one instance and a path that has an extension, writes that file; otherwise `path` is
/// a directory and instance i writes `part-<i>.<ext>` in it. Files are written under a
/// temporary name and renamed when complete, so readers never see half a file.
#[derive(Debug, Clone)]
pub struct FileSink {
    path: PathBuf,
    format: FileFormat,
    /// fsync a file written at the end of input before it is renamed into place.
    sync_at_end: bool,
}

impl FileSink {
    /// A sink writing `format` at `path`.
    pub fn new(path: impl AsRef<Path>, format: FileFormat) -> Self {
        FileSink {
            path: path.as_ref().to_path_buf(),
            format,
            sync_at_end: true,
        }
    }

    /// Do not fsync the file written at the end of input (a one-shot command's output, as
    /// ordinary tools write files); the rename into place still hides a half-written file.
    /// Files committed at checkpoints are always synced: exactly-once depends on it.
    pub fn without_sync_at_end(mut self) -> Self {
        self.sync_at_end = false;
        self
    }

    /// Like [`FileSink::new`], with the format taken from the extension.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        let format = FileFormat::from_path(p).ok_or_else(|| {
            ConnectorError::Config(format!(
                "{}: cannot tell the file format from the extension; name it",
                p.display()
            ))
        })?;
        Ok(Self::new(p, format))
    }
}

impl FileSink {
    /// The directory its files go to: the path itself, or the parent of a one-file path.
    fn dir(&self) -> PathBuf {
        if self.path.extension().is_none() {
            return self.path.clone();
        }
        match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        }
    }
}

impl Sink for FileSink {
    fn parallelism_hint(&self) -> Option<usize> {
        // A path with an extension names one file: one writer.
        self.path.extension().map(|_| 1)
    }

    fn check_schema(&self, schema: &Schema) -> ferroflow_engine::Result<()> {
        Ok(self.format.format().check_writable(schema)?)
    }

    fn create_writer(
        &self,
        instance: &InstanceInfo,
        schema: SchemaRef,
    ) -> ferroflow_engine::Result<Box<dyn SinkWriter>> {
        let single = instance.parallelism == 1 && self.path.extension().is_some();
        if !single && self.path.extension().is_some() {
            return Err(ConnectorError::Config(format!(
                "{}: one file cannot take {} parallel writers; name a directory instead",
                self.path.display(),
                instance.parallelism
            ))
            .into());
        }
        let target = if single {
            self.path.clone()
        } else {
            self.path.join(format!(
                "part-{}.{}",
                instance.index,
                self.format.extension()
            ))
        };
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(dir.display(), e))?;
        let mut w = FileSinkWriter {
            format: self.format,
            schema,
            current: None,
            target,
            single,
            dir,
            run: instance.run.clone(),
            index: instance.index,
            opened: 0,
            committing: false,
            sync_at_end: self.sync_at_end,
        };
        // Jobs without checkpoints write their one file even when no row arrives.
        w.open()?;
        Ok(Box::new(w))
    }

    fn commit(&self, committables: &[Vec<u8>]) -> ferroflow_engine::Result<()> {
        let mut dirs = std::collections::BTreeSet::new();
        for c in committables {
            let (pending, visible) = decode_commit(c)?;
            if pending.exists() {
                std::fs::rename(&pending, &visible)
                    .map_err(|e| ConnectorError::io(visible.display(), e))?;
            } else if !visible.exists() {
                return Err(ConnectorError::format(
                    pending.display(),
                    "a pre-committed part file is gone: output of a completed checkpoint was lost",
                )
                .into());
            }
            if let Some(d) = visible.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in dirs {
            sync_dir(&d)?;
        }
        Ok(())
    }

    fn recover(&self, run: &str, committables: &[Vec<u8>]) -> ferroflow_engine::Result<()> {
        self.commit(committables)?;
        // Hidden files of this run not committed by the restored checkpoint were written
        // after it: that output will be written again.
        let dir = self.dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let prefix = format!(".part-{run}-");
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_str().is_some_and(|n| n.starts_with(&prefix)) {
                let p = e.path();
                std::fs::remove_file(&p).map_err(|e| ConnectorError::io(p.display(), e))?;
            }
        }
        Ok(())
    }
}

fn sync_dir(d: &Path) -> Result<()> {
    File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(|e| ConnectorError::io(d.display(), e))
}

fn encode_commit(pending: &Path, visible: &Path) -> Result<Vec<u8>> {
    let mut e = ferroflow_engine::state::StateEncoder::new();
    for p in [pending, visible] {
        e.str(p.to_str().ok_or_else(|| {
            ConnectorError::Config(format!(
                "{}: a path that is not UTF-8 cannot be committed",
                p.display()
            ))
        })?);
    }
    Ok(e.finish())
}

fn decode_commit(b: &[u8]) -> ferroflow_engine::Result<(PathBuf, PathBuf)> {
    let mut d = ferroflow_engine::state::StateDecoder::new(b, "file sink commit");
    let pending = PathBuf::from(d.str()?);
    let visible = PathBuf::from(d.str()?);
    d.end()?;
    Ok((pending, visible))
}

/// Writes one instance's part files. Without checkpoints: one file, renamed into place at
/// `finish`. With checkpoints: a file per epoch, closed and synced under a hidden name at
/// each barrier (`pre_commit`) and renamed to `part-<run>-<instance>-<epoch>` when the
/// checkpoint completes (`Sink::commit`).
struct FileSinkWriter {
    format: FileFormat,
    schema: SchemaRef,
    /// The open file, its temporary path and rows written to it.
    current: Option<(Box<dyn BatchWriter>, PathBuf, u64)>,
    target: PathBuf,
    single: bool,
    dir: PathBuf,
    run: String,
    index: usize,
    /// Files opened so far (names temporaries uniquely).
    opened: u64,
    /// Pre-committed at least once: output goes out through commits, not `finish`.
    committing: bool,
    sync_at_end: bool,
}

impl FileSinkWriter {
    fn open(&mut self) -> ferroflow_engine::Result<()> {
        self.opened += 1;
        let tmp = self.dir.join(format!(
            ".part-{}-{}-{}.inprogress",
            self.run, self.index, self.opened
        ));
        let file = File::create(&tmp).map_err(|e| ConnectorError::io(tmp.display(), e))?;
        let display = self.target.display().to_string();
        let writer = self.format.format().create(file, &self.schema, &display)?;
        self.current = Some((writer, tmp, 0));
        Ok(())
    }

    /// Finish the open file's format, flush and (with `sync`) sync it; returns its temporary
    /// path.
    fn close(&mut self, sync: bool) -> ferroflow_engine::Result<Option<(PathBuf, u64)>> {
        let Some((writer, tmp, rows)) = self.current.take() else {
            return Ok(None);
        };
        let display = self.target.display().to_string();
        let file = writer
            .finish()
            .map_err(|e| ConnectorError::format(&display, e))?;
        if sync {
            file.sync_all()
                .map_err(|e| ConnectorError::io(tmp.display(), e))?;
        }
        Ok(Some((tmp, rows)))
    }
}

impl SinkWriter for FileSinkWriter {
    fn write(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        if self.current.is_none() {
            self.open()?;
        }
        let display = self.target.display().to_string();
        let (w, _, rows) = self.current.as_mut().expect("opened above");
        *rows += batch.num_rows() as u64;
        let r = w.write(&batch);
        r.map_err(|e| ConnectorError::format(display, e).into())
    }

    fn finish(&mut self) -> ferroflow_engine::Result<()> {
        if self.committing {
            // Everything went out through pre-commits; an unflushed tail is a bug upstream.
            self.abort();
            return Ok(());
        }
        if self.current.is_none() {
            self.open()?;
        }
        let display = self.target.display().to_string();
        let (tmp, _) = self.close(self.sync_at_end)?.expect("opened above");
        std::fs::rename(&tmp, &self.target).map_err(|e| ConnectorError::io(&display, e))?;
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> ferroflow_engine::Result<Vec<Vec<u8>>> {
        if self.single {
            return Err(ConnectorError::Config(format!(
                "{}: a sink writing one file cannot commit output at checkpoints or a stop; name a directory instead",
                self.target.display()
            ))
            .into());
        }
        self.committing = true;
        let Some((tmp, rows)) = self.close(true)? else {
            return Ok(Vec::new());
        };
        if rows == 0 {
            std::fs::remove_file(&tmp).map_err(|e| ConnectorError::io(tmp.display(), e))?;
            return Ok(Vec::new());
        }
        let ext = self.format.extension();
        let name = format!("part-{}-{}-{epoch}.{ext}", self.run, self.index);
        let pending = self.dir.join(format!(".{name}.pending"));
        std::fs::rename(&tmp, &pending).map_err(|e| ConnectorError::io(pending.display(), e))?;
        sync_dir(&self.dir)?;
        Ok(vec![encode_commit(&pending, &self.dir.join(name))?])
    }

    fn abort(&mut self) {
        // Best effort: the temporary file is hidden and ignored by readers anyway.
        // Pre-committed files stay: a restore commits or removes them.
        if let Some((_, tmp, _)) = self.current.take() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
