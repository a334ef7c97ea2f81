//! `GraphBuilder`, `Graph` and `GraphModel`: a DAG of stages wired by table ids, Flink ML's
//! generalisation of a pipeline (several inputs and outputs, branches that join).
//!
//! ```text
//! let mut b = GraphBuilder::new();
//! let input = b.create_table_id();
//! let scaled = b.add_estimator(scaler, &[input], 1)[0];
//! let scored = b.add_estimator(lr, &[scaled], 1)[0];
//! let graph = b.build_estimator(&[input], &[scored])?;   // fit -> GraphModel
//! ```
//!
//! Nodes run in the order they were added, which is a topological order because a node can
//! only read tables that exist when it is added.

use std::collections::HashMap;

use arrow_array::RecordBatch;

use crate::error::{MlError, Result};
use crate::params::Params;
use crate::stage::{AlgoOperator, AnyStage, Estimator, Model, Stage};

/// A table in a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableId(usize);

struct Node {
    stage: AnyStage,
    inputs: Vec<TableId>,
    outputs: Vec<TableId>,
}

/// Builds a graph of stages.
#[derive(Default)]
pub struct GraphBuilder {
    next: usize,
    defined: Vec<TableId>,
    nodes: Vec<Node>,
}

impl GraphBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new table id, for a graph input.
    pub fn create_table_id(&mut self) -> TableId {
        let id = TableId(self.next);
        self.next += 1;
        self.defined.push(id);
        id
    }

    fn add(&mut self, stage: AnyStage, inputs: &[TableId], outputs: usize) -> Result<Vec<TableId>> {
        if let Some(t) = inputs.iter().find(|t| !self.defined.contains(t)) {
            return Err(MlError::Invalid(format!(
                "table {} is not defined in this graph",
                t.0
            )));
        }
        let out: Vec<TableId> = (0..outputs.max(1))
            .map(|_| self.create_table_id())
            .collect();
        self.nodes.push(Node {
            stage,
            inputs: inputs.to_vec(),
            outputs: out.clone(),
        });
        Ok(out)
    }

    /// Add an operator reading `inputs`; returns its `outputs` output tables.
    pub fn add_algo_operator(
        &mut self,
        stage: Box<dyn AlgoOperator>,
        inputs: &[TableId],
        outputs: usize,
    ) -> Result<Vec<TableId>> {
        self.add(AnyStage::Operator(stage), inputs, outputs)
    }

    /// Add an estimator fitted on `inputs`; its model's `outputs` tables are returned.
    pub fn add_estimator(
        &mut self,
        stage: Box<dyn Estimator>,
        inputs: &[TableId],
        outputs: usize,
    ) -> Result<Vec<TableId>> {
        self.add(AnyStage::Estimator(stage), inputs, outputs)
    }

    /// An estimator over the graph: fitting it fits every estimator node in order.
    pub fn build_estimator(self, inputs: &[TableId], outputs: &[TableId]) -> Result<Graph> {
        self.check(outputs)?;
        Ok(Graph {
            params: Params::new(Vec::new()),
            nodes: self.nodes,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        })
    }

    /// A model over the graph (every node an operator or a fitted model).
    pub fn build_model(self, inputs: &[TableId], outputs: &[TableId]) -> Result<GraphModel> {
        self.check(outputs)?;
        if self
            .nodes
            .iter()
            .any(|n| matches!(n.stage, AnyStage::Estimator(_)))
        {
            return Err(MlError::Invalid(
                "a graph model cannot hold an unfitted estimator".into(),
            ));
        }
        Ok(GraphModel {
            params: Params::new(Vec::new()),
            nodes: self.nodes,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        })
    }

    fn check(&self, outputs: &[TableId]) -> Result<()> {
        match outputs.iter().find(|t| !self.defined.contains(t)) {
            Some(t) => Err(MlError::Invalid(format!(
                "output table {} is not defined in this graph",
                t.0
            ))),
            None => Ok(()),
        }
    }
}

/// Run `nodes` over `tables` (fitting estimators when `fit`), collecting the fitted nodes.
fn run(nodes: &[Node], tables: &mut HashMap<TableId, RecordBatch>, fit: bool) -> Result<Vec<Node>> {
    let mut fitted = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let inputs: Vec<RecordBatch> = n
            .inputs
            .iter()
            .map(|t| {
                tables.get(t).cloned().ok_or_else(|| {
                    MlError::Invalid(format!("node {i}: table {} has no value", t.0))
                })
            })
            .collect::<Result<_>>()?;
        let stage = match &n.stage {
            AnyStage::Estimator(e) if fit => AnyStage::Model(e.fit(&inputs).map_err(|err| {
                MlError::Invalid(format!("node {i} ({}): {err}", e.class_name()))
            })?),
            AnyStage::Estimator(e) => {
                return Err(MlError::Invalid(format!(
                    "node {i} ({}) is not fitted",
                    e.class_name()
                )));
            }
            other => crate::pipeline::clone_stage(other)?,
        };
        let out = match &stage {
            AnyStage::Operator(s) => s.transform(&inputs)?,
            AnyStage::Model(s) => s.transform(&inputs)?,
            AnyStage::Estimator(_) => unreachable!("fitted above"),
        };
        for (t, table) in n.outputs.iter().zip(out) {
            tables.insert(*t, table);
        }
        fitted.push(Node {
            stage,
            inputs: n.inputs.clone(),
            outputs: n.outputs.clone(),
        });
    }
    Ok(fitted)
}

