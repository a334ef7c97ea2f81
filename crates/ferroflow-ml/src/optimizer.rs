//! Flink ML's SGD optimizer and its losses (`org.apache.flink.ml.common.optimizer.SGD`,
//! `org.apache.flink.ml.common.lossfunc`).
//!
//! Each round takes the next `globalBatchSize` rows (cycling through the shuffled data),
//! sums the weighted gradients, and steps: `coef -= learningRate / sum(weights) *
//! sum(gradients)`; then regularises: L2 `coef *= 1 - lr * reg`, L1 `coef -= lr * reg *
//! sign(coef)`, elastic net the mix of the two by `elasticNet`. Training starts from zero and
//! stops after `maxIter` rounds or when a round's mean loss falls below `tol`. There is no
//! intercept term (as in Flink ML). Multinomial (softmax) regression, which Flink ML lacks,
//! follows the same rules over one coefficient vector per class.

use crate::vector::Vector;

/// Probabilities of scores `z` (shifted by their maximum, so large scores do not overflow).
pub fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// A labelled, weighted row.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledPoint {
    /// Features.
    pub features: Vector,
    /// Label.
    pub label: f64,
    /// Weight (1 when the stage has no weight column).
    pub weight: f64,
}

// Matched on the kind rather than through `Vector::stored` (a boxed iterator): this is the
// inner loop of training.
fn dot(coef: &[f64], x: &Vector) -> f64 {
    match x {
        Vector::Dense(v) => coef.iter().zip(v).map(|(c, v)| c * v).sum(),
        Vector::Sparse {
            indices, values, ..
        } => indices.iter().zip(values).map(|(&i, v)| coef[i] * v).sum(),
    }
}

fn axpy(a: f64, x: &Vector, y: &mut [f64]) {
    match x {
        Vector::Dense(v) => {
            for (y, v) in y.iter_mut().zip(v) {
                *y += a * v;
            }
        }
        Vector::Sparse {
            indices, values, ..
        } => {
            for (&i, v) in indices.iter().zip(values) {
                y[i] += a * v;
            }
        }
    }
}

/// A loss function of Flink ML's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Logistic loss of labels 0/1 (`BinaryLogisticLoss`).
    BinaryLogistic,
    /// Hinge loss of labels 0/1 (`HingeLoss`).
    Hinge,
    /// Half squared error (`LeastSquareLoss`).
    LeastSquare,
}

impl Loss {
    /// The weighted loss of `p` at `coef`.
    pub fn loss(self, p: &LabeledPoint, coef: &[f64]) -> f64 {
        self.at(dot(coef, &p.features), p.label, p.weight).1
    }

    /// Add the weighted gradient of `p` at `coef` to `cum` (it accumulates, as Flink ML's).
    pub fn add_gradient(self, p: &LabeledPoint, coef: &[f64], cum: &mut [f64]) {
        let (m, _) = self.at(dot(coef, &p.features), p.label, p.weight);
        if m != 0.0 {
            axpy(m, &p.features, cum);
        }
    }
}

/// SGD settings, named as Flink ML's params.
#[derive(Debug, Clone, PartialEq)]
pub struct Sgd {
    /// `maxIter`.
    pub max_iter: usize,
    /// `learningRate`.
    pub learning_rate: f64,
    /// `globalBatchSize`.
    pub global_batch_size: usize,
    /// `tol`.
    pub tol: f64,
    /// `reg`.
    pub reg: f64,
    /// `elasticNet`: 0 is L2, 1 is L1.
    pub elastic_net: f64,
}

/// Training rows: a dense row-major matrix (the fast path) or vectors of any kind.
#[derive(Debug, Clone)]
pub enum Features {
    /// `x[i * dim..(i + 1) * dim]` is row i.
    Dense {
        /// Values, row-major.
        x: Vec<f64>,
        /// Row width.
        dim: usize,
    },
    /// One vector per row.
    Rows(Vec<Vector>),
}

/// Labelled, weighted rows for [`Sgd`].
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Features.
    pub features: Features,
    /// Labels.
    pub labels: Vec<f64>,
    /// Weights.
    pub weights: Vec<f64>,
}

