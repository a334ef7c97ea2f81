//! Vectors as Flink ML has them (dense and sparse), and their Arrow columns.
//!
//! - A dense vector column is a `List<Float64>` (or `LargeList`, `FixedSizeList`; `Float32`
//!   values are accepted too).
//! - A sparse vector column is a `Struct{size: Int32, indices: List<Int32>, values:
//!   List<Float64>}`. A row whose `indices` is null is a dense vector of `values`: that is how
//!   one column holds both kinds, as Flink ML's `Vector` columns do (VectorAssembler's output).

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, ListArray, StructArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields};

use crate::error::{MlError, Result};

/// A dense or sparse vector of doubles.
#[derive(Debug, Clone, PartialEq)]
pub enum Vector {
    /// Every element.
    Dense(Vec<f64>),
    /// `size` elements, the ones at `indices` (ascending) non-zero.
    Sparse {
        /// Number of elements.
        size: usize,
        /// Positions of the stored values, ascending.
        indices: Vec<usize>,
        /// The stored values.
        values: Vec<f64>,
    },
}

impl Vector {
    /// Number of elements.
    pub fn size(&self) -> usize {
        match self {
            Vector::Dense(v) => v.len(),
            Vector::Sparse { size, .. } => *size,
        }
    }

    /// Element `i`.
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Vector::Dense(v) => v[i],
            Vector::Sparse {
                indices, values, ..
            } => match indices.binary_search(&i) {
                Ok(k) => values[k],
                Err(_) => 0.0,
            },
        }
    }

    /// Every element, as a dense array.
    pub fn to_dense(&self) -> Vec<f64> {
        match self {
            Vector::Dense(v) => v.clone(),
            Vector::Sparse {
                size,
                indices,
                values,
            } => {
                let mut d = vec![0.0; *size];
                for (&i, &v) in indices.iter().zip(values) {
                    d[i] = v;
                }
                d
            }
        }
    }

    /// A sparse vector; indices are sorted (with their values) and checked against `size`.
    pub fn sparse(size: usize, indices: Vec<usize>, values: Vec<f64>) -> Result<Self> {
        if indices.len() != values.len() {
            return Err(MlError::Invalid(format!(
                "sparse vector: {} indices but {} values",
                indices.len(),
                values.len()
            )));
        }
        let mut pairs: Vec<(usize, f64)> = indices.into_iter().zip(values).collect();
        pairs.sort_by_key(|p| p.0);
        if let Some(&(i, _)) = pairs.iter().find(|p| p.0 >= size) {
            return Err(MlError::Invalid(format!(
                "sparse vector: index {i} out of range for size {size}"
            )));
        }
        if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(MlError::Invalid("sparse vector: repeated index".into()));
        }
        Ok(Vector::Sparse {
            size,
            indices: pairs.iter().map(|p| p.0).collect(),
            values: pairs.iter().map(|p| p.1).collect(),
        })
    }

    /// The elements at `indices` (in that order), of the same kind: a sparse vector keeps
    /// only the non-zero ones. Every index must be below `size()`.
    pub fn select(&self, indices: &[usize]) -> Vector {
        match self {
            Vector::Dense(_) => Vector::Dense(indices.iter().map(|&i| self.get(i)).collect()),
            Vector::Sparse { .. } => {
                let (kept, values) = indices
                    .iter()
                    .enumerate()
                    .filter_map(|(k, &i)| {
                        let x = self.get(i);
                        (x != 0.0).then_some((k, x))
                    })
                    .unzip();
                Vector::Sparse {
                    size: indices.len(),
                    indices: kept,
                    values,
                }
            }
        }
    }

    /// Stored (index, value) pairs: every element of a dense vector.
    pub fn stored(&self) -> Box<dyn Iterator<Item = (usize, f64)> + '_> {
        match self {
            Vector::Dense(v) => Box::new(v.iter().copied().enumerate()),
            Vector::Sparse {
                indices, values, ..
            } => Box::new(indices.iter().copied().zip(values.iter().copied())),
        }
    }
}

/// The Arrow type of dense vector columns: `List<Float64>`.
pub fn dense_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

fn sparse_fields() -> Fields {
    Fields::from(vec![
        Field::new("size", DataType::Int32, false),
        Field::new(
            "indices",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
        Field::new("values", dense_type(), false),
    ])
}

/// The Arrow type of columns that hold sparse (or mixed) vectors.
pub fn sparse_type() -> DataType {
    DataType::Struct(sparse_fields())
}

/// Is `dt` a vector column type (dense or sparse)?
pub fn is_vector_type(dt: &DataType) -> bool {
    match dt {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            matches!(f.data_type(), DataType::Float64 | DataType::Float32)
        }
        DataType::Struct(fields) => {
            fields.len() == 3
                && fields.iter().any(|f| f.name() == "size")
                && fields.iter().any(|f| f.name() == "indices")
                && fields.iter().any(|f| f.name() == "values")
        }
        _ => false,
    }
}

