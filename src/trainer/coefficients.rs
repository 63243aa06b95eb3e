//! The transport as the trainer sees it: per sample, the four coefficients of spec §1.1
//! and Δ, in internal time (t = 0 is data). The code's naming is kept: α multiplies the
//! NOISE z, γ the DATA x, α̂ and γ̂ are the coefficients of z and x in the regression
//! target, and Δ = α·γ̂ − γ·α̂ is always computed from the four values.
//!
//! The values are those the reference computes on float32 tensors
//! ([`Transport::coefs_f32`]), widened to f64; the trainer's host arithmetic on them is
//! f64, rounded once to f32 per output element.
//!
//! Two implementations: [`Transport`] (v2, the one the trainer uses: ReLinear is flipped
//! so that internal t = 0 is data) and [`TransportKind`] (the published functions in
//! native time with no flip, i.e. v1; used to check §8 item 19).

use crate::transport::{Coefs, Transport, TransportKind};

/// Coefficient values at one time (α, γ, α̂, γ̂, Δ), f64.
pub type Coef = Coefs<f64>;

/// Per-sample transport coefficients and how the network sees time.
pub trait Coefficients {
    /// α, γ, α̂, γ̂ and Δ at internal time `t`.
    fn at(&self, t: f32) -> Coef;

    /// Whether the network runs in flipped time (the v2 flip of spec §1.1, ReLinear): the
    /// trainer then calls the network at 1 − t and negates its output,
    /// F_int(x, t) = −F_net(x, 1 − t).
    fn is_flipped(&self) -> bool {
        false
    }

    /// The times at which the network is called for internal times `t` (1 − t in f32 when
    /// flipped). t: `[B]`.
    fn network_times(&self, t: &[f32]) -> Vec<f32> {
        if self.is_flipped() {
            t.iter().map(|&v| 1.0 - v).collect()
        } else {
            t.to_vec()
        }
    }

    /// [`Coefficients::at`] for every sample time. t: `[B]`.
    fn at_all(&self, t: &[f32]) -> Vec<Coef> {
        t.iter().map(|&ti| self.at(ti)).collect()
    }
}

/// f32 coefficients widened to f64 (Δ kept as computed in f32).
fn widen(c: Coefs<f32>) -> Coef {
    Coefs {
        alpha: c.alpha as f64,
        gamma: c.gamma as f64,
        alpha_to: c.alpha_to as f64,
        gamma_to: c.gamma_to as f64,
        delta: c.delta as f64,
    }
}

impl Coefficients for Transport {
    fn at(&self, t: f32) -> Coef {
        widen(self.coefs_f32(t))
    }
    fn is_flipped(&self) -> bool {
        Transport::is_flipped(self)
    }
}

/// The published functions in native time, never flipped (the v1 trainer).
impl Coefficients for TransportKind {
    fn at(&self, t: f32) -> Coef {
        widen(self.coefs_f32(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_and_flip() {
        for kind in TransportKind::ALL {
            let tr = Transport::new(kind).unwrap();
            for &t in &[0.05f32, 0.5, 0.97] {
                let c = tr.at(t);
                let (z, x) = (1.3, -0.7);
                let (x_t, f) = (c.interpolate(z, x), c.target(z, x));
                assert!((c.recover_x(f, x_t) - x).abs() < 1e-6, "{kind} t = {t}");
                assert!((c.recover_z(f, x_t) - z).abs() < 1e-6, "{kind} t = {t}");
            }
        }
        // ReLinear: internally Linear, the network sees 1 − t.
        let re = Transport::new(TransportKind::ReLinear).unwrap();
        assert!(Coefficients::is_flipped(&re) && !Coefficients::is_flipped(&TransportKind::ReLinear));
        assert_eq!(re.at(0.25), TransportKind::Linear.at(0.25));
        assert_eq!(re.network_times(&[0.25, 1.0]), vec![0.75, 0.0]);
        assert_eq!(TransportKind::ReLinear.at(0.25).alpha, 0.75);
    }
}
