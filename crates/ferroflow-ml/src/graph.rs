//! `StageGraphBuilder`, `StageGraph` and `StageGraphModel`: a DAG of stages wired by table ids, Flink ML's
//! generalisation of a pipeline (several inputs and outputs, branches that join).
//!
//! ```text
//! let mut b = StageGraphBuilder::new(ferroflow_ml::builtin_stages());
//! let input = b.create_table_id();
//! let scaled = b.add_estimator(scaler, &[input], 1)[0];
//! let scored = b.add_estimator(lr, &[scaled], 1)[0];
//! let graph = b.build_estimator(&[input], &[scored])?;   // fit -> StageGraphModel
//! ```
//!
//! Nodes run in the order they were added, which is a topological order because a node can
//! only read tables that exist when it is added.
//!
//! Saved as Flink ML saves graphs: `metadata` with a `graphData` entry (`nodes` with
//! `nodeId`, `stageType`, `estimatorInputIds`, `algoOpInputIds`, `outputIds`; the graph's
//! `estimatorInputIds`, `modelInputIds`, `outputIds`) and each node's stage under
//! `stages/<nodeId>`. Here a node reads the same tables to fit and to transform, and graphs
//! have no model-data inputs or outputs; a saved graph that needs either is refused.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::RecordBatch;
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::Params;
use crate::stage::{AlgoOperator, AnyStage, Estimator, Model, Stage, StageRegistry, save_stage};

/// Flink ML's class of a graph (an estimator).
pub const GRAPH_CLASS: &str = "org.apache.flink.ml.builder.Graph";
/// Flink ML's class of a fitted graph.
pub const GRAPH_MODEL_CLASS: &str = "org.apache.flink.ml.builder.GraphModel";

/// A table in a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableId(usize);

struct Node {
    stage: AnyStage,
    inputs: Vec<TableId>,
    outputs: Vec<TableId>,
}

/// Builds a graph of stages.
pub struct StageGraphBuilder {
    next: usize,
    defined: Vec<TableId>,
    nodes: Vec<Node>,
    registry: StageRegistry,
}

