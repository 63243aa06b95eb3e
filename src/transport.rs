//! The six UCGM transports (spec §1): the interpolant x_t = α(t)·z + γ(t)·x, the
//! regression target F* = α̂(t)·z + γ̂(t)·x, and the recovery of both endpoints from any
//! network output F.
//!
//! # Naming: α is the NOISE coefficient
//!
//! This module keeps the reference's names, which are the reverse of the usual diffusion
//! convention:
//!
//! | here | reference | meaning |
//! |---|---|---|
//! | `alpha` (α) | `alpha_in` | coefficient of the **noise z** in the network input |
//! | `gamma` (γ) | `gamma_in` | coefficient of the **data x** in the network input |
//! | `alpha_to` (α̂) | `alpha_to` | coefficient of z in the regression target |
//! | `gamma_to` (γ̂) | `gamma_to` | coefficient of x in the regression target |
//! | `delta` (Δ) | `dent` | α·γ̂ − γ·α̂, always computed from the four values |
//!
//! Recovery (exact inverses of the two linear maps):
//! x̂ = (α·F − α̂·x_t)/Δ and ẑ = (γ̂·x_t − γ·F)/Δ.
//!
//! # Native and internal time (the v2 flip)
//!
//! [`TransportKind::coefs`] gives the coefficients of the published transport in the
//! network's *native* time. A [`Transport`] works in *internal* time, where t = 0 is
//! always the data end: the direction is detected once (`integ_st` of the reference,
//! threshold 0.005), and for a transport whose native t = 0 is noise (of the six, only
//! ReLinear) the four functions are swapped (α↔γ, α̂↔γ̂), the network is called with
//! native time 1 − t and its output is negated ([`Transport::eval_internal`]). For
//! ReLinear the internal transport is then exactly Linear:
//! F_int(x, t) = −F_net(x, 1 − t). The trainer and the sampler both work in internal
//! time.
//!
//! # Precision
//!
//! The reference evaluates the coefficients on float32 tensors; [`Transport::coefs_f32`]
//! and every tensor helper here do the same float32 arithmetic in the same order. The
//! float64 versions ([`Transport::coefs`], [`Transport::alpha`], …) are for analysis and
//! tests. The quarter period is the literal 1.57, never π/2.

use std::fmt;
use std::str::FromStr;

use num_traits::Float;

use crate::denoiser::Denoiser;
use crate::error::{check_len, Error, Result};

/// The literal quarter period used by the reference (not π/2).
pub const QUARTER_PERIOD: f64 = 1.57;

/// |coefficient at t = 0| below which that end is taken to be pure (spec §1.1).
pub const DIRECTION_THRESHOLD: f64 = 0.005;

/// One of the six transports of the reference (`methodes/transports/*.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// α = t, γ = 1 − t, α̂ = 1, γ̂ = −1 (rectified flow, SiT/REPA convention; t = 0 data).
    Linear,
    /// α = 1 − t, γ = t, α̂ = −1, γ̂ = 1 (LightningDiT/DDT convention; t = 0 noise).
    ReLinear,
    /// α = sin(1.57t), γ = cos(1.57t), α̂ = cos(1.57t), γ̂ = −sin(1.57t) (sCM TrigFlow).
    TrigFlow,
    /// α = sin(1.57t), γ = cos(1.57t), α̂ = 1, γ̂ = −1.
    TrigLinear,
    /// α = sin(1.57t), γ = 1 − t, α̂ = 1, γ̂ = −1 − e^(−5t) (an arbitrary target).
    Random,
    /// EDM preconditioning with σ_data = ½, σ(t) = exp(4·(2.68t − 1.59)).
    Edm,
}

impl TransportKind {
    /// All six transports, in the reference's registry order.
    pub const ALL: [TransportKind; 6] = [
        TransportKind::Edm,
        TransportKind::Linear,
        TransportKind::Random,
        TransportKind::ReLinear,
        TransportKind::TrigFlow,
        TransportKind::TrigLinear,
    ];

