//! The reference's initialisation for training from scratch: Xavier-uniform Linear and
//! patch-embedding weights, zero biases, N(0, 0.02²) label table and timestep-MLP
//! weights, zero adaLN outputs and final Linear (a fresh network outputs F ≡ 0).

use crate::layout::ParamLayout;
use crate::rng::Rng;

/// Fills a flat parameter vector for `layout` from a seed.
pub fn reference_init(layout: &ParamLayout, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut p = vec![0f32; layout.total()];
    for e in layout.entries() {
        let dst = &mut p[e.range()];
        let name = e.name.as_str();
        if name.ends_with(".bias") || name.contains("adaLN_modulation") || name.starts_with("final_layer.linear") {
            continue; // zeros
        }
        if e.shape.len() == 1 {
            dst.fill(1.0); // RMSNorm weights (LightningDiT, DDT) start at one
            continue;
        }
        if name.starts_with("t_embedder.mlp") || name.starts_with("y_embedder") {
            rng.fill_normal(dst);
            dst.iter_mut().for_each(|v| *v *= 0.02);
            continue;
        }
        // Xavier uniform on the [out, in·…] view.
        let fan_out = e.shape[0];
        let fan_in: usize = e.shape[1..].iter().product();
        let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
        for v in dst.iter_mut() {
            *v = ((2.0 * rng.uniform() - 1.0) * bound) as f32;
        }
    }
    p
}
