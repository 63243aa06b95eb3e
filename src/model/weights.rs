//! Model weights in safetensors: strict loading by reference name and shape (f32, f16,
//! bf16), configuration from metadata or inferred from shapes, atomic saving.
//!
//! [`load_file`] reads either kind of file the engine meets: a weights file (written by
//! `Model::save`, `ucgm export`, or converted from a reference checkpoint) or a training
//! checkpoint (`ucgm train`, the demo), whose sampling EMA it takes by default.
//!
//! Loading touches each byte of the file once: the file is opened by its header only,
//! and [`read_params`] reads every tensor straight into the one parameter vector while
//! checksumming it, streams the rest of the file for the checksum, and fails on a
//! mismatch before any parameters are returned.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{Error, Result};
use crate::layout::ParamLayout;
use crate::model::config::{Arch, ModelConfig};
use crate::model::embed;
use crate::tensor_file::{write_atomic, TensorFile, TensorOut};

/// Metadata key holding the model configuration as JSON.
pub const CONFIG_KEY: &str = "ucgm_config";

/// Metadata key that marks a training checkpoint (its scalar trainer state, JSON).
pub const TRAINER_STATE_KEY: &str = "ucgm_trainer_state";

/// Which weights of a training checkpoint to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointWeights {
    /// The online network.
    Online,
    /// The sampling EMA (what the reference's `eval.py` samples with; the default).
    Ema,
    /// The auxiliary network `mod`.
    Mod,
}

impl CheckpointWeights {
    /// The tensor-name prefix of this set in a checkpoint.
    pub fn prefix(self) -> &'static str {
        match self {
            CheckpointWeights::Online => "",
            CheckpointWeights::Ema => "ema.",
            CheckpointWeights::Mod => "mod.",
        }
    }

    /// Its name on the command line and in messages: "online", "ema", "mod".
    pub fn name(self) -> &'static str {
        match self {
            CheckpointWeights::Online => "online",
            CheckpointWeights::Ema => "ema",
            CheckpointWeights::Mod => "mod",
        }
    }
}

impl std::str::FromStr for CheckpointWeights {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "online" => Ok(CheckpointWeights::Online),
            "ema" => Ok(CheckpointWeights::Ema),
            "mod" => Ok(CheckpointWeights::Mod),
            _ => Err(Error::invalid(format!("weights {s:?}: expected ema, online or mod"))),
        }
    }
}

/// A model's weights read from a file by [`load_file`].
pub struct LoadedWeights {
    /// The configuration (metadata, or inferred from the shapes).
    pub cfg: ModelConfig,
    /// `[N]` parameters in [`ParamLayout`] order.
    pub params: Vec<f32>,
    /// The file's whole `__metadata__` map (sampler preset, trainer state, …).
    pub metadata: HashMap<String, String>,
    /// Which set of a checkpoint was read (`None`: a plain weights file).
    pub checkpoint: Option<CheckpointWeights>,
}

/// Whether a file is a training checkpoint (rather than a plain weights file).
pub fn is_checkpoint(file: &TensorFile) -> bool {
    file.metadata().contains_key(TRAINER_STATE_KEY)
}

