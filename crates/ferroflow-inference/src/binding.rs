//! Binding a model to a stream: which columns feed which model input, and which columns the
//! outputs become. Everything that can be checked is checked here, when the job is built.
//!
//! Feeding an input:
//! - a vector column (`FixedSizeList` or `List` of numbers) becomes a `[rows, n]` tensor;
//! - one scalar column becomes `[rows]` (or `[rows, 1]`, as the model declares);
//! - several scalar columns are stacked into `[rows, columns]` (one copy).
//!
//! A column whose values already have the model's element type and no nulls is passed to the
//! runtime without copying (its Arrow buffer is the tensor); a numeric column of another type
//! is cast (one copy). Outputs become columns: `[rows]` and `[rows, 1]` a primitive column,
//! anything wider a `FixedSizeList`.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};

use crate::error::{InferenceError, Result};
use crate::model::{
    ElementType, InferenceModel, InputTensor, OutputData, OutputTensor, TensorData, ValueKind,
};

/// How an output becomes a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputShape {
    /// `[rows]` and `[rows, 1]` give a primitive column, wider outputs a fixed-size list.
    #[default]
    Auto,
    /// Always a fixed-size list, even of one element.
    Vector,
}

/// Which columns feed a model input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMapping {
    /// Model input name.
    pub input: String,
    /// One vector or scalar column, or several scalar columns to stack.
    pub columns: Vec<String>,
}

/// Which column a model output becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputMapping {
    /// Model output name.
    pub output: String,
    /// Column name in the node's output.
    pub column: String,
    /// Primitive or list column.
    pub shape: OutputShape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One list column; `width` elements per row.
    Vector { list: ListKind },
    /// Scalar columns, stacked.
    Scalars,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Fixed,
    Variable,
}

#[derive(Debug, Clone)]
struct InputPlan {
    name: String,
    elem: ElementType,
    columns: Vec<usize>,
    column_names: Vec<String>,
    layout: Layout,
    /// Dimensions after the batch dimension.
    tail: Vec<usize>,
    width: usize,
}

#[derive(Debug, Clone)]
struct OutputPlan {
    /// Index in the model's outputs.
    index: usize,
    name: String,
    elem: ElementType,
    /// `None`: a primitive column.
    width: Option<usize>,
}

/// A model bound to the columns of a stream; builds tensors from batches and columns from
/// results.
#[derive(Debug, Clone)]
pub struct Binding {
    node: String,
    inputs: Vec<InputPlan>,
    outputs: Vec<OutputPlan>,
    fields: Vec<FieldRef>,
}

fn column_elem(dt: &DataType) -> Option<ElementType> {
    Some(match dt {
        DataType::Float32 | DataType::Float16 => ElementType::F32,
        DataType::Float64 => ElementType::F64,
        DataType::Int8 | DataType::Int16 | DataType::Int32 => ElementType::I32,
        DataType::UInt8 | DataType::UInt16 => ElementType::I32,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ElementType::I64,
        DataType::Boolean => ElementType::Bool,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ElementType::Str,
        _ => return None,
    })
}

/// Can a column of `from` feed a model input of `to` (exactly or by a lossless-enough cast)?
fn convertible(from: &DataType, to: ElementType) -> bool {
    let Some(f) = column_elem(from) else {
        return false;
    };
    match to {
        ElementType::F32 | ElementType::F64 => f.is_numeric(),
        ElementType::I64 => matches!(f, ElementType::I32 | ElementType::I64),
        ElementType::I32 => matches!(
            from,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16
        ),
        ElementType::Bool => f == ElementType::Bool,
        ElementType::Str => f == ElementType::Str,
    }
}

fn arrow_type(e: ElementType) -> DataType {
    match e {
        ElementType::F32 => DataType::Float32,
        ElementType::F64 => DataType::Float64,
        ElementType::I32 => DataType::Int32,
        ElementType::I64 => DataType::Int64,
        ElementType::Bool => DataType::Boolean,
        ElementType::Str => DataType::Utf8,
    }
}