fn bind(ids: &[TableId], tables: &[RecordBatch]) -> Result<HashMap<TableId, RecordBatch>> {
    if ids.len() != tables.len() {
        return Err(MlError::Invalid(format!(
            "the graph takes {} tables, {} given",
            ids.len(),
            tables.len()
        )));
    }
    Ok(ids.iter().copied().zip(tables.iter().cloned()).collect())
}

fn collect(ids: &[TableId], tables: &HashMap<TableId, RecordBatch>) -> Result<Vec<RecordBatch>> {
    ids.iter()
        .map(|t| {
            tables
                .get(t)
                .cloned()
                .ok_or_else(|| MlError::Invalid(format!("output table {} has no value", t.0)))
        })
        .collect()
}

/// An estimator made of a graph of stages.
pub struct Graph {
    params: Params,
    nodes: Vec<Node>,
    inputs: Vec<TableId>,
    outputs: Vec<TableId>,
}

impl Stage for Graph {
    fn class_name(&self) -> &'static str {
        "org.apache.flink.ml.builder.Graph"
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

impl Estimator for Graph {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let mut tables = bind(&self.inputs, inputs)?;
        let nodes = run(&self.nodes, &mut tables, true)?;
        Ok(Box::new(GraphModel {
            params: Params::new(Vec::new()),
            nodes,
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
        }))
    }
}

/// A fitted graph: every node an operator or a model.
pub struct GraphModel {
    params: Params,
    nodes: Vec<Node>,
    inputs: Vec<TableId>,
    outputs: Vec<TableId>,
}

impl Stage for GraphModel {
    fn class_name(&self) -> &'static str {
        "org.apache.flink.ml.builder.GraphModel"
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

impl AlgoOperator for GraphModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let mut tables = bind(&self.inputs, inputs)?;
        run(&self.nodes, &mut tables, false)?;
        collect(&self.outputs, &tables)
    }
}

impl Model for GraphModel {
    /// The model data of the last model node.
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        for n in self.nodes.iter().rev() {
            if let AnyStage::Model(m) = &n.stage {
                return m.model_data();
            }
        }
        Ok(Vec::new())
    }

    fn set_model_data(&mut self, _data: &[RecordBatch]) -> Result<()> {
        Err(MlError::Invalid(
            "a GraphModel's data is its nodes' (set them one by one)".into(),
        ))
    }

    fn save(&self, _dir: &std::path::Path) -> Result<()> {
        Err(MlError::Invalid(
            "saving a GraphModel is not supported yet (save a PipelineModel, or its stages)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array};
    use serde_json::json;

    use super::*;
    use crate::stage::stage_from_json;

    fn estimator(v: serde_json::Value) -> Box<dyn Estimator> {
        match stage_from_json(&v).unwrap() {
            AnyStage::Estimator(e) => e,
            _ => panic!("not an estimator"),
        }
    }

    fn operator(v: serde_json::Value) -> Box<dyn AlgoOperator> {
        match stage_from_json(&v).unwrap() {
            AnyStage::Operator(o) => o,
            _ => panic!("not an operator"),
        }
    }

    /// An operator feeding an estimator: fitting fits the scaler on the assembled training
    /// table; the model then assembles and scales other tables.
    #[test]
    fn a_graph_fits_on_one_branch_and_transforms_another() {
        let table = |xs: &[f64]| {
            RecordBatch::try_from_iter(vec![(
                "x",
                Arc::new(Float64Array::from(xs.to_vec())) as ArrayRef,
            )])
            .unwrap()
        };
        let mut b = GraphBuilder::new();
        let input = b.create_table_id();
        let assembled = b
            .add_algo_operator(
                operator(json!({"className": "VectorAssembler", "paramMap": {"inputCols": ["x"], "outputCol": "v", "inputSizes": [1]}})),
                &[input],
                1,
            )
            .unwrap()[0];
        let scaled = b
            .add_estimator(
                estimator(json!({"className": "MinMaxScaler", "paramMap": {"inputCol": "v", "outputCol": "s"}})),
                &[assembled],
                1,
            )
            .unwrap()[0];
        let graph = b.build_estimator(&[input], &[scaled]).unwrap();
        let model = graph.fit(&[table(&[0.0, 5.0, 10.0])]).unwrap();
        let out = model.transform(&[table(&[2.5, 10.0])]).unwrap();
        let s = crate::vector::read_vectors("s", out[0].column_by_name("s").unwrap()).unwrap();
        assert_eq!(s[0].as_ref().unwrap().get(0), 0.25);
        assert_eq!(s[1].as_ref().unwrap().get(0), 1.0);
        let md = model.model_data().unwrap();
        assert!(md[0].column_by_name("maxVector").is_some());
    }

    #[test]
    fn undefined_tables_are_refused() {
        let mut b = GraphBuilder::new();
        let mut other = GraphBuilder::new();
        let foreign = other.create_table_id();
        other.create_table_id();
        let err = b
            .add_algo_operator(operator(json!({"className": "Normalizer"})), &[foreign], 1)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not defined"), "{err}");
    }
}
