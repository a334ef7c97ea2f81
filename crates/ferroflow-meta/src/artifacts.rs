//! The artifact store: files under one root directory, their content hash recorded.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{MetaError, Result};

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    /// `file://` URI of the stored file.
    pub uri: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// Files under a root directory; every path is confined to it.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
        let root = root.canonicalize().map_err(|e| io(root, e))?;
        Ok(ArtifactStore { root })
    }

    /// The absolute path of `relative`, refusing anything that would leave the root
    /// (absolute paths, `..`, and symbolic links pointing outside).
    pub fn resolve(&self, relative: &str) -> Result<PathBuf> {
        let rel = Path::new(relative);
        let bad = |why: &str| MetaError::Invalid {
            field: "path",
            message: format!("'{relative}': {why}"),
        };
        if relative.is_empty() {
            return Err(bad("empty path"));
        }
        for c in rel.components() {
            match c {
                Component::Normal(_) => {}
                Component::CurDir => {}
                _ => return Err(bad("must be relative and stay inside the artifact root")),
            }
        }
        let full = self.root.join(rel);
        // A symlink inside the root could still point out of it: check what exists.
        let mut probe = full.clone();
        while !probe.exists() {
            if !probe.pop() {
                break;
            }
        }
        let real = probe.canonicalize().map_err(|e| io(&probe, e))?;
        if !real.starts_with(&self.root) {
            return Err(bad("leads outside the artifact root"));
        }
        Ok(full)
    }

    /// Write `bytes` at `relative` (atomically: temporary file, then rename) and hash them.
    pub fn put(&self, relative: &str, bytes: &[u8]) -> Result<StoredArtifact> {
        let mut up = self.begin(relative)?;
        up.write(bytes)?;
        up.finish()
    }

    /// Start writing `relative`: a temporary file of its own (a unique name beside the
    /// target, so concurrent uploads never share one), hashed as it is written. Nothing is
    /// visible at `relative` until [`Upload::finish`]; a dropped upload leaves nothing.
    /// Blocking I/O: call it (and the upload's methods) off async worker threads.
    pub fn begin(&self, relative: &str) -> Result<Upload> {
        let path = self.resolve(relative)?;
        let dir = path
            .parent()
            .ok_or_else(|| MetaError::Invalid {
                field: "path",
                message: format!("'{relative}' names no file"),
            })?
            .to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let file = tempfile::Builder::new()
            .prefix(".ff-upload-")
            .tempfile_in(&dir)
            .map_err(|e| io(&dir, e))?;
        Ok(Upload {
            file,
            path,
            dir,
            hash: Sha256::new(),
            size: 0,
        })
    }

    /// Read the file at `relative`.
    pub fn get(&self, relative: &str) -> Result<Vec<u8>> {
        let path = self.resolve(relative)?;
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MetaError::NotFound {
                kind: "artifact file",
                name: relative.to_string(),
            },
            _ => io(&path, e),
        })
    }
}

/// An artifact being written; see [`ArtifactStore::begin`].
#[derive(Debug)]
pub struct Upload {
    file: tempfile::NamedTempFile,
    path: PathBuf,
    dir: PathBuf,
    hash: Sha256,
    size: u64,
}

impl Upload {
    /// Append a chunk.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.file
            .write_all(chunk)
            .map_err(|e| io(self.file.path(), e))?;
        self.hash.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sync the content, rename it into place and sync the directory: once this returns,
    /// the artifact survives a crash, and its hash is the hash of exactly what is there.
    pub fn finish(self) -> Result<StoredArtifact> {
        let Upload {
            file,
            path,
            dir,
            hash,
            size,
        } = self;
        file.as_file().sync_all().map_err(|e| io(file.path(), e))?;
        file.persist(&path).map_err(|e| io(&path, e.error))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&dir, e))?;
        Ok(StoredArtifact {
            uri: format!("file://{}", path.display()),
            sha256: hex(&hash.finalize()),
            size,
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A file-system failure: the server's trouble, never the client's.
fn io(p: &Path, e: std::io::Error) -> MetaError {
    MetaError::Io {
        path: p.display().to_string(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = ArtifactStore::open(&dir.path().join("art")).unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(s.resolve(bad).is_err(), "{bad}");
        }
        std::os::unix::fs::symlink("/tmp", dir.path().join("art/escape")).unwrap();
        assert!(s.resolve("escape/x").is_err());
        let a = s.put("models/m/1.onnx", b"hello").unwrap();
        assert_eq!(
            a.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s.get("models/m/1.onnx").unwrap(), b"hello");
        assert!(matches!(s.get("nope"), Err(MetaError::NotFound { .. })));
    }
}
