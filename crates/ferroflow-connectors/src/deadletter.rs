//! The dead-letter file: malformed input rows with the reason they were refused.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{ConnectorError, Result};

/// Appends refused rows as JSON lines `{file, line, column, reason, row}`.
pub struct DeadLetter {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("path", &self.path)
            .finish()
    }
}

impl DeadLetter {
    /// Open (append to) the dead-letter file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ConnectorError::io(dir.display(), e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ConnectorError::io(path.display(), e))?;
        Ok(DeadLetter {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::new(f)),
        })
    }

    /// Record one refused row; flushed at once so nothing is lost if the job dies.
    pub fn record(
        &self,
        file: &str,
        line: u64,
        column: &str,
        reason: &str,
        row: &str,
    ) -> Result<()> {
        let v = serde_json::json!({
            "file": file, "line": line, "column": column, "reason": reason, "row": row,
        });
        let mut out = self.out.lock();
        writeln!(out, "{v}")
            .and_then(|_| out.flush())
            .map_err(|e| ConnectorError::io(self.path.display(), e))
    }
}
