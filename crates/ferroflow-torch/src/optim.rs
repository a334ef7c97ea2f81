//! The trainer's optimizers, kept in Rust so their state (momentum buffers, Adam's moments
//! and step count) can be saved at a checkpoint and restored: libtorch's C++ optimizers
//! behind `tch::nn::Optimizer` do not expose it. The updates are PyTorch's `torch.optim.SGD`
//! (dampening 0, no Nesterov, no weight decay) and `torch.optim.Adam` (betas 0.9 and 0.999,
//! eps 1e-8, no weight decay, no AMSGrad), the defaults the trainer used before.

use tch::nn::VarStore;
use tch::{TchError, Tensor};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// The optimizer.
#[derive(Debug, Clone, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0 for none).
        momentum: f64,
    },
    /// Adam.
    Adam {
        /// Learning rate.
        lr: f64,
    },
}

/// One trainable variable and its optimizer slots.
struct Param {
    name: String,
    tensor: Tensor,
    /// SGD: the momentum buffer. Adam: the first moment.
    first: Option<Tensor>,
    /// Adam: the second moment.
    second: Option<Tensor>,
}

/// An optimizer over a var store's trainable variables.
pub(crate) struct Optim {
    kind: Optimizer,
    params: Vec<Param>,
    /// Steps taken (Adam's bias correction).
    steps: i64,
}

impl Optim {
    /// Over the trainable variables of `vs`, by name (so a saved state finds its tensors).
    pub(crate) fn new(kind: Optimizer, vs: &VarStore) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Optim {
            kind,
            params: named
                .into_iter()
                .map(|(name, tensor)| Param {
                    name,
                    tensor,
                    first: None,
                    second: None,
                })
                .collect(),
            steps: 0,
        }
    }

    /// Zero the gradients, back-propagate `loss`, update every variable.
    pub(crate) fn backward_step(&mut self, loss: &Tensor) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        loss.backward();
        self.steps += 1;
        let steps = self.steps;
        let kind = self.kind.clone();
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.tensor.grad();
                if !g.defined() {
                    continue;
                }
                match kind {
                    Optimizer::Sgd { lr, momentum } => {
                        let step = if momentum != 0.0 {
                            let buf = match p.first.take() {
                                None => g.detach().copy(),
                                Some(b) => &b * momentum + &g,
                            };
                            p.first = Some(buf.shallow_clone());
                            buf
                        } else {
                            g
                        };
                        let _ = p.tensor.g_add_(&(step * -lr));
                    }
                    Optimizer::Adam { lr } => {
                        let m = match p.first.take() {
                            None => &g * (1.0 - BETA1),
                            Some(m) => m * BETA1 + &g * (1.0 - BETA1),
                        };
                        let v = match p.second.take() {
                            None => &g * &g * (1.0 - BETA2),
                            Some(v) => v * BETA2 + &g * &g * (1.0 - BETA2),
                        };
                        let bias1 = 1.0 - BETA1.powi(steps as i32);
                        let bias2 = 1.0 - BETA2.powi(steps as i32);
                        let denom = v.sqrt() / bias2.sqrt() + EPS;
                        let _ = p.tensor.g_add_(&(&m / denom * (-lr / bias1)));
                        p.first = Some(m);
                        p.second = Some(v);
                    }
                }
            }
        });
    }

    /// The step count and every slot tensor, named `<slot>.<variable>`, in one buffer.
    pub(crate) fn save(&self) -> Result<(i64, Vec<u8>), TchError> {
        let mut named: Vec<(String, &Tensor)> = Vec::new();
        for p in &self.params {
            if let Some(t) = &p.first {
                named.push((format!("first.{}", p.name), t));
            }
            if let Some(t) = &p.second {
                named.push((format!("second.{}", p.name), t));
            }
        }
        let mut bytes = Vec::new();
        if !named.is_empty() {
            Tensor::save_multi_to_stream(&named, &mut bytes)?;
        }
        Ok((self.steps, bytes))
    }

    /// Take back what [`Optim::save`] gave. A slot naming no variable of this module (the
    /// module changed) is an error naming it.
    pub(crate) fn load(&mut self, steps: i64, bytes: &[u8]) -> Result<(), String> {
        self.steps = steps;
        if bytes.is_empty() {
            return Ok(());
        }
        let named = Tensor::load_multi_from_stream(std::io::Cursor::new(bytes))
            .map_err(|e| format!("optimizer state: {e}"))?;
        for (name, t) in named {
            let (slot, var) = name
                .split_once('.')
                .ok_or_else(|| format!("optimizer state: bad slot name '{name}'"))?;
            let p = self
                .params
                .iter_mut()
                .find(|p| p.name == var)
                .ok_or_else(|| {
                    format!("optimizer state for '{var}', which the module does not have")
                })?;
            if t.size() != p.tensor.size() {
                return Err(format!(
                    "optimizer state for '{var}' has shape {:?}, the variable {:?}",
                    t.size(),
                    p.tensor.size()
                ));
            }
            match slot {
                "first" => p.first = Some(t),
                "second" => p.second = Some(t),
                _ => return Err(format!("optimizer state: bad slot name '{name}'")),
            }
        }
        Ok(())
    }
}