/// Reads a weights file or a training checkpoint, strictly. `which` picks a checkpoint's
/// set (default: the sampling EMA); a plain weights file has one set, so `which` is
/// ignored there except that `mod` is an error, as is a checkpoint without the set asked
/// for (`mod` exists only in some runs).
/// `heads` overrides the number of attention heads (plain files of non-standard width).
pub fn load_file(path: &Path, heads: Option<usize>, which: Option<CheckpointWeights>) -> Result<LoadedWeights> {
    // (the checksum is verified by `read_params`, in its one pass over the data)
    let file = TensorFile::open_header(path)?;
    let (cfg, checkpoint) = if is_checkpoint(&file) {
        let which = which.unwrap_or(CheckpointWeights::Ema);
        let cfg = config_of(&file, heads)?;
        let first = ParamLayout::for_config(&cfg).entries()[0].name.clone();
        if !file.contains(&format!("{}{first}", which.prefix())) {
            return Err(Error::Weights(format!(
                "{}: this training checkpoint holds no {} weights",
                path.display(),
                which.name()
            )));
        }
        (cfg, Some(which))
    } else {
        if which == Some(CheckpointWeights::Mod) {
            return Err(Error::invalid(format!(
                "{}: mod weights asked for, but this is a plain weights file, not a training checkpoint",
                path.display()
            )));
        }
        let cfg = config_of(&file, heads)?;
        check_no_extras(&file, &cfg)?;
        (cfg, None)
    };
    let params = read_params(&file, &cfg, checkpoint.map_or("", |w| w.prefix()))?;
    Ok(LoadedWeights {
        cfg,
        params,
        metadata: file.metadata().clone(),
        checkpoint,
    })
}

/// Reads a weights file or a training checkpoint (its `which` set, default the EMA) for
/// a configuration given by the caller — a named model (e.g. `DDT-XL/2`, whose weights
/// do not record their patch size, input size or encoder depth) — strictly by name
/// and shape.
pub fn load_file_as(path: &Path, cfg: &ModelConfig, which: Option<CheckpointWeights>) -> Result<LoadedWeights> {
    // (the checksum is verified by `read_params`, in its one pass over the data)
    let file = TensorFile::open_header(path)?;
    cfg.validate()?;
    let checkpoint = if is_checkpoint(&file) {
        Some(which.unwrap_or(CheckpointWeights::Ema))
    } else {
        if which == Some(CheckpointWeights::Mod) {
            return Err(Error::invalid(format!(
                "{}: mod weights asked for, but this is a plain weights file, not a training checkpoint",
                path.display()
            )));
        }
        check_no_extras(&file, cfg)?;
        None
    };
    let params = read_params(&file, cfg, checkpoint.map_or("", |w| w.prefix()))?;
    Ok(LoadedWeights {
        cfg: cfg.clone(),
        params,
        metadata: file.metadata().clone(),
        checkpoint,
    })
}

/// Frozen buffers a reference checkpoint carries besides the parameters.
pub const BUFFERS: [&str; 3] = ["pos_embed", "feat_rope.freqs_cos", "feat_rope.freqs_sin"];

/// Heads of the reference's named widths.
fn heads_for_width(d: usize) -> Option<usize> {
    match d {
        384 => Some(6),
        768 => Some(12),
        1024 | 1152 => Some(16),
        1536 => Some(24),
        1792 => Some(28),
        _ => None,
    }
}