fn floats(a: &ArrayRef) -> Result<Vec<f64>> {
    Ok(match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().values().to_vec(),
        DataType::Float32 => a
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|&x| x as f64)
            .collect(),
        other => {
            return Err(MlError::Invalid(format!(
                "vector values of type {other}, expected Float64"
            )));
        }
    })
}

/// Read a vector column (`None` for null rows); fails, naming the column, if it is not one.
pub fn read_vectors(name: &str, col: &ArrayRef) -> Result<Vec<Option<Vector>>> {
    let n = col.len();
    let mut out = Vec::with_capacity(n);
    // Fast path: Float64 values read straight from the buffer (no per-row array slices).
    match col.data_type() {
        DataType::FixedSizeList(_, w) => {
            let l = col.as_fixed_size_list();
            if let Some(values) = f64_values(l.values()) {
                let w = *w as usize;
                for i in 0..n {
                    out.push(
                        (!l.is_null(i)).then(|| Vector::Dense(values[i * w..(i + 1) * w].to_vec())),
                    );
                }
                return Ok(out);
            }
        }
        DataType::List(_) => {
            let l = col.as_list::<i32>();
            if let Some(values) = f64_values(l.values()) {
                let o = l.offsets();
                for i in 0..n {
                    out.push(
                        (!l.is_null(i)).then(|| {
                            Vector::Dense(values[o[i] as usize..o[i + 1] as usize].to_vec())
                        }),
                    );
                }
                return Ok(out);
            }
        }
        _ => {}
    }
    match col.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            for i in 0..n {
                if col.is_null(i) {
                    out.push(None);
                    continue;
                }
                let v = match col.data_type() {
                    DataType::List(_) => col.as_list::<i32>().value(i),
                    DataType::LargeList(_) => col.as_list::<i64>().value(i),
                    _ => col.as_fixed_size_list().value(i),
                };
                out.push(Some(Vector::Dense(
                    floats(&v).map_err(|e| MlError::column(name, e.to_string()))?,
                )));
            }
        }
        DataType::Struct(_) if is_vector_type(col.data_type()) => {
            let s = col.as_struct();
            let size =
                arrow_cast::cast(s.column_by_name("size").expect("checked"), &DataType::Int64)?;
            let size = size.as_primitive::<arrow_array::types::Int64Type>();
            let indices = s
                .column_by_name("indices")
                .expect("checked")
                .as_list::<i32>();
            let values = s
                .column_by_name("values")
                .expect("checked")
                .as_list::<i32>();
            for i in 0..n {
                if s.is_null(i) {
                    out.push(None);
                    continue;
                }
                let vals =
                    floats(&values.value(i)).map_err(|e| MlError::column(name, e.to_string()))?;
                if indices.is_null(i) {
                    out.push(Some(Vector::Dense(vals)));
                    continue;
                }
                let row_err = |message: String| MlError::Row {
                    row: i,
                    message: format!("column '{name}': {message}"),
                };
                // Flink ML's sizes and indices are Java ints: 0 to 2^31 - 1. A negative one
                // must not become a huge usize.
                let sz = size.value(i);
                if !(0..=i32::MAX as i64).contains(&sz) {
                    return Err(row_err(format!(
                        "sparse vector size {sz} is outside 0..={}",
                        i32::MAX
                    )));
                }
                let idx = arrow_cast::cast(&indices.value(i), &DataType::Int64)?;
                let idx: Vec<usize> = idx
                    .as_primitive::<arrow_array::types::Int64Type>()
                    .values()
                    .iter()
                    .map(|&x| {
                        usize::try_from(x)
                            .map_err(|_| row_err(format!("sparse vector index {x} is negative")))
                    })
                    .collect::<Result<_>>()?;
                out.push(Some(Vector::sparse(sz as usize, idx, vals).map_err(
                    |e| MlError::Row {
                        row: i,
                        message: format!("column '{name}': {e}"),
                    },
                )?));
            }
        }
        other => {
            return Err(MlError::column(
                name,
                format!("type {other} is not a vector (a list of Float64, or a sparse struct)"),
            ));
        }
    }
    Ok(out)
}

/// A column of equal-length dense Float64 vectors without nulls as one row-major matrix
/// (one copy of the buffer, no per-row allocation): `(values, width)`. `None` when the column
/// is not that (sparse rows, nulls, ragged lists): callers fall back to [`read_vectors`].
pub fn dense_matrix(col: &ArrayRef) -> Option<(Vec<f64>, usize)> {
    // A plain Float64 column is not a vector column.
    if col.data_type() == &DataType::Float64 {
        return None;
    }
    dense_matrix_view(col).map(|(v, w)| (v.to_vec(), w))
}