impl Dataset {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` without rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn dot(&self, i: usize, coef: &[f64]) -> f64 {
        match &self.features {
            Features::Dense { x, dim } => {
                crate::vector::dot_dense(&x[i * dim..(i + 1) * dim], coef)
            }
            Features::Rows(r) => dot(coef, &r[i]),
        }
    }

    fn axpy(&self, i: usize, a: f64, y: &mut [f64]) {
        match &self.features {
            Features::Dense { x, dim } => {
                for (y, v) in y.iter_mut().zip(&x[i * dim..(i + 1) * dim]) {
                    *y += a * v;
                }
            }
            Features::Rows(r) => axpy(a, &r[i], y),
        }
    }
}

impl Loss {
    /// Gradient multiplier and loss of a row whose dot product with the coefficients is `d`.
    fn at(self, d: f64, label: f64, weight: f64) -> (f64, f64) {
        match self {
            Loss::BinaryLogistic => {
                let y = 2.0 * label - 1.0;
                (
                    weight * (-y / ((d * y).exp() + 1.0)),
                    weight * (1.0 + (-d * y).exp()).ln(),
                )
            }
            Loss::Hinge => {
                let y = 2.0 * label - 1.0;
                let margin = 1.0 - y * d;
                (
                    if margin > 0.0 { -y * weight } else { 0.0 },
                    weight * margin.max(0.0),
                )
            }
            Loss::LeastSquare => ((d - label) * weight, 0.5 * weight * (d - label).powi(2)),
        }
    }
}

impl Sgd {
    /// Minimise `loss` over the rows of `data` taken in `order` (a shuffled permutation).
    pub fn optimize_dataset(
        &self,
        data: &Dataset,
        order: &[u32],
        dim: usize,
        loss: Loss,
    ) -> Vec<f64> {
        self.descend(order, dim, |i, coef, grad| {
            let (m, l) = loss.at(data.dot(i, coef), data.labels[i], data.weights[i]);
            if m != 0.0 {
                data.axpy(i, m, grad);
            }
            (l, data.weights[i])
        })
    }

    /// Multinomial logistic (softmax) regression: labels are class indices `0..classes`;
    /// the result is `classes` coefficient vectors of `dim`, one after the other. Same
    /// rounds, steps, regularisation and stopping rule as [`Sgd::optimize_dataset`]; the
    /// loss of a row is `-weight * ln p(label)`.
    pub fn optimize_softmax(
        &self,
        data: &Dataset,
        order: &[u32],
        dim: usize,
        classes: usize,
    ) -> Vec<f64> {
        self.descend(order, dim * classes, |i, coef, grad| {
            let z: Vec<f64> = (0..classes)
                .map(|c| data.dot(i, &coef[c * dim..(c + 1) * dim]))
                .collect();
            let p = softmax(&z);
            let (label, weight) = (data.labels[i] as usize, data.weights[i]);
            for (c, pc) in p.iter().enumerate() {
                let m = weight * (pc - if c == label { 1.0 } else { 0.0 });
                if m != 0.0 {
                    data.axpy(i, m, &mut grad[c * dim..(c + 1) * dim]);
                }
            }
            (-weight * p[label].max(f64::MIN_POSITIVE).ln(), weight)
        })
    }

    /// The SGD loop: `row(i, coef, grad)` adds row i's weighted gradient to `grad` and
    /// returns its weighted loss and its weight.
    fn descend(
        &self,
        order: &[u32],
        len: usize,
        row: impl Fn(usize, &[f64], &mut [f64]) -> (f64, f64) + Sync,
    ) -> Vec<f64> {
        let mut coef = vec![0.0; len];
        let n = order.len();
        if n == 0 {
            return coef;
        }
        let batch = self.global_batch_size.clamp(1, n);
        let mut offset = 0;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for _ in 0..self.max_iter {
            // Large batches are summed on every core; the sums are added in a fixed order,
            // so results do not depend on scheduling.
            let parts = if batch >= 4_096 { threads } else { 1 };
            let chunk = batch.div_ceil(parts);
            let coef_now = &coef;
            let sum_range = |from: usize, to: usize| {
                let mut grad = vec![0.0; len];
                let (mut weight, mut total_loss) = (0.0, 0.0);
                for k in from..to {
                    let i = order[(offset + k) % n] as usize;
                    let (l, w) = row(i, coef_now, &mut grad);
                    total_loss += l;
                    weight += w;
                }
                (grad, weight, total_loss)
            };
            let partials: Vec<(Vec<f64>, f64, f64)> = if parts == 1 {
                vec![sum_range(0, batch)]
            } else {
                std::thread::scope(|s| {
                    let handles: Vec<_> = (0..parts)
                        .map(|t| {
                            let (from, to) = (t * chunk, ((t + 1) * chunk).min(batch));
                            let sum_range = &sum_range;
                            s.spawn(move || sum_range(from, to))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("gradient worker"))
                        .collect()
                })
            };
            let mut grad = vec![0.0; len];
            let (mut weight, mut total_loss) = (0.0, 0.0);
            for (g, w, l) in partials {
                for (a, b) in grad.iter_mut().zip(g) {
                    *a += b;
                }
                weight += w;
                total_loss += l;
            }
            offset = (offset + batch) % n;
            if weight > 0.0 {
                let step = self.learning_rate / weight;
                for (c, g) in coef.iter_mut().zip(&grad) {
                    *c -= step * g;
                }
            }
            self.regularize(&mut coef);
            if weight > 0.0 && total_loss / weight < self.tol {
                break;
            }
        }
        coef
    }

    fn regularize(&self, coef: &mut [f64]) {
        let (lr, reg, en) = (self.learning_rate, self.reg, self.elastic_net);
        if reg == 0.0 {
            return;
        }
        for c in coef.iter_mut() {
            let sign = if *c == 0.0 { 0.0 } else { c.signum() };
            if en == 0.0 {
                *c *= 1.0 - lr * reg;
            } else if en == 1.0 {
                *c -= lr * reg * sign;
            } else {
                *c -= lr * (en * reg * sign + (1.0 - en) * reg * *c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Flink ML's BinaryLogisticLossTest and HingeLossTest (the conformance vectors).
    #[test]
    fn binary_logistic_loss_and_accumulating_gradient() {
        let p = LabeledPoint {
            features: Vector::Dense(vec![1.0, 2.0, 3.0]),
            label: 1.0,
            weight: 2.0,
        };
        let coef = [1.0, 1.0, 1.0];
        assert!((Loss::BinaryLogistic.loss(&p, &coef) - 0.0049513).abs() < 1e-7);
        let mut g = vec![0.0; 3];
        Loss::BinaryLogistic.add_gradient(&p, &coef, &mut g);
        for (a, b) in g.iter().zip([-0.0049452, -0.0098904, -0.0148357]) {
            assert!((a - b).abs() < 1e-7, "{g:?}");
        }
        Loss::BinaryLogistic.add_gradient(&p, &coef, &mut g);
        for (a, b) in g.iter().zip([-0.0098904, -0.0197809, -0.0296714]) {
            assert!((a - b).abs() < 1e-7, "{g:?}");
        }
    }

    #[test]
    fn hinge_loss_has_no_gradient_inside_the_margin() {
        let coef = [1.0, 1.0, 1.0];
        let p1 = LabeledPoint {
            features: Vector::Dense(vec![1.0, -1.0, -1.0]),
            label: 1.0,
            weight: 2.0,
        };
        let p2 = LabeledPoint {
            features: Vector::Dense(vec![1.0, -1.0, 1.0]),
            label: 1.0,
            weight: 2.0,
        };
        assert_eq!(Loss::Hinge.loss(&p1, &coef), 4.0);
        assert_eq!(Loss::Hinge.loss(&p2, &coef), 0.0);
        let mut g = vec![0.0; 3];
        Loss::Hinge.add_gradient(&p1, &coef, &mut g);
        assert_eq!(g, vec![-2.0, 2.0, 2.0]);
        Loss::Hinge.add_gradient(&p2, &coef, &mut g);
        assert_eq!(g, vec![-2.0, 2.0, 2.0]);
    }
}
