//! Loading the FID Inception's weights (`pt_inception-2015-12-05-6726825d.pth`
//! converted to safetensors by `scripts/convert_inception.py`, torchvision names such as
//! `Mixed_5b.branch1x1.conv.weight`) and folding each BatchNorm (eps 1e-3, running
//! statistics) into the bias-free convolution before it, in f64:
//! `s = γ/√(σ² + ε)`, `W' = s·W`, `b' = β − s·μ`. The input normalisation of the chosen
//! preprocessing (`x → a·x + c` per pixel) is folded into the first convolution too,
//! which is exact because that convolution has no padding:
//! `W'' = a·W'`, `b'' = b' + c·Σ W'`.

use crate::error::{Error, Result};
use crate::tensor_file::TensorFile;

/// BatchNorm epsilon of the FID Inception (`BasicConv2d`).
pub const BN_EPS: f64 = 1e-3;

/// A convolution with BatchNorm folded in: weights `[c_out, c_in, kh, kw]`, bias `[c_out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldedConv {
    pub c_out: usize,
    pub c_in: usize,
    pub kh: usize,
    pub kw: usize,
    pub weight: Vec<f32>, // [c_out, c_in, kh, kw]
    pub bias: Vec<f32>,   // [c_out]
}

/// Folds BatchNorm (`gamma`, `beta`, `mean`, `var`, each `[c_out]`) into a bias-free
/// convolution `weight` `[c_out, c_in·kh·kw]`, then the input affine map `x → a·x + c`.
pub fn fold_batch_norm(weight: &[f32], gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], input_affine: (f64, f64)) -> (Vec<f32>, Vec<f32>) {
    let c_out = gamma.len();
    let k = weight.len() / c_out;
    let (a, c) = input_affine;
    let mut w = vec![0.0f32; weight.len()];
    let mut b = vec![0.0f32; c_out];
    for o in 0..c_out {
        let s = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
        let row = &weight[o * k..(o + 1) * k];
        let sum: f64 = row.iter().map(|&v| v as f64).sum();
        for (dst, &v) in w[o * k..(o + 1) * k].iter_mut().zip(row) {
            *dst = (a * s * v as f64) as f32;
        }
        b[o] = (beta[o] as f64 - s * mean[o] as f64 + c * s * sum) as f32;
    }
    (w, b)
}

/// Reads `name.conv.weight` and `name.bn.{weight,bias,running_mean,running_var}` and
/// folds them; the shape must be `[c_out, c_in, kh, kw]` as expected.
pub fn load_folded(tf: &TensorFile, name: &str, shape: [usize; 4], input_affine: (f64, f64)) -> Result<FoldedConv> {
    let [c_out, c_in, kh, kw] = shape;
    let get = |t: &str, want: &[usize]| -> Result<Vec<f32>> {
        let full = format!("{name}.{t}");
        if !tf.contains(&full) {
            return Err(Error::Weights(format!(
                "{}: tensor {full:?} is missing (not a pytorch-fid FID Inception file?)",
                tf.path().display()
            )));
        }
        let (got, data) = tf.f32(&full)?;
        if got != want {
            return Err(Error::Weights(format!(
                "{}: tensor {full:?} has shape {got:?}, expected {want:?}",
                tf.path().display()
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Weights(format!(
                "{}: tensor {full:?} has a non-finite value at {i}",
                tf.path().display()
            )));
        }
        Ok(data)
    };
    let weight = get("conv.weight", &shape)?;
    let gamma = get("bn.weight", &[c_out])?;
    let beta = get("bn.bias", &[c_out])?;
    let mean = get("bn.running_mean", &[c_out])?;
    let var = get("bn.running_var", &[c_out])?;
    if let Some(i) = var.iter().position(|&v| v < 0.0) {
        return Err(Error::Weights(format!("{name}.bn.running_var[{i}] is negative")));
    }
    let (weight, bias) = fold_batch_norm(&weight, &gamma, &beta, &mean, &var, input_affine);
    Ok(FoldedConv {
        c_out,
        c_in,
        kh,
        kw,
        weight,
        bias,
    })
}