/// The configuration of a weights file: from its `ucgm_config` metadata, else inferred
/// from the tensor shapes (`heads` overrides; needed for non-standard widths of SiT).
pub fn config_of(file: &TensorFile, heads: Option<usize>) -> Result<ModelConfig> {
    let path = file.path().display().to_string();
    if let Some(js) = file.metadata().get(CONFIG_KEY) {
        let mut cfg: ModelConfig =
            serde_json::from_str(js).map_err(|e| Error::format(file.path(), format!("metadata {CONFIG_KEY} is not a valid model config: {e}")))?;
        if let Some(h) = heads {
            cfg.heads = h;
        }
        cfg.validate()?;
        return Ok(cfg);
    }
    if file.contains("s_embedder.proj.weight") {
        return Err(Error::Weights(format!(
            "{path}: a DDT checkpoint (it has s_embedder.proj.weight), which does not record its patch size, input size or \
             encoder depth: name the model (e.g. DDT-XL/2 with its input size) or give the configuration"
        )));
    }
    let xw = file.shape("x_embedder.proj.weight")?;
    if xw.len() != 4 || xw[2] != xw[3] {
        return Err(Error::Weights(format!(
            "{path}: x_embedder.proj.weight has shape {xw:?}, expected [D, C, p, p]"
        )));
    }
    let (d, c, p) = (xw[0], xw[1], xw[2]);
    let table = file.shape("y_embedder.embedding_table.weight")?;
    if table.len() != 2 || table[0] < 2 {
        return Err(Error::Weights(format!(
            "{path}: y_embedder.embedding_table.weight has shape {table:?}, expected [K+1, D]"
        )));
    }
    let depth = (0..).take_while(|i| file.contains(&format!("blocks.{i}.attn.qkv.weight"))).count();
    let arch = match (file.contains("blocks.0.mlp.w12.weight"), file.contains("blocks.0.norm1.weight")) {
        (true, true) => Arch::LightningDit,
        (true, false) => Arch::Tit,
        (false, _) => Arch::Sit,
    };
    let pos = file
        .shape("pos_embed")
        .map_err(|_| Error::Weights(format!("{path}: no pos_embed and no {CONFIG_KEY} metadata: cannot tell the input size")))?;
    let tokens = *pos
        .get(1)
        .ok_or_else(|| Error::Weights(format!("{path}: pos_embed has shape {pos:?}, expected [1, T, D]")))?;
    let grid = (tokens as f64).sqrt().round() as usize;
    if grid.checked_mul(grid) != Some(tokens) {
        return Err(Error::Weights(format!("{path}: pos_embed has {tokens} tokens, not a square grid")));
    }
    let rope_heads = if arch.uses_rope() {
        file.shape("feat_rope.freqs_cos")
            .ok()
            .and_then(|s| s.get(1).copied())
            .filter(|&dh| dh > 0 && d % dh == 0)
            .map(|dh| d / dh)
    } else {
        None
    };
    let heads = heads
        .or(rope_heads)
        .or_else(|| heads_for_width(d))
        .ok_or_else(|| Error::invalid(format!("{path}: hidden width {d} is not a named size: pass the number of heads")))?;
    // (a zero-sized tensor may claim any other dimension: no arithmetic may overflow)
    let input_size = grid
        .checked_mul(p)
        .ok_or_else(|| Error::Weights(format!("{path}: {tokens} tokens of patch {p} overflow the input size")))?;
    let cfg = ModelConfig {
        arch,
        input_size,
        in_channels: c,
        patch: p,
        hidden: d,
        depth,
        heads,
        num_classes: table[0] - 1,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Words for the architecture a configuration guesses, for error messages:
/// "LightningDiT (depth 2, hidden 64, 4 heads, patch 1, 32 channels, 10 classes)".
pub fn describe_guess(cfg: &ModelConfig) -> String {
    let enc = match cfg.arch {
        Arch::Ddt { encoder_depth } => format!(", {encoder_depth} encoder blocks"),
        _ => String::new(),
    };
    format!(
        "{} (depth {}{enc}, hidden {}, {} heads, patch {}, {} channels, {} classes)",
        cfg.arch.name(),
        cfg.depth,
        cfg.hidden,
        cfg.heads,
        cfg.patch,
        cfg.in_channels,
        cfg.num_classes
    )
}

/// Reads every parameter of `cfg` (names prefixed by `prefix`) into a flat vector,
/// failing on a missing, mis-shaped or wrongly typed tensor; the error names the tensor
/// and the architecture guessed for the file.
///
/// The vector is allocated once and each tensor is read straight into its range, in
/// file order. On a file opened with [`TensorFile::open_header`] that stores a checksum,
/// the checksum is verified in the same pass (the tensors not needed are streamed for
/// it) and a mismatch is an error; on one opened with [`TensorFile::open`] it was
/// verified already and only the parameters are read.
pub fn read_params(file: &TensorFile, cfg: &ModelConfig, prefix: &str) -> Result<Vec<f32>> {
    let layout = ParamLayout::for_config(cfg);
    // Every tensor present with its shape before the vector is allocated: its size then
    // follows from tensors the file holds, not from the configuration it claims.
    for e in layout.entries() {
        let name = format!("{prefix}{}", e.name);
        if !file.contains(&name) {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} of {} is missing: the checkpoint fits no known architecture",
                file.path().display(),
                describe_guess(cfg)
            )));
        }
        let shape = file.shape(&name)?;
        if shape != e.shape {
            return Err(Error::Weights(format!(
                "{}: tensor {name:?} has shape {shape:?}, expected {:?} for {}",
                file.path().display(),
                e.shape,
                describe_guess(cfg)
            )));
        }
    }
    let mut out = crate::limits::try_zeroed::<f32>("parameters", layout.total())?;
    let mut order: Vec<(u64, String, &crate::layout::ParamEntry)> = layout
        .entries()
        .iter()
        .map(|e| {
            let name = format!("{prefix}{}", e.name);
            (file.data_offset(&name).unwrap_or(0), name, e)
        })
        .collect();
    order.sort_by_key(|(at, ..)| *at);
    let mut reader = file.one_pass();
    for (_, name, e) in &order {
        reader.read_f32_into(name, &e.shape, &mut out[e.range()])?;
    }
    reader.finish()?;
    Ok(out)
}

