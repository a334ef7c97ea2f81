//! Values written as text in a spec: durations, byte counts, types, aggregates, sort keys.

use std::time::Duration;

use arrow_schema::{DataType, TimeUnit};
use ferroflow_engine::{AggFunc, Aggregate, SortKey};
use ferroflow_sql::split_alias;

/// Parse a duration such as `10s`, `500ms`, `2m` (a leading `-` allowed).
pub fn parse_duration(s: &str) -> std::result::Result<(Duration, bool), String> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    if t == "0" {
        return Ok((Duration::ZERO, neg));
    }
    humantime::parse_duration(t)
        .map(|d| (d, neg))
        .map_err(|e| format!("'{s}' is not a duration ({e}); write e.g. 500ms, 10s, 2m"))
}

pub(crate) fn parse_bytes(v: &serde_yaml_ng::Value) -> std::result::Result<usize, String> {
    match v {
        serde_yaml_ng::Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("{n} is not a byte count")),
        serde_yaml_ng::Value::String(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: usize = num
                .parse()
                .map_err(|_| format!("'{s}' is not a byte count"))?;
            let mult = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                other => return Err(format!("unknown byte unit '{other}' in '{s}'")),
            };
            Ok(n * mult)
        }
        other => Err(format!("{other:?} is not a byte count")),
    }
}

/// Parse a type name of a declared schema.
pub fn parse_type(t: &str) -> std::result::Result<DataType, String> {
    Ok(match t.trim().to_ascii_lowercase().as_str() {
        "utf8" | "string" | "str" | "text" | "varchar" => DataType::Utf8,
        "int64" | "bigint" | "long" | "i64" => DataType::Int64,
        "int32" | "int" | "integer" | "i32" => DataType::Int32,
        "float64" | "double" | "f64" => DataType::Float64,
        "float32" | "float" | "real" | "f32" => DataType::Float32,
        "bool" | "boolean" => DataType::Boolean,
        "timestamp" | "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp_us" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp_s" => DataType::Timestamp(TimeUnit::Second, None),
        "date" | "date32" => DataType::Date32,
        other => {
            return Err(format!(
                "unknown type '{other}' (known: utf8, int64, int32, float64, float32, boolean, timestamp_ms, timestamp_us, timestamp_s, date)"
            ));
        }
    })
}

/// Parse `func(column) [AS alias]`, e.g. `count(*) AS n`, `count(distinct user) AS users`.
pub fn parse_aggregate(s: &str) -> std::result::Result<Aggregate, String> {
    let (body, alias) = split_alias(s);
    let open = body
        .find('(')
        .ok_or_else(|| format!("'{s}' is not func(column)"))?;
    if !body.ends_with(')') {
        return Err(format!("'{s}' is not func(column)"));
    }
    let func_name = body[..open].trim();
    let mut arg = body[open + 1..body.len() - 1].trim().to_string();
    let mut func = AggFunc::parse(func_name).map_err(|e| e.to_string())?;
    if func == AggFunc::Count && arg.to_ascii_lowercase().starts_with("distinct ") {
        func = AggFunc::CountDistinct;
        arg = arg[9..].trim().to_string();
    }
    let column = if arg == "*" {
        if func != AggFunc::Count {
            return Err(format!("'{s}': only count takes *"));
        }
        None
    } else if arg.is_empty() {
        return Err(format!("'{s}': missing column"));
    } else {
        Some(arg.trim_matches('"').to_string())
    };
    let alias = alias.unwrap_or_else(|| match &column {
        None => format!("{}_all", func_name.to_ascii_lowercase()),
        Some(c) => format!("{}_{c}", func_name.to_ascii_lowercase()),
    });
    Ok(Aggregate {
        func,
        column,
        alias,
    })
}

pub(crate) fn parse_sort_key(s: &str) -> std::result::Result<SortKey, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let Some((col, rest)) = words.split_first() else {
        return Err("empty sort key".into());
    };
    let mut key = SortKey::asc(col);
    let rest: Vec<String> = rest.iter().map(|w| w.to_ascii_lowercase()).collect();
    match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["asc"] => {}
        ["desc"] => key.descending = true,
        ["asc", "nulls", "first"] | ["nulls", "first"] => key.nulls_first = true,
        ["desc", "nulls", "first"] => {
            key.descending = true;
            key.nulls_first = true;
        }
        ["desc", "nulls", "last"] => key.descending = true,
        ["asc", "nulls", "last"] | ["nulls", "last"] => {}
        _ => {
            return Err(format!(
                "cannot read sort key '{s}' (write: column [ASC|DESC] [NULLS FIRST|LAST])"
            ));
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_parse() {
        let a = parse_aggregate("count(*) AS n").unwrap();
        assert_eq!(
            (a.func, a.column, a.alias.as_str()),
            (AggFunc::Count, None, "n")
        );
        let a = parse_aggregate("count(distinct user)").unwrap();
        assert_eq!(a.func, AggFunc::CountDistinct);
        assert_eq!(a.alias, "count_user");
        assert!(parse_aggregate("median(x)").is_err());
        assert!(parse_aggregate("sum(*)").is_err());
    }

    #[test]
    fn durations_and_bytes() {
        assert_eq!(
            parse_duration("10s").unwrap(),
            (Duration::from_secs(10), false)
        );
        assert_eq!(
            parse_duration("-5s").unwrap(),
            (Duration::from_secs(5), true)
        );
        assert!(parse_duration("ten").is_err());
        assert_eq!(
            parse_bytes(&serde_yaml_ng::Value::String("16MiB".into())).unwrap(),
            16 << 20
        );
    }
}