impl Binding {
    /// Bind `model` to `schema` for node `node`. Inputs without a mapping take the column of
    /// the same name; with no `outputs` every model output becomes a column of its own name.
    /// Output widths the model leaves open are found by running it once on a row of zeros.
    pub fn new(
        node: &str,
        schema: &Schema,
        model: &dyn InferenceModel,
        inputs: &[InputMapping],
        outputs: &[OutputMapping],
    ) -> Result<Self> {
        let sig = model.signature();
        for m in inputs {
            if !sig.inputs.iter().any(|s| s.name == m.input) {
                return Err(InferenceError::binding(
                    node,
                    format!(
                        "the model has no input '{}' (its inputs: {})",
                        m.input,
                        names(sig.inputs.iter().map(|s| s.name.as_str()))
                    ),
                ));
            }
        }
        let mut plans = Vec::new();
        for spec in &sig.inputs {
            let ValueKind::Tensor { elem, shape } = &spec.kind else {
                return Err(InferenceError::binding(
                    node,
                    format!("model input '{}' is not a tensor", spec.name),
                ));
            };
            let columns: Vec<String> = match inputs.iter().find(|m| m.input == spec.name) {
                Some(m) => m.columns.clone(),
                None if schema.index_of(&spec.name).is_ok() => vec![spec.name.clone()],
                None => {
                    return Err(InferenceError::binding(
                        node,
                        format!(
                            "model input '{}' has no column: no column of that name, and no \
                             mapping given (columns: {})",
                            spec.name,
                            names(schema.fields().iter().map(|f| f.name().as_str()))
                        ),
                    ));
                }
            };
            plans.push(plan_input(
                node, schema, &spec.name, *elem, shape, &columns,
            )?);
        }

        let wanted: Vec<OutputMapping> = if outputs.is_empty() {
            sig.outputs
                .iter()
                .map(|s| OutputMapping {
                    output: s.name.clone(),
                    column: s.name.clone(),
                    shape: OutputShape::Auto,
                })
                .collect()
        } else {
            outputs.to_vec()
        };
        let mut binding = Binding {
            node: node.to_string(),
            inputs: plans,
            outputs: Vec::new(),
            fields: Vec::new(),
        };
        let mut probe: Option<Vec<OutputTensor>> = None;
        for m in &wanted {
            let Some(index) = sig.outputs.iter().position(|s| s.name == m.output) else {
                return Err(InferenceError::binding(
                    node,
                    format!(
                        "the model has no output '{}' (its outputs: {})",
                        m.output,
                        names(sig.outputs.iter().map(|s| s.name.as_str()))
                    ),
                ));
            };
            if schema.index_of(&m.column).is_ok() {
                return Err(InferenceError::binding(
                    node,
                    format!(
                        "output column '{}' (model output '{}') already exists in the input",
                        m.column, m.output
                    ),
                ));
            }
            let declared = match &sig.outputs[index].kind {
                ValueKind::Tensor { elem, shape } if !shape.is_empty() => {
                    let tail = &shape[1..];
                    tail.iter()
                        .copied()
                        .collect::<Option<Vec<usize>>>()
                        .map(|t| (*elem, t.iter().product::<usize>(), t.is_empty()))
                }
                _ => None,
            };
            let (elem, width, rank1) = match declared {
                Some(d) => d,
                None => {
                    if probe.is_none() {
                        probe = Some(binding.probe(model)?);
                    }
                    let t = &probe.as_ref().expect("probed")[index];
                    let Some(tail) = t.shape.get(1..) else {
                        return Err(InferenceError::binding(
                            node,
                            format!(
                                "model output '{}' is a scalar (rank 0): a model node needs a first dimension of one entry per row",
                                m.output
                            ),
                        ));
                    };
                    (
                        t.data.elem(),
                        tail.iter().product::<usize>(),
                        tail.is_empty(),
                    )
                }
            };
            if width == 0 || width > i32::MAX as usize {
                return Err(InferenceError::binding(
                    node,
                    format!(
                        "model output '{}' has {width} value(s) per row: a zero-size dimension or more than {} values cannot be a column",
                        m.output,
                        i32::MAX
                    ),
                ));
            }
            let width = match (m.shape, rank1, width) {
                (OutputShape::Auto, true, _) | (OutputShape::Auto, false, 1) => None,
                (_, _, w) => Some(w),
            };
            let item = Field::new("item", arrow_type(elem), false);
            let dt = match width {
                None => arrow_type(elem),
                Some(w) => DataType::FixedSizeList(Arc::new(item), w as i32),
            };
            binding
                .fields
                .push(Arc::new(Field::new(&m.column, dt, false)));
            binding.outputs.push(OutputPlan {
                index,
                name: m.output.clone(),
                elem,
                width,
            });
        }
        Ok(binding)
    }

