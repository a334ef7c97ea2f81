//! The Model Center as a native job's nodes use it, from the job's blocking thread.

use ferroflow_meta::{MetaStore, ModelStage, ModelVersion};
use ferroflow_workflow::{JobContext, Node, Result};

use crate::settings::node_err;

/// Calls into the store from the job's blocking thread.
pub(crate) struct Center<'a> {
    pub(crate) ctx: &'a JobContext,
}

impl Center<'_> {
    pub(crate) fn store(&self) -> &dyn MetaStore {
        &*self.ctx.store
    }

    pub(crate) fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.ctx.handle.block_on(f)
    }

    /// The version a model node acts on: the one the triggering Model Center event names,
    /// if it is still in `stage`; otherwise the newest version in `stage`. (Two trainings
    /// close together each get their own version validated or pushed.)
    pub(crate) fn target(
        &self,
        n: &Node,
        model: &str,
        stage: ModelStage,
    ) -> Result<Option<ModelVersion>> {
        let trigger = self.ctx.trigger.as_ref();
        if let Some(version) = trigger.and_then(|t| t.model_version(model)) {
            let v = self
                .block(self.store().get_model_version(model, version))
                .map_err(|e| node_err(n, e))?;
            if v.stage == stage {
                self.ctx.log.line(&format!(
                    "[native] {}: {model} version {version}, from the event at offset {}",
                    n.id,
                    trigger.map(|t| t.offset).unwrap_or_default()
                ));
                return Ok(Some(v));
            }
            self.ctx.log.line(&format!(
                "[native] {}: the triggering event's version {version} of {model} is {} now, not {stage}; taking the newest {stage} version",
                n.id, v.stage
            ));
        }
        self.newest(n, model, stage)
    }

    /// The newest version of `model` in `stage`.
    pub(crate) fn newest(
        &self,
        n: &Node,
        model: &str,
        stage: ModelStage,
    ) -> Result<Option<ModelVersion>> {
        let versions = self
            .block(self.store().list_model_versions(model, Some(stage)))
            .map_err(|e| node_err(n, e))?;
        Ok(versions.into_iter().max_by_key(|v| v.version))
    }
}
