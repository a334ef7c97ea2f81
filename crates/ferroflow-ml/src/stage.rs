//! Flink ML's stage API: `Stage`, `AlgoOperator` (and `Transformer`), `Estimator`, `Model`;
//! the registry of stages by class name; save and load.
//!
//! Tables are Arrow `RecordBatch`es. A saved stage is a directory with `metadata` (JSON:
//! `className`, `timestamp`, `paramMap`, as Flink ML writes it) and, for a model, its model
//! data under `data/` as Arrow IPC files (`data/0.arrow`, ...).

use std::path::Path;

use arrow_array::RecordBatch;
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::Params;

/// Anything with params and a Flink ML class name.
pub trait Stage: Send + Sync {
    /// Flink ML's full class name (`org.apache.flink.ml.feature.standardscaler.StandardScaler`).
    fn class_name(&self) -> &'static str;

    /// The params.
    fn params(&self) -> &Params;

    /// The params, to change.
    fn params_mut(&mut self) -> &mut Params;
}

/// A stage that maps input tables to output tables. A `Transformer` in Flink ML is an
/// `AlgoOperator` whose output rows correspond to input rows; both are this trait here.
pub trait AlgoOperator: Stage {
    /// Transform `inputs` (usually one table) into the output tables, in Flink ML's order.
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>>;
}

/// A stage that learns a [`Model`] from tables.
pub trait Estimator: Stage {
    /// Fit on `inputs` (usually one bounded table).
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>>;

    /// This estimator as one that learns from a stream (Flink ML's online estimators).
    fn as_online(&self) -> Option<&dyn crate::online::OnlineEstimator> {
        None
    }

    /// This estimator as one that learns from a stream, to change (its initial model).
    fn as_online_mut(&mut self) -> Option<&mut dyn crate::online::OnlineEstimator> {
        None
    }
}

/// A fitted (or given) model: a transformer with model data.
pub trait Model: AlgoOperator {
    /// The model data as tables, with Flink ML's column names.
    fn model_data(&self) -> Result<Vec<RecordBatch>>;

    /// Replace the model data (Flink ML's `setModelData`). Models of online estimators
    /// given several versions take the newest.
    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()>;

    /// The version of the model data now held, for models whose data is versioned (online
    /// models): a model-data stream's older versions are skipped.
    fn version(&self) -> Option<i64> {
        None
    }

    /// The latest event time (ms) of a row this model may score (OnlineStandardScaler's
    /// `maxAllowedModelDelayMs`: a row later than the model's timestamp plus the delay waits
    /// for a newer model). `None`: any row.
    fn scores_until(&self) -> Option<i64> {
        None
    }

    /// The schema of what [`AlgoOperator::transform`] gives for input `input`, when the
    /// model knows it without model data (online models, from their params). `None`: found
    /// by transforming an empty batch.
    fn output_schema(
        &self,
        _input: &arrow_schema::Schema,
    ) -> Result<Option<arrow_schema::SchemaRef>> {
        Ok(None)
    }

    /// Save into `dir` (which must not exist): `metadata` and the model data under `data/`.
    fn save(&self, dir: &Path) -> Result<()> {
        save_model_files(self.class_name(), self.params(), &self.model_data()?, dir)
    }
}

/// A stage of any kind, as created from a class name.
pub enum AnyStage {
    /// Needs no fit.
    Operator(Box<dyn AlgoOperator>),
    /// Fits a model.
    Estimator(Box<dyn Estimator>),
    /// A model (its data set by fitting, loading or `set_model_data`).
    Model(Box<dyn Model>),
}

impl AnyStage {
    /// The stage's params.
    pub fn params_mut(&mut self) -> &mut Params {
        match self {
            AnyStage::Operator(s) => s.params_mut(),
            AnyStage::Estimator(s) => s.params_mut(),
            AnyStage::Model(s) => s.params_mut(),
        }
    }
}

/// Makes a stage (for [`register_stage`]).
pub type Factory = fn() -> AnyStage;

