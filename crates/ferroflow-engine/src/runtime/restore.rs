//! Restoring from a checkpoint: whether a job can take and restore checkpoints, and what
//! each source, operator and sink instance resumes from (its own state, or the old
//! instances' when the parallelism changed).

use std::collections::HashMap;

use arrow_schema::SchemaRef;

use crate::checkpoint::{
    LoadedCheckpoint, NodeRole, SourcePosition, decode_sink_state, overlapping_instances,
};
use crate::connector::{Sink, SinkWriter, SourceEvent, SourceReader};
use crate::error::{EngineError, Result};
use crate::graph::{NodeId, NodeKind};
use crate::operator::{InstanceInfo, Operator, OperatorState, RestoreContext, StateKind};

/// Refuse checkpoints for a job with a node whose state cannot be saved.
pub(super) fn check_checkpointable(g: &crate::graph::GraphInner) -> Result<()> {
    for n in &g.nodes {
        match &n.kind {
            NodeKind::Source { source, .. } if !source.supports_checkpoints() => {
                return Err(EngineError::plan(format!(
                    "node '{}': this source cannot record its position, so the job cannot take checkpoints",
                    n.name
                )));
            }
            NodeKind::Sink { sink } => {
                if let StateKind::Unsupported(why) = sink.state_kind() {
                    return Err(EngineError::plan(format!(
                        "node '{}': this sink cannot be checkpointed ({why}), so the job cannot take checkpoints",
                        n.name
                    )));
                }
            }
            NodeKind::Operator { factory } => {
                if let StateKind::Unsupported(why) = factory.state_kind() {
                    return Err(EngineError::plan(format!(
                        "node '{}': its state cannot be checkpointed yet ({why}), so the job cannot take checkpoints",
                        n.name
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The checkpoint must fit the job: same key groups, and every node it holds state for is
/// still there in the same role.
pub(super) fn check_restorable(g: &crate::graph::GraphInner, c: &LoadedCheckpoint) -> Result<()> {
    let err = |message: String| EngineError::Checkpoint {
        path: c.path.display().to_string(),
        message,
    };
    if c.manifest.max_parallelism != g.max_parallelism {
        return Err(err(format!(
            "was taken with max parallelism {}, the job has {}; it cannot change across restores",
            c.manifest.max_parallelism, g.max_parallelism
        )));
    }
    for entry in &c.manifest.nodes {
        let has_state = entry.instances.iter().any(|i| i.file.is_some());
        match g.nodes.iter().find(|n| n.name == entry.name) {
            None if has_state => {
                return Err(err(format!(
                    "holds state of node '{}', which the job no longer has (restore with --fresh to drop it)",
                    entry.name
                )));
            }
            None => {}
            Some(n) => {
                let role = role_of(&n.kind);
                if role != entry.role {
                    return Err(err(format!(
                        "node '{}' was a {:?} and is now a {:?}; its state cannot be used",
                        entry.name, entry.role, role
                    )));
                }
            }
        }
    }
    Ok(())
}

pub(super) fn role_of(kind: &NodeKind) -> NodeRole {
    match kind {
        NodeKind::Source { .. } => NodeRole::Source,
        NodeKind::Operator { .. } => NodeRole::Operator,
        NodeKind::Sink { .. } => NodeRole::Sink,
    }
}

/// Did this node's instance (or, after rescaling, every old instance) end before the
/// checkpoint?
pub(super) fn restored_finished(
    c: &LoadedCheckpoint,
    name: &str,
    par: usize,
    index: usize,
) -> bool {
    let Some(entry) = c.node(name) else {
        return false;
    };
    if entry.parallelism == par {
        entry
            .instances
            .iter()
            .any(|x| x.index == index && x.finished)
    } else {
        !entry.instances.is_empty() && entry.instances.iter().all(|x| x.finished)
    }
}

pub(super) enum SourceResume {
    Finished,
    At(SourcePosition),
}

/// The old instances' splits of a rescaled source, shared out once per node.
pub(super) struct RescaledSource {
    pub(super) assigned: Vec<Vec<Vec<u8>>>,
    pub(super) max_ts: i64,
    pub(super) last_wm: i64,
    pub(super) all_finished: bool,
}

pub(super) fn source_resume(
    c: &LoadedCheckpoint,
    name: &str,
    par: usize,
    index: usize,
    source: &dyn crate::connector::Source,
    cache: &mut HashMap<NodeId, RescaledSource>,
    node: NodeId,
) -> Result<Option<SourceResume>> {
    let Some(entry) = c.node(name) else {
        return Ok(None);
    };
    let position = |i: usize| -> Result<Option<SourcePosition>> {
        match c.states.get(&(name.to_string(), i)) {
            Some((false, Some(s))) => Ok(Some(SourcePosition::decode(s, name)?)),
            _ => Ok(None),
        }
    };
    if entry.parallelism == par {
        if restored_finished(c, name, par, index) {
            return Ok(Some(SourceResume::Finished));
        }
        return Ok(position(index)?.map(SourceResume::At));
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(node) {
        let mut splits = Vec::new();
        let mut max_ts = i64::MAX;
        let mut last_wm = i64::MAX;
        let mut any = false;
        for inst in &entry.instances {
            if let Some(p) = position(inst.index)? {
                any = true;
                splits.extend(p.splits);
                max_ts = max_ts.min(p.max_ts);
                last_wm = last_wm.min(p.last_wm);
            }
        }
        let assigned = source.assign_splits(splits, par)?;
        if assigned.len() != par {
            return Err(EngineError::plan(format!(
                "the source shared its splits among {} instances, not {par}",
                assigned.len()
            )));
        }
        slot.insert(RescaledSource {
            assigned,
            max_ts: if any { max_ts } else { i64::MIN },
            last_wm: if any { last_wm } else { i64::MIN },
            all_finished: !any,
        });
    }
    let r = cache.get_mut(&node).expect("inserted");
    if r.all_finished {
        return Ok(Some(SourceResume::Finished));
    }
    Ok(Some(SourceResume::At(SourcePosition {
        splits: std::mem::take(&mut r.assigned[index]),
        max_ts: r.max_ts,
        last_wm: r.last_wm,
    })))
}

/// The checkpointed states an instance restores from: its own when the parallelism is
/// unchanged, else the old instances' that `kind` gives it (with the old parallelism).
pub(super) fn states_for(
    c: &LoadedCheckpoint,
    kind: &StateKind,
    info: &InstanceInfo,
    max_par: u32,
) -> Option<(usize, Vec<OperatorState>)> {
    let entry = c.node(&info.node)?;
    let old = entry.parallelism;
    let from: Vec<usize> = if old == info.parallelism {
        vec![info.index]
    } else if *kind == StateKind::Keyed {
        overlapping_instances(max_par, old, info.parallelism, info.index)
    } else if *kind == StateKind::Broadcast {
        (0..old).collect()
    } else {
        (0..old)
            .filter(|j| j % info.parallelism == info.index)
            .collect()
    };
    let states = from
        .iter()
        .filter_map(|j| match c.states.get(&(info.node.clone(), *j)) {
            Some((_, Some(s))) => Some(s.clone()),
            _ => None,
        })
        .collect();
    Some((old, states))
}

/// Give an operator its part of the checkpointed state.
pub(super) fn restore_operator(
    c: &LoadedCheckpoint,
    op: &mut dyn Operator,
    kind: &StateKind,
    info: InstanceInfo,
    max_par: u32,
) -> Result<()> {
    let Some((old, states)) = states_for(c, kind, &info, max_par) else {
        return Ok(());
    };
    if states.is_empty() {
        return Ok(());
    }
    let ctx = RestoreContext {
        instance: info,
        old_parallelism: old,
        max_parallelism: max_par,
    };
    op.restore_state(states, &ctx)
}

/// Open a sink instance's writer: with its writers' checkpointed state when the restored
/// checkpoint holds some for it, else a fresh one.
pub(super) fn open_writer(
    sink: &dyn Sink,
    loaded: Option<&LoadedCheckpoint>,
    info: InstanceInfo,
    schema: SchemaRef,
    max_par: u32,
) -> Result<Box<dyn SinkWriter>> {
    let mut writer_states = Vec::new();
    if let Some(c) = loaded
        && let Some((_, states)) = states_for(c, &sink.state_kind(), &info, max_par)
    {
        for s in &states {
            if let (_, Some(w)) = decode_sink_state(s, &info.node)? {
                writer_states.push(w);
            }
        }
    }
    if writer_states.is_empty() {
        sink.create_writer(&info, schema)
    } else {
        sink.restore_writer(&info, schema, writer_states)
    }
}

/// The reader of a source instance that had ended before the restored checkpoint.
pub(super) struct EndedReader;

impl SourceReader for EndedReader {
    fn next(&mut self) -> Result<SourceEvent> {
        Ok(SourceEvent::End)
    }
}
