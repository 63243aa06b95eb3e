//! A class-faithfulness figure for the built-in "shapes-10" dataset: a fixed,
//! deterministic shape classifier that does not come from the model being judged, the
//! per-class accuracy of generated images under it (label asked for vs class
//! predicted) and a class-conditional Fréchet distance.
//!
//! ## Classifier
//!
//! * **Features** (colour- and position-robust, shape only). Per image `[C, H, W]`: the
//!   background colour is the per-channel median of the border pixels; the foreground
//!   strength of a pixel is its Euclidean colour distance to that background, divided by
//!   the image's largest distance (at least 0.25, so a flat image stays flat) and
//!   clamped to [0, 1]. The mask is then centred on its centre of mass and rescaled by
//!   its radius of gyration: it is resampled bilinearly on a 16×16 grid spanning
//!   ±[`SPAN`] radii of gyration around the centre, and the 256 values are scaled to
//!   unit L2 norm. The colour of the shape is **not** used, so a blob of the right
//!   colour does not count as the right shape.
//! * **Rule.** k-nearest neighbours (k = [`K`], Euclidean, majority vote, ties broken by
//!   the smaller summed distance, then the smaller label) against [`REFS_PER_CLASS`]
//!   rendered real training images per class of the built-in dataset, drawn with a fixed
//!   seed ([`REFERENCE_SEED`]) that no demo run uses for its training data.
//!
//! The classifier is fitted once on real images only; generated images never enter it.
//! Its accuracy on held-out real images is the ceiling a perfect generator would reach.

use crate::data::builtin::{BuiltinShapes, Split, NUM_CLASSES};
use crate::error::{check_len, Error, Result};
use crate::metric::{frechet_distance, FeatureSpace};

/// Side of the resampled mask.
pub const FEATURE_SIDE: usize = 16;
/// Half-width of the resampling window in radii of gyration.
pub const SPAN: f32 = 2.2;
/// Neighbours in the vote.
pub const K: usize = 5;
/// Reference images per class.
pub const REFS_PER_CLASS: usize = 400;
/// Seed of the reference images (train split of the built-in dataset).
pub const REFERENCE_SEED: u64 = 0x434C_4153_5346_5931; // "CLASSFY1"

const FEATURE_DIM: usize = FEATURE_SIDE * FEATURE_SIDE;