    /// Bind only inputs (no model outputs): for nodes that feed a model but do not append its
    /// outputs, such as a training node. `specs` are the inputs, as a model would declare them.
    pub fn inputs_only(
        node: &str,
        schema: &Schema,
        specs: &[crate::model::TensorSpec],
        inputs: &[InputMapping],
    ) -> Result<Self> {
        let mut plans = Vec::new();
        for spec in specs {
            let ValueKind::Tensor { elem, shape } = &spec.kind else {
                return Err(InferenceError::binding(
                    node,
                    format!("input '{}' is not a tensor", spec.name),
                ));
            };
            let columns = inputs
                .iter()
                .find(|m| m.input == spec.name)
                .map(|m| m.columns.clone())
                .unwrap_or_else(|| vec![spec.name.clone()]);
            plans.push(plan_input(
                node, schema, &spec.name, *elem, shape, &columns,
            )?);
        }
        Ok(Binding {
            node: node.to_string(),
            inputs: plans,
            outputs: Vec::new(),
            fields: Vec::new(),
        })
    }

    /// The columns the model adds, in order.
    pub fn output_fields(&self) -> &[FieldRef] {
        &self.fields
    }

    /// `schema` plus the model's output columns.
    pub fn output_schema(&self, schema: &Schema, extra: &[FieldRef]) -> SchemaRef {
        let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
        fields.extend(self.fields.iter().cloned());
        fields.extend(extra.iter().cloned());
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    }

    /// Run the model on one row of zeros (empty strings) to learn output shapes.
    fn probe(&self, model: &dyn InferenceModel) -> Result<Vec<OutputTensor>> {
        let zeros: Vec<InputTensor<'_>> = self
            .inputs
            .iter()
            .map(|p| {
                let n = p.width;
                InputTensor {
                    name: &p.name,
                    shape: std::iter::once(1).chain(p.tail.iter().copied()).collect(),
                    data: match p.elem {
                        ElementType::F32 => TensorData::F32(Cow::Owned(vec![0.0; n])),
                        ElementType::F64 => TensorData::F64(Cow::Owned(vec![0.0; n])),
                        ElementType::I32 => TensorData::I32(Cow::Owned(vec![0; n])),
                        ElementType::I64 => TensorData::I64(Cow::Owned(vec![0; n])),
                        ElementType::Bool => TensorData::Bool(vec![false; n]),
                        ElementType::Str => TensorData::Str(vec![Cow::Borrowed(""); n]),
                    },
                }
            })
            .collect();
        model.run(&zeros).map_err(|e| {
            InferenceError::binding(
                &self.node,
                format!(
                    "the model's output shapes are not declared and a trial run on one row \
                     failed: {e}"
                ),
            )
        })
    }

    /// Build the input tensors for `batch` (borrowing its buffers where possible).
    pub fn tensors<'b>(&'b self, batch: &'b RecordBatch) -> Result<Vec<InputTensor<'b>>> {
        self.inputs.iter().map(|p| self.tensor(p, batch)).collect()
    }

