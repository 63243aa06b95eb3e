//! The FID Inception-v3 exactly as pytorch-fid runs it (`InceptionV3([3],
//! resize_input=True, normalize_input=True, use_fid_inception=True)`): torchvision's
//! Inception3 with the FID variants of the A, C, E_1 and E_2 blocks (branch pools are
//! 3×3 stride-1 pad-1 averages with `count_include_pad=False`, a max pool in E_2),
//! `BasicConv2d` = bias-free conv + BatchNorm (eps 1e-3, folded at load time,
//! [`weights`]) + ReLU; the end is a global average pool to the 2048 pool3 features and
//! the 1008-way `fc` logits for the Inception Score.
//!
//! Two preprocessing modes ([`InceptionInput`]):
//! * `PytorchFid` — RGB in [0, 1], bilinear resize to 299×299 (PyTorch,
//!   align_corners=False, no antialias), `x → 2x − 1`.
//! * `TorchFidelity` — torch-fidelity's `inception-v3-compat`, which the UCGM
//!   reference's `eval.py` uses: pixel values 0…255 (uint8 as floats), TensorFlow-1
//!   bilinear resize, `x → (x − 128)/128`.
//!
//! The per-pixel affine map is folded into the first convolution (exact: it has no
//! padding, and bilinear resizing commutes with affine maps up to rounding).
//!
//! Inside, the maps are channels-outer (CNHW, [`PlaneLayout::cnhw`]): the batch's
//! planes of a channel are adjacent, so the convolutions on the 35×35, 17×17 and 8×8
//! maps multiply whole batches in place (no column-matrix copy for the 1×1 ones, no
//! copy of the product into the map), and each branch writes its ReLU'd output straight
//! into its block's concatenated map (`conv2d_fwd_into`). The pool3 features are
//! transposed to `[n, 2048]` at the end; the debugging blocks are read back as NCHW.

pub mod weights;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use crate::backend::{Backend, Conv2dShape, ConvLayout, PlaneLayout, Pool2dShape, PoolKind, ResizeMode};
use crate::error::{Error, Result};
use crate::limits::check_bytes;
use crate::tensor_file::TensorFile;
use weights::{load_folded, FoldedConv};

/// Side of the network's input.
pub const INPUT_SIDE: usize = 299;
/// pool3 feature dimension.
pub const POOL3_DIM: usize = 2048;
/// Classes of the `fc` logits.
pub const LOGITS_DIM: usize = 1008;

/// How images are given to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InceptionInput {
    /// pytorch-fid: RGB floats in [0, 1], PyTorch bilinear resize, `2x − 1`.
    PytorchFid,
    /// torch-fidelity `inception-v3-compat`: values 0…255, TF1 bilinear resize, `(x − 128)/128`.
    TorchFidelity,
}

impl InceptionInput {
    fn affine(self) -> (f64, f64) {
        match self {
            InceptionInput::PytorchFid => (2.0, -1.0),
            InceptionInput::TorchFidelity => (1.0 / 128.0, -1.0),
        }
    }
    fn resize(self) -> ResizeMode {
        match self {
            InceptionInput::PytorchFid => ResizeMode::HalfPixel,
            InceptionInput::TorchFidelity => ResizeMode::Tf1,
        }
    }
}

/// One `BasicConv2d` with its geometry.
struct Layer<B: Backend> {
    c_in: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: (usize, usize),
    weight: B::Buf, // [c_out, c_in, kh, kw]
    bias: B::Buf,   // [c_out]
}