/// Like [`dense_matrix`], borrowing the Arrow buffer instead of copying it.
pub fn dense_matrix_view(col: &ArrayRef) -> Option<(&[f64], usize)> {
    if col.null_count() > 0 || col.is_empty() {
        return None;
    }
    match col.data_type() {
        DataType::FixedSizeList(_, w) => {
            let w = *w as usize;
            f64_values(col.as_fixed_size_list().values()).map(|v| (&v[..col.len() * w], w))
        }
        DataType::List(_) => {
            let l = col.as_list::<i32>();
            let v = f64_values(l.values())?;
            let o = l.offsets();
            let w = (o[1] - o[0]) as usize;
            if o.windows(2).any(|p| (p[1] - p[0]) as usize != w) {
                return None;
            }
            Some((&v[o[0] as usize..o[col.len()] as usize], w))
        }
        // A Float64 column is a matrix of width 1.
        DataType::Float64 => f64_values(col).map(|v| (v, 1)),
        _ => None,
    }
}

/// A dense vector column (`List<Float64>`) from a row-major matrix of `width`-wide rows,
/// without per-row allocation.
pub fn dense_matrix_column(values: Vec<f64>, width: usize) -> ArrayRef {
    let rows = values.len().checked_div(width).unwrap_or(0);
    let offsets = arrow_buffer::OffsetBuffer::new(
        (0..=rows)
            .map(|i| (i * width) as i32)
            .collect::<Vec<i32>>()
            .into(),
    );
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Float64, true)),
        offsets,
        Arc::new(arrow_array::Float64Array::from(values)),
        None,
    ))
}

/// Dot product with four accumulators (so the compiler can use vector instructions).
pub fn dot_dense(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// Squared Euclidean distance with four accumulators.
pub fn squared_distance_dense(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// The values of a Float64 array without nulls, borrowed.
fn f64_values(values: &ArrayRef) -> Option<&[f64]> {
    (values.data_type() == &DataType::Float64 && values.null_count() == 0)
        .then(|| &values.as_primitive::<Float64Type>().values()[..])
}

/// A dense vector column from rows (`None`: null).
pub fn dense_column(rows: &[Option<Vec<f64>>]) -> ArrayRef {
    let mut b = ListBuilder::new(Float64Builder::new());
    for r in rows {
        match r {
            Some(v) => {
                b.values().append_slice(v);
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

/// A vector column: dense (`List<Float64>`) when every row is dense, else the sparse struct
/// (dense rows with null `indices`).
pub fn vector_column(rows: &[Option<Vector>]) -> ArrayRef {
    if rows
        .iter()
        .all(|r| !matches!(r, Some(Vector::Sparse { .. })))
    {
        let dense: Vec<Option<Vec<f64>>> = rows
            .iter()
            .map(|r| r.as_ref().map(|v| v.to_dense()))
            .collect();
        return dense_column(&dense);
    }
    vector_column_general(rows)
}

/// A vector column of the sparse struct type whatever the rows (dense rows with null
/// `indices`): the one type every vector column can be converted to.
pub fn vector_column_general(rows: &[Option<Vector>]) -> ArrayRef {
    let mut sizes = Int32Builder::new();
    let mut indices = ListBuilder::new(Int32Builder::new());
    let mut values = ListBuilder::new(Float64Builder::new());
    let mut valid = Vec::with_capacity(rows.len());
    for r in rows {
        match r {
            Some(Vector::Dense(v)) => {
                sizes.append_value(v.len() as i32);
                indices.append(false);
                values.values().append_slice(v);
                values.append(true);
            }
            Some(Vector::Sparse {
                size,
                indices: idx,
                values: vals,
            }) => {
                sizes.append_value(*size as i32);
                for &i in idx {
                    indices.values().append_value(i as i32);
                }
                indices.append(true);
                values.values().append_slice(vals);
                values.append(true);
            }
            None => {
                sizes.append_value(0);
                indices.append(false);
                values.append(true);
            }
        }
        valid.push(r.is_some());
    }
    let list_field = |dt: DataType| Field::new("item", dt, true);
    let indices: ListArray = indices.finish();
    let values: ListArray = values.finish();
    let fields = sparse_fields();
    let _ = list_field;
    Arc::new(StructArray::new(
        fields,
        vec![
            Arc::new(sizes.finish()) as ArrayRef,
            Arc::new(indices),
            Arc::new(values),
        ],
        Some(NullBuffer::from(valid)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_columns_round_trip() {
        let rows = vec![
            Some(Vector::Dense(vec![1.0, 2.0])),
            None,
            Some(Vector::sparse(5, vec![3, 1], vec![3.0, 1.0]).unwrap()),
        ];
        let col = vector_column(&rows);
        assert_eq!(col.data_type(), &sparse_type());
        assert_eq!(read_vectors("v", &col).unwrap(), rows);
        let dense = vector_column(&rows[..2]);
        assert_eq!(dense.data_type(), &dense_type());
        assert_eq!(read_vectors("v", &dense).unwrap(), rows[..2].to_vec());
    }

    #[test]
    fn sparse_vectors_are_checked() {
        assert!(Vector::sparse(2, vec![2], vec![1.0]).is_err());
        assert!(Vector::sparse(3, vec![1, 1], vec![1.0, 2.0]).is_err());
        let v = Vector::sparse(4, vec![3, 0], vec![3.0, 1.0]).unwrap();
        assert_eq!(v.to_dense(), vec![1.0, 0.0, 0.0, 3.0]);
        assert_eq!(v.get(3), 3.0);
    }
}