impl StageGraphBuilder {
    /// An empty builder for a graph of stages of classes in `registry` (fitting copies the
    /// transformers by class into the fitted graph).
    pub fn new(registry: StageRegistry) -> Self {
        StageGraphBuilder {
            next: 0,
            defined: Vec::new(),
            nodes: Vec::new(),
            registry,
        }
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
    pub fn build_estimator(self, inputs: &[TableId], outputs: &[TableId]) -> Result<StageGraph> {
        self.check(outputs)?;
        Ok(StageGraph {
            params: Params::new(Vec::new()),
            nodes: self.nodes,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            registry: self.registry,
        })
    }

    /// A model over the graph (every node an operator or a fitted model).
    pub fn build_model(self, inputs: &[TableId], outputs: &[TableId]) -> Result<StageGraphModel> {
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
        Ok(StageGraphModel {
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

/// Run `nodes` over `tables`. With `fit`, estimators are fitted and the fitted nodes
/// collected (transformers copied by class from the registry); without, every node must be
/// fitted already and nothing is collected.
fn run(
    nodes: &[Node],
    tables: &mut HashMap<TableId, RecordBatch>,
    fit: Option<&StageRegistry>,
) -> Result<Vec<Node>> {
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
        let fitted_model = match (&n.stage, fit) {
            (AnyStage::Estimator(e), Some(_)) => {
                Some(AnyStage::Model(e.fit(&inputs).map_err(|err| {
                    MlError::Invalid(format!("node {i} ({}): {err}", e.class_name()))
                })?))
            }
            (AnyStage::Estimator(e), None) => {
                return Err(MlError::Invalid(format!(
                    "node {i} ({}) is not fitted",
                    e.class_name()
                )));
            }
            _ => None,
        };
        let out = match fitted_model.as_ref().unwrap_or(&n.stage) {
            AnyStage::Operator(s) => s.transform(&inputs)?,
            AnyStage::Model(s) => s.transform(&inputs)?,
            AnyStage::Estimator(_) => unreachable!("fitted above"),
        };
        for (t, table) in n.outputs.iter().zip(out) {
            tables.insert(*t, table);
        }
        if let Some(registry) = fit {
            let stage = match fitted_model {
                Some(m) => m,
                None => crate::pipeline::clone_stage(&n.stage, registry)?,
            };
            fitted.push(Node {
                stage,
                inputs: n.inputs.clone(),
                outputs: n.outputs.clone(),
            });
        }
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
pub struct StageGraph {
    params: Params,
    nodes: Vec<Node>,
    inputs: Vec<TableId>,
    outputs: Vec<TableId>,
    registry: StageRegistry,
}

impl Stage for StageGraph {
    fn class_name(&self) -> &'static str {
        GRAPH_CLASS
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

impl Estimator for StageGraph {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let mut tables = bind(&self.inputs, inputs)?;
        let nodes = run(&self.nodes, &mut tables, Some(&self.registry))?;
        Ok(Box::new(StageGraphModel {
            params: Params::new(Vec::new()),
            nodes,
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
        }))
    }
}

/// A fitted graph: every node an operator or a model.
pub struct StageGraphModel {
    params: Params,
    nodes: Vec<Node>,
    inputs: Vec<TableId>,
    outputs: Vec<TableId>,
}

impl Stage for StageGraphModel {
    fn class_name(&self) -> &'static str {
        GRAPH_MODEL_CLASS
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

impl AlgoOperator for StageGraphModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let mut tables = bind(&self.inputs, inputs)?;
        run(&self.nodes, &mut tables, None)?;
        collect(&self.outputs, &tables)
    }
}

impl Model for StageGraphModel {
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

    fn save(&self, dir: &Path) -> Result<()> {
        save_graph(
            GRAPH_MODEL_CLASS,
            &self.nodes,
            &self.inputs,
            &self.outputs,
            dir,
        )
    }
}

impl StageGraph {
    /// Save into `dir` (must not exist): `metadata` with `graphData`, stages under
    /// `stages/<nodeId>`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_graph(GRAPH_CLASS, &self.nodes, &self.inputs, &self.outputs, dir)
    }

    /// Load what [`StageGraph::save`] (or Flink ML) wrote; `meta` is its metadata, the nodes
    /// loaded with `registry`.
    pub fn load(dir: &Path, meta: &Value, registry: &StageRegistry) -> Result<Self> {
        let (nodes, inputs, outputs) = load_graph(dir, meta, registry)?;
        Ok(StageGraph {
            params: Params::new(Vec::new()),
            nodes,
            inputs,
            outputs,
            registry: registry.clone(),
        })
    }
}

impl StageGraphModel {
    /// Load what [`Model::save`] of a StageGraphModel (or Flink ML) wrote; `meta` is its
    /// metadata, the nodes loaded with `registry`.
    pub fn load(dir: &Path, meta: &Value, registry: &StageRegistry) -> Result<Self> {
        let (nodes, inputs, outputs) = load_graph(dir, meta, registry)?;
        if let Some(i) = nodes
            .iter()
            .position(|n| matches!(n.stage, AnyStage::Estimator(_)))
        {
            return Err(MlError::io(
                dir.join("stages").join(i.to_string()).display(),
                "a GraphModel's node is an unfitted estimator",
            ));
        }
        Ok(StageGraphModel {
            params: Params::new(Vec::new()),
            nodes,
            inputs,
            outputs,
        })
    }
}

fn ids(t: &[TableId]) -> Value {
    json!(t.iter().map(|t| t.0).collect::<Vec<_>>())
}

/// `stages/<i>`, zero-padded to the digits of `count` (Flink ML's `getPathForPipelineStage`).
fn stage_dir(dir: &Path, i: usize, count: usize) -> std::path::PathBuf {
    let digits = count.max(1).to_string().len();
    dir.join("stages").join(format!("{i:0digits$}"))
}

fn save_graph(
    class: &str,
    nodes: &[Node],
    inputs: &[TableId],
    outputs: &[TableId],
    dir: &Path,
) -> Result<()> {
    if dir.exists() {
        return Err(MlError::io(dir.display(), "already exists"));
    }
    std::fs::create_dir_all(dir).map_err(|e| MlError::io(dir.display(), e))?;
    let node_data: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut v = json!({
                "nodeId": i,
                "stageType": if matches!(n.stage, AnyStage::Estimator(_)) { "ESTIMATOR" } else { "ALGO_OPERATOR" },
                "algoOpInputIds": ids(&n.inputs),
                "outputIds": ids(&n.outputs),
            });
            if matches!(n.stage, AnyStage::Estimator(_)) {
                v["estimatorInputIds"] = ids(&n.inputs);
            }
            v
        })
        .collect();
    let mut graph_data = json!({
        "nodes": node_data,
        "modelInputIds": ids(inputs),
        "outputIds": ids(outputs),
    });
    if class == GRAPH_CLASS {
        graph_data["estimatorInputIds"] = ids(inputs);
    }
    let meta = json!({
        "className": class,
        "timestamp": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        "paramMap": {},
        "graphData": graph_data,
    });
    let path = dir.join("metadata");
    std::fs::write(&path, serde_json::to_vec_pretty(&meta).expect("JSON"))
        .map_err(|e| MlError::io(path.display(), e))?;
    for (i, n) in nodes.iter().enumerate() {
        save_stage(&n.stage, &stage_dir(dir, i, nodes.len()))?;
    }
    Ok(())
}

type Loaded = (Vec<Node>, Vec<TableId>, Vec<TableId>);

fn load_graph(dir: &Path, meta: &Value, registry: &StageRegistry) -> Result<Loaded> {
    let at = dir.join("metadata").display().to_string();
    let bad = |m: String| MlError::io(&at, m);
    let g = meta
        .get("graphData")
        .ok_or_else(|| bad("no 'graphData'".into()))?;
    let table_ids = |v: &Value, key: &str| -> Result<Option<Vec<TableId>>> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|n| TableId(n as usize))
                        .ok_or_else(|| bad(format!("'{key}' holds {x}, not a table id")))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(bad(format!("'{key}' is {other}, not a list"))),
        }
    };
    for key in ["inputModelDataIds", "outputModelDataIds"] {
        if table_ids(g, key)?.is_some_and(|v| !v.is_empty()) {
            return Err(bad(format!(
                "'{key}': graphs with model-data inputs or outputs are not supported"
            )));
        }
    }
    let mut specs: Vec<&Value> = g
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("'graphData' has no 'nodes' list".into()))?
        .iter()
        .collect();
    specs.sort_by_key(|n| n.get("nodeId").and_then(Value::as_u64).unwrap_or(u64::MAX));
    let count = specs
        .iter()
        .filter_map(|n| n.get("nodeId").and_then(Value::as_u64))
        .max()
        .map_or(0, |m| m as usize + 1);
    let mut nodes = Vec::with_capacity(specs.len());
    for spec in specs {
        let id = spec
            .get("nodeId")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("a node without a 'nodeId': {spec}")))?
            as usize;
        let algo = table_ids(spec, "algoOpInputIds")?.unwrap_or_default();
        if let Some(est) = table_ids(spec, "estimatorInputIds")?
            && est != algo
        {
            return Err(bad(format!(
                "node {id} fits on other tables than it transforms; not supported here"
            )));
        }
        for key in ["inputModelDataIds", "outputModelDataIds"] {
            if table_ids(spec, key)?.is_some_and(|v| !v.is_empty()) {
                return Err(bad(format!("node {id}: '{key}' is not supported")));
            }
        }
        nodes.push(Node {
            stage: registry.load(&stage_dir(dir, id, count))?,
            inputs: algo,
            outputs: table_ids(spec, "outputIds")?.unwrap_or_default(),
        });
    }
    let inputs = match table_ids(g, "estimatorInputIds")? {
        Some(e) => e,
        None => table_ids(g, "modelInputIds")?.unwrap_or_default(),
    };
    let outputs = table_ids(g, "outputIds")?.unwrap_or_default();
    Ok((nodes, inputs, outputs))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array};
    use serde_json::json;

    use super::*;
    use crate::{load_stage, stage_from_json};

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
        let graph = scaler_graph();
        let model = graph.fit(&[x_table(&[0.0, 5.0, 10.0])]).unwrap();
        let out = model.transform(&[x_table(&[2.5, 10.0])]).unwrap();
        let s = crate::vector::read_vectors("s", out[0].column_by_name("s").unwrap()).unwrap();
        assert_eq!(s[0].as_ref().unwrap().get(0), 0.25);
        assert_eq!(s[1].as_ref().unwrap().get(0), 1.0);
        let md = model.model_data().unwrap();
        assert!(md[0].column_by_name("maxVector").is_some());
    }

    fn x_table(xs: &[f64]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![(
            "x",
            Arc::new(Float64Array::from(xs.to_vec())) as ArrayRef,
        )])
        .unwrap()
    }

    /// x -> VectorAssembler -> v -> MinMaxScaler -> s.
    fn scaler_graph() -> StageGraph {
        let mut b = StageGraphBuilder::new(crate::builtin_stages());
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
        b.build_estimator(&[input], &[scaled]).unwrap()
    }

    #[test]
    fn graphs_and_graph_models_save_and_load_in_flink_mls_layout() {
        let dir = tempfile::tempdir().unwrap();
        let graph = scaler_graph();
        // The unfitted graph: its estimator node comes back unfitted and fits the same way.
        graph.save(&dir.path().join("graph")).unwrap();
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("graph/metadata")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["className"], GRAPH_CLASS);
        let nodes = meta["graphData"]["nodes"].as_array().unwrap();
        assert_eq!(nodes[0]["stageType"], "ALGO_OPERATOR");
        assert_eq!(nodes[1]["stageType"], "ESTIMATOR");
        assert_eq!(nodes[1]["estimatorInputIds"], json!([1]));
        assert_eq!(meta["graphData"]["outputIds"], json!([2]));
        let AnyStage::Estimator(loaded) = load_stage(&dir.path().join("graph")).unwrap() else {
            panic!("a StageGraph loads as an estimator")
        };
        let model = loaded.fit(&[x_table(&[0.0, 5.0, 10.0])]).unwrap();
        // The fitted graph: saved with its nodes' model data, loaded, same output.
        model.save(&dir.path().join("model")).unwrap();
        assert!(dir.path().join("model/stages/1/data/0.arrow").exists());
        let AnyStage::Model(back) = load_stage(&dir.path().join("model")).unwrap() else {
            panic!("a StageGraphModel loads as a model")
        };
        let input = [x_table(&[2.5, 10.0])];
        let (a, b) = (
            model.transform(&input).unwrap(),
            back.transform(&input).unwrap(),
        );
        assert_eq!(a, b);
        // Flink ML features this library does not have are refused, not ignored.
        let mut meta: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("model/metadata")).unwrap(),
        )
        .unwrap();
        meta["graphData"]["inputModelDataIds"] = json!([7]);
        std::fs::write(dir.path().join("model/metadata"), meta.to_string()).unwrap();
        let err = load_stage(&dir.path().join("model"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inputModelDataIds") && err.contains("not supported"),
            "{err}"
        );
    }

    #[test]
    fn undefined_tables_are_refused() {
        let mut b = StageGraphBuilder::new(crate::builtin_stages());
        let mut other = StageGraphBuilder::new(crate::builtin_stages());
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
