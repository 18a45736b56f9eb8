//! Symmetric eigendecomposition by the cyclic Jacobi method, for the small (up to a few
//! hundred rows) covariance matrices of PCA; plus modified Gram–Schmidt orthonormalisation
//! for the randomized range finder. Dense `f64`, row-major, single-threaded.

/// Eigenvalues (descending) and eigenvectors (row `i` of the returned matrix is the vector
/// of eigenvalue `i`) of the symmetric row-major `n x n` matrix `a`.
pub(crate) fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A <- Jᵀ A J on rows/columns p and q.
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                // V <- V J (columns of V are eigenvectors).
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = vec![0f64; n * n];
    for (r, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[r * n + k] = v[k * n + i];
        }
    }
    (values, vectors)
}

/// Orthonormalises the `m` columns of the row-major `n x m` matrix `y` in place
/// (modified Gram–Schmidt, twice for stability); a dependent column becomes zero.
pub(crate) fn orthonormalize_columns(y: &mut [f64], n: usize, m: usize) {
    for _ in 0..2 {
        for j in 0..m {
            for prev in 0..j {
                let dot: f64 = (0..n).map(|i| y[i * m + j] * y[i * m + prev]).sum();
                for i in 0..n {
                    y[i * m + j] -= dot * y[i * m + prev];
                }
            }
            let norm: f64 = (0..n).map(|i| y[i * m + j].powi(2)).sum::<f64>().sqrt();
            for i in 0..n {
                y[i * m + j] = if norm > 1e-300 {
                    y[i * m + j] / norm
                } else {
                    0.0
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposes_a_known_matrix() {
        // [[2,1],[1,2]] has eigenvalues 3 and 1.
        let (vals, vecs) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12);
        assert!((vecs[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        // A v = λ v for a random symmetric 5x5.
        let n = 5;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = ((i * 7 + j * 3) % 11) as f64 - 5.0;
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        let (vals, vecs) = symmetric_eigen(&a, n);
        for r in 0..n {
            for i in 0..n {
                let av: f64 = (0..n).map(|k| a[i * n + k] * vecs[r * n + k]).sum();
                assert!((av - vals[r] * vecs[r * n + i]).abs() < 1e-9);
            }
        }
    }
}
