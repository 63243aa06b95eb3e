//! `ucgm eval`: the reference's evaluation (`eval.py`) in the engine — sample `N`
//! images from a checkpoint, decode them with the VAE, extract FID Inception features
//! and logits, and report the FID against reference statistics and the Inception Score.
//!
//! * **Labels** follow the reference: `torch.arange(K).repeat(N // K)`, i.e. image `i`
//!   has label `i mod K` (for 50 000 images and K = 1000, 50 per class), and a
//!   multi-process run gives each rank a contiguous block of that sequence
//!   ([`crate::dist::shard_range`]). When K does not divide N the first `N mod K` classes
//!   get one image more (the reference would instead fall short of N).
//! * **Noise**: image `i` draws its initial noise, then its per-step noise (ρ > 0), from
//!   its own stream [`Rng::for_index`](crate::rng::Rng::for_index)`(seed, i)`. Samples therefore do not depend on the
//!   batch size, on the number of processes or on where an interrupted run resumed.
//!   (`ucgm sample` draws one stream for the whole run, so its images differ.)
//! * **Pixels**: decoded images are mapped as the reference's `decode_to_images` does,
//!   `u = clamp((x + 1)/2, 0, 1)`; the pytorch-fid mode feeds `u`, the compat mode
//!   (torch-fidelity `inception-v3-compat`, the reference's `torch_quality_evaluate`)
//!   feeds the uint8 values `trunc(255·u)` that its `x * 255 → uint8` cast makes.
//! * **Statistics**: pool3 features go into a [`FeatureStats`] (f64, streaming), the
//!   logits without bias (torch-fidelity's `logits_unbiased`) are kept for the Inception
//!   Score (10 contiguous splits in image order).
//! * **Resume**: [`EvalState`] (count, mean, scatter, logits so far, next image, and a
//!   fingerprint of every setting that changes the result) is written atomically to the
//!   features file every few batches; a rerun with the same settings continues from it
//!   and ends with the same numbers, a rerun with other settings is an error.
//! * **Data parallel**: each rank evaluates its share; [`merge_ranks`] sends every
//!   rank's state to rank 0 in rank order (one broadcast per rank) and merges them with
//!   Chan's pairwise update — exact up to rounding and deterministic.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::control::RunControl;
use crate::denoiser::Denoiser;
use crate::dist::Communicator;
use crate::engine::AnyVae;
use crate::error::{Error, Result};
use crate::fid::{inception_score, FeatureStats, InceptionScore, IS_SPLITS};
use crate::latent_norm::LatentNorm;
use crate::model::inception::{FidInception, InceptionInput, LOGITS_DIM, POOL3_DIM};
use crate::sampler::SamplerConfig;
use crate::tensor_file::{write_atomic, TensorFile, TensorOut};

/// Metadata key of the settings fingerprint in a features file.
pub const FINGERPRINT_KEY: &str = "ucgm.eval.fingerprint";

/// The class label of image `index` of an evaluation over `classes` classes.
pub fn eval_label(index: usize, classes: usize) -> usize {
    index % classes.max(1)
}

pub use super::sample::{image_noise, step_draws};

/// Decoded pixels (nominally [−1, 1]) to the network's input range, as the reference
/// prepares its samples: `u = clamp((x + 1)/2, 0, 1)`, then `u` (pytorch-fid mode) or
/// the uint8 value `trunc(255·u)` (compat mode). NaN maps to 0.
pub fn decoded_to_network(x: f32, input: InceptionInput) -> f32 {
    let u = ((x + 1.0) * 0.5).clamp(0.0, 1.0);
    let u = if u.is_nan() { 0.0 } else { u };
    match input {
        InceptionInput::PytorchFid => u,
        InceptionInput::TorchFidelity => (u * 255.0).trunc(),
    }
}

/// What the evaluation runs: the diffusion network, the VAE with the latent
/// normalisation to invert, the FID Inception and the sampler settings.
pub struct EvalPipeline<'a, B: Backend> {
    /// The diffusion network (in inference layout).
    pub model: &'a mut dyn Denoiser,
    /// The VAE that decodes its latents.
    pub vae: &'a mut AnyVae,
    /// The normalisation of the model's latents (inverted before decoding).
    pub norm: &'a LatentNorm,
    /// The FID Inception.
    pub net: &'a FidInception<B>,
    /// Sampler settings.
    pub sampler: &'a SamplerConfig,
    /// Seed of the per-image noise streams.
    pub seed: u64,
}

/// pool3 features `[n, 2048]` and unbiased logits `[n, 1008]` of one batch.
pub struct BatchFeatures {
    /// pool3 features `[n, 2048]`.
    pub pool3: Vec<f32>,
    /// `fc` logits without the bias `[n, 1008]`.
    pub logits: Vec<f32>,
}

