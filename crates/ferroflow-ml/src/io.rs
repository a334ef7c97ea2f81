//! Tables as JSON lines, in the encoding Flink ML's conformance vectors use: one object per
//! row; doubles as numbers, or `"NaN"`, `"Infinity"`, `"-Infinity"`; integers as integers; a
//! dense vector as an array of numbers; a sparse vector as `{"size", "indices", "values"}`;
//! arrays of strings as themselves.
//!
//! Column types are inferred: a column of integers only is `Int64`, of numbers (and
//! non-finite strings) `Float64`, arrays of numbers a dense vector, sparse objects (possibly
//! mixed with arrays) a sparse vector column, arrays of strings `List<Utf8>`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{Map, Value};

use crate::error::{MlError, Result};
use crate::params::{f64_json, json_f64};
use crate::vector::{Vector, is_vector_type, read_vectors, vector_column};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Unknown,
    Int,
    Double,
    Bool,
    Str,
    Strings,
    StringLists,
    /// Arrays of numbers (OnlineKMeans's `centroids`): `List<List<Float64>>`.
    DoubleLists,
    /// An empty array, or one of nulls: any kind of list.
    AnyList,
    Dense,
    Sparse,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Unknown,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Int,
        Value::Number(_) => Kind::Double,
        Value::String(_) if json_f64(v).is_some() => Kind::Double,
        Value::String(_) => Kind::Str,
        Value::Array(a) if a.iter().all(Value::is_null) => Kind::AnyList,
        Value::Array(a)
            if a.iter().all(|x| x.is_string() || x.is_null())
                && a.iter().any(|x| x.is_string() && json_f64(x).is_none()) =>
        {
            Kind::Strings
        }
        Value::Array(a)
            if !a.is_empty()
                && a.iter()
                    .all(|x| x.as_array().is_some_and(|i| i.iter().all(Value::is_string))) =>
        {
            Kind::StringLists
        }
        Value::Array(a)
            if !a.is_empty()
                && a.iter().all(|x| {
                    x.as_array()
                        .is_some_and(|i| i.iter().all(|y| y.is_null() || json_f64(y).is_some()))
                }) =>
        {
            Kind::DoubleLists
        }
        Value::Array(_) => Kind::Dense,
        Value::Object(o) if o.contains_key("indices") => Kind::Sparse,
        Value::Object(_) => Kind::Unknown,
    }
}

fn merge(a: Kind, b: Kind) -> Option<Kind> {
    use Kind::*;
    Some(match (a, b) {
        (x, Unknown) | (Unknown, x) => x,
        (x, y) if x == y => x,
        (Int, Double) | (Double, Int) => Double,
        // A numeric column with "NaN" strings was read as Double already.
        (Dense, Sparse) | (Sparse, Dense) => Sparse,
        (AnyList, x @ (Dense | Sparse | Strings | StringLists | DoubleLists))
        | (x @ (Dense | Sparse | Strings | StringLists | DoubleLists), AnyList) => x,
        _ => return None,
    })
}

fn vector_of(v: &Value, row: usize, col: &str) -> Result<Vector> {
    let bad = |m: &str| MlError::Row {
        row,
        message: format!("column '{col}': {m}"),
    };
    match v {
        Value::Array(a) => Ok(Vector::Dense(
            a.iter()
                .map(|x| json_f64(x).ok_or_else(|| bad(&format!("{x} is not a number"))))
                .collect::<Result<_>>()?,
        )),
        Value::Object(o) => {
            let size = o
                .get("size")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("sparse vector without an integer 'size'"))?;
            // Flink ML's sizes are Java ints.
            if size > i32::MAX as u64 {
                return Err(bad(&format!(
                    "sparse vector size {size} is larger than {}",
                    i32::MAX
                )));
            }
            let indices = o
                .get("indices")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_u64().map(|x| x as usize))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad("sparse vector without integer 'indices'"))?;
            let values = o
                .get("values")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(json_f64).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad("sparse vector without numeric 'values'"))?;
            Vector::sparse(size as usize, indices, values).map_err(|e| bad(&e.to_string()))
        }
        other => Err(bad(&format!("{other} is not a vector"))),
    }
}