    /// The reference's name ("Linear", "ReLinear", "TrigFlow", "TrigLinear", "Random", "EDM").
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Linear => "Linear",
            TransportKind::ReLinear => "ReLinear",
            TransportKind::TrigFlow => "TrigFlow",
            TransportKind::TrigLinear => "TrigLinear",
            TransportKind::Random => "Random",
            TransportKind::Edm => "EDM",
        }
    }

    /// The published coefficients at native time `t`, in float64.
    pub fn coefs(self, t: f64) -> Coefs<f64> {
        native_coefs(self, t)
    }

    /// The published coefficients at native time `t`, computed in float32 as the
    /// reference does on float32 tensors.
    pub fn coefs_f32(self, t: f32) -> Coefs<f32> {
        native_coefs(self, t)
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TransportKind {
    type Err = Error;

    /// Parses a reference name, case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        TransportKind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
            Error::invalid(format!(
                "unknown transport {s:?}; expected one of Linear, ReLinear, TrigFlow, TrigLinear, Random, EDM"
            ))
        })
    }
}

/// The four transport functions and their determinant at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefs<T> {
    /// α: coefficient of the noise z in x_t.
    pub alpha: T,
    /// γ: coefficient of the data x in x_t.
    pub gamma: T,
    /// α̂: coefficient of z in the target F*.
    pub alpha_to: T,
    /// γ̂: coefficient of x in the target F*.
    pub gamma_to: T,
    /// Δ = α·γ̂ − γ·α̂, computed from the four values above (never a constant).
    pub delta: T,
}

impl<T: Float> Coefs<T> {
    /// Builds the coefficients from the four functions' values; Δ is computed as the
    /// reference does: `alpha_in * gamma_to - gamma_in * alpha_to`.
    pub fn from_functions(alpha: T, gamma: T, alpha_to: T, gamma_to: T) -> Self {
        let delta = alpha * gamma_to - gamma * alpha_to;
        Coefs {
            alpha,
            gamma,
            alpha_to,
            gamma_to,
            delta,
        }
    }

    /// The v2 flip: α↔γ and α̂↔γ̂ swapped, Δ recomputed from the swapped values.
    pub fn swapped(self) -> Self {
        Coefs::from_functions(self.gamma, self.alpha, self.gamma_to, self.alpha_to)
    }

    /// Network input x_t = α·z + γ·x for one element.
    pub fn interpolate(&self, z: T, x: T) -> T {
        z * self.alpha + x * self.gamma
    }

    /// Regression target F* = α̂·z + γ̂·x for one element.
    pub fn target(&self, z: T, x: T) -> T {
        z * self.alpha_to + x * self.gamma_to
    }

    /// Data estimate x̂ = (α·F − α̂·x_t)/Δ for one element.
    pub fn recover_x(&self, f: T, x_t: T) -> T {
        (f * self.alpha - x_t * self.alpha_to) / self.delta
    }

    /// Noise estimate ẑ = (γ̂·x_t − γ·F)/Δ for one element.
    pub fn recover_z(&self, f: T, x_t: T) -> T {
        (x_t * self.gamma_to - f * self.gamma) / self.delta
    }
}

/// A float64 constant in the working precision (exact for f64, rounded for f32, as a
/// Python scalar is cast to a float32 tensor's dtype).
fn lit<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// The published transport functions at native time `t`, in the precision `T`.
fn native_coefs<T: Float>(kind: TransportKind, t: T) -> Coefs<T> {
    let one = T::one();
    match kind {
        TransportKind::Linear => Coefs::from_functions(t, one - t, one, -one),
        TransportKind::ReLinear => Coefs::from_functions(one - t, t, -one, one),
        TransportKind::TrigFlow => {
            let w = t * lit::<T>(QUARTER_PERIOD);
            Coefs::from_functions(w.sin(), w.cos(), w.cos(), -w.sin())
        }
        TransportKind::TrigLinear => {
            let w = t * lit::<T>(QUARTER_PERIOD);
            Coefs::from_functions(w.sin(), w.cos(), one, -one)
        }
        TransportKind::Random => {
            let w = t * lit::<T>(QUARTER_PERIOD);
            Coefs::from_functions(w.sin(), one - t, one, -one - (lit::<T>(-5.0) * t).exp())
        }
        TransportKind::Edm => {
            let sigma = (lit::<T>(4.0) * (lit::<T>(2.68) * t - lit::<T>(1.59))).exp();
            let norm = (sigma * sigma + lit::<T>(0.25)).sqrt();
            Coefs::from_functions(sigma / norm, one / norm, lit::<T>(-0.5) / norm, lit::<T>(2.0) * sigma / norm)
        }
    }
}

