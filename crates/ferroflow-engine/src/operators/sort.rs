//! Sort and top-N of bounded input (one instance; emits when input ends).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ord::sort::{SortColumn, SortOptions, lexsort_to_indices};
use arrow_schema::SchemaRef;
use arrow_select::concat::concat_batches;
use arrow_select::take::take_record_batch;

use crate::error::EngineError;
use crate::error::Result;
use crate::graph::DataStream;
use crate::operator::RestoreContext;
use crate::operator::{InstanceInfo, Operator, OperatorFactory, OperatorState, Output, StateKind};

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// Column to sort by.
    pub column: String,
    /// Largest first.
    pub descending: bool,
    /// Nulls before other values.
    pub nulls_first: bool,
}

impl SortKey {
    /// Ascending, nulls last.
    pub fn asc(column: &str) -> Self {
        SortKey {
            column: column.into(),
            descending: false,
            nulls_first: false,
        }
    }

    /// Descending, nulls last.
    pub fn desc(column: &str) -> Self {
        SortKey {
            column: column.into(),
            descending: true,
            nulls_first: false,
        }
    }
}

struct SortFactory {
    schema: SchemaRef,
    keys: Vec<(usize, SortOptions)>,
    limit: Option<usize>,
}

impl OperatorFactory for SortFactory {
    fn state_kind(&self) -> StateKind {
        StateKind::Instance
    }
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self, _: &InstanceInfo) -> Result<Box<dyn Operator>> {
        Ok(Box::new(SortOperator {
            schema: self.schema.clone(),
            keys: self.keys.clone(),
            limit: self.limit,
            batches: Vec::new(),
            rows: 0,
        }))
    }
}

struct SortOperator {
    schema: SchemaRef,
    keys: Vec<(usize, SortOptions)>,
    limit: Option<usize>,
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl SortOperator {
    fn sorted(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let cols: Vec<SortColumn> = self
            .keys
            .iter()
            .map(|(i, o)| SortColumn {
                values: batch.column(*i).clone(),
                options: Some(*o),
            })
            .collect();
        let idx = lexsort_to_indices(&cols, self.limit)?;
        Ok(take_record_batch(batch, &idx)?)
    }
}

impl Operator for SortOperator {
    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        Ok(Some(OperatorState {
            batches: self.batches.clone(),
            bytes: Vec::new(),
        }))
    }

    fn restore_state(&mut self, states: Vec<OperatorState>, _: &RestoreContext) -> Result<()> {
        for s in states {
            for b in s.batches {
                if b.schema().fields() != self.schema.fields() {
                    return Err(EngineError::State(format!(
                        "saved rows ({}) do not fit this sort's input ({}); was the job changed?",
                        b.schema(),
                        self.schema
                    )));
                }
                self.rows += b.num_rows();
                self.batches.push(b);
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: RecordBatch, _: &mut Output) -> Result<()> {
        self.rows += batch.num_rows();
        self.batches.push(batch);
        // Top-N keeps memory at O(N): compact once the buffer holds twice the limit.
        if let Some(n) = self.limit
            && self.rows > 2 * n.max(1024)
        {
            let all = concat_batches(&self.schema, &self.batches)?;
            let top = self.sorted(&all)?;
            self.rows = top.num_rows();
            self.batches = vec![top];
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        let all = concat_batches(&self.schema, &self.batches)?;
        self.batches.clear();
        out.emit(self.sorted(&all)?);
        Ok(())
    }
}

impl DataStream {
    /// Sort all rows by `keys` (bounded input; emits once input ends).
    pub fn sort(&self, name: &str, keys: &[SortKey]) -> Result<DataStream> {
        self.sort_limit(name, keys, None)
    }

    /// The first `n` rows by `keys` (bounded input; keeps O(n) rows).
    pub fn top_n(&self, name: &str, keys: &[SortKey], n: usize) -> Result<DataStream> {
        self.sort_limit(name, keys, Some(n))
    }

    fn sort_limit(&self, name: &str, keys: &[SortKey], limit: Option<usize>) -> Result<DataStream> {
        let names: Vec<&str> = keys.iter().map(|k| k.column.as_str()).collect();
        let idx = self.column_indices(&names, &format!("sort '{name}'"))?;
        let keys = idx
            .into_iter()
            .zip(keys)
            .map(|(i, k)| {
                (
                    i,
                    SortOptions {
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    },
                )
            })
            .collect();
        self.transform_single(
            name,
            Arc::new(SortFactory {
                schema: self.schema(),
                keys,
                limit,
            }),
        )
    }
}
