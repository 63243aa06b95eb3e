//! Fixed (non-trained) embeddings computed on the host: the timestep frequency features,
//! the MAE 2-D sin-cos position embedding, the EVA-02 2-D RoPE tables (TiT,
//! LightningDiT) and DDT's complex-pair 2-D RoPE tables.

use super::config::ModelConfig;

/// Width of the timestep frequency features.
pub const TIME_FEATURES: usize = 256;

/// Timestep features [B, 256]: [cos(t·f₀..₁₂₇), sin(t·f₀..₁₂₇)] with
/// fᵢ = exp(−ln(P)·i/128), P the max period (10000; DDT 10), t raw (not ×1000),
/// everything in f32 like the reference.
pub fn timestep_features(t: &[f32], max_period: f32) -> Vec<f32> {
    let half = TIME_FEATURES / 2;
    let freqs: Vec<f32> = (0..half).map(|i| (-max_period.ln() * i as f32 / half as f32).exp()).collect();
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

/// torch.linspace(start, end, steps) in float32 (torch's CPU kernel: the first half
/// counts up from `start`, the second half down from `end`).
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// DDT's 2-D RoPE tables (cos, sin), each [T, d_h], in the layout the attention op
/// applies (pairs (2c, 2c+1) rotated by the angle at c): with positions
/// p = linspace(0, 16, L) (float32), frequencies φ_f = 10000^(−4f/d_h) for f < d_h/4,
/// complex pair c = 2f + a turns by x_pos·φ_f (a = 0, the column) or y_pos·φ_f (a = 1,
/// the row) — `precompute_freqs_cis_2d` of the reference.
pub fn ddt_rope_tables(cfg: &ModelConfig) -> (Vec<f32>, Vec<f32>) {
    let (l, dh) = (cfg.grid(), cfg.head_dim());
    let pos = linspace_f32(0.0, 16.0, l);
    let freqs: Vec<f32> = (0..dh / 4).map(|f| 1.0 / 10000f32.powf((4 * f) as f32 / dh as f32)).collect();
    let mut cos = vec![0f32; l * l * dh];
    let mut sin = vec![0f32; l * l * dh];
    for row in 0..l {
        for col in 0..l {
            let base = (row * l + col) * dh;
            for (f, &fr) in freqs.iter().enumerate() {
                for (a, p) in [(0usize, pos[col]), (1usize, pos[row])] {
                    let angle = (p * fr) as f64;
                    let c = 2 * f + a;
                    for r in 0..2 {
                        cos[base + 2 * c + r] = angle.cos() as f32;
                        sin[base + 2 * c + r] = angle.sin() as f32;
                    }
                }
            }
        }
    }
    (cos, sin)
}