/// Which end of native time is data (the reference's `integ_st`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Native t = 0 is data; integrate 1 → 0 (`integ_st = 1`). Internal time = native time.
    DataAtZero,
    /// Native t = 0 is noise; integrate 0 → 1 (`integ_st = 0`). v2 flips time internally.
    NoiseAtZero,
}

/// Detects the direction from the native coefficients at t = 0 (spec §1.1): |γ(0)| <
/// 0.005 means t = 0 is noise; otherwise |α(0)| < 0.005 means t = 0 is data; otherwise
/// the transport has no pure endpoint at t = 0 and is rejected.
pub fn detect_direction(alpha_at_0: f64, gamma_at_0: f64) -> Result<Direction> {
    if gamma_at_0.abs() < DIRECTION_THRESHOLD {
        Ok(Direction::NoiseAtZero)
    } else if alpha_at_0.abs() < DIRECTION_THRESHOLD {
        Ok(Direction::DataAtZero)
    } else {
        Err(Error::invalid(format!(
            "transport has neither a noise nor a data end at t = 0 (alpha(0) = {alpha_at_0}, gamma(0) = {gamma_at_0})"
        )))
    }
}

/// A transport in internal time (t = 0 is data), with the v2 flip applied where needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    kind: TransportKind,
    direction: Direction,
}

impl Transport {
    /// Builds the transport and detects its direction.
    pub fn new(kind: TransportKind) -> Result<Self> {
        let at_zero = kind.coefs(0.0);
        let direction = detect_direction(at_zero.alpha, at_zero.gamma)?;
        Ok(Transport { kind, direction })
    }

    /// The published transport.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// Which end of native time is data.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether the v2 flip is active (native t = 0 is noise).
    pub fn is_flipped(&self) -> bool {
        self.direction == Direction::NoiseAtZero
    }

    /// The native time at which the network is called for internal time `t`
    /// (`1 - t` in float32 when flipped, else `t`).
    pub fn native_time(&self, t: f32) -> f32 {
        if self.is_flipped() {
            1.0 - t
        } else {
            t
        }
    }

    /// Internal coefficients at internal time `t`, in float64.
    pub fn coefs(&self, t: f64) -> Coefs<f64> {
        let native = self.kind.coefs(t);
        if self.is_flipped() {
            native.swapped()
        } else {
            native
        }
    }

    /// Internal coefficients at internal time `t`, computed in float32 (as the reference
    /// evaluates them on float32 tensors).
    pub fn coefs_f32(&self, t: f32) -> Coefs<f32> {
        let native = self.kind.coefs_f32(t);
        if self.is_flipped() {
            native.swapped()
        } else {
            native
        }
    }

    /// α(t), the noise coefficient, at internal time `t`.
    pub fn alpha(&self, t: f64) -> f64 {
        self.coefs(t).alpha
    }

    /// γ(t), the data coefficient, at internal time `t`.
    pub fn gamma(&self, t: f64) -> f64 {
        self.coefs(t).gamma
    }

    /// α̂(t), the target's noise coefficient, at internal time `t`.
    pub fn alpha_to(&self, t: f64) -> f64 {
        self.coefs(t).alpha_to
    }

    /// γ̂(t), the target's data coefficient, at internal time `t`.
    pub fn gamma_to(&self, t: f64) -> f64 {
        self.coefs(t).gamma_to
    }

    /// Δ(t) = α·γ̂ − γ·α̂ at internal time `t`.
    pub fn delta(&self, t: f64) -> f64 {
        self.coefs(t).delta
    }

    /// x_t = α(t)·z + γ(t)·x per sample, in float32.
    /// z, x, out: `[B, C, H, W]`; t: `[B]` internal times.
    pub fn interpolate(&self, z: &[f32], x: &[f32], t: &[f32], out: &mut [f32]) -> Result<()> {
        let per = per_sample("interpolate", t.len(), &[z.len(), x.len(), out.len()])?;
        for (b, &tb) in t.iter().enumerate() {
            let c = self.coefs_f32(tb);
            let r = b * per..(b + 1) * per;
            for ((o, &zi), &xi) in out[r.clone()].iter_mut().zip(&z[r.clone()]).zip(&x[r]) {
                *o = c.interpolate(zi, xi);
            }
        }
        Ok(())
    }

