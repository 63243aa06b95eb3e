//! The EDM2 UNet (reference `networks/edm2.py`, Karras et al. 2024, as adapted by UCGM),
//! forward only, over the [`Backend`] ops.
//!
//! Magnitude-preserving layers: every convolution / linear weight is normalised per
//! output channel, w / (1e-4 + ‖w‖/√fan_in), then scaled by gain/√fan_in (the gain is
//! 1, a block's learned `emb_gain`, or `out_gain` for the output convolution). In
//! inference the weights do not change, so this is done once when the model is built
//! (in f64, rounded to f32). MP-SiLU = SiLU/0.596; MP-sum(a, b, t) = lerp(a, b, t) /
//! √((1−t)² + t²); MP-concat scales each part by √((Na+Nb)/((1−t)²+t²))·(1−t)/√Na (resp.
//! t/√Nb). The noise embedding is a Fourier feature cos(2π(f·c + φ))·√2 of the noise label
//! c = 2.68·t − 1.59 with *stored* random frequencies and phases (UCGM's EDM transport: σ
//! = exp(4c)); the class embedding is skipped for the unconditional (`uncond`) branch of
//! guidance. Attention: heads = channels // 64, q, k, v each pixel-normalised over a
//! head's channels; the reference's qkv channel order (head, channel, q|k|v) is permuted
//! once at load into the (q|k|v, head, channel) rows the attention op takes.

use std::collections::HashMap;
use std::path::Path;

use crate::backend::{AttnDims, Backend, Conv2dShape};
use crate::denoiser::Denoiser;
use crate::error::{check_finite, check_len, Error, Result};
use crate::tensor_file::TensorFile;

/// Channels per attention head (heads = channels // 64; 0 heads = no attention).
pub const CHANNELS_PER_HEAD: usize = 64;
/// Balance between a block's main branch (0) and its residual branch (1).
pub const RES_BALANCE: f64 = 0.3;
/// Balance between a block's main branch (0) and its self-attention (1).
pub const ATTN_BALANCE: f64 = 0.3;
/// Output activations of every block are clipped to ±this.
pub const CLIP_ACT: f32 = 256.0;
/// Balance between the noise embedding (0) and the class embedding (1).
pub const LABEL_BALANCE: f64 = 0.5;
/// Balance between the skip connections (0) and the main path (1).
pub const CONCAT_BALANCE: f64 = 0.5;

/// Shape of an EDM2 UNet (the reference's `UNet` constructor arguments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edm2Config {
    /// Side of the (square) input latent.
    pub input_size: usize,
    /// Latent channels.
    pub in_channels: usize,
    /// Classes K (no null row: the unconditional branch skips the class embedding).
    pub num_classes: usize,
    /// Base channel count.
    pub model_channels: usize,
    /// Per-resolution channel multipliers.
    pub channel_mult: Vec<usize>,
    /// Residual blocks per resolution.
    pub num_blocks: usize,
    /// Resolutions with self-attention (where channels ≥ 64).
    pub attn_resolutions: Vec<usize>,
}

/// Resampling of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    Keep,
    Down,
    Up,
}

/// One item of the UNet in forward order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    /// State-dict prefix, e.g. `enc.8x8_block0`.
    pub name: String,
    /// `enc.<res>_conv`: a plain 3×3 convolution (no block).
    pub conv_only: bool,
    pub cin: usize,
    pub cout: usize,
    pub encoder: bool,
    pub resample: Resample,
    /// Attention heads (0: none).
    pub heads: usize,
    /// A decoder `block`: its input is MP-concatenated with the last skip first.
    pub takes_skip: bool,
}

