//! Hot numeric loops of the online learners, compiled twice: for the baseline target and
//! with AVX2, picked at run time.
//!
//! Only instruction selection differs: every value takes the same IEEE operations in the
//! same order (Rust never fuses `a * b + c` into an FMA, and division and square root are
//! correctly rounded at any width), so both versions give bit-identical results. What the
//! wider registers buy is four divisions and square roots at a time instead of two.

/// `fn name(args) -> ret { body }`, also compiled with AVX2 and dispatched on the CPU.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// The parameters of an FTRL-Proximal step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FtrlParams {
    pub(crate) alpha: f64,
    pub(crate) beta: f64,
    pub(crate) l1: f64,
    pub(crate) l2: f64,
}

/// The FTRL-Proximal state of the coefficients.
pub(crate) struct FtrlState<'a> {
    pub(crate) coef: &'a mut [f64],
    pub(crate) n: &'a mut [f64],
    /// `sqrt(n)`, kept so that a step takes one square root per coefficient.
    pub(crate) sqrt_n: &'a mut [f64],
    pub(crate) z: &'a mut [f64],
}

/// One coefficient's step with gradient `g`. Selects, not branches, so that loops over it
/// vectorize.
#[inline(always)]
fn ftrl_one(p: FtrlParams, g: f64, coef: &mut f64, n: &mut f64, sqrt_n: &mut f64, z: &mut f64) {
    let new_n = *n + g * g;
    let new_sqrt = new_n.sqrt();
    let sigma = (new_sqrt - *sqrt_n) / p.alpha;
    let new_z = *z + (g - sigma * *coef);
    *z = new_z;
    *n = new_n;
    *sqrt_n = new_sqrt;
    let sign = if new_z < 0.0 { -1.0 } else { 1.0 };
    let w = (sign * p.l1 - new_z) / ((p.beta + new_sqrt) / p.alpha + p.l2);
    *coef = if new_z.abs() <= p.l1 { 0.0 } else { w };
}

multiversion! {
    /// One FTRL-Proximal step of every coefficient. The gradient of coefficient `i` is
    /// `grad[i] / wsum[i]` (`grad[i]` when `wsum[i]` is 0), or `grad[i]` itself without
    /// `wsum` (every weight sum is 1).
    pub(crate) fn ftrl_step(p: FtrlParams, s: FtrlState<'_>, grad: &[f64], wsum: Option<&[f64]>) {
        let FtrlState { coef, n, sqrt_n, z } = s;
        let state = coef.iter_mut().zip(n.iter_mut()).zip(sqrt_n.iter_mut()).zip(z.iter_mut());
        match wsum {
            Some(wsum) => {
                for ((((c, n), q), z), (g, w)) in state.zip(grad.iter().zip(wsum)) {
                    // g / 1.0 == g: a coefficient without weight takes its gradient as is.
                    ftrl_one(p, g / if *w != 0.0 { *w } else { 1.0 }, c, n, q, z);
                }
            }
            None => {
                for ((((c, n), q), z), g) in state.zip(grad) {
                    ftrl_one(p, *g, c, n, q, z);
                }
            }
        }
    }
}

multiversion! {
    /// `acc += e * x`, elementwise.
    pub(crate) fn axpy(acc: &mut [f64], e: f64, x: &[f64]) {
        for (a, xi) in acc.iter_mut().zip(x) {
            *a += e * xi;
        }
    }
}

multiversion! {
    /// `sum += x` and `sq += x * x`, elementwise.
    pub(crate) fn add_moments(sum: &mut [f64], sq: &mut [f64], x: &[f64]) {
        for ((s, q), v) in sum.iter_mut().zip(sq.iter_mut()).zip(x) {
            *s += v;
            *q += v * v;
        }
    }
}

multiversion! {
    /// `into += from`, elementwise.
    pub(crate) fn add_assign(into: &mut [f64], from: &[f64]) {
        for (a, b) in into.iter_mut().zip(from) {
            *a += b;
        }
    }
}

multiversion! {
    /// Mean and sample standard deviation of `count` rows from their sums and sums of
    /// squares (Flink ML's OnlineStandardScaler: the mean scaled by the reciprocal of the
    /// count; the deviation 0 for a single row). `mean` and `std` are overwritten.
    pub(crate) fn mean_std(
        sum: &[f64],
        sq: &[f64],
        count: u64,
        mean: &mut Vec<f64>,
        std: &mut Vec<f64>,
    ) {
        let n = count as f64;
        let r = 1.0 / n;
        mean.clear();
        mean.extend(sum.iter().map(|s| s * r));
        std.clear();
        if count > 1 {
            std.extend(
                sq.iter()
                    .zip(mean.iter())
                    .map(|(q, m)| ((q - n * m * m) / (n - 1.0)).sqrt()),
            );
        } else {
            std.resize(mean.len(), 0.0);
        }
    }
}