impl<B: Backend> EvalPipeline<'_, B> {
    /// Samples, decodes and measures images `indices` (global image indices).
    pub fn batch(&mut self, indices: Range<usize>, ctl: &mut RunControl<'_>) -> Result<BatchFeatures> {
        let b = indices.len();
        if b == 0 {
            return Err(Error::invalid("eval: empty batch"));
        }
        let classes = self.model.num_classes();
        let [c, h, w] = self.model.sample_shape();
        let labels: Vec<usize> = indices.clone().map(|i| eval_label(i, classes)).collect();
        let latents = super::sample::sample_batch_indexed(self.model, self.sampler, &labels, indices, self.seed, ctl)?;
        let decoded = super::decode::decode_latents(self.vae, self.norm, &latents, [b, c, h, w])?;
        let side = decoded.len() / (b * 3);
        let f = self.vae.config().downsample_factor();
        let (ih, iw) = (h * f, w * f);
        if side != ih * iw {
            return Err(Error::Internal(format!("eval: decoded {side} pixels per channel, expected {ih}×{iw}")));
        }
        let input = self.net.input();
        let images: Vec<f32> = decoded.iter().map(|&x| decoded_to_network(x, input)).collect();
        let out = self.net.forward(&images, b, ih, iw)?;
        Ok(BatchFeatures {
            pool3: out.pool3,
            logits: out.logits_unbiased,
        })
    }
}

/// The accumulated result of an evaluation (or one rank's share of it) so far.
#[derive(Clone, Debug)]
pub struct EvalState {
    /// The settings the state belongs to (see [`Fingerprint`]).
    pub fingerprint: String,
    /// The global image indices this state covers.
    pub range: Range<usize>,
    /// The next image to evaluate (`range.start ..= range.end`).
    pub next: usize,
    /// pool3 statistics of images `range.start .. next`.
    pub stats: FeatureStats,
    /// Unbiased logits `[next − range.start, 1008]` of those images, in order.
    pub logits: Vec<f32>,
}

impl EvalState {
    /// An empty state.
    pub fn new(fingerprint: String, range: Range<usize>) -> Result<Self> {
        Ok(EvalState {
            fingerprint,
            next: range.start,
            range,
            stats: FeatureStats::new(POOL3_DIM)?,
            logits: Vec::new(),
        })
    }

    /// Whether every image of the range has been evaluated.
    pub fn done(&self) -> bool {
        self.next >= self.range.end
    }

    /// Writes the state atomically (safetensors: `count`, `next`, `range` as i64,
    /// `mean` and `m2` as f64, `logits` as f32; the fingerprint in the metadata).
    pub fn save(&self, path: &Path) -> Result<()> {
        let d = self.stats.dim();
        let ints = [self.stats.count() as i64, self.next as i64, self.range.start as i64, self.range.end as i64];
        let m2 = self.stats.scatter();
        let rows = self.logits.len() / LOGITS_DIM;
        let meta: BTreeMap<String, String> = [(FINGERPRINT_KEY.to_string(), self.fingerprint.clone())].into();
        write_atomic(
            path,
            &[
                TensorOut::i64("count_next_range", vec![4], &ints),
                TensorOut::f64("mean", vec![d], self.stats.mean()),
                TensorOut::f64("m2", vec![d, d], &m2),
                TensorOut::f32("logits", vec![rows, LOGITS_DIM], &self.logits),
            ],
            &meta,
        )
    }