impl<B: Backend> Layer<B> {
    /// The layer of geometry (c_in, c_out, kh, kw, stride, pad_h, pad_w) with its folded
    /// weight `[c_out, c_in, kh, kw]` and bias `[c_out]` moved onto the backend.
    #[allow(clippy::type_complexity)]
    fn upload(
        be: &B,
        (c_in, c_out, kh, kw, stride, ph, pw): (usize, usize, usize, usize, usize, usize, usize),
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<Self> {
        Ok(Layer {
            c_in,
            c_out,
            kh,
            kw,
            stride,
            pad: (ph, pw),
            weight: be.upload_owned(weight)?,
            bias: be.upload_owned(bias)?,
        })
    }
}

/// (name, c_in, c_out, kh, kw, stride, pad_h, pad_w) of one `BasicConv2d`.
type LayerSpec = (String, usize, usize, usize, usize, usize, usize, usize);

/// The geometry of every `BasicConv2d`.
fn layer_table() -> Vec<LayerSpec> {
    let mut t = Vec::new();
    let mut same = |name: &str, ci, co, kh: usize, kw: usize| t.push((name.to_string(), ci, co, kh, kw, 1, (kh - 1) / 2, (kw - 1) / 2));
    same("Conv2d_2b_3x3", 32, 64, 3, 3);
    same("Conv2d_3b_1x1", 64, 80, 1, 1);
    for (p, cin, pf) in [("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)] {
        same(&format!("{p}.branch1x1"), cin, 64, 1, 1);
        same(&format!("{p}.branch5x5_1"), cin, 48, 1, 1);
        same(&format!("{p}.branch5x5_2"), 48, 64, 5, 5);
        same(&format!("{p}.branch3x3dbl_1"), cin, 64, 1, 1);
        same(&format!("{p}.branch3x3dbl_2"), 64, 96, 3, 3);
        same(&format!("{p}.branch3x3dbl_3"), 96, 96, 3, 3);
        same(&format!("{p}.branch_pool"), cin, pf, 1, 1);
    }
    same("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1);
    same("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3);
    for (p, c7) in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)] {
        same(&format!("{p}.branch1x1"), 768, 192, 1, 1);
        same(&format!("{p}.branch7x7_1"), 768, c7, 1, 1);
        same(&format!("{p}.branch7x7_2"), c7, c7, 1, 7);
        same(&format!("{p}.branch7x7_3"), c7, 192, 7, 1);
        same(&format!("{p}.branch7x7dbl_1"), 768, c7, 1, 1);
        same(&format!("{p}.branch7x7dbl_2"), c7, c7, 7, 1);
        same(&format!("{p}.branch7x7dbl_3"), c7, c7, 1, 7);
        same(&format!("{p}.branch7x7dbl_4"), c7, c7, 7, 1);
        same(&format!("{p}.branch7x7dbl_5"), c7, 192, 1, 7);
        same(&format!("{p}.branch_pool"), 768, 192, 1, 1);
    }
    same("Mixed_7a.branch3x3_1", 768, 192, 1, 1);
    same("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1);
    same("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7);
    same("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1);
    for (p, cin) in [("Mixed_7b", 1280), ("Mixed_7c", 2048)] {
        same(&format!("{p}.branch1x1"), cin, 320, 1, 1);
        same(&format!("{p}.branch3x3_1"), cin, 384, 1, 1);
        same(&format!("{p}.branch3x3_2a"), 384, 384, 1, 3);
        same(&format!("{p}.branch3x3_2b"), 384, 384, 3, 1);
        same(&format!("{p}.branch3x3dbl_1"), cin, 448, 1, 1);
        same(&format!("{p}.branch3x3dbl_2"), 448, 384, 3, 3);
        same(&format!("{p}.branch3x3dbl_3a"), 384, 384, 1, 3);
        same(&format!("{p}.branch3x3dbl_3b"), 384, 384, 3, 1);
        same(&format!("{p}.branch_pool"), cin, 192, 1, 1);
    }
    // Unpadded ("valid") convolutions.
    for (name, ci, co, k, s) in [
        ("Conv2d_1a_3x3", 3, 32, 3, 2),
        ("Conv2d_2a_3x3", 32, 32, 3, 1),
        ("Conv2d_4a_3x3", 80, 192, 3, 1),
        ("Mixed_6a.branch3x3", 288, 384, 3, 2),
        ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 2),
        ("Mixed_7a.branch3x3_2", 192, 320, 3, 2),
        ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 2),
    ] {
        t.push((name.to_string(), ci, co, k, k, s, 0, 0));
    }
    t
}

/// A feature map of `n` images × `c` channels of `h × w` on the backend. The network's
/// maps are channels-outer (CNHW: [`PlaneLayout::cnhw`]), where a convolution's
/// small-map products read and write them in place and a block's branches are
/// contiguous runs of it; only the input images are NCHW.
struct Act<'a, B: Backend> {
    buf: Recycled<'a, B>,
    c: usize,
    h: usize,
    w: usize,
    layout: PlaneLayout,
}

/// An activation buffer taken from the network's spare list ([`FidInception::take`]),
/// handed back to it when dropped: a batch's maps reuse the buffers an earlier layer or
/// an earlier batch of the same size left, instead of zero-filling fresh memory for each
/// of the ≈ 120 maps (5% of the features' time).
struct Recycled<'a, B: Backend> {
    buf: Option<B::Buf>,
    spare: &'a Mutex<Vec<B::Buf>>,
}

impl<B: Backend> std::ops::Deref for Recycled<'_, B> {
    type Target = B::Buf;
    fn deref(&self) -> &B::Buf {
        self.buf.as_ref().expect("held until dropped")
    }
}