fn extra() -> &'static std::sync::Mutex<Vec<(&'static str, Factory)>> {
    static EXTRA: std::sync::OnceLock<std::sync::Mutex<Vec<(&'static str, Factory)>>> =
        std::sync::OnceLock::new();
    EXTRA.get_or_init(Default::default)
}

/// Add a stage defined outside this crate (SQLTransformer, in `ferroflow-sql`), so
/// [`create_stage`] and saved models find it by class name. Registering a name twice keeps
/// the first.
pub fn register_stage(class_name: &'static str, make: Factory) {
    let mut e = extra().lock().unwrap_or_else(|p| p.into_inner());
    if !e.iter().any(|(n, _)| *n == class_name) {
        e.push((class_name, make));
    }
}

/// Lists stages as `(Flink ML class name, kind, type)`.
macro_rules! stages {
    ($(($class:literal, $kind:ident, $ty:ty)),* $(,)?) => {
        vec![$(($class, (|| AnyStage::$kind(Box::new(<$ty>::default()))) as Factory)),*]
    };
}

/// Every stage: (Flink ML class name, constructor).
fn registry() -> Vec<(&'static str, Factory)> {
    use crate::evaluation::binary_classification::BinaryClassificationEvaluator;
    use crate::feature::*;
    use crate::linear;
    stages![
        (
            "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression",
            Estimator,
            crate::online::OnlineLogisticRegression
        ),
        (
            "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegressionModel",
            Model,
            crate::online::OnlineLogisticRegressionModel
        ),
        (
            "org.apache.flink.ml.clustering.kmeans.OnlineKMeans",
            Estimator,
            crate::online::OnlineKMeans
        ),
        (
            "org.apache.flink.ml.clustering.kmeans.OnlineKMeansModel",
            Model,
            crate::online::OnlineKMeansModel
        ),
        (
            "org.apache.flink.ml.feature.standardscaler.OnlineStandardScaler",
            Estimator,
            crate::online::OnlineStandardScaler
        ),
        (
            "org.apache.flink.ml.feature.standardscaler.OnlineStandardScalerModel",
            Model,
            crate::online::OnlineStandardScalerModel
        ),
        (
            "org.apache.flink.ml.feature.univariatefeatureselector.UnivariateFeatureSelector",
            Estimator,
            univariate_feature_selector::UnivariateFeatureSelector
        ),
        (
            "org.apache.flink.ml.feature.univariatefeatureselector.UnivariateFeatureSelectorModel",
            Model,
            univariate_feature_selector::UnivariateFeatureSelectorModel
        ),
        (
            "ferroflow.ml.evaluation.MulticlassClassificationEvaluator",
            Operator,
            crate::evaluation::multiclass_regression::MulticlassClassificationEvaluator
        ),
        (
            "ferroflow.ml.evaluation.RegressionEvaluator",
            Operator,
            crate::evaluation::multiclass_regression::RegressionEvaluator
        ),
        (
            "org.apache.flink.ml.feature.binarizer.Binarizer",
            Operator,
            simple::Binarizer
        ),
        (
            "org.apache.flink.ml.feature.vectorslicer.VectorSlicer",
            Operator,
            simple::VectorSlicer
        ),
        (
            "org.apache.flink.ml.feature.ngram.NGram",
            Operator,
            simple::NGram
        ),
        (
            "org.apache.flink.ml.feature.featurehasher.FeatureHasher",
            Operator,
            simple::FeatureHasher
        ),
        (
            "org.apache.flink.ml.feature.randomsplitter.RandomSplitter",
            Operator,
            simple::RandomSplitter
        ),
        (
            "com.alibaba.alink.pipeline.classification.GbdtClassifier",
            Estimator,
            crate::gbdt::GbdtClassifier
        ),
        (
            "com.alibaba.alink.pipeline.classification.GbdtClassificationModel",
            Model,
            crate::gbdt::GbdtClassifierModel
        ),
        (
            "com.alibaba.alink.pipeline.regression.GbdtRegressor",
            Estimator,
            crate::gbdt::GbdtRegressor
        ),
        (
            "com.alibaba.alink.pipeline.regression.GbdtRegressionModel",
            Model,
            crate::gbdt::GbdtRegressorModel
        ),
        (
            "com.alibaba.alink.pipeline.recommendation.ALS",
            Estimator,
            crate::als::Als
        ),
        (
            "com.alibaba.alink.pipeline.recommendation.ALSModel",
            Model,
            crate::als::AlsModel
        ),
        (
            "com.alibaba.alink.pipeline.feature.PCA",
            Estimator,
            pca::Pca
        ),
        (
            "com.alibaba.alink.pipeline.feature.PCAModel",
            Model,
            pca::PcaModel
        ),
        (
            "org.apache.flink.ml.clustering.kmeans.KMeans",
            Estimator,
            crate::clustering::KMeans
        ),
        (
            "org.apache.flink.ml.clustering.kmeans.KMeansModel",
            Model,
            crate::clustering::KMeansModel
        ),
        (
            "org.apache.flink.ml.feature.stopwordsremover.StopWordsRemover",
            Operator,
            stop_words_remover::StopWordsRemover
        ),
        (
            "org.apache.flink.ml.clustering.agglomerativeclustering.AgglomerativeClustering",
            Operator,
            crate::clustering::AgglomerativeClustering
        ),
        (
            "org.apache.flink.ml.recommendation.swing.Swing",
            Operator,
            crate::recommendation::Swing
        ),
        (
            "org.apache.flink.ml.stats.chisqtest.ChiSqTest",
            Operator,
            crate::stats::ChiSqTest
        ),
        (
            "org.apache.flink.ml.stats.anovatest.ANOVATest",
            Operator,
            crate::stats::AnovaTest
        ),
        (
            "org.apache.flink.ml.stats.fvaluetest.FValueTest",
            Operator,
            crate::stats::FValueTest
        ),
        (
            "org.apache.flink.ml.classification.naivebayes.NaiveBayes",
            Estimator,
            crate::classification::NaiveBayes
        ),
        (
            "org.apache.flink.ml.classification.naivebayes.NaiveBayesModel",
            Model,
            crate::classification::NaiveBayesModel
        ),
        (
            "org.apache.flink.ml.classification.knn.Knn",
            Estimator,
            crate::classification::Knn
        ),
        (
            "org.apache.flink.ml.classification.knn.KnnModel",
            Model,
            crate::classification::KnnModel
        ),
        (
            "org.apache.flink.ml.feature.hashingtf.HashingTF",
            Operator,
            text::HashingTf
        ),
        (
            "org.apache.flink.ml.feature.countvectorizer.CountVectorizer",
            Estimator,
            text::CountVectorizer
        ),
        (
            "org.apache.flink.ml.feature.countvectorizer.CountVectorizerModel",
            Model,
            text::CountVectorizerModel
        ),
        ("org.apache.flink.ml.feature.idf.IDF", Estimator, text::Idf),
        (
            "org.apache.flink.ml.feature.idf.IDFModel",
            Model,
            text::IdfModel
        ),
        (
            "org.apache.flink.ml.feature.kbinsdiscretizer.KBinsDiscretizer",
            Estimator,
            kbins_discretizer::KBinsDiscretizer
        ),
        (
            "org.apache.flink.ml.feature.kbinsdiscretizer.KBinsDiscretizerModel",
            Model,
            kbins_discretizer::KBinsDiscretizerModel
        ),
        (
            "org.apache.flink.ml.feature.vectorindexer.VectorIndexer",
            Estimator,
            vector_indexer::VectorIndexer
        ),
        (
            "org.apache.flink.ml.feature.vectorindexer.VectorIndexerModel",
            Model,
            vector_indexer::VectorIndexerModel
        ),
        (
            "org.apache.flink.ml.evaluation.binaryclassification.BinaryClassificationEvaluator",
            Operator,
            BinaryClassificationEvaluator
        ),
        (
            "org.apache.flink.ml.classification.logisticregression.LogisticRegression",
            Estimator,
            linear::LogisticRegression
        ),
        (
            "org.apache.flink.ml.classification.logisticregression.LogisticRegressionModel",
            Model,
            linear::LogisticRegressionModel
        ),
        (
            "org.apache.flink.ml.classification.linearsvc.LinearSVC",
            Estimator,
            linear::LinearSvc
        ),
        (
            "org.apache.flink.ml.classification.linearsvc.LinearSVCModel",
            Model,
            linear::LinearSvcModel
        ),
        (
            "org.apache.flink.ml.regression.linearregression.LinearRegression",
            Estimator,
            linear::LinearRegression
        ),
        (
            "org.apache.flink.ml.regression.linearregression.LinearRegressionModel",
            Model,
            linear::LinearRegressionModel
        ),
        (
            "org.apache.flink.ml.feature.bucketizer.Bucketizer",
            Operator,
            bucketizer::Bucketizer
        ),
        ("org.apache.flink.ml.feature.dct.DCT", Operator, dct::Dct),
        (
            "org.apache.flink.ml.feature.elementwiseproduct.ElementwiseProduct",
            Operator,
            elementwise_product::ElementwiseProduct
        ),
        (
            "org.apache.flink.ml.feature.imputer.Imputer",
            Estimator,
            imputer::Imputer
        ),
        (
            "org.apache.flink.ml.feature.imputer.ImputerModel",
            Model,
            imputer::ImputerModel
        ),
        (
            "org.apache.flink.ml.feature.interaction.Interaction",
            Operator,
            interaction::Interaction
        ),
        (
            "org.apache.flink.ml.feature.maxabsscaler.MaxAbsScaler",
            Estimator,
            max_abs_scaler::MaxAbsScaler
        ),
        (
            "org.apache.flink.ml.feature.maxabsscaler.MaxAbsScalerModel",
            Model,
            max_abs_scaler::MaxAbsScalerModel
        ),
        (
            "org.apache.flink.ml.feature.lsh.MinHashLSH",
            Estimator,
            min_hash_lsh::MinHashLsh
        ),
        (
            "org.apache.flink.ml.feature.lsh.MinHashLSHModel",
            Model,
            min_hash_lsh::MinHashLshModel
        ),
        (
            "org.apache.flink.ml.feature.minmaxscaler.MinMaxScaler",
            Estimator,
            min_max_scaler::MinMaxScaler
        ),
        (
            "org.apache.flink.ml.feature.minmaxscaler.MinMaxScalerModel",
            Model,
            min_max_scaler::MinMaxScalerModel
        ),
        (
            "org.apache.flink.ml.feature.normalizer.Normalizer",
            Operator,
            normalizer::Normalizer
        ),
        (
            "org.apache.flink.ml.feature.onehotencoder.OneHotEncoder",
            Estimator,
            one_hot_encoder::OneHotEncoder
        ),
        (
            "org.apache.flink.ml.feature.onehotencoder.OneHotEncoderModel",
            Model,
            one_hot_encoder::OneHotEncoderModel
        ),
        (
            "org.apache.flink.ml.feature.polynomialexpansion.PolynomialExpansion",
            Operator,
            polynomial_expansion::PolynomialExpansion
        ),
        (
            "org.apache.flink.ml.feature.regextokenizer.RegexTokenizer",
            Operator,
            tokenizer::RegexTokenizer
        ),
        (
            "org.apache.flink.ml.feature.robustscaler.RobustScaler",
            Estimator,
            robust_scaler::RobustScaler
        ),
        (
            "org.apache.flink.ml.feature.robustscaler.RobustScalerModel",
            Model,
            robust_scaler::RobustScalerModel
        ),
        (
            "org.apache.flink.ml.feature.standardscaler.StandardScaler",
            Estimator,
            standard_scaler::StandardScaler
        ),
        (
            "org.apache.flink.ml.feature.standardscaler.StandardScalerModel",
            Model,
            standard_scaler::StandardScalerModel
        ),
        (
            "org.apache.flink.ml.feature.stringindexer.IndexToStringModel",
            Model,
            string_indexer::IndexToStringModel
        ),
        (
            "org.apache.flink.ml.feature.stringindexer.StringIndexer",
            Estimator,
            string_indexer::StringIndexer
        ),
        (
            "org.apache.flink.ml.feature.stringindexer.StringIndexerModel",
            Model,
            string_indexer::StringIndexerModel
        ),
        (
            "org.apache.flink.ml.feature.tokenizer.Tokenizer",
            Operator,
            tokenizer::Tokenizer
        ),
        (
            "org.apache.flink.ml.feature.variancethresholdselector.VarianceThresholdSelector",
            Estimator,
            variance_threshold_selector::VarianceThresholdSelector
        ),
        (
            "org.apache.flink.ml.feature.variancethresholdselector.VarianceThresholdSelectorModel",
            Model,
            variance_threshold_selector::VarianceThresholdSelectorModel
        ),
        (
            "org.apache.flink.ml.feature.vectorassembler.VectorAssembler",
            Operator,
            vector_assembler::VectorAssembler
        ),
        // Alink's names last: short names resolve to Flink ML's stages first.
        (
            "com.alibaba.alink.pipeline.dataproc.StandardScaler",
            Estimator,
            crate::alink::AlinkStandardScaler
        ),
        (
            "com.alibaba.alink.pipeline.dataproc.StandardScalerModel",
            Model,
            crate::alink::AlinkStandardScalerModel
        ),
    ]
}

/// Class names of every stage (full Flink ML names).
pub fn stage_classes() -> Vec<&'static str> {
    let extra = extra().lock().unwrap_or_else(|p| p.into_inner()).clone();
    registry()
        .into_iter()
        .chain(extra)
        .map(|(n, _)| n)
        .collect()
}