    fn tensor<'b>(&'b self, p: &'b InputPlan, batch: &'b RecordBatch) -> Result<InputTensor<'b>> {
        let rows = batch.num_rows();
        let err = |msg: String| {
            InferenceError::binding(&self.node, format!("model input '{}': {msg}", p.name))
        };
        for (&c, name) in p.columns.iter().zip(&p.column_names) {
            let col = batch.column(c);
            if col.null_count() > 0 {
                let row = (0..rows).find(|&r| col.is_null(r)).unwrap_or(0);
                return Err(err(format!(
                    "column '{name}' is null in row {row} of the batch (models take no nulls)"
                )));
            }
        }
        let data = match p.layout {
            Layout::Vector { list } => {
                let col = batch.column(p.columns[0]);
                let (values, start): (&ArrayRef, usize) = match list {
                    // A sliced fixed-size list slices its values too: they start at 0.
                    ListKind::Fixed => (col.as_fixed_size_list().values(), 0),
                    ListKind::Variable => {
                        let (values, offsets): (&ArrayRef, Vec<usize>) = match col.data_type() {
                            DataType::List(_) => {
                                let l = col.as_list::<i32>();
                                (
                                    l.values(),
                                    l.offsets().iter().map(|&x| x as usize).collect(),
                                )
                            }
                            _ => {
                                let l = col.as_list::<i64>();
                                (
                                    l.values(),
                                    l.offsets().iter().map(|&x| x as usize).collect(),
                                )
                            }
                        };
                        for r in 0..rows {
                            let len = offsets[r + 1] - offsets[r];
                            if len != p.width {
                                return Err(err(format!(
                                    "column '{}' has {len} values in row {r} of the batch; the \
                                     model takes {}",
                                    p.column_names[0], p.width
                                )));
                            }
                        }
                        (values, offsets[0])
                    }
                };
                let len = rows * p.width;
                if values.null_count() > 0 && (start..start + len).any(|i| values.is_null(i)) {
                    return Err(err(format!(
                        "column '{}' holds null elements (models take no nulls)",
                        p.column_names[0]
                    )));
                }
                flat(values, start, len, p.elem).map_err(|e| err(e.to_string()))?
            }
            Layout::Scalars if p.columns.len() == 1 => {
                flat(batch.column(p.columns[0]), 0, rows, p.elem).map_err(|e| err(e.to_string()))?
            }
            Layout::Scalars => stack(batch, &p.columns, p.elem).map_err(|e| err(e.to_string()))?,
        };
        Ok(InputTensor {
            name: &p.name,
            shape: std::iter::once(rows)
                .chain(p.tail.iter().copied())
                .collect(),
            data,
        })
    }

    /// Turn the model's outputs for a batch of `rows` rows into columns.
    pub fn columns(&self, rows: usize, outputs: Vec<OutputTensor>) -> Result<Vec<ArrayRef>> {
        let mut outputs: Vec<Option<OutputTensor>> = outputs.into_iter().map(Some).collect();
        let mut cols = Vec::with_capacity(self.outputs.len());
        for (plan, field) in self.outputs.iter().zip(&self.fields) {
            let t = outputs
                .get_mut(plan.index)
                .and_then(Option::take)
                .ok_or_else(|| {
                    InferenceError::binding(
                        &self.node,
                        format!("the model returned no output '{}'", plan.name),
                    )
                })?;
            let err = |msg: String| {
                InferenceError::binding(&self.node, format!("model output '{}': {msg}", plan.name))
            };
            let width = plan.width.unwrap_or(1);
            if t.shape.first() != Some(&rows) || t.data.len() != rows * width {
                return Err(err(format!(
                    "shape {:?} does not fit {rows} rows of {width} value(s)",
                    t.shape
                )));
            }
            if t.data.elem() != plan.elem {
                return Err(err(format!(
                    "element type {} where the node was built for {}",
                    t.data.elem().name(),
                    plan.elem.name()
                )));
            }
            let values: ArrayRef = match t.data {
                OutputData::F32(v) => Arc::new(Float32Array::from(v)),
                OutputData::F64(v) => Arc::new(Float64Array::from(v)),
                OutputData::I32(v) => Arc::new(Int32Array::from(v)),
                OutputData::I64(v) => Arc::new(Int64Array::from(v)),
                OutputData::Bool(v) => Arc::new(BooleanArray::from(v)),
                OutputData::Str(v) => Arc::new(StringArray::from(v)),
            };
            cols.push(match plan.width {
                None => values,
                Some(w) => {
                    let DataType::FixedSizeList(item, _) = field.data_type() else {
                        unreachable!("vector outputs have list fields")
                    };
                    Arc::new(FixedSizeListArray::try_new(
                        item.clone(),
                        w as i32,
                        values,
                        None,
                    )?)
                }
            });
        }
        Ok(cols)
    }

    /// Same outputs (names, types, widths) as `other`: a new model version may replace the
    /// current one only then.
    pub fn same_outputs(&self, other: &Binding) -> bool {
        self.fields == other.fields
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

fn plan_input(
    node: &str,
    schema: &Schema,
    name: &str,
    elem: ElementType,
    shape: &[Option<usize>],
    columns: &[String],
) -> Result<InputPlan> {
    let err = |msg: String| InferenceError::binding(node, format!("model input '{name}': {msg}"));
    if columns.is_empty() {
        return Err(err("mapped to no column".to_string()));
    }
    let mut idx = Vec::new();
    for c in columns {
        idx.push(schema.index_of(c).map_err(|_| {
            err(format!(
                "column '{c}' not found (columns: {})",
                names(schema.fields().iter().map(|f| f.name().as_str()))
            ))
        })?);
    }
    let first = schema.field(idx[0]);
    let (layout, width, value_type) = match first.data_type() {
        DataType::FixedSizeList(item, n) => (
            Layout::Vector {
                list: ListKind::Fixed,
            },
            Some(*n as usize),
            item.data_type().clone(),
        ),
        DataType::List(item) | DataType::LargeList(item) => (
            Layout::Vector {
                list: ListKind::Variable,
            },
            None,
            item.data_type().clone(),
        ),
        dt => (Layout::Scalars, Some(columns.len()), dt.clone()),
    };
    if matches!(layout, Layout::Vector { .. }) && columns.len() > 1 {
        return Err(err(format!(
            "column '{}' is a vector; a vector input takes exactly one column",
            columns[0]
        )));
    }
    for &i in &idx {
        let f = schema.field(i);
        let dt = if matches!(layout, Layout::Vector { .. }) {
            &value_type
        } else {
            f.data_type()
        };
        if !convertible(dt, elem) {
            return Err(err(format!(
                "column '{}' has type {}, which cannot feed a {} tensor",
                f.name(),
                f.data_type(),
                elem.name()
            )));
        }
    }
    // The trailing dimensions: as declared, with one open dimension taken from the columns.
    let declared_tail: Vec<Option<usize>> = if shape.is_empty() {
        vec![None]
    } else {
        shape[1..].to_vec()
    };
    let open = declared_tail.iter().filter(|d| d.is_none()).count();
    let known: usize = declared_tail.iter().flatten().product();
    let width = match (width, open) {
        (Some(w), 0) if w == known => w,
        (Some(w), 0) => {
            return Err(err(format!(
                "the model takes {known} value(s) per row (shape {}), the column(s) give {w}",
                fmt_shape(shape)
            )));
        }
        (Some(w), 1) if w % known == 0 => w,
        (None, 0) => known,
        (Some(w), _) => {
            return Err(err(format!(
                "the model's shape {} cannot take {w} value(s) per row",
                fmt_shape(shape)
            )));
        }
        (None, _) => {
            return Err(err(format!(
                "column '{}' is a variable-length list and the model's shape {} leaves the \
                 width open; use a fixed-size list column",
                columns[0],
                fmt_shape(shape)
            )));
        }
    };
    let tail: Vec<usize> = if shape.is_empty() {
        vec![width]
    } else {
        declared_tail
            .iter()
            .map(|d| d.unwrap_or(width / known.max(1)))
            .collect()
    };
    Ok(InputPlan {
        name: name.to_string(),
        elem,
        columns: idx,
        column_names: columns.to_vec(),
        layout,
        tail,
        width,
    })
}

fn fmt_shape(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

fn strings<'b>(values: &'b ArrayRef, start: usize, len: usize) -> Vec<Cow<'b, str>> {
    let range = start..start + len;
    match values.data_type() {
        DataType::Utf8 => {
            let a = values.as_string::<i32>();
            range.map(|i| Cow::Borrowed(a.value(i))).collect()
        }
        DataType::LargeUtf8 => {
            let a = values.as_string::<i64>();
            range.map(|i| Cow::Borrowed(a.value(i))).collect()
        }
        _ => {
            let a = values.as_string_view();
            range.map(|i| Cow::Borrowed(a.value(i))).collect()
        }
    }
}

