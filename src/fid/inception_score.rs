//! The Inception Score: `IS = exp(E_x KL(p(y|x) ‖ p(y)))` over the 1008-way logits of
//! the FID Inception, computed in f64 on `IS_SPLITS` = 10 contiguous splits of the
//! samples (split `i` holds samples `⌊i·N/10⌋ .. ⌊(i+1)·N/10⌋`, as in the original
//! OpenAI code and torch-fidelity with `shuffle=False`); the result is the mean and
//! the population standard deviation (numpy's `std`) of the 10 split scores.

use crate::error::{Error, Result};

/// Number of splits the field uses.
pub const IS_SPLITS: usize = 10;

/// Mean and standard deviation of the split scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InceptionScore {
    /// Mean of the split scores.
    pub mean: f64,
    /// Population standard deviation of the split scores.
    pub std: f64,
}

/// Inception Score of logits `[N, K]` (rows are samples) in `splits` contiguous splits;
/// needs `N ≥ splits ≥ 1` and finite logits.
pub fn inception_score(logits: &[f32] /* [N, K] */, classes: usize, splits: usize) -> Result<InceptionScore> {
    if classes == 0 || !logits.len().is_multiple_of(classes) {
        return Err(Error::invalid(format!(
            "inception score: {} logits are not a whole number of {classes}-class rows",
            logits.len()
        )));
    }
    let n = logits.len() / classes;
    if splits == 0 || n < splits {
        return Err(Error::invalid(format!("inception score: {n} samples cannot be cut into {splits} splits")));
    }
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!("inception score: logits of sample {} are not finite", i / classes)));
    }
    // log p(y|x) per row, in f64.
    let log_p: Vec<f64> = logits
        .chunks_exact(classes)
        .flat_map(|row| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            row.iter().map(move |&v| v as f64 - lse)
        })
        .collect();
    let mut scores = Vec::with_capacity(splits);
    for s in 0..splits {
        let rows = &log_p[(s * n / splits) * classes..((s + 1) * n / splits) * classes];
        let m = rows.len() / classes;
        let mut marginal = vec![0.0f64; classes];
        for row in rows.chunks_exact(classes) {
            for (q, l) in marginal.iter_mut().zip(row) {
                *q += l.exp();
            }
        }
        marginal.iter_mut().for_each(|q| *q /= m as f64);
        let mut kl_sum = 0.0f64;
        for row in rows.chunks_exact(classes) {
            kl_sum += row
                .iter()
                .zip(&marginal)
                .map(|(l, q)| {
                    let p = l.exp();
                    if p > 0.0 {
                        p * (l - q.ln())
                    } else {
                        0.0
                    }
                })
                .sum::<f64>();
        }
        scores.push((kl_sum / m as f64).exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    Ok(InceptionScore { mean, std: var.sqrt() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_score_one_and_confident_distinct_classes_score_k() {
        let k = 4;
        let flat = vec![0.0f32; 40 * k];
        let s = inception_score(&flat, k, 10).unwrap();
        assert!((s.mean - 1.0).abs() < 1e-12 && s.std < 1e-12);
        // Each split has the 4 classes once each, predicted with certainty: IS = K.
        let mut sharp = vec![-1e4f32; 40 * k];
        for i in 0..40 {
            sharp[i * k + i % k] = 0.0;
        }
        let s = inception_score(&sharp, k, 10).unwrap();
        assert!((s.mean - k as f64).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn bad_input() {
        assert!(inception_score(&[0.0; 9], 4, 1).is_err());
        assert!(inception_score(&[0.0; 8], 4, 10).is_err());
        assert!(matches!(inception_score(&[f32::NAN; 40], 4, 10), Err(Error::NonFinite(_))));
    }
}