/// Create a stage from its Flink ML class name, full
/// (`org.apache.flink.ml.feature.standardscaler.StandardScaler`) or short (`StandardScaler`).
pub fn create_stage(class_name: &str) -> Result<AnyStage> {
    let extra = extra().lock().unwrap_or_else(|p| p.into_inner()).clone();
    registry()
        .into_iter()
        .chain(extra)
        .find(|(full, _)| *full == class_name || full.rsplit('.').next() == Some(class_name))
        .map(|(_, make)| make())
        .ok_or_else(|| MlError::UnknownStage(class_name.to_string()))
}

/// Create a stage from Flink ML's metadata shape `{"className": ..., "paramMap": {...}}`,
/// or a pipeline `{"className": "Pipeline", "stages": [...]}`.
pub fn stage_from_json(meta: &Value) -> Result<AnyStage> {
    let class = meta
        .get("className")
        .and_then(Value::as_str)
        .ok_or_else(|| MlError::Invalid("stage metadata without a 'className' string".into()))?;
    if class == "Pipeline" || class == crate::pipeline::PIPELINE_CLASS {
        return Ok(AnyStage::Estimator(Box::new(
            crate::pipeline::Pipeline::from_json(meta)?,
        )));
    }
    let mut stage = create_stage(class)?;
    if let Some(map) = meta.get("paramMap") {
        let map = map
            .as_object()
            .ok_or_else(|| MlError::Invalid("'paramMap' is not an object".into()))?;
        stage.params_mut().set_all(map)?;
    }
    Ok(stage)
}

