//! Stateless operators: map, flat_map and filter with Rust closures, and union.

use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::SchemaRef;
use arrow_select::filter::filter_record_batch;

use crate::error::{EngineError, Result, plan_err};
use crate::graph::{DataStream, check_same_schema};
use crate::operator::{InstanceInfo, Operator, OperatorFactory, Output};

type MapFn = dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync;
type FlatMapFn = dyn Fn(RecordBatch) -> Result<Vec<RecordBatch>> + Send + Sync;
type PredicateFn = dyn Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync;

#[derive(Clone)]
enum Kind {
    Map(Arc<MapFn>),
    FlatMap(Arc<FlatMapFn>),
    Filter(Arc<PredicateFn>),
    Union,
}

struct BasicFactory {
    schema: SchemaRef,
    kind: Kind,
}

impl OperatorFactory for BasicFactory {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self, _: &InstanceInfo) -> Result<Box<dyn Operator>> {
        Ok(Box::new(BasicOperator {
            schema: self.schema.clone(),
            kind: self.kind.clone(),
        }))
    }
}

struct BasicOperator {
    schema: SchemaRef,
    kind: Kind,
}

impl BasicOperator {
    /// A closure's output must match the schema it declared.
    fn checked(&self, b: RecordBatch) -> Result<RecordBatch> {
        let s = b.schema();
        let same = s.fields().len() == self.schema.fields().len()
            && s.fields()
                .iter()
                .zip(self.schema.fields().iter())
                .all(|(a, e)| a.name() == e.name() && a.data_type() == e.data_type());
        if !same {
            return Err(EngineError::Other(format!(
                "the function returned columns ({}) that differ from its declared output schema ({})",
                fields(&s),
                fields(&self.schema)
            )));
        }
        if s == self.schema {
            Ok(b)
        } else {
            Ok(b.with_schema(self.schema.clone())?)
        }
    }
}

fn fields(s: &SchemaRef) -> String {
    s.fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Operator for BasicOperator {
    fn process_batch(&mut self, _: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        match &self.kind {
            Kind::Map(f) => {
                let b = f(batch)?;
                out.emit(self.checked(b)?);
            }
            Kind::FlatMap(f) => {
                for b in f(batch)? {
                    out.emit(self.checked(b)?);
                }
            }
            Kind::Filter(p) => {
                let mask = p(&batch)?;
                if mask.len() != batch.num_rows() {
                    return Err(EngineError::Other(format!(
                        "the predicate returned {} values for {} rows",
                        mask.len(),
                        batch.num_rows()
                    )));
                }
                out.emit(filter_record_batch(&batch, &mask)?);
            }
            Kind::Union => out.emit(batch),
        }
        Ok(())
    }
}

impl DataStream {
    /// Transform each batch with `f`, which must return batches of `schema`.
    pub fn map<F>(&self, name: &str, schema: SchemaRef, f: F) -> Result<DataStream>
    where
        F: Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
    {
        self.transform(
            name,
            Arc::new(BasicFactory {
                schema,
                kind: Kind::Map(Arc::new(f)),
            }),
        )
    }

    /// Turn each batch into any number of batches of `schema`.
    pub fn flat_map<F>(&self, name: &str, schema: SchemaRef, f: F) -> Result<DataStream>
    where
        F: Fn(RecordBatch) -> Result<Vec<RecordBatch>> + Send + Sync + 'static,
    {
        self.transform(
            name,
            Arc::new(BasicFactory {
                schema,
                kind: Kind::FlatMap(Arc::new(f)),
            }),
        )
    }

    /// Keep the rows for which `predicate` returns true (null counts as false).
    pub fn filter_fn<F>(&self, name: &str, predicate: F) -> Result<DataStream>
    where
        F: Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync + 'static,
    {
        self.transform(
            name,
            Arc::new(BasicFactory {
                schema: self.schema(),
                kind: Kind::Filter(Arc::new(predicate)),
            }),
        )
    }

    /// Merge this stream with `others`; all must have the same columns and types.
    pub fn union(&self, name: &str, others: &[&DataStream]) -> Result<DataStream> {
        if others.is_empty() {
            return plan_err(format!("union '{name}' needs at least two inputs"));
        }
        for o in others {
            check_same_schema(
                &self.schema(),
                &self.node_name(),
                &o.schema(),
                &o.node_name(),
                &format!("union '{name}'"),
            )?;
        }
        self.transform_multi(
            name,
            others,
            Arc::new(BasicFactory {
                schema: self.schema(),
                kind: Kind::Union,
            }),
        )
    }
}
