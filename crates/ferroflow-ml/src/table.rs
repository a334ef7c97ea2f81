//! Column helpers shared by the stages.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use crate::error::{MlError, Result};
use crate::vector::{Vector, read_vectors};

/// The first input table of a stage call.
pub(crate) fn first(inputs: &[RecordBatch]) -> Result<&RecordBatch> {
    inputs
        .first()
        .ok_or_else(|| MlError::Invalid("no input table".into()))
}

/// Column `name` of `batch`; fails naming it and the columns there are.
pub(crate) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        MlError::column(name, format!("not found (columns: {})", names.join(", ")))
    })
}

/// A vector column's rows.
pub(crate) fn vectors(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Vector>>> {
    read_vectors(name, column(batch, name)?)
}

/// A numeric column as doubles (`None`: null).
pub(crate) fn doubles(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let col = column(batch, name)?;
    if !col.data_type().is_numeric() {
        return Err(MlError::column(
            name,
            format!("type {} is not numeric", col.data_type()),
        ));
    }
    let cast = arrow_cast::cast(col, &DataType::Float64)?;
    Ok(cast.as_primitive::<Float64Type>().iter().collect())
}

/// `batch` with `columns` appended (replacing columns of the same name).
pub(crate) fn with_columns(
    batch: &RecordBatch,
    columns: Vec<(String, ArrayRef)>,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, array) in columns {
        let field = Arc::new(Field::new(&name, array.data_type().clone(), true));
        match fields.iter().position(|f| f.name() == &name) {
            Some(i) => {
                fields[i] = field;
                arrays[i] = array;
            }
            None => {
                fields.push(field);
                arrays.push(array);
            }
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// Keep the rows where `keep` is true.
pub(crate) fn filter_rows(batch: &RecordBatch, keep: &[bool]) -> Result<RecordBatch> {
    if keep.iter().all(|k| *k) {
        return Ok(batch.clone());
    }
    Ok(arrow_select::filter::filter_record_batch(
        batch,
        &BooleanArray::from(keep.to_vec()),
    )?)
}

/// A one-row table of named columns (model data).
pub(crate) fn one_row(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )?)
}

/// The first row of vector column `name` in model data `table`.
pub(crate) fn model_vector(table: &RecordBatch, name: &str) -> Result<Vec<f64>> {
    vectors(table, name)?
        .into_iter()
        .next()
        .flatten()
        .map(|v| v.to_dense())
        .ok_or_else(|| MlError::column(name, "model data has no value"))
}

/// Every non-null training vector, all of one size; a null fails like Flink ML's
/// "The vector must not be null.".
pub(crate) fn training_vectors(batch: &RecordBatch, name: &str) -> Result<Vec<Vector>> {
    let rows = vectors(batch, name)?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, v) in rows.into_iter().enumerate() {
        let v = v.ok_or_else(|| MlError::Row {
            row,
            message: format!("column '{name}': The vector must not be null."),
        })?;
        if let Some(first) = out.first().map(Vector::size)
            && v.size() != first
        {
            return Err(MlError::Row {
                row,
                message: format!(
                    "column '{name}': vector of size {} where the first has size {first}",
                    v.size()
                ),
            });
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(MlError::Invalid(format!(
            "column '{name}': the training table is empty"
        )));
    }
    Ok(out)
}

/// A one-row column holding a list of double arrays (KMeans centroids, bin edges, PCA
/// components).
pub(crate) fn nested_doubles(rows: &[Vec<f64>]) -> ArrayRef {
    let mut b = arrow_array::builder::ListBuilder::new(arrow_array::builder::ListBuilder::new(
        arrow_array::builder::Float64Builder::new(),
    ));
    for r in rows {
        b.values().values().append_slice(r);
        b.values().append(true);
    }
    b.append(true);
    Arc::new(b.finish())
}

/// The list of double arrays in the first row of column `name` (see [`nested_doubles`]).
pub(crate) fn read_nested_doubles(table: &RecordBatch, name: &str) -> Result<Vec<Vec<f64>>> {
    let bad = || MlError::column(name, "expected a list of double arrays");
    let outer = column(table, name)?.as_list_opt::<i32>().ok_or_else(bad)?;
    if outer.is_empty() {
        return Err(bad());
    }
    let inner = outer.value(0);
    let inner = inner.as_list_opt::<i32>().ok_or_else(bad)?;
    (0..inner.len())
        .map(|i| {
            let v = arrow_cast::cast(&inner.value(i), &DataType::Float64)?;
            Ok(v.as_primitive::<Float64Type>().values().to_vec())
        })
        .collect()
}

/// A double usable as an ordered map key (total order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrdF64(pub(crate) f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// The `(version, uri)` of each row of a versions batch (checked at build to have both
/// columns); `None` where either is null.
pub(crate) fn version_rows(
    batch: &RecordBatch,
) -> ferroflow_engine::Result<Vec<Option<(i64, String)>>> {
    let version_col = arrow_cast::cast(
        batch.column_by_name("version").expect("checked at build"),
        &DataType::Int64,
    )?;
    let versions = version_col.as_primitive::<arrow_array::types::Int64Type>();
    let uris = batch
        .column_by_name("uri")
        .expect("checked at build")
        .as_string::<i32>();
    Ok((0..batch.num_rows())
        .map(|i| {
            (versions.is_valid(i) && uris.is_valid(i))
                .then(|| (versions.value(i), uris.value(i).to_string()))
        })
        .collect())
}