fn metadata(class_name: &str, params: &Params) -> Value {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    json!({
        "className": class_name,
        "timestamp": timestamp,
        "paramMap": Value::Object(params.to_map()),
    })
}

/// Save `model` (metadata and model data) into `dir`, which must not exist yet.
pub fn save_model(model: &dyn Model, dir: &Path) -> Result<()> {
    model.save(dir)
}

/// Save any stage: a model with its data, an operator or estimator as its metadata.
pub fn save_stage(stage: &AnyStage, dir: &Path) -> Result<()> {
    match stage {
        AnyStage::Model(m) => m.save(dir),
        AnyStage::Operator(s) => save_model_files(s.class_name(), s.params(), &[], dir),
        AnyStage::Estimator(s) => save_model_files(s.class_name(), s.params(), &[], dir),
    }
}

fn save_model_files(class: &str, params: &Params, data: &[RecordBatch], dir: &Path) -> Result<()> {
    if dir.exists() {
        return Err(MlError::io(dir.display(), "already exists"));
    }
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).map_err(|e| MlError::io(data_dir.display(), e))?;
    let meta = metadata(class, params);
    let path = dir.join("metadata");
    std::fs::write(&path, serde_json::to_vec_pretty(&meta).expect("JSON"))
        .map_err(|e| MlError::io(path.display(), e))?;
    for (i, table) in data.iter().enumerate() {
        let path = data_dir.join(format!("{i}.arrow"));
        let file = std::fs::File::create(&path).map_err(|e| MlError::io(path.display(), e))?;
        let mut w = arrow_ipc::writer::FileWriter::try_new(file, &table.schema())?;
        w.write(table)?;
        w.finish()?;
    }
    Ok(())
}

