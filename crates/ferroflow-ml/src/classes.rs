//! This crate's stages by Flink ML class name: the list behind [`builtin_stages`], and
//! shorthands that read stages with it. The one module that names every algorithm module;
//! the others see stages only through `stage`'s traits and a [`StageRegistry`] they are
//! given.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use crate::error::Result;
use crate::graph::{GRAPH_CLASS, GRAPH_MODEL_CLASS, StageGraph, StageGraphModel};
use crate::pipeline::{PIPELINE_CLASS, PIPELINE_MODEL_CLASS, Pipeline, PipelineModel};
use crate::stage::{AnyStage, Factory, StageRegistry};

/// The stages of this crate (every Flink ML stage it implements, Pipeline, PipelineModel,
/// StageGraph and StageGraphModel). Built once; clones share it.
pub fn builtin_stages() -> StageRegistry {
    static BUILTIN: OnceLock<StageRegistry> = OnceLock::new();
    BUILTIN
        .get_or_init(|| {
            let mut r = StageRegistry::default();
            for (class, make) in plain() {
                r.register(class, make)
                    .expect("the built-in class names are distinct");
            }
            let composite = |r: &mut StageRegistry, class, from_json, load| {
                r.register_composite(class, from_json, load)
                    .expect("the built-in class names are distinct")
            };
            composite(
                &mut r,
                PIPELINE_CLASS,
                Some(|meta, r| Ok(AnyStage::Estimator(Box::new(Pipeline::from_json(meta, r)?)))),
                None,
            );
            composite(
                &mut r,
                PIPELINE_MODEL_CLASS,
                None,
                Some(|dir, meta, r| {
                    Ok(AnyStage::Model(Box::new(PipelineModel::load(
                        dir, meta, r,
                    )?)))
                }),
            );
            composite(
                &mut r,
                GRAPH_CLASS,
                None,
                Some(|dir, meta, r| {
                    Ok(AnyStage::Estimator(Box::new(StageGraph::load(
                        dir, meta, r,
                    )?)))
                }),
            );
            composite(
                &mut r,
                GRAPH_MODEL_CLASS,
                None,
                Some(|dir, meta, r| {
                    Ok(AnyStage::Model(Box::new(StageGraphModel::load(
                        dir, meta, r,
                    )?)))
                }),
            );
            r
        })
        .clone()
}

/// Class names of this crate's stages (full Flink ML names).
pub fn stage_classes() -> Vec<&'static str> {
    builtin_stages().classes()
}

/// [`StageRegistry::create`] with this crate's stages.
pub fn create_stage(class_name: &str) -> Result<AnyStage> {
    builtin_stages().create(class_name)
}

/// [`StageRegistry::from_json`] with this crate's stages.
pub fn stage_from_json(meta: &Value) -> Result<AnyStage> {
    builtin_stages().from_json(meta)
}

/// [`StageRegistry::load`] with this crate's stages.
pub fn load_stage(dir: &Path) -> Result<AnyStage> {
    builtin_stages().load(dir)
}

/// Lists stages as `(Flink ML class name, kind, type)`.
macro_rules! stages {
    ($(($class:literal, $kind:ident, $ty:ty)),* $(,)?) => {
        vec![$(($class, (|| AnyStage::$kind(Box::new(<$ty>::default()))) as Factory)),*]
    };
}

/// Every plain stage of this crate: (Flink ML class name, constructor).
fn plain() -> Vec<(&'static str, Factory)> {
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