    /// Reads a saved state; a state saved under other settings (`fingerprint`) or for
    /// other images (`range`) is an error that names the difference.
    pub fn load(path: &Path, fingerprint: &str, range: Range<usize>) -> Result<Self> {
        let tf = TensorFile::open(path)?;
        let saved = tf
            .metadata()
            .get(FINGERPRINT_KEY)
            .ok_or_else(|| Error::format(path, "not an eval features file (no settings fingerprint)"))?;
        if saved != fingerprint {
            return Err(Error::invalid(format!(
                "{}: this features file belongs to an evaluation with other settings ({}); \
                 rerun with those settings, or use another --features-file (or delete this one) to start over",
                path.display(),
                fingerprint_difference(saved, fingerprint)
            )));
        }
        let bad = |m: String| Error::format(path, m);
        let (_, ints) = tf.i64("count_next_range")?;
        let &[count, next, start, end] = ints.as_slice() else {
            return Err(bad("count_next_range must hold 4 integers".into()));
        };
        if start != range.start as i64 || end != range.end as i64 {
            return Err(Error::invalid(format!(
                "{}: saved for images {start}..{end}, this run evaluates {}..{}",
                path.display(),
                range.start,
                range.end
            )));
        }
        if next < start || next > end || count != next - start {
            return Err(bad(format!("inconsistent counters: count {count}, next {next}, range {start}..{end}")));
        }
        let (ms, mean) = tf.f64("mean")?;
        let (m2s, m2) = tf.f64("m2")?;
        if ms != [POOL3_DIM] || m2s != [POOL3_DIM, POOL3_DIM] {
            return Err(bad(format!("mean {ms:?} / m2 {m2s:?}: expected [{POOL3_DIM}] / [{POOL3_DIM}, {POOL3_DIM}]")));
        }
        let (ls, logits) = tf.f32("logits")?;
        if ls != [count as usize, LOGITS_DIM] {
            return Err(bad(format!("logits {ls:?}: expected [{count}, {LOGITS_DIM}]")));
        }
        let stats = if count == 0 {
            FeatureStats::new(POOL3_DIM)?
        } else {
            FeatureStats::from_state(count as u64, mean, &m2).map_err(|e| bad(e.to_string()))?
        };
        Ok(EvalState {
            fingerprint: fingerprint.to_string(),
            range,
            next: next as usize,
            stats,
            logits,
        })
    }

    /// The saved state at `path` when it exists, else a new one.
    pub fn load_or_new(path: Option<&Path>, fingerprint: String, range: Range<usize>) -> Result<Self> {
        match path {
            Some(p) if p.exists() => Self::load(p, &fingerprint, range),
            _ => Self::new(fingerprint, range),
        }
    }
}

/// Names the first setting in which two fingerprints differ.
fn fingerprint_difference(saved: &str, now: &str) -> String {
    let parse = |s: &str| serde_json::from_str::<BTreeMap<String, String>>(s).unwrap_or_default();
    let (a, b) = (parse(saved), parse(now));
    for (k, v) in &b {
        match a.get(k) {
            Some(old) if old == v => {}
            Some(old) => return format!("{k}: saved {old}, now {v}"),
            None => return format!("{k} not recorded in the file"),
        }
    }
    "unreadable fingerprint".into()
}

/// The settings that determine an evaluation's result, as a JSON object (the features
/// file must match it to resume). Files are identified by path and size.
#[derive(Default)]
pub struct Fingerprint(BTreeMap<String, String>);

impl Fingerprint {
    /// Records a setting.
    pub fn set(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.0.insert(key.to_string(), value.to_string());
        self
    }

    /// Records a file by its absolute path and size.
    pub fn file(&mut self, key: &str, path: &Path) -> Result<&mut Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.set(key, format!("{} ({} bytes)", abs.display(), meta.len()));
        Ok(self)
    }

    /// The JSON text.
    pub fn text(&self) -> String {
        serde_json::to_string(&self.0).expect("string map serialises")
    }
}

/// How [`run_eval`] proceeds.
pub struct EvalRun<'a> {
    /// Images per batch.
    pub batch: usize,
    /// The features file (None: nothing saved, no resume).
    pub features_file: Option<&'a Path>,
    /// Save the state every this many batches (and at the end).
    pub save_every: usize,
    /// Stop (state saved) after this many batches of this invocation (tests, time slots).
    pub max_batches: Option<usize>,
}

/// Evaluates the rest of `state.range`, saving as it goes; `progress(done, total)`
/// after each batch (images of the range). Returns whether the range is finished.
pub fn run_eval<B: Backend>(pipe: &mut EvalPipeline<'_, B>, state: &mut EvalState, run: &EvalRun<'_>, progress: &mut dyn FnMut(usize, usize)) -> Result<bool> {
    let batch = run.batch.max(1);
    let total = state.range.len();
    let mut batches = 0usize;
    let mut unsaved = 0usize;
    progress(state.next - state.range.start, total);
    while !state.done() {
        if run.max_batches.is_some_and(|m| batches >= m) {
            break;
        }
        let end = (state.next + batch).min(state.range.end);
        let out = pipe.batch(state.next..end, &mut RunControl::default())?;
        state.stats.add_f32(&out.pool3)?;
        crate::error::check_finite("inception logits", &out.logits)?;
        state.logits.extend_from_slice(&out.logits);
        state.next = end;
        batches += 1;
        unsaved += 1;
        if let Some(p) = run.features_file {
            if unsaved >= run.save_every.max(1) {
                state.save(p)?;
                unsaved = 0;
            }
        }
        progress(state.next - state.range.start, total);
    }
    if let (Some(p), true) = (run.features_file, unsaved > 0) {
        state.save(p)?;
    }
    Ok(state.done())
}

