//! onnxruntime's post transforms (`ml_common.h`), in `f32` as it computes them. Pure.

use super::onnx::PostTransform;

/// onnxruntime's `ComputeLogistic`.
pub(crate) fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 { 1.0 - e } else { e }
}

/// onnxruntime's `ErfInv` approximation.
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

/// onnxruntime's `ComputeProbit`.
pub(crate) fn probit(v: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * v - 1.0)
}

/// onnxruntime's `write_scores` for two or more scores.
pub(crate) fn write_scores(post: PostTransform, s: &mut [f32], out: &mut [f32]) {
    match post {
        PostTransform::None => out.copy_from_slice(s),
        PostTransform::Logistic => {
            for (o, &v) in out.iter_mut().zip(s.iter()) {
                *o = logistic(v);
            }
        }
        PostTransform::Probit => {
            for (o, &v) in out.iter_mut().zip(s.iter()) {
                *o = probit(v);
            }
        }
        PostTransform::Softmax => {
            let max = s
                .iter()
                .copied()
                .fold(-f32::MAX, |m, v| if v > m { v } else { m });
            let mut total = 0.0f32;
            for v in s.iter_mut() {
                *v = (*v - max).exp();
                total += *v;
            }
            for (o, &v) in out.iter_mut().zip(s.iter()) {
                *o = v / total;
            }
        }
        PostTransform::SoftmaxZero => {
            let max = s
                .iter()
                .copied()
                .fold(-f32::MAX, |m, v| if v > m { v } else { m });
            let exp_neg_max = (-max).exp();
            let mut total = 0.0f32;
            for v in s.iter_mut() {
                if *v > 0.000_000_1 || *v < -0.000_000_1 {
                    *v = (*v - max).exp();
                    total += *v;
                } else {
                    *v *= exp_neg_max;
                }
            }
            for (o, &v) in out.iter_mut().zip(s.iter()) {
                *o = v / total;
            }
        }
    }
}