/// The shape features of one image `[C, H, W]` (see the module documentation).
pub fn shape_features(image: &[f32], shape: [usize; 3]) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    check_len("shape_features: image", image.len(), c * h * w)?;
    if h < 3 || w < 3 || c == 0 {
        return Err(Error::invalid(format!("shape_features: image shape {shape:?} is too small")));
    }
    // Background: per-channel median of the border pixels.
    let mut border: Vec<(usize, usize)> = Vec::new();
    for x in 0..w {
        border.push((0, x));
        border.push((h - 1, x));
    }
    for y in 1..h - 1 {
        border.push((y, 0));
        border.push((y, w - 1));
    }
    let background: Vec<f32> = (0..c)
        .map(|ch| {
            let mut v: Vec<f32> = border.iter().map(|&(y, x)| image[(ch * h + y) * w + x]).collect();
            v.sort_by(f32::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let mut mask = vec![0.0f32; h * w];
    for (p, m) in mask.iter_mut().enumerate() {
        let d2: f32 = (0..c).map(|ch| (image[ch * h * w + p] - background[ch]).powi(2)).sum();
        *m = d2.sqrt();
    }
    let peak = mask.iter().cloned().fold(0.25f32, f32::max);
    mask.iter_mut().for_each(|m| *m = (*m / peak).clamp(0.0, 1.0));
    // Centre of mass and radius of gyration.
    let (mut s, mut sx, mut sy) = (0.0f64, 0.0f64, 0.0f64);
    for y in 0..h {
        for x in 0..w {
            let m = mask[y * w + x] as f64;
            s += m;
            sx += m * (x as f64 + 0.5);
            sy += m * (y as f64 + 0.5);
        }
    }
    let mut out = vec![0.0f32; FEATURE_DIM];
    if s < 1e-6 {
        return Ok(out);
    }
    let (mx, my) = (sx / s, sy / s);
    let mut r2 = 0.0f64;
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f64 + 0.5 - mx, y as f64 + 0.5 - my);
            r2 += mask[y * w + x] as f64 * (dx * dx + dy * dy);
        }
    }
    let r = ((r2 / s).sqrt() as f32).max(0.5);
    let at = |y: isize, x: isize| -> f32 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            0.0
        } else {
            mask[y as usize * w + x as usize]
        }
    };
    let half = FEATURE_SIDE as f32 / 2.0;
    for v in 0..FEATURE_SIDE {
        for u in 0..FEATURE_SIDE {
            // Sample point in pixel coordinates (pixel centres at integer + 0.5).
            let px = mx as f32 + (u as f32 + 0.5 - half) / half * SPAN * r - 0.5;
            let py = my as f32 + (v as f32 + 0.5 - half) / half * SPAN * r - 0.5;
            let (x0, y0) = (px.floor(), py.floor());
            let (fx, fy) = (px - x0, py - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            out[v * FEATURE_SIDE + u] =
                (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) + fy * ((1.0 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
        }
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|v| *v /= norm);
    }
    Ok(out)
}

/// Features `[N, FEATURE_DIM]` of images `[N, C, H, W]`.
fn features_of(images: &[f32], shape: [usize; 3]) -> Result<Vec<f32>> {
    let len = shape.iter().product::<usize>();
    if len == 0 || !images.len().is_multiple_of(len) {
        return Err(Error::invalid(format!(
            "shape classifier: {} values are not a whole number of {shape:?} images",
            images.len()
        )));
    }
    let mut out = Vec::with_capacity(images.len() / len * FEATURE_DIM);
    for img in images.chunks_exact(len) {
        out.extend(shape_features(img, shape)?);
    }
    Ok(out)
}

/// The fixed k-NN shape classifier for shapes-10 (see the module documentation).
#[derive(Clone, Debug)]
pub struct ShapeClassifier {
    shape: [usize; 3],
    refs: Vec<f32>, // [M, FEATURE_DIM]
    labels: Vec<usize>,
}

impl ShapeClassifier {
    /// Fitted on labelled images `[N, C, H, W]`.
    pub fn fit(images: &[f32], labels: &[usize], shape: [usize; 3]) -> Result<Self> {
        let refs = features_of(images, shape)?;
        check_len("shape classifier: labels", labels.len(), refs.len() / FEATURE_DIM)?;
        if labels.is_empty() {
            return Err(Error::invalid("shape classifier: no reference images"));
        }
        Ok(ShapeClassifier {
            shape,
            refs,
            labels: labels.to_vec(),
        })
    }

    /// The classifier of the demo: [`REFS_PER_CLASS`] real training images per class of
    /// the built-in RGB dataset rendered with [`REFERENCE_SEED`].
    pub fn builtin() -> Result<Self> {
        let n = REFS_PER_CLASS * NUM_CLASSES;
        let (images, labels) = BuiltinShapes::new(Split::Train, 3, REFERENCE_SEED)?.with_len(n)?.render_all(n)?;
        Self::fit(&images, &labels, [3, 16, 16])
    }

    /// Predicted classes of images `[N, C, H, W]`.
    pub fn predict(&self, images: &[f32]) -> Result<Vec<usize>> {
        use rayon::prelude::*;
        let feats = features_of(images, self.shape)?;
        let classes = self.labels.iter().max().map_or(0, |m| m + 1);
        Ok(feats
            .par_chunks_exact(FEATURE_DIM)
            .map(|q| {
                let mut best: Vec<(f32, usize)> = Vec::with_capacity(K + 1);
                for (r, &label) in self.refs.chunks_exact(FEATURE_DIM).zip(&self.labels) {
                    let d: f32 = q.iter().zip(r).map(|(a, b)| (a - b) * (a - b)).sum();
                    if best.len() < K || d < best[best.len() - 1].0 {
                        let pos = best.partition_point(|&(bd, _)| bd <= d);
                        best.insert(pos, (d, label));
                        best.truncate(K);
                    }
                }
                let mut votes = vec![(0usize, 0.0f32); classes];
                for &(d, label) in &best {
                    votes[label].0 += 1;
                    votes[label].1 += d.sqrt();
                }
                (0..classes)
                    .max_by(|&a, &b| votes[a].0.cmp(&votes[b].0).then(votes[b].1.total_cmp(&votes[a].1)).then(b.cmp(&a)))
                    .unwrap_or(0)
            })
            .collect())
    }

    /// Accuracy of the classifier (or faithfulness of a generator) on images with the
    /// labels they should have.
    pub fn score(&self, images: &[f32], labels: &[usize]) -> Result<ClassScore> {
        let pred = self.predict(images)?;
        ClassScore::new(&pred, labels, NUM_CLASSES)
    }
}

/// Overall and per-class accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassScore {
    /// Fraction of images whose predicted class is their label.
    pub accuracy: f64,
    /// Per label: the fraction of its images predicted as that label (NaN if none).
    pub per_class: Vec<f64>,
}

impl ClassScore {
    /// Scores predictions against labels (both `< num_classes`).
    pub fn new(pred: &[usize], labels: &[usize], num_classes: usize) -> Result<Self> {
        check_len("class score: predictions", pred.len(), labels.len())?;
        if labels.is_empty() {
            return Err(Error::invalid("class score: no images"));
        }
        let mut hits = vec![0usize; num_classes];
        let mut count = vec![0usize; num_classes];
        for (&p, &l) in pred.iter().zip(labels) {
            if l >= num_classes {
                return Err(Error::invalid(format!("class score: label {l} >= {num_classes}")));
            }
            count[l] += 1;
            hits[l] += (p == l) as usize;
        }
        Ok(ClassScore {
            accuracy: hits.iter().sum::<usize>() as f64 / labels.len() as f64,
            per_class: hits
                .iter()
                .zip(&count)
                .map(|(&h, &n)| if n == 0 { f64::NAN } else { h as f64 / n as f64 })
                .collect(),
        })
    }