/// The whole evaluation's statistics and logits on rank 0 (`None` on the others):
/// every rank's state is broadcast in rank order and merged into rank 0's. With one
/// process this is the state itself.
pub fn merge_ranks(comm: &mut dyn Communicator, state: EvalState, num: usize) -> Result<Option<(FeatureStats, Vec<f32>)>> {
    let (rank, world) = (comm.rank(), comm.world());
    if world == 1 {
        return Ok(Some((state.stats, state.logits)));
    }
    if !state.done() {
        return Err(Error::Internal("merge_ranks: this rank's share is not finished".into()));
    }
    let d = POOL3_DIM;
    let mut merged: Option<(FeatureStats, Vec<f32>)> = None;
    for r in 0..world {
        let images = crate::dist::shard_range(num, r, world).len();
        // [count | mean (D) | m2 (D²)] as f64, then logits [images, 1008] as f32.
        let len = (1 + d + d * d) * 8 + images * LOGITS_DIM * 4;
        let mut bytes = crate::limits::try_vec::<u8>("eval merge buffer", len)?;
        if r == rank {
            let head: Vec<f64> = std::iter::once(state.stats.count() as f64)
                .chain(state.stats.mean().iter().copied())
                .chain(state.stats.scatter())
                .collect();
            let mut at = 0;
            for v in head {
                bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
                at += 8;
            }
            for v in &state.logits {
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                at += 4;
            }
        }
        comm.broadcast(&mut bytes, r)?;
        if rank != 0 {
            continue;
        }
        let f64s: Vec<f64> = bytes[..(1 + d + d * d) * 8]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let logits: Vec<f32> = bytes[(1 + d + d * d) * 8..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let count = f64s[0] as u64;
        if count as usize != images {
            return Err(crate::dist::communicator::dist_error(format!(
                "rank {r} evaluated {count} images, expected {images}"
            )));
        }
        let part = if count == 0 {
            FeatureStats::new(d)?
        } else {
            FeatureStats::from_state(count, f64s[1..1 + d].to_vec(), &f64s[1 + d..])?
        };
        match merged.as_mut() {
            None => merged = Some((part, logits)),
            Some((s, l)) => {
                s.merge(&part)?;
                l.extend_from_slice(&logits);
            }
        }
    }
    Ok(merged)
}

/// The figures of a finished evaluation.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: u64,
    /// Their pool3 statistics.
    pub stats: crate::metric::GaussianStats,
    /// Inception Score (10 splits).
    pub inception_score: InceptionScore,
    /// FID against the reference statistics, when given.
    pub fid: Option<f64>,
}

/// FID (against `reference`, when given) and IS of merged statistics and logits.
pub fn report(stats: &FeatureStats, logits: &[f32], reference: Option<&crate::metric::GaussianStats>) -> Result<EvalReport> {
    let g = stats.finish()?;
    let is = inception_score(logits, LOGITS_DIM, IS_SPLITS)?;
    let fid = match reference {
        Some(r) => Some(crate::fid::frechet_distance(&g, r)?),
        None => None,
    };
    Ok(EvalReport {
        images: stats.count(),
        stats: g,
        inception_score: is,
        fid,
    })
}

/// The features file of `rank` of `world`: `path` itself for one process, else
/// `path` with `.rank{r}of{w}` before its extension (each rank resumes its own share).
pub fn rank_features_path(path: &Path, rank: usize, world: usize) -> PathBuf {
    if world == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(e) => format!("{stem}.rank{rank}of{world}.{}", e.to_string_lossy()),
        None => format!("{stem}.rank{rank}of{world}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cycle_like_the_reference() {
        // torch.arange(4).repeat(3)
        let l: Vec<usize> = (0..12).map(|i| eval_label(i, 4)).collect();
        assert_eq!(l, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn pixels_map_like_decode_to_images() {
        assert_eq!(decoded_to_network(-2.0, InceptionInput::PytorchFid), 0.0);
        assert_eq!(decoded_to_network(0.0, InceptionInput::PytorchFid), 0.5);
        assert_eq!(decoded_to_network(1.5, InceptionInput::TorchFidelity), 255.0);
        // 0.5·255 = 127.5 truncates to 127 (torch's float → uint8 cast).
        assert_eq!(decoded_to_network(0.0, InceptionInput::TorchFidelity), 127.0);
        assert_eq!(decoded_to_network(f32::NAN, InceptionInput::PytorchFid), 0.0);
    }

    #[test]
    fn rank_paths() {
        assert_eq!(rank_features_path(Path::new("a/f.safetensors"), 0, 1), Path::new("a/f.safetensors"));
        assert_eq!(rank_features_path(Path::new("a/f.safetensors"), 1, 2), Path::new("a/f.rank1of2.safetensors"));
    }
}