impl<B: Backend> std::ops::DerefMut for Recycled<'_, B> {
    fn deref_mut(&mut self) -> &mut B::Buf {
        self.buf.as_mut().expect("held until dropped")
    }
}

impl<B: Backend> Drop for Recycled<'_, B> {
    fn drop(&mut self) {
        if let (Some(b), Ok(mut spare)) = (self.buf.take(), self.spare.lock()) {
            spare.push(b);
        }
    }
}

/// A block's output map being filled: its branches write their channels in order, each
/// where the previous one ended (the concatenation of the reference, without a copy).
struct Concat<'a, B: Backend> {
    map: Act<'a, B>,
    /// Channels written so far.
    filled: usize,
}

impl<'a, B: Backend> Concat<'a, B> {
    /// The map, once every channel is written.
    fn finish(self) -> Result<Act<'a, B>> {
        if self.filled != self.map.c {
            return Err(Error::Internal(format!("inception: a block filled {} of {} channels", self.filled, self.map.c)));
        }
        Ok(self.map)
    }
}

/// The network's outputs for a batch of `n` images.
#[derive(Clone, Debug)]
pub struct InceptionOutput {
    /// pool3 features `[n, 2048]`.
    pub pool3: Vec<f32>,
    /// `fc` logits `[n, 1008]`.
    pub logits: Vec<f32>,
    /// `fc` logits without the bias `[n, 1008]`: torch-fidelity's `logits_unbiased`,
    /// which its Inception Score uses.
    pub logits_unbiased: Vec<f32>,
    /// pytorch-fid's output blocks 0–2 (`[n,64,73,73]`, `[n,192,35,35]`, `[n,768,17,17]`)
    /// when asked for (debugging and tests).
    pub blocks: Option<[Vec<f32>; 3]>,
}

/// The FID Inception with its (folded) weights on backend `B`.
pub struct FidInception<B: Backend> {
    backend: B,
    input: InceptionInput,
    layers: HashMap<String, Layer<B>>,
    fc: B::Buf, // [W (1008×2048) | b (1008)]
    /// Activation buffers kept between layers and calls (see [`Recycled`]).
    spare: Mutex<Vec<B::Buf>>,
    /// The batch shape `(n, h, w)` the spare buffers were sized for: a call of another
    /// shape frees them first, so the memory kept is one shape's set however many shapes
    /// a caller uses.
    spare_shape: Mutex<Option<(usize, usize, usize)>>,
}