/// `len` values of a flat array from `start` as tensor data: borrowed from the Arrow buffer
/// when already of the element type, else cast (one copy).
fn flat<'b>(
    values: &'b ArrayRef,
    start: usize,
    len: usize,
    elem: ElementType,
) -> Result<TensorData<'b>, arrow_schema::ArrowError> {
    let range = start..start + len;
    if values.data_type() == &arrow_type(elem) {
        match elem {
            ElementType::F32 => {
                return Ok(TensorData::F32(Cow::Borrowed(
                    &values.as_primitive::<Float32Type>().values()[range],
                )));
            }
            ElementType::F64 => {
                return Ok(TensorData::F64(Cow::Borrowed(
                    &values.as_primitive::<Float64Type>().values()[range],
                )));
            }
            ElementType::I32 => {
                return Ok(TensorData::I32(Cow::Borrowed(
                    &values.as_primitive::<Int32Type>().values()[range],
                )));
            }
            ElementType::I64 => {
                return Ok(TensorData::I64(Cow::Borrowed(
                    &values.as_primitive::<Int64Type>().values()[range],
                )));
            }
            ElementType::Bool | ElementType::Str => {}
        }
    }
    if elem == ElementType::Str {
        return Ok(TensorData::Str(strings(values, start, len)));
    }
    let arr = arrow_cast::cast(&values.slice(start, len), &arrow_type(elem))?;
    Ok(match elem {
        ElementType::F32 => TensorData::F32(Cow::Owned(
            arr.as_primitive::<Float32Type>().values().to_vec(),
        )),
        ElementType::F64 => TensorData::F64(Cow::Owned(
            arr.as_primitive::<Float64Type>().values().to_vec(),
        )),
        ElementType::I32 => TensorData::I32(Cow::Owned(
            arr.as_primitive::<Int32Type>().values().to_vec(),
        )),
        ElementType::I64 => TensorData::I64(Cow::Owned(
            arr.as_primitive::<Int64Type>().values().to_vec(),
        )),
        ElementType::Bool => TensorData::Bool(arr.as_boolean().values().iter().collect()),
        ElementType::Str => unreachable!("handled above"),
    })
}

