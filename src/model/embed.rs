//! Fixed (non-trained) embeddings computed on the host: the timestep frequency features,
//! the MAE 2-D sin-cos position embedding and the EVA-02 2-D RoPE tables.

use super::config::ModelConfig;

/// Width of the timestep frequency features.
pub const TIME_FEATURES: usize = 256;

/// Timestep features [B, 256]: [cos(t·f₀..₁₂₇), sin(t·f₀..₁₂₇)] with
/// fᵢ = exp(−ln(10000)·i/128), t raw (not ×1000), everything in f32 like the reference.
pub fn timestep_features(t: &[f32]) -> Vec<f32> {
    let half = TIME_FEATURES / 2;
    let freqs: Vec<f32> = (0..half).map(|i| (-(10000f32).ln() * i as f32 / half as f32).exp()).collect();
    let mut out = vec![0f32; t.len() * TIME_FEATURES];
    for (b, &tb) in t.iter().enumerate() {
        let row = &mut out[b * TIME_FEATURES..(b + 1) * TIME_FEATURES];
        for i in 0..half {
            let arg = tb * freqs[i];
            row[i] = arg.cos();
            row[half + i] = arg.sin();
        }
    }
    out
}

/// MAE 2-D sin-cos position embedding [T, D] (computed in f64): the token at (row h,
/// col w) gets [sin(w·ω), cos(w·ω), sin(h·ω), cos(h·ω)], ω_k = 10000^(−k/(D/4)).
pub fn pos_embed(cfg: &ModelConfig) -> Vec<f32> {
    let (l, d) = (cfg.grid(), cfg.hidden);
    let q = d / 4;
    let omega: Vec<f64> = (0..q).map(|k| 1.0 / 10000f64.powf(k as f64 / q as f64)).collect();
    let mut out = vec![0f32; l * l * d];
    for h in 0..l {
        for w in 0..l {
            let row = &mut out[(h * l + w) * d..(h * l + w + 1) * d];
            for k in 0..q {
                let (aw, ah) = (w as f64 * omega[k], h as f64 * omega[k]);
                row[k] = aw.sin() as f32;
                row[q + k] = aw.cos() as f32;
                row[2 * q + k] = ah.sin() as f32;
                row[3 * q + k] = ah.cos() as f32;
            }
        }
    }
    out
}

/// EVA-02 2-D RoPE tables (cos, sin), each [T, d_h]: with m = d_h/2 and
/// φ_j = 10000^(−2j/m) duplicated to adjacent pairs, token (h, w) has angles
/// [h·φ, w·φ]; positions computed as (p/L)·L in f32 like the reference.
pub fn rope_tables(cfg: &ModelConfig) -> (Vec<f32>, Vec<f32>) {
    let (l, dh) = (cfg.grid(), cfg.head_dim());
    let m = dh / 2;
    let freqs: Vec<f32> = (0..m / 2).map(|j| 1.0 / 10000f32.powf((2 * j) as f32 / m as f32)).collect();
    let pos: Vec<f32> = (0..l).map(|p| p as f32 / l as f32 * l as f32).collect();
    let mut cos = vec![0f32; l * l * dh];
    let mut sin = vec![0f32; l * l * dh];
    for h in 0..l {
        for w in 0..l {
            let base = (h * l + w) * dh;
            for j in 0..m / 2 {
                for (half, p) in [(0usize, pos[h]), (1usize, pos[w])] {
                    let a = p * freqs[j];
                    for r in 0..2 {
                        let idx = base + half * m + 2 * j + r;
                        cos[idx] = a.cos();
                        sin[idx] = a.sin();
                    }
                }
            }
        }
    }
    (cos, sin)
}
