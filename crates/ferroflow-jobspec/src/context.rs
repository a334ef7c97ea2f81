//! Where a spec came from, and the context a factory builds one entry in: paths relative
//! to the spec, errors that point at the entry's line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{Field, Schema, SchemaRef};

use crate::error::{Result, SpecError};
use crate::spec::{ColumnSpec, Settings};
use crate::values::{parse_duration, parse_type};

/// The spec's text (to find lines), its name in errors and the directory paths resolve in.
pub(crate) struct Place<'a> {
    pub(crate) text: &'a str,
    pub(crate) origin: &'a str,
    pub(crate) base: &'a Path,
}

impl Place<'_> {
    /// The line of the list entry `- name: <name>` (block or flow style) or of the job's
    /// `name:`, to point errors at the spec. The least indented one wins: sources, nodes and sinks are listed above
    /// their columns, which have names too.
    pub(crate) fn line_of(&self, name: &str) -> Option<usize> {
        self.text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| {
                let rest = l.trim_start();
                let indent = l.len() - rest.len();
                // A list entry, or the job's own `name:` at the top.
                let rest = match rest.strip_prefix('-') {
                    Some(r) => r.trim_start(),
                    None if indent == 0 => rest,
                    None => return None,
                };
                let rest = rest.strip_prefix('{').unwrap_or(rest).trim_start();
                let value = rest.strip_prefix("name:")?;
                let value = value.split([',', '}', '#']).next()?.trim();
                let value = value.trim_matches(|c| c == '"' || c == '\'');
                (value == name).then_some((indent, i + 1))
            })
            .min()
            .map(|(_, line)| line)
    }

    pub(crate) fn err(&self, node: &str, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.origin.to_string(),
            line: self.line_of(node),
            node: node.to_string(),
            message: message.into(),
        }
    }

    /// `source`, a library's error, as the error of `node`.
    pub(crate) fn err_from(
        &self,
        node: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> SpecError {
        SpecError::Node {
            file: self.origin.to_string(),
            line: self.line_of(node),
            node: node.to_string(),
            source: source.into(),
        }
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(crate) fn duration(&self, node: &str, s: &str) -> Result<Duration> {
        match parse_duration(s) {
            Ok((d, false)) => Ok(d),
            Ok((_, true)) => Err(self.err(node, format!("duration '{s}' must not be negative"))),
            Err(e) => Err(self.err(node, e)),
        }
    }

    pub(crate) fn signed_ms(&self, node: &str, s: &str) -> Result<i64> {
        let (d, neg) = parse_duration(s).map_err(|e| self.err(node, e))?;
        let ms = d.as_millis() as i64;
        Ok(if neg { -ms } else { ms })
    }

    pub(crate) fn schema(&self, node: &str, cols: &[ColumnSpec]) -> Result<SchemaRef> {
        let fields = cols
            .iter()
            .map(|c| {
                let t = parse_type(&c.data_type)
                    .map_err(|e| self.err(node, format!("column '{}': {e}", c.name)))?;
                Ok(Field::new(&c.name, t, c.nullable.unwrap_or(true)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// What a factory may use while it builds one entry of a spec: the entry's name, paths
/// relative to the spec, and errors that point at the entry's line.
pub struct BuildContext<'a> {
    pub(crate) place: &'a Place<'a>,
    pub(crate) node: &'a str,
}

impl BuildContext<'_> {
    /// The name of the source, node or sink being built.
    pub fn node(&self) -> &str {
        self.node
    }

    /// `p` resolved against the spec file's directory (absolute paths as given).
    pub fn path(&self, p: &str) -> PathBuf {
        self.place.path(p)
    }

    /// A non-negative duration such as `500ms` or `10s`.
    pub fn duration(&self, s: &str) -> Result<Duration> {
        self.place.duration(self.node, s)
    }

    /// A declared schema.
    pub fn schema(&self, cols: &[ColumnSpec]) -> Result<SchemaRef> {
        self.place.schema(self.node, cols)
    }

    /// The settings read as `T`, or an error naming the entry and the field at fault.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, settings: &Settings) -> Result<T> {
        settings.parse().map_err(|m| self.err(m))
    }

    /// An error of this entry.
    pub fn err(&self, message: impl Into<String>) -> SpecError {
        self.place.err(self.node, message)
    }

    /// A library's error as the error of this entry (kept as the source).
    pub fn err_from(
        &self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> SpecError {
        self.place.err_from(self.node, source)
    }
}