    /// F* = α̂(t)·z + γ̂(t)·x per sample, in float32.
    /// z, x, out: `[B, C, H, W]`; t: `[B]` internal times.
    pub fn target(&self, z: &[f32], x: &[f32], t: &[f32], out: &mut [f32]) -> Result<()> {
        let per = per_sample("target", t.len(), &[z.len(), x.len(), out.len()])?;
        for (b, &tb) in t.iter().enumerate() {
            let c = self.coefs_f32(tb);
            let r = b * per..(b + 1) * per;
            for ((o, &zi), &xi) in out[r.clone()].iter_mut().zip(&z[r.clone()]).zip(&x[r]) {
                *o = c.target(zi, xi);
            }
        }
        Ok(())
    }

    /// x̂ = (α·F − α̂·x_t)/Δ per sample, in float32.
    /// f, x_t, out: `[B, C, H, W]`; t: `[B]` internal times.
    pub fn recover_x(&self, f: &[f32], x_t: &[f32], t: &[f32], out: &mut [f32]) -> Result<()> {
        let per = per_sample("recover_x", t.len(), &[f.len(), x_t.len(), out.len()])?;
        for (b, &tb) in t.iter().enumerate() {
            let c = self.coefs_f32(tb);
            let r = b * per..(b + 1) * per;
            for ((o, &fi), &xi) in out[r.clone()].iter_mut().zip(&f[r.clone()]).zip(&x_t[r]) {
                *o = c.recover_x(fi, xi);
            }
        }
        Ok(())
    }

    /// ẑ = (γ̂·x_t − γ·F)/Δ per sample, in float32.
    /// f, x_t, out: `[B, C, H, W]`; t: `[B]` internal times.
    pub fn recover_z(&self, f: &[f32], x_t: &[f32], t: &[f32], out: &mut [f32]) -> Result<()> {
        let per = per_sample("recover_z", t.len(), &[f.len(), x_t.len(), out.len()])?;
        for (b, &tb) in t.iter().enumerate() {
            let c = self.coefs_f32(tb);
            let r = b * per..(b + 1) * per;
            for ((o, &fi), &xi) in out[r.clone()].iter_mut().zip(&f[r.clone()]).zip(&x_t[r]) {
                *o = c.recover_z(fi, xi);
            }
        }
        Ok(())
    }

    /// Both endpoints at once (the reference's `UCGMTS.forward` after the network call).
    /// f, x_t, x_hat, z_hat: `[B, C, H, W]`; t: `[B]` internal times.
    pub fn recover(&self, f: &[f32], x_t: &[f32], t: &[f32], x_hat: &mut [f32], z_hat: &mut [f32]) -> Result<()> {
        self.recover_x(f, x_t, t, x_hat)?;
        self.recover_z(f, x_t, t, z_hat)
    }

    /// Evaluates the network in internal time: F_int(x, t) = F_net(x, t), or with the v2
    /// flip F_int(x, t) = −F_net(x, 1 − t).
    /// x, out: `[B, C, H, W]`; t: `[B]` internal times; labels: `[B]` in 0..=K.
    pub fn eval_internal(&self, net: &mut dyn Denoiser, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        check_len("eval_internal labels", labels.len(), t.len())?;
        check_len("eval_internal out", out.len(), x.len())?;
        if !self.is_flipped() {
            return net.eval(x, t, labels, out);
        }
        let native: Vec<f32> = t.iter().map(|&ti| self.native_time(ti)).collect();
        net.eval(x, &native, labels, out)?;
        for v in out.iter_mut() {
            *v = -*v;
        }
        Ok(())
    }
}