/// Several scalar columns stacked row by row into `[rows, columns]` (one copy).
fn stack<'b>(
    batch: &'b RecordBatch,
    columns: &[usize],
    elem: ElementType,
) -> Result<TensorData<'b>, arrow_schema::ArrowError> {
    let rows = batch.num_rows();
    let k = columns.len();
    if elem == ElementType::Str {
        let cols: Vec<Vec<Cow<'b, str>>> = columns
            .iter()
            .map(|&c| strings(batch.column(c), 0, rows))
            .collect();
        let mut out = Vec::with_capacity(rows * k);
        for r in 0..rows {
            for col in &cols {
                out.push(col[r].clone());
            }
        }
        return Ok(TensorData::Str(out));
    }
    let cast: Vec<ArrayRef> = columns
        .iter()
        .map(|&c| arrow_cast::cast(batch.column(c), &arrow_type(elem)))
        .collect::<Result<_, _>>()?;
    fn gather<T: Copy + Default>(cols: &[&[T]], rows: usize) -> Vec<T> {
        let k = cols.len();
        let mut out = vec![T::default(); rows * k];
        for (j, col) in cols.iter().enumerate() {
            for (r, v) in col.iter().enumerate() {
                out[r * k + j] = *v;
            }
        }
        out
    }
    Ok(match elem {
        ElementType::F32 => {
            let c: Vec<&[f32]> = cast
                .iter()
                .map(|a| &a.as_primitive::<Float32Type>().values()[..])
                .collect();
            TensorData::F32(Cow::Owned(gather(&c, rows)))
        }
        ElementType::F64 => {
            let c: Vec<&[f64]> = cast
                .iter()
                .map(|a| &a.as_primitive::<Float64Type>().values()[..])
                .collect();
            TensorData::F64(Cow::Owned(gather(&c, rows)))
        }
        ElementType::I32 => {
            let c: Vec<&[i32]> = cast
                .iter()
                .map(|a| &a.as_primitive::<Int32Type>().values()[..])
                .collect();
            TensorData::I32(Cow::Owned(gather(&c, rows)))
        }
        ElementType::I64 => {
            let c: Vec<&[i64]> = cast
                .iter()
                .map(|a| &a.as_primitive::<Int64Type>().values()[..])
                .collect();
            TensorData::I64(Cow::Owned(gather(&c, rows)))
        }
        ElementType::Bool => {
            let c: Vec<Vec<bool>> = cast
                .iter()
                .map(|a| a.as_boolean().values().iter().collect())
                .collect();
            let c: Vec<&[bool]> = c.iter().map(|v| &v[..]).collect();
            TensorData::Bool(gather(&c, rows))
        }
        ElementType::Str => unreachable!("handled above"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelSignature, TensorSpec};

    /// A model whose output shape is not declared and whose trial run answers `shape`.
    struct Odd {
        sig: ModelSignature,
        shape: Vec<usize>,
    }

    impl InferenceModel for Odd {
        fn signature(&self) -> &ModelSignature {
            &self.sig
        }
        fn run(&self, _: &[InputTensor<'_>]) -> Result<Vec<OutputTensor>> {
            Ok(vec![OutputTensor {
                name: "y".into(),
                shape: self.shape.clone(),
                data: OutputData::F32(vec![0.0; self.shape.iter().product()]),
            }])
        }
        fn describe(&self) -> String {
            "odd".into()
        }
    }

    fn bind(out_shape: Option<Vec<Option<usize>>>, trial: Vec<usize>) -> Result<Binding> {
        let sig = ModelSignature {
            inputs: vec![TensorSpec {
                name: "x".into(),
                kind: ValueKind::Tensor {
                    elem: ElementType::F32,
                    shape: vec![None, Some(2)],
                },
            }],
            outputs: vec![TensorSpec {
                name: "y".into(),
                kind: ValueKind::Tensor {
                    elem: ElementType::F32,
                    shape: out_shape.unwrap_or_default(),
                },
            }],
        };
        let schema = Schema::new(vec![Field::new(
            "x",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 2),
            false,
        )]);
        Binding::new(
            "score",
            &schema,
            &Odd { sig, shape: trial },
            &[InputMapping {
                input: "x".into(),
                columns: vec!["x".into()],
            }],
            &[OutputMapping {
                output: "y".into(),
                column: "y".into(),
                shape: OutputShape::Auto,
            }],
        )
    }

    #[test]
    fn scalar_and_empty_outputs_are_refused_not_panicked_on() {
        let e = bind(None, vec![]).err().unwrap().to_string();
        assert!(e.contains("rank 0") && e.contains("'score'"), "{e}");
        let e = bind(None, vec![1, 0]).err().unwrap().to_string();
        assert!(e.contains("zero-size"), "{e}");
        let e = bind(Some(vec![None, Some(0)]), vec![1, 0])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("zero-size"), "{e}");
        assert!(bind(None, vec![1, 3]).is_ok());
    }
}
