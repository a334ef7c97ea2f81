//! ML stages as dataflow nodes: a fitted model (or any transformer) applied to every batch of
//! a stream, bounded or not.
//!
//! The node's output schema is what the stage gives for an empty batch of the input schema,
//! so a missing or mistyped column fails when the job is built. Vector output columns are
//! declared with the type that holds dense and sparse vectors alike (the sparse struct, a
//! dense row having null `indices`), and each batch is converted to it: one batch may come
//! out dense and the next sparse (VectorAssembler chooses per row) without breaking the
//! stream's schema.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
use ferroflow_engine::{DataStream, EngineError, InstanceInfo, Operator, OperatorFactory, Output};

use crate::stage::AlgoOperator;
use crate::vector::{is_vector_type, read_vectors, sparse_type, vector_column_general};

/// ML stages on a [`DataStream`].
pub trait MlStreamExt {
    /// Apply `stage` (a model, or a transformer that needs no fit) to every batch; node
    /// `name`. Fails now if the stream lacks a column the stage reads.
    fn ml_transform(
        &self,
        name: &str,
        stage: Arc<dyn AlgoOperator>,
    ) -> ferroflow_engine::Result<DataStream>;
}

impl MlStreamExt for DataStream {
    fn ml_transform(
        &self,
        name: &str,
        stage: Arc<dyn AlgoOperator>,
    ) -> ferroflow_engine::Result<DataStream> {
        let input = self.schema();
        let empty = RecordBatch::new_empty(input.clone());
        let probe = stage.transform(&[empty]).map_err(|e| {
            EngineError::Plan(format!("node '{name}' ({}): {e}", stage.class_name()))
        })?;
        let first = probe.into_iter().next().ok_or_else(|| {
            EngineError::Plan(format!(
                "node '{name}': {} produced no table",
                stage.class_name()
            ))
        })?;
        let fields: Vec<Field> = first
            .schema()
            .fields()
            .iter()
            .map(|f| {
                if is_vector_type(f.data_type()) {
                    Field::new(f.name(), sparse_type(), true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        self.transform(name, Arc::new(StageFactory { stage, schema }))
    }
}

struct StageFactory {
    stage: Arc<dyn AlgoOperator>,
    schema: SchemaRef,
}

impl OperatorFactory for StageFactory {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn create(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        Ok(Box::new(StageOperator {
            stage: self.stage.clone(),
            schema: self.schema.clone(),
        }))
    }
}

struct StageOperator {
    stage: Arc<dyn AlgoOperator>,
    schema: SchemaRef,
}

impl Operator for StageOperator {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        let result = self
            .stage
            .transform(&[batch])
            .map_err(|e| EngineError::Other(format!("{}: {e}", self.stage.class_name())))?;
        let Some(table) = result.into_iter().next() else {
            return Ok(());
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let col = table.column_by_name(field.name()).ok_or_else(|| {
                EngineError::Other(format!(
                    "{} gave no column '{}'",
                    self.stage.class_name(),
                    field.name()
                ))
            })?;
            columns.push(
                if field.data_type() == &sparse_type() && col.data_type() != &sparse_type() {
                    let rows = read_vectors(field.name(), col)
                        .map_err(|e| EngineError::Other(e.to_string()))?;
                    vector_column_general(&rows)
                } else {
                    col.clone()
                },
            );
        }
        out.emit(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }
}