/// Elements per sample of B equally sized samples; every length must be the same
/// non-zero multiple of B.
fn per_sample(what: &str, batch: usize, lens: &[usize]) -> Result<usize> {
    if batch == 0 {
        return Err(Error::invalid(format!("{what}: empty batch (t has length 0)")));
    }
    let total = lens[0];
    for &len in lens {
        check_len(what, len, total)?;
    }
    if !total.is_multiple_of(batch) {
        return Err(Error::invalid(format!("{what}: {total} elements do not split into {batch} samples")));
    }
    Ok(total / batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
        assert!((got - want).abs() <= tol, "{what}: got {got}, want {want} (tol {tol})");
    }

    /// Spec §1.2 boundary table, native float64, given to 10 decimals (tolerance: half a
    /// unit in the last printed digit).
    #[test]
    fn boundary_values_match_spec_table() {
        type Row = (TransportKind, f64, [f64; 5]);
        let rows: [Row; 18] = [
            (TransportKind::Linear, 0.0, [0.0, 1.0, 1.0, -1.0, -1.0]),
            (TransportKind::Linear, 0.5, [0.5, 0.5, 1.0, -1.0, -1.0]),
            (TransportKind::Linear, 1.0, [1.0, 0.0, 1.0, -1.0, -1.0]),
            (TransportKind::ReLinear, 0.0, [1.0, 0.0, -1.0, 1.0, 1.0]),
            (TransportKind::ReLinear, 0.5, [0.5, 0.5, -1.0, 1.0, 1.0]),
            (TransportKind::ReLinear, 1.0, [0.0, 1.0, -1.0, 1.0, 1.0]),
            (TransportKind::TrigFlow, 0.0, [0.0, 1.0, 1.0, -0.0, -1.0]),
            (TransportKind::TrigFlow, 0.5, [0.7068251811, 0.7073882692, 0.7073882692, -0.7068251811, -1.0]),
            (TransportKind::TrigFlow, 1.0, [0.9999996829, 0.0007963267, 0.0007963267, -0.9999996829, -1.0]),
            (TransportKind::TrigLinear, 0.5, [0.7068251811, 0.7073882692, 1.0, -1.0, -1.4142134503]),
            (TransportKind::TrigLinear, 1.0, [0.9999996829, 0.0007963267, 1.0, -1.0, -1.0007960096]),
            (TransportKind::Random, 0.0, [0.0, 1.0, 1.0, -2.0, -1.0]),
            (TransportKind::Random, 0.5, [0.7068251811, 0.5, 1.0, -1.0820849986, -1.2648449251]),
            (TransportKind::Random, 1.0, [0.9999996829, 0.0, 1.0, -1.0067379470, -1.0067376278]),
            (TransportKind::Edm, 0.0, [0.0034587127, 1.9999880373, -0.9999940186, 0.0069174255, 2.0]),
            (TransportKind::Edm, 0.5, [0.5926334075, 1.6109446226, -0.8054723113, 1.1852668151, 2.0]),
            (TransportKind::Edm, 1.0, [0.9999795897, 0.0127781268, -0.0063890634, 1.9999591795, 2.0]),
            (TransportKind::TrigLinear, 0.0, [0.0, 1.0, 1.0, -1.0, -1.0]),
        ];
        for (kind, t, want) in rows {
            let c = kind.coefs(t);
            let got = [c.alpha, c.gamma, c.alpha_to, c.gamma_to, c.delta];
            for (j, name) in ["alpha", "gamma", "alpha_to", "gamma_to", "delta"].iter().enumerate() {
                assert_close(got[j], want[j], 0.5e-10, &format!("{kind} t={t} {name}"));
            }
        }
    }

    #[test]
    fn delta_is_computed_and_constant_where_exact_math_says_so() {
        for i in 0..=200 {
            let t = i as f64 / 200.0;
            assert_close(TransportKind::Linear.coefs(t).delta, -1.0, 1e-15, "Linear");
            assert_close(TransportKind::ReLinear.coefs(t).delta, 1.0, 1e-15, "ReLinear");
            assert_close(TransportKind::TrigFlow.coefs(t).delta, -1.0, 4e-16, "TrigFlow");
            assert_close(TransportKind::Edm.coefs(t).delta, 2.0, 4e-15, "EDM");
            let tf = t as f32;
            assert!((TransportKind::TrigFlow.coefs_f32(tf).delta + 1.0).abs() <= 4.0 * f32::EPSILON);
        }
        // Δ of TrigFlow is not the constant −1 bit for bit: it is computed.
        let not_exact = (0..=200).any(|i| TransportKind::TrigFlow.coefs(i as f64 / 200.0).delta != -1.0);
        assert!(not_exact, "TrigFlow's delta must be computed from sin and cos, not hard-coded");
    }

    #[test]
    fn direction_detection() {
        for kind in TransportKind::ALL {
            let want = if kind == TransportKind::ReLinear {
                Direction::NoiseAtZero
            } else {
                Direction::DataAtZero
            };
            assert_eq!(Transport::new(kind).unwrap().direction(), want, "{kind}");
        }
        assert!(matches!(detect_direction(0.5, 0.5), Err(Error::InvalidArgument(_))));
        // EDM's α(0) = 3.46e-3 is below the threshold.
        assert_eq!(detect_direction(0.0034587127, 1.9999880373).unwrap(), Direction::DataAtZero);
        assert_eq!(detect_direction(0.006, 1.0).ok(), None);
    }

    #[test]
    fn parse_names_case_insensitively() {
        for kind in TransportKind::ALL {
            assert_eq!(kind.name().parse::<TransportKind>().unwrap(), kind);
            assert_eq!(kind.name().to_uppercase().parse::<TransportKind>().unwrap(), kind);
            assert_eq!(kind.name().to_lowercase().parse::<TransportKind>().unwrap(), kind);
        }
        assert_eq!("edm".parse::<TransportKind>().unwrap(), TransportKind::Edm);
        assert!(matches!("Cosine".parse::<TransportKind>(), Err(Error::InvalidArgument(_))));
        assert!(matches!("".parse::<TransportKind>(), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn relinear_internal_transport_is_linear_bit_for_bit() {
        let relin = Transport::new(TransportKind::ReLinear).unwrap();
        let lin = Transport::new(TransportKind::Linear).unwrap();
        assert!(relin.is_flipped() && !lin.is_flipped());
        for i in 0..=1000 {
            let t = i as f32 / 1000.0;
            assert_eq!(relin.coefs_f32(t), lin.coefs_f32(t));
            assert_eq!(relin.coefs(t as f64), lin.coefs(t as f64));
            assert_eq!(relin.native_time(t), 1.0 - t);
        }
    }

    #[test]
    fn uses_literal_1_57() {
        let c = TransportKind::TrigFlow.coefs(1.0);
        assert_eq!(c.alpha, 1.57f64.sin());
        assert_eq!(c.gamma, 1.57f64.cos());
        assert!(c.gamma > 7.9e-4, "cos(1.57) = 7.96e-4, cos(pi/2) would be ~6e-17");
        let c32 = TransportKind::TrigFlow.coefs_f32(0.5);
        assert_eq!(c32.alpha, (0.5f32 * 1.57f32).sin());
    }

    struct Recorder {
        seen_t: Vec<f32>,
    }

    impl Denoiser for Recorder {
        fn sample_shape(&self) -> [usize; 3] {
            [1, 1, 2]
        }
        fn num_classes(&self) -> usize {
            3
        }
        fn eval(&mut self, x: &[f32], t: &[f32], _labels: &[usize], out: &mut [f32]) -> Result<()> {
            self.seen_t.extend_from_slice(t);
            for (o, &xi) in out.iter_mut().zip(x) {
                *o = 2.0 * xi + 1.0;
            }
            Ok(())
        }
    }

    #[test]
    fn eval_internal_flips_time_and_sign_only_for_relinear() {
        let x = [0.5f32, -1.0, 2.0, 0.25];
        let t = [0.25f32, 0.75];
        let labels = [0usize, 3];
        for kind in [TransportKind::ReLinear, TransportKind::Linear] {
            let tr = Transport::new(kind).unwrap();
            let mut net = Recorder { seen_t: vec![] };
            let mut out = [0f32; 4];
            tr.eval_internal(&mut net, &x, &t, &labels, &mut out).unwrap();
            let sign = if kind == TransportKind::ReLinear { -1.0 } else { 1.0 };
            for (o, &xi) in out.iter().zip(&x) {
                assert_eq!(*o, sign * (2.0 * xi + 1.0));
            }
            let want_t: Vec<f32> = t.iter().map(|&ti| if sign < 0.0 { 1.0 - ti } else { ti }).collect();
            assert_eq!(net.seen_t, want_t);
        }
    }

    #[test]
    fn tensor_helpers_validate_lengths() {
        let tr = Transport::new(TransportKind::Linear).unwrap();
        let mut out = [0f32; 4];
        assert!(matches!(
            tr.interpolate(&[0.0; 4], &[0.0; 3], &[0.5; 2], &mut out),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(tr.target(&[0.0; 4], &[0.0; 4], &[0.5; 3], &mut out), Err(Error::InvalidArgument(_))));
        assert!(matches!(tr.recover_x(&[0.0; 4], &[0.0; 4], &[], &mut out), Err(Error::InvalidArgument(_))));
        assert!(tr.recover_z(&[0.0; 4], &[0.0; 4], &[0.5; 2], &mut out).is_ok());
    }
}
