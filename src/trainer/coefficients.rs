//! The transport as the trainer sees it: the four coefficient functions of spec §1.1,
//! evaluated per sample. The code's naming is kept: α multiplies the NOISE z, γ the DATA x,
//! α̂ and γ̂ are the coefficients of z and x in the regression target, and
//! Δ = α·γ̂ − γ·α̂ is always computed from the four values (never a constant).
//!
//! The trainer only needs these values, so it is written against the small
//! [`Coefficients`] trait; the transports themselves live in `crate::transport`.

/// A transport's coefficient functions of time (spec §1.2).
pub trait Coefficients {
    /// α(t): coefficient of the noise z in x_t (`alpha_in`).
    fn alpha(&self, t: f64) -> f64;
    /// γ(t): coefficient of the data x in x_t (`gamma_in`).
    fn gamma(&self, t: f64) -> f64;
    /// α̂(t): coefficient of z in the target F* (`alpha_to`).
    fn alpha_to(&self, t: f64) -> f64;
    /// γ̂(t): coefficient of x in the target F* (`gamma_to`).
    fn gamma_to(&self, t: f64) -> f64;

    /// Whether the network runs in flipped time (the v2 flip of spec §1.1, ReLinear): the
    /// trainer then works in internal time, calls the network at 1 − t and negates its
    /// output, F_int(x, t) = −F_net(x, 1 − t). The coefficients above are the internal ones.
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

    /// All four values and Δ at one time.
    fn at(&self, t: f32) -> Coef {
        let t = t as f64;
        let (alpha, gamma, alpha_to, gamma_to) = (self.alpha(t), self.gamma(t), self.alpha_to(t), self.gamma_to(t));
        Coef {
            alpha,
            gamma,
            alpha_to,
            gamma_to,
            dent: alpha * gamma_to - gamma * alpha_to,
        }
    }

    /// [`Coefficients::at`] for every sample time. t: `[B]`.
    fn at_all(&self, t: &[f32]) -> Vec<Coef> {
        t.iter().map(|&ti| self.at(ti)).collect()
    }
}

/// The coefficient values at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coef {
    /// α: noise coefficient of the input.
    pub alpha: f64,
    /// γ: data coefficient of the input.
    pub gamma: f64,
    /// α̂: noise coefficient of the target.
    pub alpha_to: f64,
    /// γ̂: data coefficient of the target.
    pub gamma_to: f64,
    /// Δ = α·γ̂ − γ·α̂.
    pub dent: f64,
}

impl Coef {
    /// x_t = α·z + γ·x for one element.
    #[inline]
    pub fn input(&self, z: f64, x: f64) -> f64 {
        self.alpha * z + self.gamma * x
    }
    /// F* = α̂·z + γ̂·x for one element.
    #[inline]
    pub fn target(&self, z: f64, x: f64) -> f64 {
        self.alpha_to * z + self.gamma_to * x
    }
    /// x̂ = (α·F − α̂·x_t)/Δ for one element.
    #[inline]
    pub fn data_estimate(&self, f: f64, x_t: f64) -> f64 {
        (self.alpha * f - self.alpha_to * x_t) / self.dent
    }
    /// ẑ = (γ̂·x_t − γ·F)/Δ for one element.
    #[inline]
    pub fn noise_estimate(&self, f: f64, x_t: f64) -> f64 {
        (self.gamma_to * x_t - self.gamma * f) / self.dent
    }
}

#[cfg(test)]
pub(crate) mod test_transports {
    //! Closed-form transports for the trainer's unit tests (the real ones live in
    //! `crate::transport`).
    use super::Coefficients;

    /// `Linear`: α = t, γ = 1 − t, α̂ = 1, γ̂ = −1.
    pub struct Linear;
    impl Coefficients for Linear {
        fn alpha(&self, t: f64) -> f64 {
            t
        }
        fn gamma(&self, t: f64) -> f64 {
            1.0 - t
        }
        fn alpha_to(&self, _t: f64) -> f64 {
            1.0
        }
        fn gamma_to(&self, _t: f64) -> f64 {
            -1.0
        }
    }

    /// `TrigFlow`: α = sin(1.57t), γ = cos(1.57t), α̂ = cos(1.57t), γ̂ = −sin(1.57t).
    pub struct TrigFlow;
    impl Coefficients for TrigFlow {
        fn alpha(&self, t: f64) -> f64 {
            (1.57 * t).sin()
        }
        fn gamma(&self, t: f64) -> f64 {
            (1.57 * t).cos()
        }
        fn alpha_to(&self, t: f64) -> f64 {
            (1.57 * t).cos()
        }
        fn gamma_to(&self, t: f64) -> f64 {
            -(1.57 * t).sin()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_transports::{Linear, TrigFlow};
    use super::*;

    #[test]
    fn endpoints_round_trip_and_dent() {
        for tr in [&Linear as &dyn Coefficients, &TrigFlow] {
            for &t in &[0.05f32, 0.5, 0.97] {
                let c = tr.at(t);
                assert!((c.dent + 1.0).abs() < 1e-12, "Δ = {}", c.dent);
                let (z, x) = (1.3, -0.7);
                let (x_t, f) = (c.input(z, x), c.target(z, x));
                assert!((c.data_estimate(f, x_t) - x).abs() < 1e-12);
                assert!((c.noise_estimate(f, x_t) - z).abs() < 1e-12);
            }
        }
    }
}