/// Fails if a weights file holds a tensor that is neither a parameter of `cfg` nor a
/// known frozen buffer of the right shape.
pub fn check_no_extras(file: &TensorFile, cfg: &ModelConfig) -> Result<()> {
    let layout = ParamLayout::for_config(cfg);
    for n in file.names() {
        if layout.get(n).is_some() {
            continue;
        }
        let want = match n.as_str() {
            "pos_embed" if cfg.uses_pos_embed() => vec![1, cfg.tokens(), cfg.hidden],
            "feat_rope.freqs_cos" | "feat_rope.freqs_sin" if matches!(cfg.arch, Arch::Tit | Arch::LightningDit) => {
                vec![cfg.tokens(), cfg.head_dim()]
            }
            _ => {
                return Err(Error::Weights(format!(
                    "{}: unexpected tensor {n:?} (not a parameter of {})",
                    file.path().display(),
                    describe_guess(cfg)
                )))
            }
        };
        let got = file.shape(n)?;
        if got != want {
            return Err(Error::Weights(format!(
                "{}: buffer {n:?} has shape {got:?}, expected {want:?}",
                file.path().display()
            )));
        }
    }
    Ok(())
}

/// The frozen buffers of a configuration as (name, shape, data).
pub fn buffers(cfg: &ModelConfig) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    if !cfg.uses_pos_embed() {
        return vec![]; // DDT: its RoPE table is computed in forward, not stored
    }
    let mut v = vec![("pos_embed".to_string(), vec![1, cfg.tokens(), cfg.hidden], embed::pos_embed(cfg))];
    if matches!(cfg.arch, Arch::Tit | Arch::LightningDit) {
        let (c, s) = embed::rope_tables(cfg);
        v.push(("feat_rope.freqs_cos".into(), vec![cfg.tokens(), cfg.head_dim()], c));
        v.push(("feat_rope.freqs_sin".into(), vec![cfg.tokens(), cfg.head_dim()], s));
    }
    v
}

/// Writes parameters (reference names) + frozen buffers + config metadata atomically.
pub fn save(path: &Path, cfg: &ModelConfig, layout: &ParamLayout, params: &[f32]) -> Result<()> {
    save_with_metadata(path, cfg, layout, params, &BTreeMap::new())
}