impl<B: Backend> FidInception<B> {
    /// Loads a converted `pt_inception-2015-12-05` safetensors file (see
    /// `scripts/convert_inception.py`); `num_batches_tracked` entries are ignored.
    pub fn load(path: impl AsRef<Path>, backend: B, input: InceptionInput) -> Result<Self> {
        let tf = TensorFile::open(path.as_ref())?;
        let mut layers = HashMap::new();
        for (name, ci, co, kh, kw, stride, ph, pw) in layer_table() {
            let affine = if name == "Conv2d_1a_3x3" { input.affine() } else { (1.0, 0.0) };
            let FoldedConv { weight, bias, .. } = load_folded(&tf, &name, [co, ci, kh, kw], affine)?;
            let layer = Layer::upload(&backend, (ci, co, kh, kw, stride, ph, pw), weight, bias)?;
            layers.insert(name, layer);
        }
        let fc_shape = tf
            .shape("fc.weight")
            .map_err(|_| Error::Weights(format!("{}: tensor \"fc.weight\" is missing", tf.path().display())))?;
        if fc_shape != [LOGITS_DIM, POOL3_DIM] {
            return Err(Error::Weights(format!(
                "fc.weight has shape {fc_shape:?}, expected [{LOGITS_DIM}, {POOL3_DIM}]"
            )));
        }
        let mut fc = tf.f32_shaped("fc.weight", &[LOGITS_DIM, POOL3_DIM])?;
        fc.extend(tf.f32_shaped("fc.bias", &[LOGITS_DIM])?);
        if fc.iter().any(|v| !v.is_finite()) {
            return Err(Error::Weights("fc has non-finite values".into()));
        }
        let fc = backend.upload_owned(fc)?;
        Ok(Self::assemble(backend, input, layers, fc))
    }

    /// The network with random weights (He-normal convolutions, small biases, a random
    /// `fc`) from `seed`: the geometry of the real file for benchmarks and backend
    /// comparisons where the 95 MB weights file is not at hand. Same seed, same weights
    /// on every backend.
    pub fn random(backend: B, input: InceptionInput, seed: u64) -> Result<Self> {
        let mut rng = crate::rng::Rng::new(seed);
        let mut layers = HashMap::new();
        for (name, ci, co, kh, kw, stride, ph, pw) in layer_table() {
            let fan_in = (ci * kh * kw) as f32;
            let scale = (2.0 / fan_in).sqrt();
            let weight: Vec<f32> = rng.normal_f32(co * ci * kh * kw).into_iter().map(|v| v * scale).collect();
            let bias: Vec<f32> = rng.normal_f32(co).into_iter().map(|v| v * 0.05).collect();
            let layer = Layer::upload(&backend, (ci, co, kh, kw, stride, ph, pw), weight, bias)?;
            layers.insert(name, layer);
        }
        let scale = (1.0 / POOL3_DIM as f32).sqrt();
        let mut fc: Vec<f32> = rng.normal_f32(LOGITS_DIM * POOL3_DIM).into_iter().map(|v| v * scale).collect();
        fc.extend(rng.normal_f32(LOGITS_DIM).into_iter().map(|v| v * 0.05));
        let fc = backend.upload_owned(fc)?;
        Ok(Self::assemble(backend, input, layers, fc))
    }

    fn assemble(backend: B, input: InceptionInput, layers: HashMap<String, Layer<B>>, fc: B::Buf) -> Self {
        FidInception {
            backend,
            input,
            layers,
            fc,
            spare: Mutex::new(Vec::new()),
            spare_shape: Mutex::new(None),
        }
    }