/// Load a stage saved by [`save_model`] (or a Flink ML metadata file with its params).
pub fn load_stage(dir: &Path) -> Result<AnyStage> {
    let path = dir.join("metadata");
    let text = std::fs::read_to_string(&path).map_err(|e| MlError::io(path.display(), e))?;
    let meta: Value = serde_json::from_str(&text).map_err(|e| MlError::io(path.display(), e))?;
    if meta.get("className").and_then(Value::as_str) == Some(crate::pipeline::PIPELINE_MODEL_CLASS)
    {
        return Ok(AnyStage::Model(Box::new(
            crate::pipeline::PipelineModel::load(dir, &meta)?,
        )));
    }
    match meta.get("className").and_then(Value::as_str) {
        Some(crate::graph::GRAPH_MODEL_CLASS) => {
            return Ok(AnyStage::Model(Box::new(crate::graph::GraphModel::load(
                dir, &meta,
            )?)));
        }
        Some(crate::graph::GRAPH_CLASS) => {
            return Ok(AnyStage::Estimator(Box::new(crate::graph::Graph::load(
                dir, &meta,
            )?)));
        }
        _ => {}
    }
    let mut stage = stage_from_json(&meta)?;
    if let AnyStage::Model(m) = &mut stage {
        let mut tables = Vec::new();
        for i in 0.. {
            let path = dir.join("data").join(format!("{i}.arrow"));
            if !path.exists() {
                break;
            }
            let mut file =
                std::fs::File::open(&path).map_err(|e| MlError::io(path.display(), e))?;
            let shown = path.display().to_string();
            ferroflow_connectors::ipc::check_ipc_file(&mut file, &shown)?;
            let read = ferroflow_connectors::ipc::guard_decode(&shown, || {
                let reader = arrow_ipc::reader::FileReader::try_new(file, None)?;
                let schema = reader.schema();
                let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                Ok::<_, MlError>(arrow_select::concat::concat_batches(&schema, &batches)?)
            })?;
            tables.push(read?);
        }
        m.set_model_data(&tables)?;
    }
    Ok(stage)
}

/// The saved model (or transformer) of `version` at `uri` (a directory, or a `file://`
/// uri), for node `node`.
pub(crate) fn load_version(
    node: &str,
    version: i64,
    uri: &str,
) -> ferroflow_engine::Result<std::sync::Arc<dyn AlgoOperator>> {
    let what = format!("node '{node}': version {version} at '{uri}'");
    let dir = uri.strip_prefix("file://").unwrap_or(uri);
    Ok(
        match load_stage(std::path::Path::new(dir))
            .map_err(|e| crate::online::nodes::ml_err(&what, e))?
        {
            AnyStage::Model(m) => std::sync::Arc::from(m as Box<dyn AlgoOperator>),
            AnyStage::Operator(o) => std::sync::Arc::from(o),
            AnyStage::Estimator(e) => {
                return Err(ferroflow_engine::EngineError::Other(format!(
                    "{what} is an estimator ({}), not a fitted model",
                    e.class_name()
                )));
            }
        },
    )
}
