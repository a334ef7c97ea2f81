//! Planning a job: operator chains, the channels between task instances and the routers
//! that partition onto them.

use std::sync::Arc;

use crate::channel::Channel;
use crate::error::Result;
use crate::exchange::{Route, Router};
use crate::gate::InputGate;
use crate::graph::{JobGraph, NodeId, NodeKind, Partitioning};
use crate::metrics::OperatorMetrics;

// Planning: chains, channels and routers.

pub(super) struct TaskPlan {
    pub(super) id: usize,
    pub(super) nodes: Vec<NodeId>,
}

pub(super) type RouterKey = (NodeId, Option<String>);

pub(super) struct Plan {
    pub(super) tasks: Vec<TaskPlan>,
    pub(super) task_count: usize,
    /// [task][instance] -> gate.
    pub(super) gates: Vec<Vec<Option<InputGate>>>,
    /// [task][instance] -> routers keyed by the (node, tag) they carry.
    pub(super) routers: Vec<Vec<Vec<(RouterKey, Router)>>>,
    pub(super) channels: Vec<Arc<Channel>>,
    /// [node][instance].
    pub(super) metrics: Vec<Vec<Arc<OperatorMetrics>>>,
}

impl Plan {
    pub(super) fn new(job: &JobGraph) -> Result<Plan> {
        let g = &job.inner;
        let n = g.nodes.len();
        let par: Vec<usize> = (0..n).map(|i| job.parallelism(i)).collect();
        let consumers = |id: NodeId, tag: &Option<String>| {
            g.nodes
                .iter()
                .filter(|d| d.inputs.iter().any(|e| e.from == id && &e.tag == tag))
                .count()
        };
        let is_forward = |p: &Partitioning, up: usize, down: usize| {
            matches!(p, Partitioning::Auto) && par[up] == par[down]
        };

        // Chain operators joined by a forward edge with a single consumer; a sink that never
        // blocks joins its producer's chain the same way.
        let mut task_of = vec![usize::MAX; n];
        let mut tasks: Vec<TaskPlan> = Vec::new();
        for (id, node) in g.nodes.iter().enumerate() {
            let chainable = match &node.kind {
                NodeKind::Operator { .. } => true,
                NodeKind::Sink { sink } => sink.inline(),
                NodeKind::Source { .. } => false,
            };
            let chained_to = match node.inputs.as_slice() {
                [e] if chainable
                    && e.tag.is_none()
                    && matches!(g.nodes[e.from].kind, NodeKind::Operator { .. })
                    && is_forward(&e.partitioning, e.from, id)
                    && consumers(e.from, &None) == 1 =>
                {
                    Some(task_of[e.from])
                }
                _ => None,
            };
            match chained_to {
                Some(t) => {
                    tasks[t].nodes.push(id);
                    task_of[id] = t;
                }
                None => {
                    task_of[id] = tasks.len();
                    tasks.push(TaskPlan {
                        id: tasks.len(),
                        nodes: vec![id],
                    });
                }
            }
        }

        let metrics: Vec<Vec<Arc<OperatorMetrics>>> = (0..n)
            .map(|id| (0..par[id]).map(|_| Arc::default()).collect())
            .collect();
        let mut gates: Vec<Vec<Option<InputGate>>> = tasks
            .iter()
            .map(|t| {
                let head = &g.nodes[t.nodes[0]];
                (0..par[t.nodes[0]])
                    .map(|_| match head.kind {
                        NodeKind::Source { .. } => None,
                        _ => Some(InputGate::new(head.inputs.len())),
                    })
                    .collect()
            })
            .collect();
        let mut routers: Vec<Vec<Vec<(RouterKey, Router)>>> = tasks
            .iter()
            .map(|t| (0..par[t.nodes[0]]).map(|_| Vec::new()).collect())
            .collect();
        let mut channels = Vec::new();
        let bound = g.config.channel_bound;

        for task in &tasks {
            let head = task.nodes[0];
            for (k, e) in g.nodes[head].inputs.iter().enumerate() {
                let up_task = task_of[e.from];
                let forward = is_forward(&e.partitioning, e.from, head);
                let route = match &e.partitioning {
                    _ if forward => Route::Forward,
                    Partitioning::Auto | Partitioning::Rebalance => Route::RoundRobin,
                    Partitioning::Hash(keys) => Route::Hash(keys.clone(), g.max_parallelism),
                    Partitioning::Broadcast => Route::Broadcast,
                    Partitioning::Single => Route::Forward,
                };
                for (i, up_routers) in routers[up_task].iter_mut().enumerate() {
                    let mut router = Router::new(route.clone());
                    let targets: Vec<usize> = if forward {
                        vec![i]
                    } else {
                        (0..par[head]).collect()
                    };
                    for j in targets {
                        let gate = gates[task.id][j].as_mut().expect("consumer gate");
                        let chan = Channel::new(bound, gate.waker());
                        gate.add(chan.clone(), k);
                        router.chans.push(chan.clone());
                        channels.push(chan);
                    }
                    up_routers.push(((e.from, e.tag.clone()), router));
                }
            }
        }
        let task_count = tasks.iter().map(|t| par[t.nodes[0]]).sum();
        Ok(Plan {
            tasks,
            task_count,
            gates,
            routers,
            channels,
            metrics,
        })
    }
}