multiversion! {
    /// Standardize `x` in place: minus `mean` (when given), times the reciprocal of `std`
    /// (0 for a zero deviation; when given).
    pub(crate) fn standardize(x: &mut [f64], mean: Option<&[f64]>, std: Option<&[f64]>) {
        if let Some(mean) = mean {
            for (xi, m) in x.iter_mut().zip(mean) {
                *xi -= m;
            }
        }
        if let Some(std) = std {
            for (xi, sd) in x.iter_mut().zip(std) {
                *xi *= if *sd == 0.0 { 0.0 } else { 1.0 / sd };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatched step equals the scalar formula written out, coefficient by
    /// coefficient, to the bit (with and without weight sums, zero weights included).
    #[test]
    fn ftrl_step_matches_the_scalar_formula_bit_for_bit() {
        let p = FtrlParams {
            alpha: 0.1,
            beta: 1.0,
            l1: 0.05,
            l2: 0.7,
        };
        let dim = 23;
        let init = |k: f64| -> Vec<f64> {
            (0..dim)
                .map(|i| ((i as f64 + k) * 0.37).sin() * 1.3)
                .collect()
        };
        let grad = init(1.0);
        let wsum: Vec<f64> = (0..dim).map(|i| (i % 3) as f64).collect();
        for ws in [None, Some(&wsum[..])] {
            let (mut coef, mut z) = (init(2.0), init(3.0));
            let mut n: Vec<f64> = init(4.0).iter().map(|v| v.abs()).collect();
            let mut sqrt_n: Vec<f64> = n.iter().map(|v| v.sqrt()).collect();
            let (mut c2, mut n2, mut q2, mut z2) =
                (coef.clone(), n.clone(), sqrt_n.clone(), z.clone());
            ftrl_step(
                p,
                FtrlState {
                    coef: &mut coef,
                    n: &mut n,
                    sqrt_n: &mut sqrt_n,
                    z: &mut z,
                },
                &grad,
                ws,
            );
            for i in 0..dim {
                let g = match ws {
                    Some(w) if w[i] != 0.0 => grad[i] / w[i],
                    _ => grad[i],
                };
                let nn = n2[i] + g * g;
                let sigma = (nn.sqrt() - q2[i]) / p.alpha;
                z2[i] += g - sigma * c2[i];
                n2[i] = nn;
                q2[i] = nn.sqrt();
                c2[i] = if z2[i].abs() <= p.l1 {
                    0.0
                } else {
                    ((if z2[i] < 0.0 { -1.0 } else { 1.0 }) * p.l1 - z2[i])
                        / ((p.beta + q2[i]) / p.alpha + p.l2)
                };
            }
            for (a, b) in [(&coef, &c2), (&n, &n2), (&sqrt_n, &q2), (&z, &z2)] {
                let bits = |v: &Vec<f64>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b));
            }
        }
    }

    #[test]
    fn mean_std_and_standardize_match_the_scalar_formulas() {
        let x: Vec<f64> = (0..19)
            .map(|i| (i as f64 * 0.91).cos() * 4.0 + 2.0)
            .collect();
        let sum: Vec<f64> = x.iter().map(|v| v * 3.0).collect();
        let sq: Vec<f64> = x.iter().map(|v| v * v * 3.5).collect();
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        mean_std(&sum, &sq, 3, &mut mean, &mut std);
        let n = 3.0f64;
        for i in 0..x.len() {
            let m = sum[i] * (1.0 / n);
            assert_eq!(mean[i].to_bits(), m.to_bits());
            assert_eq!(
                std[i].to_bits(),
                ((sq[i] - n * m * m) / (n - 1.0)).sqrt().to_bits()
            );
        }
        mean_std(&sum, &sq, 1, &mut mean, &mut std);
        assert!(std.iter().all(|s| *s == 0.0));
        let mut y = x.clone();
        let mut sd = std.clone();
        sd[0] = 2.5;
        standardize(&mut y, Some(&mean), Some(&sd));
        for i in 0..x.len() {
            let inv = if sd[i] == 0.0 { 0.0 } else { 1.0 / sd[i] };
            assert_eq!(y[i].to_bits(), ((x[i] - mean[i]) * inv).to_bits());
        }
    }
}