    /// A buffer of `len` elements whose contents the caller overwrites: a spare one of
    /// that length when there is one, else a new one.
    fn take(&self, len: usize) -> Result<Recycled<'_, B>> {
        let reused = self.spare.lock().ok().and_then(|mut spare| {
            let i = spare.iter().position(|b| self.backend.len(b) == len)?;
            Some(spare.swap_remove(i))
        });
        let buf = match reused {
            Some(b) => b,
            None => self.backend.zeros(len)?,
        };
        Ok(Recycled {
            buf: Some(buf),
            spare: &self.spare,
        })
    }

    /// Bytes of the activation buffers kept from the last call (0 before the first):
    /// every map of the last batch shape (a call of another shape frees them first), about 37 MiB per image (295 MiB after a batch of
    /// 8; `examples/inception_bench` prints it).
    pub fn workspace_bytes(&self) -> usize {
        self.spare.lock().map_or(0, |s| s.iter().map(|b| 4 * self.backend.len(b)).sum())
    }

    /// Frees the kept activation buffers (the next call allocates them again).
    pub fn release_workspace(&self) {
        if let Ok(mut s) = self.spare.lock() {
            s.clear();
        }
    }

    /// The preprocessing mode.
    pub fn input(&self) -> InceptionInput {
        self.input
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Layer `name` and its convolution's shape on map `x` of a batch of `n`.
    fn layer_shape(&self, name: &str, x: &Act<B>, n: usize) -> Result<(&Layer<B>, Conv2dShape)> {
        let l = self.layers.get(name).ok_or_else(|| Error::Internal(format!("inception: no layer {name}")))?;
        debug_assert_eq!(l.c_in, x.c);
        let s = Conv2dShape {
            n,
            c_in: l.c_in,
            h: x.h,
            w: x.w,
            c_out: l.c_out,
            kh: l.kh,
            kw: l.kw,
            stride_h: l.stride,
            stride_w: l.stride,
            pad_top: l.pad.0,
            pad_bottom: l.pad.0,
            pad_left: l.pad.1,
            pad_right: l.pad.1,
        };
        s.validate()?;
        Ok((l, s))
    }

    /// `BasicConv2d` `name` (convolution with the folded BatchNorm, then ReLU) on `x`.
    fn conv(&self, name: &str, x: &Act<B>, n: usize) -> Result<Act<'_, B>> {
        let (l, s) = self.layer_shape(name, x, n)?;
        let layout = ConvLayout {
            x: x.layout,
            y: PlaneLayout::cnhw(n),
            relu: true,
        };
        layout.validate(&s)?;
        let mut y = self.take(s.y_len())?;
        let be = &self.backend;
        be.conv2d_fwd_into(
            be.src(&x.buf, 0..layout.x_len(&s)),
            be.src(&l.weight, 0..s.w_len()),
            Some(be.src(&l.bias, 0..l.c_out)),
            be.dst(&mut y, 0..layout.y_len(&s)),
            &s,
            &layout,
        );
        Ok(Act {
            buf: y,
            c: l.c_out,
            h: s.out_h(),
            w: s.out_w(),
            layout: layout.y,
        })
    }

    /// [`Self::conv`] written straight into the next channels of a block's output.
    fn conv_into(&self, name: &str, x: &Act<B>, n: usize, cat: &mut Concat<'_, B>) -> Result<()> {
        let (l, s) = self.layer_shape(name, x, n)?;
        let layout = ConvLayout {
            x: x.layout,
            y: cat.map.layout.from_channel(cat.filled),
            relu: true,
        };
        layout.validate(&s)?;
        if (s.out_h(), s.out_w()) != (cat.map.h, cat.map.w) {
            return Err(Error::Internal(format!(
                "inception: {name} gives {}×{}, its block {}×{}",
                s.out_h(),
                s.out_w(),
                cat.map.h,
                cat.map.w
            )));
        }
        let be = &self.backend;
        be.conv2d_fwd_into(
            be.src(&x.buf, 0..layout.x_len(&s)),
            be.src(&l.weight, 0..s.w_len()),
            Some(be.src(&l.bias, 0..l.c_out)),
            be.dst(&mut cat.map.buf, 0..layout.y_len(&s)),
            &s,
            &layout,
        );
        cat.filled += l.c_out;
        Ok(())
    }

    /// A block's output map `[n, c, h, w]`, filled branch by branch.
    fn concat_map(&self, n: usize, c: usize, h: usize, w: usize) -> Result<Concat<'_, B>> {
        Ok(Concat {
            map: Act {
                buf: self.take(n * c * h * w)?,
                c,
                h,
                w,
                layout: PlaneLayout::cnhw(n),
            },
            filled: 0,
        })
    }

    /// Output channels of layer `name`.
    fn c_out(&self, name: &str) -> Result<usize> {
        self.layers
            .get(name)
            .map(|l| l.c_out)
            .ok_or_else(|| Error::Internal(format!("inception: no layer {name}")))
    }

    fn pool(&self, x: &Act<B>, n: usize, k: usize, stride: usize, pad: usize, kind: PoolKind) -> Result<Act<'_, B>> {
        let s = Pool2dShape {
            n,
            c: x.c,
            h: x.h,
            w: x.w,
            k,
            stride,
            pad,
        };
        s.validate()?;
        let be = &self.backend;
        let mut y = self.take(s.y_len())?;
        be.pool2d_fwd(be.src(&x.buf, 0..s.x_len()), be.dst(&mut y, 0..s.y_len()), &s, kind);
        // Pooling is per plane: the output keeps the input's plane order.
        Ok(Act {
            buf: y,
            c: x.c,
            h: s.out_h(),
            w: s.out_w(),
            layout: x.layout,
        })
    }

    /// A pooling branch's map copied into the next channels of a block's output.
    fn copy_into(&self, part: &Act<B>, n: usize, cat: &mut Concat<'_, B>) -> Result<()> {
        let (c, h, w) = (cat.map.c, cat.map.h, cat.map.w);
        let cnhw = PlaneLayout::cnhw(n);
        if (part.h, part.w) != (h, w) || cat.filled + part.c > c || part.layout != cnhw || cat.map.layout != cnhw {
            return Err(Error::Internal("inception: a branch does not fit its block".into()));
        }
        // Channels-outer: the branch's planes are one run of the block's.
        let be = &self.backend;
        be.copy_channels(
            be.src(&part.buf, 0..n * part.c * h * w),
            be.dst(&mut cat.map.buf, 0..n * c * h * w),
            1,
            n * part.c,
            n * c,
            n * cat.filled,
            h * w,
        );
        cat.filled += part.c;
        Ok(())
    }

    fn block_a(&self, p: &str, x: &Act<B>, n: usize) -> Result<Act<'_, B>> {
        let c = 64 + 64 + 96 + self.c_out(&format!("{p}.branch_pool"))?;
        let mut cat = self.concat_map(n, c, x.h, x.w)?;
        self.conv_into(&format!("{p}.branch1x1"), x, n, &mut cat)?;
        self.conv_into(&format!("{p}.branch5x5_2"), &self.conv(&format!("{p}.branch5x5_1"), x, n)?, n, &mut cat)?;
        let d = self.conv(&format!("{p}.branch3x3dbl_1"), x, n)?;
        self.conv_into(&format!("{p}.branch3x3dbl_3"), &self.conv(&format!("{p}.branch3x3dbl_2"), &d, n)?, n, &mut cat)?;
        self.conv_into(&format!("{p}.branch_pool"), &self.pool(x, n, 3, 1, 1, PoolKind::AvgExcludePad)?, n, &mut cat)?;
        cat.finish()
    }

    fn block_b(&self, x: &Act<B>, n: usize) -> Result<Act<'_, B>> {
        let side = |v: usize| (v - 3) / 2 + 1;
        let mut cat = self.concat_map(n, 384 + 96 + x.c, side(x.h), side(x.w))?;
        self.conv_into("Mixed_6a.branch3x3", x, n, &mut cat)?;
        let d = self.conv("Mixed_6a.branch3x3dbl_1", x, n)?;
        self.conv_into("Mixed_6a.branch3x3dbl_3", &self.conv("Mixed_6a.branch3x3dbl_2", &d, n)?, n, &mut cat)?;
        self.copy_into(&self.pool(x, n, 3, 2, 0, PoolKind::Max)?, n, &mut cat)?;
        cat.finish()
    }

    fn block_c(&self, p: &str, x: &Act<B>, n: usize) -> Result<Act<'_, B>> {
        let mut cat = self.concat_map(n, 4 * 192, x.h, x.w)?;
        self.conv_into(&format!("{p}.branch1x1"), x, n, &mut cat)?;
        let mut b7 = self.conv(&format!("{p}.branch7x7_1"), x, n)?;
        b7 = self.conv(&format!("{p}.branch7x7_2"), &b7, n)?;
        self.conv_into(&format!("{p}.branch7x7_3"), &b7, n, &mut cat)?;
        let mut d = self.conv(&format!("{p}.branch7x7dbl_1"), x, n)?;
        for i in 2..=4 {
            d = self.conv(&format!("{p}.branch7x7dbl_{i}"), &d, n)?;
        }
        self.conv_into(&format!("{p}.branch7x7dbl_5"), &d, n, &mut cat)?;
        self.conv_into(&format!("{p}.branch_pool"), &self.pool(x, n, 3, 1, 1, PoolKind::AvgExcludePad)?, n, &mut cat)?;
        cat.finish()
    }

    fn block_d(&self, x: &Act<B>, n: usize) -> Result<Act<'_, B>> {
        let side = |v: usize| (v - 3) / 2 + 1;
        let mut cat = self.concat_map(n, 320 + 192 + x.c, side(x.h), side(x.w))?;
        self.conv_into("Mixed_7a.branch3x3_2", &self.conv("Mixed_7a.branch3x3_1", x, n)?, n, &mut cat)?;
        let mut b7 = self.conv("Mixed_7a.branch7x7x3_1", x, n)?;
        for i in 2..=3 {
            b7 = self.conv(&format!("Mixed_7a.branch7x7x3_{i}"), &b7, n)?;
        }
        self.conv_into("Mixed_7a.branch7x7x3_4", &b7, n, &mut cat)?;
        self.copy_into(&self.pool(x, n, 3, 2, 0, PoolKind::Max)?, n, &mut cat)?;
        cat.finish()
    }

    fn block_e(&self, p: &str, x: &Act<B>, n: usize, pool: PoolKind) -> Result<Act<'_, B>> {
        let mut cat = self.concat_map(n, 320 + 4 * 384 + 192, x.h, x.w)?;
        self.conv_into(&format!("{p}.branch1x1"), x, n, &mut cat)?;
        let t = self.conv(&format!("{p}.branch3x3_1"), x, n)?;
        self.conv_into(&format!("{p}.branch3x3_2a"), &t, n, &mut cat)?;
        self.conv_into(&format!("{p}.branch3x3_2b"), &t, n, &mut cat)?;
        let d = self.conv(&format!("{p}.branch3x3dbl_1"), x, n)?;
        let d = self.conv(&format!("{p}.branch3x3dbl_2"), &d, n)?;
        self.conv_into(&format!("{p}.branch3x3dbl_3a"), &d, n, &mut cat)?;
        self.conv_into(&format!("{p}.branch3x3dbl_3b"), &d, n, &mut cat)?;
        self.conv_into(&format!("{p}.branch_pool"), &self.pool(x, n, 3, 1, 1, pool)?, n, &mut cat)?;
        cat.finish()
    }

    /// Map `a` as NCHW `[n, c, h, w]` on the host.
    fn read(&self, a: &Act<'_, B>, n: usize) -> Result<Vec<f32>> {
        let hw = a.h * a.w;
        let planes = self.backend.read(&a.buf, 0..n * a.c * hw)?;
        let mut out = Vec::with_capacity(planes.len());
        for b in 0..n {
            for c in 0..a.c {
                out.extend_from_slice(&planes[a.layout.plane(b, c) * hw..][..hw]);
            }
        }
        Ok(out)
    }

    /// pool3 features and logits of images `[n, 3, h, w]` (values in the range of the
    /// [`InceptionInput`] mode; any size, resized to 299×299).
    pub fn forward(&self, images: &[f32] /* [n, 3, h, w] */, n: usize, h: usize, w: usize) -> Result<InceptionOutput> {
        self.forward_detailed(images, n, h, w, false)
    }

    /// [`FidInception::forward`], also returning pytorch-fid's blocks 0–2 if `blocks`.
    pub fn forward_detailed(&self, images: &[f32] /* [n, 3, h, w] */, n: usize, h: usize, w: usize, blocks: bool) -> Result<InceptionOutput> {
        if n == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!("inception: empty batch [{n}, 3, {h}, {w}]")));
        }
        let len = n
            .checked_mul(3 * h)
            .and_then(|v| v.checked_mul(w))
            .ok_or_else(|| Error::invalid("inception: batch too large"))?;
        if images.len() != len {
            return Err(Error::invalid(format!("inception: {} values for a [{n}, 3, {h}, {w}] batch", images.len())));
        }
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("inception: image {} has a non-finite pixel", i / (3 * h * w))));
        }
        // The largest map: Conv2d_2b's [n, 64, 147, 147].
        check_bytes("inception activations", n.saturating_mul(64 * 147 * 147), 4)?;
        if let Ok(mut shape) = self.spare_shape.lock() {
            if *shape != Some((n, h, w)) {
                self.release_workspace();
                *shape = Some((n, h, w));
            }
        }
        let be = &self.backend;
        let mut x = self.take(len)?;
        be.write(&mut x, 0, images)?;
        let x = if (h, w) == (INPUT_SIDE, INPUT_SIDE) {
            Act {
                buf: x,
                c: 3,
                h,
                w,
                layout: PlaneLayout::nchw(3),
            }
        } else {
            let out = n * 3 * INPUT_SIDE * INPUT_SIDE;
            let mut y = self.take(out)?;
            be.resize_bilinear(
                be.src(&x, 0..len),
                be.dst(&mut y, 0..out),
                n,
                3,
                h,
                w,
                INPUT_SIDE,
                INPUT_SIDE,
                self.input.resize(),
            );
            Act {
                buf: y,
                c: 3,
                h: INPUT_SIDE,
                w: INPUT_SIDE,
                layout: PlaneLayout::nchw(3),
            }
        };
        let x = self.conv("Conv2d_1a_3x3", &x, n)?;
        let x = self.conv("Conv2d_2a_3x3", &x, n)?;
        let x = self.conv("Conv2d_2b_3x3", &x, n)?;
        let b0 = self.pool(&x, n, 3, 2, 0, PoolKind::Max)?;
        let x = self.conv("Conv2d_3b_1x1", &b0, n)?;
        let x = self.conv("Conv2d_4a_3x3", &x, n)?;
        let b1 = self.pool(&x, n, 3, 2, 0, PoolKind::Max)?;
        let x = self.block_a("Mixed_5b", &b1, n)?;
        let x = self.block_a("Mixed_5c", &x, n)?;
        let x = self.block_a("Mixed_5d", &x, n)?;
        let x = self.block_b(&x, n)?;
        let x = self.block_c("Mixed_6b", &x, n)?;
        let x = self.block_c("Mixed_6c", &x, n)?;
        let x = self.block_c("Mixed_6d", &x, n)?;
        let b2 = self.block_c("Mixed_6e", &x, n)?;
        let x = self.block_d(&b2, n)?;
        let x = self.block_e("Mixed_7b", &x, n, PoolKind::AvgExcludePad)?;
        let x = self.block_e("Mixed_7c", &x, n, PoolKind::Max)?;
        let planes = self.pool(&x, n, x.h, 1, 0, PoolKind::AvgExcludePad)?;
        // [2048 channels, n images] (channels-outer) → pool3 [n, 2048].
        if planes.layout != PlaneLayout::cnhw(n) || planes.c != POOL3_DIM {
            return Err(Error::Internal("inception: pool3 is not a channels-outer [2048, n] map".into()));
        }
        let mut pooled = self.take(n * POOL3_DIM)?;
        be.transpose_batched(be.src(&planes.buf, 0..n * POOL3_DIM), be.dst(&mut pooled, 0..n * POOL3_DIM), 1, POOL3_DIM, n);
        let mut logits = be.zeros(n * LOGITS_DIM)?;
        be.linear_fwd(
            be.src(&pooled, 0..n * POOL3_DIM),
            be.src(&self.fc, 0..LOGITS_DIM * POOL3_DIM + LOGITS_DIM),
            true,
            be.dst(&mut logits, 0..n * LOGITS_DIM),
            n,
            POOL3_DIM,
            LOGITS_DIM,
        );
        let mut unbiased = be.zeros(n * LOGITS_DIM)?;
        be.linear_fwd(
            be.src(&pooled, 0..n * POOL3_DIM),
            be.src(&self.fc, 0..LOGITS_DIM * POOL3_DIM),
            false,
            be.dst(&mut unbiased, 0..n * LOGITS_DIM),
            n,
            POOL3_DIM,
            LOGITS_DIM,
        );
        let blocks = if blocks {
            Some([self.read(&b0, n)?, self.read(&b1, n)?, self.read(&b2, n)?])
        } else {
            None
        };
        Ok(InceptionOutput {
            pool3: be.read(&pooled, 0..n * POOL3_DIM)?,
            logits: be.read(&logits, 0..n * LOGITS_DIM)?,
            logits_unbiased: be.read(&unbiased, 0..n * LOGITS_DIM)?,
            blocks,
        })
    }
}
