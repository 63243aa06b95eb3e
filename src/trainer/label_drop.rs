//! Label dropping (spec §2.2 step 3): the **last** n_drop labels of the per-device batch
//! become the null class K, with n_drop = round(ratio·B) under Python's round-half-even
//! (B = 8 → 1, 16 → 2, 128 → 13, B ≤ 5 → 0 for ratio 0.1). The positions are fixed, not
//! random.
//!
//! Deliberate difference from the reference: there, n_drop = 0 makes the slice "last 0
//! labels" the whole batch, so every label becomes null (and the enhanced target treats
//! every sample as dropped). Here n_drop = 0 drops nothing: a batch of ≤ 5 samples with
//! ratio 0.1 trains fully conditionally, which is what the ratio asks for.

/// n_drop = round_half_even(ratio·B) (Python's `round`), at most B.
pub fn drop_count(ratio: f64, batch: usize) -> usize {
    ((ratio * batch as f64).round_ties_even().max(0.0) as usize).min(batch)
}

/// Sets the last `drop_count(ratio, B)` labels to `null_class` and returns that count.
/// labels: `[B]`.
pub fn drop_labels(labels: &mut [usize], ratio: f64, null_class: usize) -> usize {
    let n_drop = drop_count(ratio, labels.len());
    let keep = labels.len() - n_drop;
    labels[keep..].fill(null_class);
    n_drop
}

/// Whether sample `b` of a batch of `batch` is one of the `n_drop` dropped (tail) samples.
#[inline]
pub fn is_dropped(b: usize, batch: usize, n_drop: usize) -> bool {
    b + n_drop >= batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_banker_rounding() {
        // Spec §8 item 15.
        assert_eq!(drop_count(0.1, 8), 1);
        assert_eq!(drop_count(0.1, 16), 2);
        assert_eq!(drop_count(0.1, 128), 13);
        for b in 0..=5 {
            assert_eq!(drop_count(0.1, b), 0, "B = {b}");
        }
        // Ties go to even: 0.1·15 = 1.5 → 2, 0.1·25 = 2.5 → 2, 0.5·3 = 1.5 → 2, 0.5·5 = 2.5 → 2.
        assert_eq!(drop_count(0.1, 15), 2);
        assert_eq!(drop_count(0.1, 25), 2);
        assert_eq!(drop_count(0.5, 3), 2);
        assert_eq!(drop_count(0.5, 5), 2);
        assert_eq!(drop_count(1.0, 7), 7);
    }

    #[test]
    fn last_labels_become_null_and_zero_drops_nothing() {
        let mut c: Vec<usize> = (0..8).collect();
        assert_eq!(drop_labels(&mut c, 0.1, 10), 1);
        assert_eq!(c, vec![0, 1, 2, 3, 4, 5, 6, 10]);
        assert!(is_dropped(7, 8, 1) && !is_dropped(6, 8, 1));
        // The reference would null all four labels here (n_drop = 0 quirk); we keep them.
        let mut c = vec![3, 1, 4, 1];
        assert_eq!(drop_labels(&mut c, 0.1, 10), 0);
        assert_eq!(c, vec![3, 1, 4, 1]);
        assert!(!is_dropped(3, 4, 0));
    }
}