/// [`save`] with extra metadata entries (e.g. the sampler preset); they must not use the
/// engine's own keys (`ucgm_config`, `format`, the checksum).
pub fn save_with_metadata(path: &Path, cfg: &ModelConfig, layout: &ParamLayout, params: &[f32], extra: &BTreeMap<String, String>) -> Result<()> {
    let bufs = buffers(cfg);
    let mut tensors: Vec<TensorOut<'_>> = layout
        .entries()
        .iter()
        .map(|e| TensorOut::f32(e.name.clone(), e.shape.clone(), &params[e.range()]))
        .collect();
    for (n, s, d) in &bufs {
        tensors.push(TensorOut::f32(n.clone(), s.clone(), d));
    }
    let mut meta = extra.clone();
    meta.insert(CONFIG_KEY.to_string(), serde_json::to_string(cfg).map_err(|e| Error::Internal(e.to_string()))?);
    meta.insert("format".to_string(), "pt".to_string());
    write_atomic(path, &tensors, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig {
            arch: Arch::Sit,
            input_size: 4,
            in_channels: 2,
            patch: 2,
            hidden: 8,
            depth: 1,
            heads: 2,
            num_classes: 3,
        }
    }

    /// `bytes` with one bit of tensor `name`'s data flipped.
    fn damaged(path: &Path, bytes: &[u8], name: &str) -> Vec<u8> {
        let at = TensorFile::open_header(path).unwrap().data_offset(name).unwrap() as usize;
        let mut bad = bytes.to_vec();
        bad[at + 1] ^= 0x04;
        bad
    }

    #[test]
    fn load_file_verifies_the_checksum_in_its_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny();
        let layout = ParamLayout::for_config(&cfg);
        let params: Vec<f32> = (0..layout.total()).map(|i| (i as f32 * 0.01).cos()).collect();
        let p = dir.path().join("w.safetensors");
        save(&p, &cfg, &layout, &params).unwrap();
        let w = load_file(&p, None, None).unwrap();
        assert_eq!((w.cfg, w.params.as_slice(), w.checkpoint), (cfg.clone(), params.as_slice(), None));
        assert_eq!(load_file_as(&p, &cfg, None).unwrap().params, params);
        // One flipped data bit, in a parameter or in a buffer the loader does not read.
        let bytes = std::fs::read(&p).unwrap();
        let q = dir.path().join("bad.safetensors");
        for name in [layout.entries()[3].name.as_str(), "pos_embed"] {
            std::fs::write(&q, damaged(&p, &bytes, name)).unwrap();
            for e in [load_file(&q, None, None).err(), load_file_as(&q, &cfg, None).err()] {
                let e = e.expect("damaged file loaded");
                assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("checksum mismatch"), "{name}: {e}");
            }
        }
    }

    #[test]
    fn checkpoint_sets_load_and_damage_in_other_sets_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny();
        let layout = ParamLayout::for_config(&cfg);
        let set = |k: f32| -> Vec<f32> { (0..layout.total()).map(|i| (i as f32 * 0.02 + k).sin()).collect() };
        let (online, ema, moment) = (set(0.0), set(1.0), set(2.0));
        let mut tensors = Vec::new();
        for (prefix, data) in [("", &online), ("ema.", &ema), ("exp_avg.", &moment)] {
            for e in layout.entries() {
                tensors.push(TensorOut::f32(format!("{prefix}{}", e.name), e.shape.clone(), &data[e.range()]));
            }
        }
        let meta: BTreeMap<String, String> = [
            (CONFIG_KEY.to_string(), serde_json::to_string(&cfg).unwrap()),
            (TRAINER_STATE_KEY.to_string(), "{}".to_string()),
        ]
        .into();
        let p = dir.path().join("c.safetensors");
        write_atomic(&p, &tensors, &meta).unwrap();
        let w = load_file(&p, None, None).unwrap();
        assert_eq!((w.params, w.checkpoint), (ema, Some(CheckpointWeights::Ema)));
        assert_eq!(load_file(&p, None, Some(CheckpointWeights::Online)).unwrap().params, online);
        // A flipped bit in the optimizer moments, which no set's load reads.
        let bytes = std::fs::read(&p).unwrap();
        let q = dir.path().join("bad.safetensors");
        std::fs::write(&q, damaged(&p, &bytes, &format!("exp_avg.{}", layout.entries()[0].name))).unwrap();
        for which in [None, Some(CheckpointWeights::Online)] {
            let e = load_file(&q, None, which).err().expect("damaged checkpoint loaded");
            assert!(e.to_string().contains("checksum mismatch"), "{e}");
        }
    }
}