    /// The lowest per-class accuracy (ignoring classes without images).
    pub fn worst_class(&self) -> f64 {
        self.per_class.iter().cloned().filter(|v| !v.is_nan()).fold(f64::INFINITY, f64::min)
    }
}

/// Class-conditional Fréchet distance: the mean over classes of
/// FD(images `a` with label k, images `b` with label k) in the feature space of
/// [`crate::metric`]. A model that ignores labels has a small unconditional FD but a
/// large class-conditional one. Every class needs at least 2 images in both sets.
pub fn class_frechet_distance(a: &[f32], a_labels: &[usize], b: &[f32], b_labels: &[usize], shape: [usize; 3], num_classes: usize) -> Result<f64> {
    let len = shape.iter().product::<usize>();
    check_len("class FD: first set", a.len(), a_labels.len() * len)?;
    check_len("class FD: second set", b.len(), b_labels.len() * len)?;
    let space = FeatureSpace::new(shape)?;
    let pick = |x: &[f32], labels: &[usize], k: usize| -> Vec<f32> {
        x.chunks_exact(len)
            .zip(labels)
            .filter(|(_, &l)| l == k)
            .flat_map(|(img, _)| img.iter().cloned())
            .collect()
    };
    let mut total = 0.0;
    for k in 0..num_classes {
        let (xa, xb) = (pick(a, a_labels, k), pick(b, b_labels, k));
        if xa.len() < 2 * len || xb.len() < 2 * len {
            return Err(Error::invalid(format!("class FD: class {k} has fewer than 2 images in a set")));
        }
        total += frechet_distance(&space.stats(&xa)?, &space.stats(&xb)?)?;
    }
    Ok(total / num_classes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_out(n: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        BuiltinShapes::new(Split::HeldOut, 3, seed).unwrap().with_len(n).unwrap().render_all(n).unwrap()
    }

    #[test]
    fn classifier_is_accurate_on_held_out_real_images() {
        let clf = ShapeClassifier::builtin().unwrap();
        let (x, y) = held_out(1000, 0);
        let s = clf.score(&x, &y).unwrap();
        eprintln!("held-out accuracy {:.3}, per class {:?}", s.accuracy, s.per_class);
        assert!(s.accuracy >= 0.9, "accuracy {}", s.accuracy);
        assert!(s.worst_class() >= 0.7, "worst class {}", s.worst_class());
    }

    #[test]
    fn a_label_ignoring_model_scores_near_chance() {
        let clf = ShapeClassifier::builtin().unwrap();
        let (x, y) = held_out(1000, 3);
        // "Generated" images are real ones, but the labels asked for are unrelated.
        let shuffled: Vec<usize> = (0..y.len()).map(|i| (y[i] + 1 + (i * 7 / 10) % 9) % 10).collect();
        assert!(shuffled.iter().zip(&y).all(|(a, b)| a != b));
        let s = clf.score(&x, &shuffled).unwrap();
        assert!(s.accuracy < 0.05, "accuracy {}", s.accuracy);
        // A random permutation of labels: about chance.
        let mut rng = crate::rng::Rng::new(5);
        let mut perm = y.clone();
        for i in (1..perm.len()).rev() {
            let j = (rng.uniform() * (i + 1) as f64) as usize % (i + 1);
            perm.swap(i, j);
        }
        let s = clf.score(&x, &perm).unwrap();
        assert!(s.accuracy > 0.04 && s.accuracy < 0.2, "accuracy {}", s.accuracy);
        // Class FD separates them too.
        let good = class_frechet_distance(&x[..500 * 768], &y[..500], &x[500 * 768..], &y[500..], [3, 16, 16], 10).unwrap();
        let bad = class_frechet_distance(&x[..500 * 768], &perm[..500], &x[500 * 768..], &y[500..], [3, 16, 16], 10).unwrap();
        assert!(bad > 2.0 * good, "class FD {good} vs shuffled {bad}");
    }

    #[test]
    fn blank_images_do_not_crash_and_scores_are_counted() {
        let clf = ShapeClassifier::builtin().unwrap();
        let p = clf.predict(&vec![-0.8f32; 2 * 768]).unwrap();
        assert_eq!(p.len(), 2);
        let s = ClassScore::new(&[0, 1, 1], &[0, 1, 2], 3).unwrap();
        assert!((s.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.per_class, vec![1.0, 1.0, 0.0]);
    }
}
