//! SQL expressions as engine operators: `filter("amount > 10")`, `select(["a", "b * 2 AS c"])`.
//!
//! Expressions are parsed and planned by DataFusion against the input schema when the job is
//! built (an unknown column or a type error fails then, naming the node), and evaluated as
//! DataFusion physical expressions on each batch.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use ferroflow_engine::{DataStream, EngineError, InstanceInfo, Operator, OperatorFactory, Output};

use crate::error::{Result, SqlError};

/// A planned expression with its output field.
#[derive(Debug, Clone)]
pub struct PlannedExpr {
    /// The physical expression.
    pub expr: Arc<dyn PhysicalExpr>,
    /// Name, type and nullability of its result.
    pub field: Field,
}

/// Split `expr AS alias` at a top-level `AS` (outside quotes and parentheses).
pub fn split_alias(sql: &str) -> (&str, Option<String>) {
    let bytes = sql.as_bytes();
    let (mut depth, mut quote) = (0i32, None::<u8>);
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ if depth == 0
                    && i + 4 <= bytes.len()
                    && bytes[i].is_ascii_whitespace()
                    && bytes[i + 1..i + 3].eq_ignore_ascii_case(b"as")
                    && bytes[i + 3].is_ascii_whitespace() =>
                {
                    found = Some(i);
                }
                _ => {}
            },
        }
        i += 1;
    }
    match found {
        Some(i) => {
            let alias = sql[i + 4..].trim().trim_matches('"').to_string();
            (sql[..i].trim(), Some(alias))
        }
        None => (sql.trim(), None),
    }
}

/// Plan a SQL expression (optionally `... AS alias`) against `schema`.
pub fn plan_expr(sql: &str, schema: &Schema) -> Result<PlannedExpr> {
    let (body, alias) = split_alias(sql);
    let ctx = SessionContext::new();
    let df_schema = DFSchema::try_from(schema.clone()).map_err(|e| SqlError::df(sql, e))?;
    let logical = ctx
        .parse_sql_expr(body, &df_schema)
        .map_err(|e| SqlError::df(format!("expression '{sql}'"), e))?;
    let (_, out_field) = logical
        .to_field(&df_schema)
        .map_err(|e| SqlError::df(format!("expression '{sql}'"), e))?;
    let (data_type, nullable) = (out_field.data_type().clone(), out_field.is_nullable());
    let name = alias.unwrap_or_else(|| match &logical {
        datafusion::logical_expr::Expr::Column(c) => c.name.clone(),
        other => other.schema_name().to_string(),
    });
    let expr = ctx
        .create_physical_expr(logical, &df_schema)
        .map_err(|e| SqlError::df(format!("expression '{sql}'"), e))?;
    Ok(PlannedExpr {
        expr,
        field: Field::new(name, data_type, nullable),
    })
}

#[derive(Clone)]
enum Kind {
    Filter(Arc<dyn PhysicalExpr>),
    Project(Vec<Arc<dyn PhysicalExpr>>),
}

struct ExprFactory {
    schema: SchemaRef,
    kind: Kind,
}

impl OperatorFactory for ExprFactory {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        Ok(Box::new(ExprOperator {
            schema: self.schema.clone(),
            kind: self.kind.clone(),
        }))
    }
}

struct ExprOperator {
    schema: SchemaRef,
    kind: Kind,
}

fn eval_err(e: datafusion::error::DataFusionError) -> EngineError {
    EngineError::External(Box::new(e))
}

impl Operator for ExprOperator {
    fn process_batch(
        &mut self,
        _: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        match &self.kind {
            Kind::Filter(p) => {
                let v = p
                    .evaluate(&batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(eval_err)?;
                let mask: &BooleanArray = v.as_boolean();
                out.emit(arrow_select::filter::filter_record_batch(&batch, mask)?);
            }
            Kind::Project(exprs) => {
                let cols = exprs
                    .iter()
                    .map(|e| {
                        e.evaluate(&batch)
                            .and_then(|v| v.into_array(batch.num_rows()))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(eval_err)?;
                out.emit(RecordBatch::try_new(self.schema.clone(), cols)?);
            }
        }
        Ok(())
    }
}

/// SQL expression operators on [`DataStream`].
pub trait ExprStreamExt {
    /// Keep rows where the SQL predicate is true, e.g. `"amount > 10 AND country = 'FR'"`.
    fn filter(&self, name: &str, predicate: &str) -> ferroflow_engine::Result<DataStream>;

    /// Compute these SQL expressions (each may end in `AS alias`) as the new columns.
    fn select(&self, name: &str, exprs: &[&str]) -> ferroflow_engine::Result<DataStream>;
}

impl ExprStreamExt for DataStream {
    fn filter(&self, name: &str, predicate: &str) -> ferroflow_engine::Result<DataStream> {
        let input = self.schema();
        let p = plan_expr(predicate, &input).map_err(|e| node_err(name, self, e))?;
        if p.field.data_type() != &arrow_schema::DataType::Boolean {
            return Err(EngineError::plan(format!(
                "filter '{name}': predicate '{predicate}' is {}, not Boolean",
                p.field.data_type()
            )));
        }
        self.transform(
            name,
            Arc::new(ExprFactory {
                schema: input,
                kind: Kind::Filter(p.expr),
            }),
        )
    }

    fn select(&self, name: &str, exprs: &[&str]) -> ferroflow_engine::Result<DataStream> {
        if exprs.is_empty() {
            return Err(EngineError::plan(format!(
                "select '{name}': no expressions"
            )));
        }
        let input = self.schema();
        let planned = exprs
            .iter()
            .map(|e| plan_expr(e, &input))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| node_err(name, self, e))?;
        let mut seen = std::collections::HashSet::new();
        for p in &planned {
            if !seen.insert(p.field.name().clone()) {
                return Err(EngineError::plan(format!(
                    "select '{name}': column '{}' appears twice; use AS to rename one",
                    p.field.name()
                )));
            }
        }
        let schema = Arc::new(Schema::new(
            planned.iter().map(|p| p.field.clone()).collect::<Vec<_>>(),
        ));
        self.transform(
            name,
            Arc::new(ExprFactory {
                schema,
                kind: Kind::Project(planned.into_iter().map(|p| p.expr).collect()),
            }),
        )
    }
}

fn node_err(name: &str, input: &DataStream, e: SqlError) -> EngineError {
    EngineError::plan(format!(
        "node '{name}' (input from '{}'): {e}",
        input.node_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_split_respects_quotes_and_parens() {
        assert_eq!(split_alias("a + 1 AS b"), ("a + 1", Some("b".into())));
        assert_eq!(split_alias("cast(x as int)"), ("cast(x as int)", None));
        assert_eq!(split_alias("'a as b'"), ("'a as b'", None));
        assert_eq!(
            split_alias("cast(x as int) as y"),
            ("cast(x as int)", Some("y".into()))
        );
    }

    #[test]
    fn unknown_column_fails_at_plan_time() {
        let s = Schema::new(vec![Field::new("a", arrow_schema::DataType::Int64, false)]);
        let e = plan_expr("b > 1", &s).unwrap_err().to_string();
        assert!(e.contains("b > 1"), "{e}");
        let p = plan_expr("a * 2 AS twice", &s).unwrap();
        assert_eq!(p.field.name(), "twice");
    }
}
