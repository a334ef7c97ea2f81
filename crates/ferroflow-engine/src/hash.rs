//! Row hashing shared by hash partitioning, so equal keys always meet in one instance.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, TimeUnit};

use crate::error::Result;

const SEED: ahash::RandomState = ahash::RandomState::with_seeds(
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
);

const NULL_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

fn combine(h: &mut u64, v: u64) {
    *h = (*h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
}

fn hash_primitive<T: ArrowPrimitiveType>(a: &ArrayRef, out: &mut [u64])
where
    T::Native: std::hash::Hash,
{
    let arr = a.as_primitive::<T>();
    for (i, h) in out.iter_mut().enumerate() {
        let v = if arr.is_null(i) {
            NULL_HASH
        } else {
            SEED.hash_one(arr.value(i))
        };
        combine(h, v);
    }
}

fn hash_bytes<'a>(out: &mut [u64], value: impl Fn(usize) -> Option<&'a [u8]>) {
    for (i, h) in out.iter_mut().enumerate() {
        combine(h, value(i).map_or(NULL_HASH, |v| SEED.hash_one(v)));
    }
}

/// Hash each row of `columns` into `out` (resized to the row count). Deterministic across
/// processes and runs.
pub(crate) fn hash_rows(columns: &[ArrayRef], num_rows: usize, out: &mut Vec<u64>) -> Result<()> {
    out.clear();
    out.resize(num_rows, 0);
    for col in columns {
        match col.data_type() {
            DataType::Int64 => hash_primitive::<Int64Type>(col, out),
            DataType::Int32 => hash_primitive::<Int32Type>(col, out),
            DataType::UInt64 => hash_primitive::<UInt64Type>(col, out),
            DataType::UInt32 => hash_primitive::<UInt32Type>(col, out),
            DataType::Date32 => hash_primitive::<Date32Type>(col, out),
            DataType::Timestamp(TimeUnit::Second, _) => {
                hash_primitive::<TimestampSecondType>(col, out)
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                hash_primitive::<TimestampMillisecondType>(col, out)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                hash_primitive::<TimestampMicrosecondType>(col, out)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                hash_primitive::<TimestampNanosecondType>(col, out)
            }
            DataType::Float64 => {
                let arr = col.as_primitive::<Float64Type>();
                for (i, h) in out.iter_mut().enumerate() {
                    let v = if arr.is_null(i) {
                        NULL_HASH
                    } else {
                        // Normalise -0.0 and NaN payloads so equal keys hash equally.
                        let x = arr.value(i);
                        let x = if x == 0.0 { 0.0 } else { x };
                        let bits = if x.is_nan() {
                            f64::NAN.to_bits()
                        } else {
                            x.to_bits()
                        };
                        SEED.hash_one(bits)
                    };
                    combine(h, v);
                }
            }
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                hash_bytes(out, |i| a.is_valid(i).then(|| a.value(i).as_bytes()));
            }
            DataType::LargeUtf8 => {
                let a = col.as_string::<i64>();
                hash_bytes(out, |i| a.is_valid(i).then(|| a.value(i).as_bytes()));
            }
            DataType::Utf8View => {
                let a = col.as_string_view();
                hash_bytes(out, |i| a.is_valid(i).then(|| a.value(i).as_bytes()));
            }
            other => {
                // Any other type: hash its row encoding.
                let conv = RowConverter::new(vec![SortField::new(other.clone())])?;
                let rows = conv.convert_columns(std::slice::from_ref(col))?;
                for (i, h) in out.iter_mut().enumerate() {
                    combine(h, SEED.hash_one(rows.row(i).as_ref()));
                }
            }
        }
    }
    for h in out.iter_mut() {
        // Final avalanche so the low bits used for `% n` are well mixed.
        *h = SEED.hash_one(*h);
    }
    Ok(())
}

/// The key group of a row hash: keyed state and keyed routing go through a fixed number of
/// key groups (the job's max parallelism), so state can be split again at another
/// parallelism.
pub(crate) fn key_group(hash: u64, max_parallelism: u32) -> u32 {
    (hash % max_parallelism.max(1) as u64) as u32
}

/// The instance of `parallelism` that owns key group `kg` (contiguous ranges, as Flink).
pub(crate) fn key_group_owner(kg: u32, max_parallelism: u32, parallelism: usize) -> usize {
    (kg as u64 * parallelism as u64 / max_parallelism.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn equal_keys_hash_equal_across_batches() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 1]));
        let s: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "z", "x"]));
        let mut h = Vec::new();
        hash_rows(&[a.clone(), s.clone()], 4, &mut h).unwrap();
        assert_eq!(h[0], h[3]);
        assert_ne!(h[0], h[1]);
        let mut h2 = Vec::new();
        hash_rows(&[a.slice(3, 1), s.slice(3, 1)], 1, &mut h2).unwrap();
        assert_eq!(h2[0], h[0]);
    }
}
