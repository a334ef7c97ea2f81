//! Checkpointed positions shared by the sources: arithmetic progressions of block numbers
//! (generator blocks, memory batches) and file units with the rows already read.
//!
//! A progression `(next, stride)` stands for the blocks `next, next + stride, ...` still to
//! read. Instance `i` of `p` starts with `(i, p)`; cutting `(n, s)` into `(n, 2s)` and
//! `(n + s, 2s)` lets a restore at a higher parallelism give every instance work, and
//! several progressions per reader let a lower parallelism take over the rest.

use std::path::PathBuf;

use ferroflow_engine::Result;
use ferroflow_engine::state::{StateDecoder, StateEncoder};

use crate::error::ConnectorError;

/// Blocks `next, next + stride, ...` not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Progression {
    pub(crate) next: u64,
    pub(crate) stride: u64,
}

impl Progression {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = StateEncoder::new();
        e.u64(self.next).u64(self.stride);
        e.finish()
    }

    pub(crate) fn decode(b: &[u8], what: &str) -> Result<Self> {
        let mut d = StateDecoder::new(b, what);
        let p = Progression {
            next: d.u64()?,
            stride: d.u64()?,
        };
        d.end()?;
        if p.stride == 0 {
            return Err(ConnectorError::Config(format!("{what}: a split with stride 0")).into());
        }
        Ok(p)
    }

    /// Share progressions among `parallelism` readers, cutting the widest ones until every
    /// reader has one (`done` says which have nothing left and may be dropped).
    pub(crate) fn assign(
        splits: Vec<Vec<u8>>,
        parallelism: usize,
        what: &str,
        done: impl Fn(&Progression) -> bool,
    ) -> Result<Vec<Vec<Vec<u8>>>> {
        let mut ps: Vec<Progression> = splits
            .iter()
            .map(|b| Progression::decode(b, what))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|p| !done(p))
            .collect();
        while !ps.is_empty() && ps.len() < parallelism {
            ps.sort_by_key(|p| (p.stride, p.next));
            let p = ps.remove(0);
            let Some(stride) = p.stride.checked_mul(2) else {
                ps.push(p);
                break;
            };
            ps.push(Progression {
                next: p.next,
                stride,
            });
            ps.push(Progression {
                next: p.next + p.stride,
                stride,
            });
        }
        ps.sort();
        let mut out = vec![Vec::new(); parallelism.max(1)];
        for (i, p) in ps.into_iter().enumerate() {
            out[i % parallelism.max(1)].push(p.encode());
        }
        Ok(out)
    }
}

/// A set of progressions read in block order.
#[derive(Debug, Clone)]
pub(crate) struct Progressions(pub(crate) Vec<Progression>);

impl Progressions {
    /// The next block to read (the smallest), without taking it.
    pub(crate) fn peek(&self) -> Option<u64> {
        self.0.iter().map(|p| p.next).min()
    }

    /// Mark block `b` (the one `peek` returned) read.
    pub(crate) fn advance(&mut self, b: u64) {
        if let Some(p) = self.0.iter_mut().find(|p| p.next == b) {
            p.next = p.next.saturating_add(p.stride);
        }
    }

    /// Drop progressions with nothing left.
    pub(crate) fn retain(&mut self, live: impl Fn(&Progression) -> bool) {
        self.0.retain(live);
    }

    pub(crate) fn encode(&self) -> Vec<Vec<u8>> {
        self.0.iter().map(Progression::encode).collect()
    }

    pub(crate) fn decode(splits: &[Vec<u8>], what: &str) -> Result<Self> {
        Ok(Progressions(
            splits
                .iter()
                .map(|b| Progression::decode(b, what))
                .collect::<Result<_>>()?,
        ))
    }
}

/// A file (or some row groups of one) with the rows already read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileSplit {
    pub(crate) path: PathBuf,
    pub(crate) row_groups: Option<Vec<usize>>,
    pub(crate) skip_rows: u64,
}

impl FileSplit {
    pub(crate) fn write(&self, e: &mut StateEncoder) -> Result<()> {
        let path = self.path.to_str().ok_or_else(|| {
            ConnectorError::Config(format!(
                "{}: a path that is not UTF-8 cannot be checkpointed",
                self.path.display()
            ))
        })?;
        e.str(path);
        match &self.row_groups {
            None => {
                e.bool(false);
            }
            Some(rg) => {
                e.bool(true).u64(rg.len() as u64);
                for r in rg {
                    e.u64(*r as u64);
                }
            }
        }
        e.u64(self.skip_rows);
        Ok(())
    }

    pub(crate) fn read(d: &mut StateDecoder<'_>) -> Result<Self> {
        let path = PathBuf::from(d.str()?);
        let row_groups = if d.bool()? {
            let n = d.count(8)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(d.u64()? as usize);
            }
            Some(v)
        } else {
            None
        };
        Ok(FileSplit {
            path,
            row_groups,
            skip_rows: d.u64()?,
        })
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut e = StateEncoder::new();
        self.write(&mut e)?;
        Ok(e.finish())
    }

    pub(crate) fn decode(b: &[u8], what: &str) -> Result<Self> {
        let mut d = StateDecoder::new(b, what);
        let s = Self::read(&mut d)?;
        d.end()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn blocks(splits: &[Vec<u8>], below: u64) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for s in splits {
            let p = Progression::decode(s, "t").unwrap();
            let mut b = p.next;
            while b < below {
                assert!(out.insert(b), "block {b} twice");
                b += p.stride;
            }
        }
        out
    }

    #[test]
    fn rescaled_progressions_cover_each_remaining_block_once() {
        // Two instances at blocks 7 (of 1, 3, 5, ...) and 4 (of 0, 2, 4, ...).
        let old = vec![
            Progression { next: 7, stride: 2 }.encode(),
            Progression { next: 4, stride: 2 }.encode(),
        ];
        let expected = blocks(&old, 200);
        for par in 1..7 {
            let assigned = Progression::assign(old.clone(), par, "t", |_| false).unwrap();
            assert_eq!(assigned.len(), par);
            assert!(assigned.iter().all(|a| !a.is_empty()), "{par}");
            let all: Vec<Vec<u8>> = assigned.into_iter().flatten().collect();
            assert_eq!(blocks(&all, 200), expected, "{par}");
        }
    }

    #[test]
    fn file_splits_round_trip() {
        let s = FileSplit {
            path: "/a/b.csv".into(),
            row_groups: Some(vec![1, 3]),
            skip_rows: 42,
        };
        assert_eq!(FileSplit::decode(&s.encode().unwrap(), "t").unwrap(), s);
        assert!(FileSplit::decode(&s.encode().unwrap()[..5], "t").is_err());
    }
}