impl Edm2Config {
    /// A named size `XS`, `S`, `M`, `L`, `XL`, `XXL` (model channels 128 … 448) with the
    /// reference's defaults: channel_mult [1, 2, 3, 4], 3 blocks, attention at 16 and 8.
    pub fn named(size: &str, input_size: usize, in_channels: usize, num_classes: usize) -> Result<Self> {
        let mc = match size.to_ascii_uppercase().as_str() {
            "XS" => 128,
            "S" => 192,
            "M" => 256,
            "L" => 320,
            "XL" => 384,
            "XXL" => 448,
            other => return Err(Error::invalid(format!("unknown EDM2 size {other:?} (expected XS, S, M, L, XL or XXL)"))),
        };
        let cfg = Edm2Config {
            input_size,
            in_channels,
            num_classes,
            model_channels: mc,
            channel_mult: vec![1, 2, 3, 4],
            num_blocks: 3,
            attn_resolutions: vec![16, 8],
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses `EDM2-S` … `EDM2-XXL`.
    pub fn from_name(name: &str, input_size: usize, in_channels: usize, num_classes: usize) -> Result<Self> {
        let size = name
            .strip_prefix("EDM2-")
            .or_else(|| name.strip_prefix("edm2-"))
            .ok_or_else(|| Error::invalid(format!("model name {name:?}: expected EDM2-S, EDM2-M, EDM2-L, EDM2-XL or EDM2-XXL")))?;
        Self::named(size, input_size, in_channels, num_classes)
    }

    /// Checks the shape constraints.
    pub fn validate(&self) -> Result<()> {
        let levels = self.channel_mult.len();
        if self.input_size == 0 || self.in_channels == 0 || self.model_channels == 0 || levels == 0 || self.num_blocks == 0 {
            return Err(Error::invalid(format!("EDM2 config has a zero size: {self:?}")));
        }
        if self.channel_mult.contains(&0) {
            return Err(Error::invalid("EDM2 channel_mult entries must be ≥ 1"));
        }
        if levels > 8 || !self.input_size.is_multiple_of(1 << (levels - 1)) {
            return Err(Error::invalid(format!(
                "EDM2 input size {} is not divisible by 2^{} (one halving per level)",
                self.input_size,
                levels - 1
            )));
        }
        if self.input_size > 4096 || self.in_channels > 4096 || self.model_channels * self.channel_mult.iter().max().unwrap_or(&1) > 1 << 16 {
            return Err(Error::invalid(format!("EDM2 config is implausibly large: {self:?}")));
        }
        Ok(())
    }

    /// Channels per level.
    pub fn cblock(&self) -> Vec<usize> {
        self.channel_mult.iter().map(|m| m * self.model_channels).collect()
    }
    /// Noise-embedding channels (the first level's).
    pub fn cnoise(&self) -> usize {
        self.cblock()[0]
    }
    /// Embedding channels (the widest level's).
    pub fn cemb(&self) -> usize {
        self.cblock().into_iter().max().unwrap_or(0)
    }
    /// Elements of one input image.
    pub fn image_len(&self) -> usize {
        self.in_channels * self.input_size * self.input_size
    }

    /// Every item in forward order, as the reference's constructor builds them.
    pub fn blocks(&self) -> Vec<BlockSpec> {
        let cb = self.cblock();
        let heads = |attn: bool, c: usize| if attn { c / CHANNELS_PER_HEAD } else { 0 };
        let mut v = Vec::new();
        let mut cout = self.in_channels + 1;
        for (level, &channels) in cb.iter().enumerate() {
            let res = self.input_size >> level;
            let block = |name: String, cin: usize, cout: usize, resample, attn| BlockSpec {
                name,
                conv_only: false,
                cin,
                cout,
                encoder: true,
                resample,
                heads: heads(attn, cout),
                takes_skip: false,
            };
            if level == 0 {
                v.push(BlockSpec {
                    name: format!("enc.{res}x{res}_conv"),
                    conv_only: true,
                    cin: cout,
                    cout: channels,
                    encoder: true,
                    resample: Resample::Keep,
                    heads: 0,
                    takes_skip: false,
                });
                cout = channels;
            } else {
                v.push(block(format!("enc.{res}x{res}_down"), cout, cout, Resample::Down, false));
            }
            for idx in 0..self.num_blocks {
                let cin = cout;
                cout = channels;
                v.push(block(
                    format!("enc.{res}x{res}_block{idx}"),
                    cin,
                    cout,
                    Resample::Keep,
                    self.attn_resolutions.contains(&res),
                ));
            }
        }
        let mut skips: Vec<usize> = v.iter().map(|b| b.cout).collect();
        for (level, &channels) in cb.iter().enumerate().rev() {
            let res = self.input_size >> level;
            let block = |name: String, cin: usize, cout: usize, resample, attn, takes_skip| BlockSpec {
                name,
                conv_only: false,
                cin,
                cout,
                encoder: false,
                resample,
                heads: heads(attn, cout),
                takes_skip,
            };
            if level == cb.len() - 1 {
                v.push(block(format!("dec.{res}x{res}_in0"), cout, cout, Resample::Keep, true, false));
                v.push(block(format!("dec.{res}x{res}_in1"), cout, cout, Resample::Keep, false, false));
            } else {
                v.push(block(format!("dec.{res}x{res}_up"), cout, cout, Resample::Up, false, false));
            }
            for idx in 0..=self.num_blocks {
                let cin = cout + skips.pop().unwrap_or(0);
                cout = channels;
                v.push(block(
                    format!("dec.{res}x{res}_block{idx}"),
                    cin,
                    cout,
                    Resample::Keep,
                    self.attn_resolutions.contains(&res),
                    true,
                ));
            }
        }
        v
    }

    /// Every stored tensor: (name, shape), in the reference's order within each item.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (cnoise, cemb) = (self.cnoise(), self.cemb());
        let mut t = vec![
            ("out_gain".to_string(), vec![]),
            ("emb_fourier.freqs".to_string(), vec![cnoise]),
            ("emb_fourier.phases".to_string(), vec![cnoise]),
            ("emb_noise.weight".to_string(), vec![cemb, cnoise]),
        ];
        if self.num_classes > 0 {
            t.push(("emb_label.weight".to_string(), vec![cemb, self.num_classes]));
        }
        let mut last = 0;
        for b in self.blocks() {
            let p = &b.name;
            last = b.cout;
            if b.conv_only {
                t.push((format!("{p}.weight"), vec![b.cout, b.cin, 3, 3]));
                continue;
            }
            t.push((format!("{p}.emb_gain"), vec![]));
            t.push((format!("{p}.conv_res0.weight"), vec![b.cout, if b.encoder { b.cout } else { b.cin }, 3, 3]));
            t.push((format!("{p}.emb_linear.weight"), vec![b.cout, cemb]));
            t.push((format!("{p}.conv_res1.weight"), vec![b.cout, b.cout, 3, 3]));
            if b.cin != b.cout {
                t.push((format!("{p}.conv_skip.weight"), vec![b.cout, b.cin, 1, 1]));
            }
            if b.heads > 0 {
                t.push((format!("{p}.attn_qkv.weight"), vec![3 * b.cout, b.cout, 1, 1]));
                t.push((format!("{p}.attn_proj.weight"), vec![b.cout, b.cout, 1, 1]));
            }
        }
        t.push(("out_conv.weight".to_string(), vec![self.in_channels, last, 3, 3]));
        t
    }

    /// Trainable parameters (the Fourier buffers excluded), as `model.parameters()`.
    pub fn parameter_count(&self) -> usize {
        self.tensors()
            .iter()
            .filter(|(n, _)| !n.starts_with("emb_fourier."))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// The configuration of a state dict, from its tensor names and shapes: the input
    /// size from `enc.<R>x<R>_conv`, channels per level from each level's first block,
    /// blocks per level, attention where `attn_qkv` tensors are.
    pub fn infer(file: &TensorFile) -> Result<Self> {
        let path = file.path().display().to_string();
        let names = file.names();
        let conv = names
            .iter()
            .find(|n| n.starts_with("enc.") && n.ends_with("_conv.weight"))
            .ok_or_else(|| Error::Weights(format!("{path}: no enc.<R>x<R>_conv.weight: not an EDM2 UNet")))?;
        let res: usize = conv
            .trim_start_matches("enc.")
            .split('x')
            .next()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| Error::Weights(format!("{path}: cannot read the resolution of {conv:?}")))?;
        let cs = file.shape(conv)?;
        if cs.len() != 4 || cs[1] < 2 {
            return Err(Error::Weights(format!("{path}: {conv} has shape {cs:?}, expected [C, in + 1, 3, 3]")));
        }
        let mut cblock = Vec::new();
        let mut attn = Vec::new();
        let mut r = res;
        while r > 0 {
            let name = format!("enc.{r}x{r}_block0.conv_res1.weight");
            if !file.contains(&name) {
                break;
            }
            cblock.push(file.shape(&name)?[0]);
            if file.contains(&format!("enc.{r}x{r}_block0.attn_qkv.weight")) {
                attn.push(r);
            }
            r /= 2;
        }
        let num_blocks = (0..)
            .take_while(|i| file.contains(&format!("enc.{res}x{res}_block{i}.conv_res1.weight")))
            .count();
        let mc = cblock.iter().fold(0, |g, &c| gcd(g, c));
        if cblock.is_empty() || mc == 0 {
            return Err(Error::Weights(format!("{path}: no enc.{res}x{res}_block0: not an EDM2 UNet")));
        }
        let num_classes = if file.contains("emb_label.weight") {
            file.shape("emb_label.weight")?.get(1).copied().unwrap_or(0)
        } else {
            0
        };
        let cfg = Edm2Config {
            input_size: res,
            in_channels: cs[1] - 1,
            num_classes,
            model_channels: mc,
            channel_mult: cblock.iter().map(|c| c / mc).collect(),
            num_blocks,
            attn_resolutions: attn,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The magnitude-preserving weight: each of the `out` rows w / (1e-4 + ‖w‖/√fan_in) ·
/// gain/√fan_in (computed in f64).
fn mp_weight(w: &[f32], out: usize, gain: f64) -> Vec<f32> {
    let fan_in = w.len() / out.max(1);
    let s = (fan_in as f64).sqrt();
    let mut o = vec![0f32; w.len()];
    for r in 0..out {
        let row = &w[r * fan_in..(r + 1) * fan_in];
        let norm = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
        let d = 1e-4 + norm / s;
        for (j, &v) in row.iter().enumerate() {
            o[r * fan_in + j] = (v as f64 / d * (gain / s)) as f32;
        }
    }
    o
}

/// An EDM2 UNet with its run-time weights on backend `B` (forward only).
pub struct Edm2<B: Backend> {
    cfg: Edm2Config,
    blocks: Vec<BlockSpec>,
    backend: B,
    /// Effective (normalised, gain-scaled) weights by state-dict name; the qkv weights
    /// permuted to (q|k|v, head, channel) rows.
    w: HashMap<String, B::Buf>,
    /// Class embedding rows [K, cemb] (the normalised `emb_label` columns).
    label_table: Option<B::Buf>,
    /// Down-sampling 2×2 average as a [C, C, 2, 2] convolution weight, per channel count.
    down: HashMap<usize, B::Buf>,
    freqs: Vec<f32>,
    phases: Vec<f32>,
    /// Placeholder RoPE tables (the attention op's arguments; unused).
    no_rope: B::Buf,
}

impl<B: Backend> Edm2<B> {
    /// Loads a safetensors state dict (reference names), strictly by name and shape;
    /// the configuration is inferred from the tensors unless given.
    pub fn load(path: impl AsRef<Path>, backend: B, cfg: Option<Edm2Config>) -> Result<Self> {
        let file = TensorFile::open(path)?;
        let cfg = match cfg {
            Some(c) => c,
            None => Edm2Config::infer(&file)?,
        };
        cfg.validate()?;
        let want = cfg.tensors();
        let guess = format!(
            "EDM2 (model channels {}, channel_mult {:?}, {} blocks, input {}, {} channels, {} classes)",
            cfg.model_channels, cfg.channel_mult, cfg.num_blocks, cfg.input_size, cfg.in_channels, cfg.num_classes
        );
        for (n, s) in &want {
            if !file.contains(n) {
                return Err(Error::Weights(format!("{}: tensor {n:?} of {guess} is missing", file.path().display())));
            }
            let got = file.shape(n)?;
            if &got != s {
                return Err(Error::Weights(format!(
                    "{}: tensor {n:?} has shape {got:?}, expected {s:?} for {guess}",
                    file.path().display()
                )));
            }
        }
        for n in file.names() {
            if !want.iter().any(|(w, _)| w == n) {
                return Err(Error::Weights(format!(
                    "{}: unexpected tensor {n:?} (not a parameter of {guess})",
                    file.path().display()
                )));
            }
        }
        // A NaN or infinite weight would sample NaN without a word: refuse it by name.
        Self::build(cfg, backend, &|n: &str| {
            let (_, v) = file.f32(n)?;
            check_finite(&format!("{}: tensor {n}", file.path().display()), &v)?;
            Ok(v)
        })
    }

    /// A UNet from host tensors by state-dict name (e.g. random weights for a benchmark),
    /// each checked against the configuration's shape.
    pub fn from_tensors(cfg: Edm2Config, backend: B, tensors: &HashMap<String, Vec<f32>>) -> Result<Self> {
        cfg.validate()?;
        for (n, shape) in cfg.tensors() {
            let len = tensors
                .get(&n)
                .map(|v| v.len())
                .ok_or_else(|| Error::invalid(format!("EDM2 tensor {n:?} missing")))?;
            check_len(&n, len, shape.iter().product())?;
        }
        Self::build(cfg, backend, &|n: &str| Ok(tensors[n].clone()))
    }

    /// The run-time weights from checked tensors.
    fn build(cfg: Edm2Config, backend: B, read: &dyn Fn(&str) -> Result<Vec<f32>>) -> Result<Self> {
        let scalar = |n: &str| -> Result<f64> { Ok(read(n)?.first().copied().unwrap_or(0.0) as f64) };
        let contains = |n: &str| cfg.tensors().iter().any(|(t, _)| t == n);
        let mut w = HashMap::new();
        let blocks = cfg.blocks();
        let up = |v: &[f32]| backend.upload(v);
        for b in &blocks {
            let p = &b.name;
            if b.conv_only {
                w.insert(format!("{p}.weight"), up(&mp_weight(&read(&format!("{p}.weight"))?, b.cout, 1.0))?);
                continue;
            }
            let gain = scalar(&format!("{p}.emb_gain"))?;
            for (t, g) in [
                ("conv_res0", 1.0),
                ("conv_res1", 1.0),
                ("conv_skip", 1.0),
                ("attn_proj", 1.0),
                ("emb_linear", gain),
            ] {
                let n = format!("{p}.{t}.weight");
                if contains(&n) {
                    w.insert(n.clone(), up(&mp_weight(&read(&n)?, b.cout, g))?);
                }
            }
            if let Some(dh) = b.cout.checked_div(b.heads) {
                let n = format!("{p}.attn_qkv.weight");
                let m = mp_weight(&read(&n)?, 3 * b.cout, 1.0);
                // Reference rows (head, channel, q|k|v) → (q|k|v, head, channel).
                let c = b.cout;
                let mut perm = vec![0f32; m.len()];
                for h in 0..b.heads {
                    for ch in 0..dh {
                        for s in 0..3 {
                            let src = h * 3 * dh + ch * 3 + s;
                            let dst = s * c + h * dh + ch;
                            perm[dst * c..(dst + 1) * c].copy_from_slice(&m[src * c..(src + 1) * c]);
                        }
                    }
                }
                w.insert(n, up(&perm)?);
            }
        }
        let out_gain = scalar("out_gain")?;
        w.insert("out_conv.weight".into(), up(&mp_weight(&read("out_conv.weight")?, cfg.in_channels, out_gain))?);
        w.insert("emb_noise.weight".into(), up(&mp_weight(&read("emb_noise.weight")?, cfg.cemb(), 1.0))?);
        let label_table = if cfg.num_classes > 0 {
            // emb_label(onehot·√K) = √K · (column y of the MP weight with gain 1), and that
            // weight carries 1/√K: the row is the normalised column itself.
            let (cemb, k) = (cfg.cemb(), cfg.num_classes);
            let m = mp_weight(&read("emb_label.weight")?, cemb, 1.0);
            let sk = (k as f64).sqrt();
            let mut tab = vec![0f32; k * cemb];
            for e in 0..cemb {
                for y in 0..k {
                    tab[y * cemb + e] = (m[e * k + y] as f64 * sk) as f32;
                }
            }
            Some(up(&tab)?)
        } else {
            None
        };
        let mut down = HashMap::new();
        for b in blocks.iter().filter(|b| b.resample == Resample::Down) {
            let c = b.cin;
            down.entry(c).or_insert_with(|| {
                let mut k = vec![0f32; c * c * 4];
                for ch in 0..c {
                    k[(ch * c + ch) * 4..(ch * c + ch) * 4 + 4].fill(0.25);
                }
                k
            });
        }
        let down = down.into_iter().map(|(c, k)| Ok((c, up(&k)?))).collect::<Result<HashMap<_, _>>>()?;
        Ok(Edm2 {
            freqs: read("emb_fourier.freqs")?,
            phases: read("emb_fourier.phases")?,
            no_rope: backend.zeros(1)?,
            cfg,
            blocks,
            backend,
            w,
            label_table,
            down,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Edm2Config {
        &self.cfg
    }

    /// The backend the UNet runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Bytes of the run-time weights held on the backend (the effective weights, the
    /// class-embedding table and the down-sampling kernels; f32).
    pub fn weight_bytes(&self) -> usize {
        let be = &self.backend;
        let elems: usize = self
            .w
            .values()
            .chain(self.label_table.iter())
            .chain(self.down.values())
            .map(|b| be.len(b))
            .sum();
        elems * 4
    }

    /// F(x, t, y): x, out `[B, C, H, W]`; t `[B]` (the UNet's noise label is
    /// 2.68·t − 1.59); labels `[B]` in 0..=K, K meaning the unconditional branch (the
    /// reference's `uncond=True`: no class embedding).
    pub fn forward(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        let cfg = self.cfg.clone();
        let n = t.len();
        if n == 0 {
            return Err(Error::invalid("batch is empty (t has length 0)"));
        }
        check_len("labels", labels.len(), n)?;
        check_len("x", x.len(), n * cfg.image_len())?;
        check_len("out", out.len(), n * cfg.image_len())?;
        check_finite("x", x)?;
        check_finite("t", t)?;
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l > cfg.num_classes) {
            return Err(Error::invalid(format!("labels[{i}] = {l} out of range 0..={}", cfg.num_classes)));
        }
        let be = &self.backend;
        let (cnoise, cemb) = (cfg.cnoise(), cfg.cemb());
        // Noise embedding: Fourier features of c = 2.68·t − 1.59 (float32 as the reference).
        let mut four = vec![0f32; n * cnoise];
        for (b, &tb) in t.iter().enumerate() {
            let c = tb * 2.68 - 1.59;
            for j in 0..cnoise {
                let a = c * self.freqs[j] + self.phases[j];
                four[b * cnoise + j] = (a as f64).cos() as f32 * std::f64::consts::SQRT_2 as f32;
            }
        }
        let four = be.upload(&four)?;
        let mut emb = be.zeros(n * cemb)?;
        be.linear_fwd(
            be.src(&four, 0..n * cnoise),
            be.src(&self.w["emb_noise.weight"], 0..cemb * cnoise),
            false,
            be.dst(&mut emb, 0..n * cemb),
            n,
            cnoise,
            cemb,
        );
        if let Some(tab) = &self.label_table {
            let k = cfg.num_classes;
            let idx: Vec<usize> = labels.iter().map(|&l| if l >= k { 0 } else { l }).collect();
            let mut lab = be.zeros(n * cemb)?;
            be.embedding_fwd(be.src(tab, 0..k * cemb), &idx, be.dst(&mut lab, 0..n * cemb), cemb);
            let mut mixed = be.zeros(n * cemb)?;
            be.copy(be.src(&emb, 0..n * cemb), be.dst(&mut mixed, 0..n * cemb));
            mp_sum(be, &mut mixed, &mut lab, n * cemb, LABEL_BALANCE);
            for (b, &l) in labels.iter().enumerate() {
                if l < k {
                    be.copy(be.src(&mixed, b * cemb..(b + 1) * cemb), be.dst(&mut emb, b * cemb..(b + 1) * cemb));
                }
            }
        }
        let mut emb_act = be.zeros(n * cemb)?;
        mp_silu(be, &emb, &mut emb_act, n * cemb);

        // Input with a channel of ones.
        let (c0, side) = (cfg.in_channels, cfg.input_size);
        let hw = side * side;
        let mut xin = vec![1f32; n * (c0 + 1) * hw];
        for b in 0..n {
            xin[b * (c0 + 1) * hw..b * (c0 + 1) * hw + c0 * hw].copy_from_slice(&x[b * c0 * hw..(b + 1) * c0 * hw]);
        }
        let mut h = be.upload(&xin)?;
        let (mut ch, mut res) = (c0 + 1, side);
        let mut skips: Vec<(B::Buf, usize)> = Vec::new();
        for spec in &self.blocks {
            if spec.takes_skip {
                let (s, sc) = skips.pop().expect("a skip per decoder block");
                h = mp_cat(be, &h, ch, &s, sc, n, res * res, CONCAT_BALANCE)?;
                ch += sc;
            }
            let (nh, nc, nr) = if spec.conv_only {
                let y = conv(be, &h, &self.w[&format!("{}.weight", spec.name)], n, ch, res, spec.cout, 3, 1, 1)?;
                (y, spec.cout, res)
            } else {
                self.block(spec, h, ch, res, &emb_act, n)?
            };
            h = nh;
            ch = nc;
            res = nr;
            if spec.encoder {
                let mut copy = be.zeros(n * ch * res * res)?;
                be.copy(be.src(&h, 0..n * ch * res * res), be.dst(&mut copy, 0..n * ch * res * res));
                skips.push((copy, ch));
            }
        }
        let y = conv(be, &h, &self.w["out_conv.weight"], n, ch, res, c0, 3, 1, 1)?;
        let v = be.read(&y, 0..n * c0 * hw)?;
        out.copy_from_slice(&v);
        Ok(())
    }

    /// One block: x [N, cin, res, res] → ([N, cout, res', res'], cout, res').
    fn block(&self, b: &BlockSpec, x: B::Buf, cin: usize, res: usize, emb: &B::Buf, n: usize) -> Result<(B::Buf, usize, usize)> {
        let be = &self.backend;
        let p = &b.name;
        let (mut x, mut c, mut r) = (x, cin, res);
        match b.resample {
            Resample::Keep => {}
            Resample::Down => {
                let s = Conv2dShape::square(n, c, r, r, c, 2, 2, 0);
                let mut y = be.zeros(s.y_len())?;
                be.conv2d_fwd(
                    be.src(&x, 0..s.x_len()),
                    be.src(&self.down[&c], 0..s.w_len()),
                    None,
                    be.dst(&mut y, 0..s.y_len()),
                    &s,
                );
                x = y;
                r /= 2;
            }
            Resample::Up => {
                let mut y = be.zeros(n * c * 4 * r * r)?;
                be.upsample_nearest2x(be.src(&x, 0..n * c * r * r), be.dst(&mut y, 0..n * c * 4 * r * r), n, c, r, r);
                x = y;
                r *= 2;
            }
        }
        let hw = r * r;
        let skip = self.w.get(&format!("{p}.conv_skip.weight"));
        if b.encoder {
            if let Some(ws) = skip {
                x = conv(be, &x, ws, n, c, r, b.cout, 1, 1, 0)?;
                c = b.cout;
            }
            x = pixel_norm(be, &x, n, c, hw)?;
        }
        let mut a = be.zeros(n * c * hw)?;
        mp_silu(be, &x, &mut a, n * c * hw);
        let y = conv(be, &a, &self.w[&format!("{p}.conv_res0.weight")], n, c, r, b.cout, 3, 1, 1)?;
        let co = b.cout;
        let cemb = self.cfg.cemb();
        let mut cl = be.zeros(n * co)?;
        be.linear_fwd(
            be.src(emb, 0..n * cemb),
            be.src(&self.w[&format!("{p}.emb_linear.weight")], 0..co * cemb),
            false,
            be.dst(&mut cl, 0..n * co),
            n,
            cemb,
            co,
        );
        // y·(c + 1): y + c ⊙ y with c broadcast over the pixels of each (image, channel).
        let mut yc = be.zeros(n * co * hw)?;
        be.copy(be.src(&y, 0..n * co * hw), be.dst(&mut yc, 0..n * co * hw));
        be.gate_residual_fwd(
            be.src(&y, 0..n * co * hw),
            be.src(&cl, 0..n * co),
            1,
            0,
            be.dst(&mut yc, 0..n * co * hw),
            n * co,
            hw,
            1,
        );
        let mut ya = be.zeros(n * co * hw)?;
        mp_silu(be, &yc, &mut ya, n * co * hw);
        let mut y = conv(be, &ya, &self.w[&format!("{p}.conv_res1.weight")], n, co, r, co, 3, 1, 1)?;
        if !b.encoder {
            if let Some(ws) = skip {
                x = conv(be, &x, ws, n, c, r, co, 1, 1, 0)?;
            }
        }
        c = co;
        mp_sum(be, &mut x, &mut y, n * c * hw, RES_BALANCE);
        if b.heads > 0 {
            let mut y = self.attention(b, &x, n, c, hw)?;
            mp_sum(be, &mut x, &mut y, n * c * hw, ATTN_BALANCE);
        }
        be.clamp(be.dst(&mut x, 0..n * c * hw), CLIP_ACT);
        Ok((x, c, r))
    }

    /// Self-attention of x [N, C, HW] → [N, C, HW] (before the MP-sum).
    fn attention(&self, b: &BlockSpec, x: &B::Buf, n: usize, c: usize, hw: usize) -> Result<B::Buf> {
        let be = &self.backend;
        let (heads, dh, rows) = (b.heads, c / b.heads, n * hw);
        let mut xt = be.zeros(rows * c)?;
        be.transpose_batched(be.src(x, 0..rows * c), be.dst(&mut xt, 0..rows * c), n, c, hw);
        let mut qkv = be.zeros(rows * 3 * c)?;
        be.linear_fwd(
            be.src(&xt, 0..rows * c),
            be.src(&self.w[&format!("{}.attn_qkv.weight", b.name)], 0..3 * c * c),
            false,
            be.dst(&mut qkv, 0..rows * 3 * c),
            rows,
            c,
            3 * c,
        );
        let mut qkvn = be.zeros(rows * 3 * c)?;
        be.mp_normalize_rows(be.src(&qkv, 0..rows * 3 * c), be.dst(&mut qkvn, 0..rows * 3 * c), rows * 3 * heads, dh);
        let dims = AttnDims {
            batch: n,
            tokens: hw,
            heads,
            head_dim: dh,
            qk_norm: false,
            rope: false,
        };
        let mut att = be.zeros(rows * c)?;
        be.attention_fwd(
            be.src(&qkvn, 0..rows * 3 * c),
            be.src(&self.no_rope, 0..1),
            be.src(&self.no_rope, 0..1),
            be.dst(&mut att, 0..rows * c),
            None,
            dims,
        );
        let mut proj = be.zeros(rows * c)?;
        be.linear_fwd(
            be.src(&att, 0..rows * c),
            be.src(&self.w[&format!("{}.attn_proj.weight", b.name)], 0..c * c),
            false,
            be.dst(&mut proj, 0..rows * c),
            rows,
            c,
            c,
        );
        let mut y = be.zeros(rows * c)?;
        be.transpose_batched(be.src(&proj, 0..rows * c), be.dst(&mut y, 0..rows * c), n, hw, c);
        Ok(y)
    }
}

/// A square convolution of x [n, cin, res, res] with weight [cout, cin, k, k].
#[allow(clippy::too_many_arguments)]
fn conv<B: Backend>(be: &B, x: &B::Buf, w: &B::Buf, n: usize, cin: usize, res: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Result<B::Buf> {
    let s = Conv2dShape::square(n, cin, res, res, cout, k, stride, pad);
    s.validate()?;
    let mut y = be.zeros(s.y_len())?;
    be.conv2d_fwd(be.src(x, 0..s.x_len()), be.src(w, 0..s.w_len()), None, be.dst(&mut y, 0..s.y_len()), &s);
    Ok(y)
}

/// MP-SiLU: y = SiLU(x) / 0.596 over `len` elements.
fn mp_silu<B: Backend>(be: &B, x: &B::Buf, y: &mut B::Buf, len: usize) {
    be.silu_fwd(be.src(x, 0..len), be.dst(y, 0..len));
    be.scale(be.dst(y, 0..len), 1.0 / 0.596);
}

/// MP-sum in place: a ← ((1 − t)·a + t·b) / √((1 − t)² + t²); b is overwritten.
fn mp_sum<B: Backend>(be: &B, a: &mut B::Buf, b: &mut B::Buf, len: usize, t: f64) {
    let s = ((1.0 - t) * (1.0 - t) + t * t).sqrt();
    be.scale(be.dst(a, 0..len), (1.0 - t) / s);
    be.scale(be.dst(b, 0..len), t / s);
    be.add_assign(be.src(b, 0..len), be.dst(a, 0..len));
}

/// MP-concat along channels: [wa·a; wb·b] per image. a [n, ca, hw], b [n, cb, hw].
#[allow(clippy::too_many_arguments)]
fn mp_cat<B: Backend>(be: &B, a: &B::Buf, ca: usize, b: &B::Buf, cb: usize, n: usize, hw: usize, t: f64) -> Result<B::Buf> {
    let c = ((ca + cb) as f64 / ((1.0 - t) * (1.0 - t) + t * t)).sqrt();
    let (wa, wb) = (c / (ca as f64).sqrt() * (1.0 - t), c / (cb as f64).sqrt() * t);
    let ct = ca + cb;
    let mut y = be.zeros(n * ct * hw)?;
    for i in 0..n {
        let (o, la, lb) = (i * ct * hw, ca * hw, cb * hw);
        be.copy(be.src(a, i * la..(i + 1) * la), be.dst(&mut y, o..o + la));
        be.scale(be.dst(&mut y, o..o + la), wa);
        be.copy(be.src(b, i * lb..(i + 1) * lb), be.dst(&mut y, o + la..o + la + lb));
        be.scale(be.dst(&mut y, o + la..o + la + lb), wb);
    }
    Ok(y)
}

/// Pixel norm: every pixel's channel vector of x [n, c, hw] normalised (EDM2 `normalize`
/// over dim 1).
fn pixel_norm<B: Backend>(be: &B, x: &B::Buf, n: usize, c: usize, hw: usize) -> Result<B::Buf> {
    let len = n * c * hw;
    let mut t = be.zeros(len)?;
    be.transpose_batched(be.src(x, 0..len), be.dst(&mut t, 0..len), n, c, hw);
    let mut tn = be.zeros(len)?;
    be.mp_normalize_rows(be.src(&t, 0..len), be.dst(&mut tn, 0..len), n * hw, c);
    let mut y = be.zeros(len)?;
    be.transpose_batched(be.src(&tn, 0..len), be.dst(&mut y, 0..len), n, hw, c);
    Ok(y)
}

impl<B: Backend> Denoiser for Edm2<B> {
    fn sample_shape(&self) -> [usize; 3] {
        [self.cfg.in_channels, self.cfg.input_size, self.cfg.input_size]
    }
    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        self.forward(x, t, labels, out)
    }
}