/// Rows (JSON objects) into a table; columns in order of first appearance.
pub fn rows_to_batch(rows: &[Map<String, Value>]) -> Result<RecordBatch> {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        for k in r.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for name in &names {
        let cells: Vec<&Value> = rows
            .iter()
            .map(|r| r.get(name).unwrap_or(&Value::Null))
            .collect();
        let mut kind = Kind::Unknown;
        for (row, c) in cells.iter().enumerate() {
            kind = merge(kind, kind_of(c)).ok_or_else(|| MlError::Row {
                row,
                message: format!("column '{name}': {c} does not match the column's other values"),
            })?;
        }
        let array: ArrayRef = match kind {
            Kind::Int => Arc::new(cells.iter().map(|c| c.as_i64()).collect::<Int64Array>()),
            Kind::Double => Arc::new(cells.iter().map(|c| json_f64(c)).collect::<Float64Array>()),
            Kind::Bool => Arc::new(cells.iter().map(|c| c.as_bool()).collect::<BooleanArray>()),
            Kind::Str | Kind::Unknown => {
                Arc::new(cells.iter().map(|c| c.as_str()).collect::<StringArray>())
            }
            Kind::Strings | Kind::AnyList => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for c in &cells {
                    match c.as_array() {
                        Some(a) => {
                            for s in a {
                                b.values().append_option(s.as_str());
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::StringLists => {
                let mut b = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
                for c in &cells {
                    match c.as_array() {
                        Some(outer) => {
                            for inner in outer {
                                for s in inner.as_array().into_iter().flatten() {
                                    b.values().values().append_option(s.as_str());
                                }
                                b.values().append(true);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::DoubleLists => {
                let mut b = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
                for c in &cells {
                    match c.as_array() {
                        Some(outer) => {
                            for inner in outer {
                                for x in inner.as_array().into_iter().flatten() {
                                    b.values().values().append_option(json_f64(x));
                                }
                                b.values().append(true);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Dense | Kind::Sparse => {
                let vs = cells
                    .iter()
                    .enumerate()
                    .map(|(row, c)| {
                        if c.is_null() {
                            Ok(None)
                        } else {
                            vector_of(c, row, name).map(Some)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                vector_column(&vs)
            }
        };
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    if fields.is_empty() {
        return Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// Read a JSON-lines file into one table.
pub fn read_jsonl(path: &Path) -> Result<RecordBatch> {
    let file = std::fs::File::open(path).map_err(|e| MlError::io(path.display(), e))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| MlError::io(path.display(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| MlError::io(format!("{}:{}", path.display(), i + 1), e))?;
        match v {
            Value::Object(o) => rows.push(o),
            _ => {
                return Err(MlError::io(
                    format!("{}:{}", path.display(), i + 1),
                    "a row must be a JSON object",
                ));
            }
        }
    }
    rows_to_batch(&rows)
}

fn vector_json(v: &Vector) -> Value {
    match v {
        Vector::Dense(x) => Value::Array(x.iter().map(|&a| f64_json(a)).collect()),
        Vector::Sparse {
            size,
            indices,
            values,
        } => serde_json::json!({
            "size": size,
            "indices": indices,
            "values": values.iter().map(|&a| f64_json(a)).collect::<Vec<_>>(),
        }),
    }
}

/// A table as JSON objects, one per row.
pub fn batch_to_rows(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>> {
    let mut rows: Vec<Map<String, Value>> = vec![Map::new(); batch.num_rows()];
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name();
        let cells = column_cells(name, col)?;
        for (row, cell) in rows.iter_mut().zip(cells) {
            row.insert(name.clone(), cell);
        }
    }
    Ok(rows)
}

/// The cells of column `name` as JSON values, in row order.
fn column_cells(name: &str, col: &ArrayRef) -> Result<Vec<Value>> {
    if is_vector_type(col.data_type()) {
        return Ok(read_vectors(name, col)?
            .iter()
            .map(|v| v.as_ref().map_or(Value::Null, vector_json))
            .collect());
    }
    Ok(match col.data_type() {
        DataType::Float64 | DataType::Float32 => {
            let c = arrow_cast::cast(col, &DataType::Float64)?;
            c.as_primitive::<Float64Type>()
                .iter()
                .map(|x| x.map_or(Value::Null, f64_json))
                .collect()
        }
        dt if dt.is_integer() => {
            let c = arrow_cast::cast(col, &DataType::Int64)?;
            c.as_primitive::<Int64Type>()
                .iter()
                .map(|x| x.map_or(Value::Null, Value::from))
                .collect()
        }
        DataType::Boolean => col
            .as_boolean()
            .iter()
            .map(|x| x.map_or(Value::Null, Value::from))
            .collect(),
        DataType::List(_) | DataType::Map(_, _) => {
            // Lists (of strings, of lists) and maps, one cell at a time.
            (0..col.len())
                .map(|i| {
                    if col.is_null(i) {
                        return Ok(Value::Null);
                    }
                    nested(&col.slice(i, 1))
                })
                .collect::<Result<_>>()?
        }
        _ => {
            let c = arrow_cast::cast(col, &DataType::Utf8)?;
            c.as_string::<i32>()
                .iter()
                .map(|x| x.map_or(Value::Null, Value::from))
                .collect()
        }
    })
}

/// One list or map cell (a one-row array) as JSON: lists as arrays, maps as objects.
fn nested(cell: &ArrayRef) -> Result<Value> {
    match cell.data_type() {
        DataType::List(_) => {
            let l = cell.as_list::<i32>();
            let values = l.value(0);
            let field = Field::new("v", values.data_type().clone(), true);
            let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![values])?;
            Ok(Value::Array(
                batch_to_rows(&batch)?
                    .into_iter()
                    .map(|mut r| r.remove("v").unwrap_or(Value::Null))
                    .collect(),
            ))
        }
        DataType::Map(_, _) => {
            let m = cell.as_map();
            let entries = m.value(0);
            let keys = arrow_cast::cast(entries.column(0), &DataType::Utf8)?;
            let vals = entries.column(1).clone();
            let field = Field::new("v", vals.data_type().clone(), true);
            let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![vals])?;
            let vals = batch_to_rows(&batch)?;
            Ok(Value::Object(
                keys.as_string::<i32>()
                    .iter()
                    .zip(vals)
                    .map(|(k, mut v)| {
                        (
                            k.unwrap_or_default().to_string(),
                            v.remove("v").unwrap_or(Value::Null),
                        )
                    })
                    .collect(),
            ))
        }
        other => Err(MlError::Invalid(format!("cannot write {other} as JSON"))),
    }
}

/// Write a table as a JSON-lines file.
///
/// The text is that of [`batch_to_rows`] serialized row by row; doubles, integers and dense
/// vectors without nulls are written straight from their Arrow buffers (no JSON values built
/// per cell: scored tables are written at the speed they are scored).
pub fn write_jsonl(batch: &RecordBatch, path: &Path) -> Result<()> {
    let io_err = |e: std::io::Error| MlError::io(path.display(), e);
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let schema = batch.schema();
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (i, (field, col)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        let key = serde_json::to_string(field.name()).expect("a string serializes");
        let key = format!("{}{key}:", if i == 0 { "" } else { "," });
        cols.push((key, JsonCells::of(field.name(), col)?));
    }
    for row in 0..batch.num_rows() {
        w.write_all(b"{").map_err(io_err)?;
        for (key, cells) in &cols {
            w.write_all(key.as_bytes()).map_err(io_err)?;
            cells.write(&mut w, row).map_err(io_err)?;
        }
        w.write_all(b"}\n").map_err(io_err)?;
    }
    w.flush().map_err(io_err)
}

/// One column's cells, ready to write row by row.
enum JsonCells<'a> {
    F64(&'a Float64Array),
    I64(&'a Int64Array),
    /// A dense vector column without nulls: row-major values and the width.
    Matrix(&'a [f64], usize),
    Values(Vec<Value>),
}

impl<'a> JsonCells<'a> {
    fn of(name: &str, col: &'a ArrayRef) -> Result<Self> {
        Ok(match col.data_type() {
            DataType::Float64 => JsonCells::F64(col.as_primitive::<Float64Type>()),
            DataType::Int64 => JsonCells::I64(col.as_primitive::<Int64Type>()),
            dt if is_vector_type(dt) => match crate::vector::dense_matrix_view(col) {
                Some((x, w)) => JsonCells::Matrix(x, w),
                None => JsonCells::Values(column_cells(name, col)?),
            },
            _ => JsonCells::Values(column_cells(name, col)?),
        })
    }

    fn write(&self, w: &mut impl Write, row: usize) -> std::io::Result<()> {
        match self {
            JsonCells::F64(a) if a.is_null(row) => w.write_all(b"null"),
            JsonCells::F64(a) => write_f64(w, a.value(row)),
            JsonCells::I64(a) if a.is_null(row) => w.write_all(b"null"),
            JsonCells::I64(a) => write!(w, "{}", a.value(row)),
            JsonCells::Matrix(x, width) => {
                w.write_all(b"[")?;
                for (i, v) in x[row * width..(row + 1) * width].iter().enumerate() {
                    if i > 0 {
                        w.write_all(b",")?;
                    }
                    write_f64(w, *v)?;
                }
                w.write_all(b"]")
            }
            JsonCells::Values(v) => Ok(serde_json::to_writer(w, &v[row])?),
        }
    }
}

/// A double as [`f64_json`] encodes it.
fn write_f64(w: &mut impl Write, x: f64) -> std::io::Result<()> {
    if x.is_finite() {
        Ok(serde_json::to_writer(w, &x)?)
    } else {
        serde_json::to_writer(w, &f64_json(x))?;
        Ok(())
    }
}

/// Read a table by extension: `.jsonl`/`.json` (the conformance encoding), `.parquet`
/// (vector columns as stored), `.csv` (header row; types inferred).
pub fn read_table(path: &Path) -> Result<RecordBatch> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") | Some("json") => read_jsonl(path),
        Some("parquet") => {
            let file = std::fs::File::open(path).map_err(|e| MlError::io(path.display(), e))?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| MlError::io(path.display(), e))?;
            let schema = reader.schema().clone();
            let batches = reader
                .build()
                .map_err(|e| MlError::io(path.display(), e))?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(arrow_select::concat::concat_batches(&schema, &batches)?)
        }
        Some("csv") => {
            let mut file = std::fs::File::open(path).map_err(|e| MlError::io(path.display(), e))?;
            let format = arrow_csv::reader::Format::default().with_header(true);
            let (schema, _) = format
                .infer_schema(&mut file, None)
                .map_err(|e| MlError::io(path.display(), e))?;
            let file = std::fs::File::open(path).map_err(|e| MlError::io(path.display(), e))?;
            let schema = Arc::new(schema);
            let reader = arrow_csv::ReaderBuilder::new(schema.clone())
                .with_format(format)
                .build(file)
                .map_err(|e| MlError::io(path.display(), e))?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(arrow_select::concat::concat_batches(&schema, &batches)?)
        }
        other => Err(MlError::io(
            path.display(),
            format!("unsupported table format {other:?} (use .jsonl, .parquet or .csv)"),
        )),
    }
}

/// Write a table by extension (see [`read_table`]); in CSV, vector and list cells are
/// written as their JSON text.
pub fn write_table(batch: &RecordBatch, path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") | Some("json") => write_jsonl(batch, path),
        Some("parquet") => {
            let file = std::fs::File::create(path).map_err(|e| MlError::io(path.display(), e))?;
            let mut w = parquet::arrow::ArrowWriter::try_new(
                file,
                batch.schema(),
                Some(ferroflow_connectors::parquet_writer_properties(
                    &batch.schema(),
                )),
            )
            .map_err(|e| MlError::io(path.display(), e))?;
            w.write(batch).map_err(|e| MlError::io(path.display(), e))?;
            w.close().map_err(|e| MlError::io(path.display(), e))?;
            Ok(())
        }
        Some("csv") => {
            // Nested cells as JSON text, so every column is flat.
            let rows = batch_to_rows(batch)?;
            let mut fields = Vec::new();
            let mut cols: Vec<ArrayRef> = Vec::new();
            for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
                if matches!(
                    c.data_type(),
                    DataType::List(_)
                        | DataType::Struct(_)
                        | DataType::Map(_, _)
                        | DataType::LargeList(_)
                        | DataType::FixedSizeList(_, _)
                ) {
                    let text: StringArray = rows
                        .iter()
                        .map(|r| match &r[f.name()] {
                            Value::Null => None,
                            v => Some(v.to_string()),
                        })
                        .collect();
                    fields.push(Field::new(f.name(), DataType::Utf8, true));
                    cols.push(Arc::new(text));
                } else {
                    fields.push(f.as_ref().clone());
                    cols.push(c.clone());
                }
            }
            let flat = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
            let file = std::fs::File::create(path).map_err(|e| MlError::io(path.display(), e))?;
            let mut w = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(file);
            w.write(&flat)?;
            Ok(())
        }
        other => Err(MlError::io(
            path.display(),
            format!("unsupported table format {other:?} (use .jsonl, .parquet or .csv)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles read from JSON lines are the doubles that were written: the shortest text
    /// that round-trips parses back to the same bits, over many magnitudes (serde_json's
    /// default float parser is off by an ulp on some; its `float_roundtrip` parser is not).
    #[test]
    fn doubles_read_back_from_json_lines_to_the_bit() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let xs: Vec<f64> = (0..20_000)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
                (unit * 2.0 - 1.0) * 10f64.powi(i % 13 - 6)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let text: String = xs
            .iter()
            .map(|x| format!("{{\"x\": {}}}\n", serde_json::to_string(x).unwrap()))
            .collect();
        std::fs::write(&path, text).unwrap();
        let t = read_jsonl(&path).unwrap();
        let col = t.column_by_name("x").unwrap();
        let got = col.as_any().downcast_ref::<Float64Array>().unwrap();
        let wrong: Vec<(f64, f64)> = xs
            .iter()
            .zip(got.values())
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .map(|(a, b)| (*a, *b))
            .take(3)
            .collect();
        assert!(wrong.is_empty(), "written, read: {wrong:?}");
    }

    /// The direct writer and the JSON values of `batch_to_rows` agree on every kind of
    /// cell: doubles (NaN, infinities, nulls), integers, dense vectors with and without
    /// nulls, sparse vectors, strings, lists.
    #[test]
    fn jsonl_is_written_as_batch_to_rows_serializes() {
        let dense = crate::vector::dense_matrix_column(vec![1.5, -0.0, 1e300, 2.0], 2);
        let with_null = vector_column(&[Some(Vector::Dense(vec![1.0])), None]);
        let sparse = vector_column(&[
            Some(Vector::Sparse {
                size: 4,
                indices: vec![1],
                values: vec![f64::NAN],
            }),
            Some(Vector::Dense(vec![0.0, 1.0, 2.0, 3.0])),
        ]);
        let cols: Vec<(&str, ArrayRef)> = vec![
            (
                "x\"q",
                Arc::new(Float64Array::from(vec![Some(f64::NAN), None])),
            ),
            (
                "inf",
                Arc::new(Float64Array::from(vec![f64::INFINITY, f64::NEG_INFINITY])),
            ),
            ("n", Arc::new(Int64Array::from(vec![Some(-7), None]))),
            ("dense", dense),
            ("with_null", with_null),
            ("sparse", sparse),
            ("s", Arc::new(StringArray::from(vec![Some("a\nb"), None]))),
            ("b", Arc::new(BooleanArray::from(vec![true, false]))),
        ];
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        write_jsonl(&batch, &path).unwrap();
        let want: String = batch_to_rows(&batch)
            .unwrap()
            .iter()
            .map(|r| format!("{}\n", serde_json::to_string(r).unwrap()))
            .collect();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
        assert_eq!(
            batch_to_rows(&read_table(&path).unwrap()).unwrap()[1]["n"],
            Value::Null
        );
    }

    /// Model data with a list of vectors (OnlineKMeans's centroids) reads back as written,
    /// so an emitted version can be the initial model of the next run.
    #[test]
    fn lists_of_double_arrays_round_trip() {
        let rows: Vec<Map<String, Value>> = serde_json::from_str(
            r#"[{"centroids": [[1.0, 2.5], [3, "NaN"]], "weights": [1.0, 2.0]},
                {"centroids": [], "weights": null}, {"centroids": null}]"#,
        )
        .unwrap();
        let batch = rows_to_batch(&rows).unwrap();
        assert_eq!(
            crate::table::read_nested_doubles(&batch, "centroids").unwrap()[0],
            vec![1.0, 2.5]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        write_jsonl(&batch, &path).unwrap();
        let back = read_table(&path).unwrap();
        assert_eq!(
            batch_to_rows(&back).unwrap(),
            batch_to_rows(&batch).unwrap()
        );
        assert_eq!(
            batch_to_rows(&back).unwrap()[0]["centroids"],
            serde_json::json!([[1.0, 2.5], [3.0, "NaN"]])
        );
    }

    #[test]
    fn parquet_keeps_vectors_and_csv_writes_them_as_text() {
        let rows: Vec<Map<String, Value>> = serde_json::from_str(
            r#"[{"id": 1, "v": [1.0, 2.0], "s": {"size": 3, "indices": [1], "values": [5.0]}},
                {"id": 2, "v": [3.0, 4.0], "s": [1.0, 0.0, 2.0]}]"#,
        )
        .unwrap();
        let batch = rows_to_batch(&rows).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pq = dir.path().join("t.parquet");
        write_table(&batch, &pq).unwrap();
        assert_eq!(
            batch_to_rows(&read_table(&pq).unwrap()).unwrap(),
            batch_to_rows(&batch).unwrap()
        );
        let csv = dir.path().join("t.csv");
        write_table(&batch, &csv).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert!(text.starts_with("id,v,s\n1,\"[1.0,2.0]\""), "{text}");
        let back = read_table(&csv).unwrap();
        assert_eq!(back.num_rows(), 2);
        assert!(
            read_table(&dir.path().join("t.xlsx"))
                .unwrap_err()
                .to_string()
                .contains(".parquet")
        );
    }

    #[test]
    fn conformance_encoding_round_trips() {
        let text = r#"[{"id": 1, "x": 1.5, "v": [1.0, "NaN"], "s": {"size": 4, "indices": [3, 1], "values": [2.0, 1.0]}, "w": ["a", "b"], "name": "n"},
                       {"id": 2, "x": "-Infinity", "v": [0.5, 2], "s": [1.0, 2.0, 3.0, 4.0], "w": null, "name": null}]"#;
        let rows: Vec<Map<String, Value>> = serde_json::from_str(text).unwrap();
        let batch = rows_to_batch(&rows).unwrap();
        let s = batch.schema();
        assert_eq!(
            s.field_with_name("id").unwrap().data_type(),
            &DataType::Int64
        );
        assert_eq!(
            s.field_with_name("x").unwrap().data_type(),
            &DataType::Float64
        );
        let back = batch_to_rows(&batch).unwrap();
        assert_eq!(back[0]["v"], serde_json::json!([1.0, "NaN"]));
        assert_eq!(
            back[0]["s"],
            serde_json::json!({"size": 4, "indices": [1, 3], "values": [1.0, 2.0]})
        );
        assert_eq!(back[1]["s"], serde_json::json!([1.0, 2.0, 3.0, 4.0]));
        assert_eq!(back[1]["x"], serde_json::json!("-Infinity"));
        assert_eq!(back[0]["w"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn mixed_column_values_name_the_row_and_column() {
        let rows: Vec<Map<String, Value>> =
            serde_json::from_str(r#"[{"a": 1}, {"a": "x"}]"#).unwrap();
        let e = rows_to_batch(&rows).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("'a'"), "{e}");
    }
}
