//! UCGM-S, the unified sampler (spec §3; the reference's v2 `sampling_loop`).
//!
//! One loop covers DDIM-like deterministic sampling (ρ = 0), consistency-model multistep
//! sampling (ρ = 1), anything in between, an adaptive "SDE" ρ, extrapolation of the
//! predictions (κ) and a Heun-like second-order correction. Everything runs in the
//! transport's internal time (t = 0 is data, see [`crate::transport`]); the network is
//! called in its native time.
//!
//! Behaviour reproduced from the reference, quirks included:
//! * Time grid: linspace in float64 (torch semantics), cast to float32, Kumaraswamy warp
//!   in float32, τ = 1 − K(u), plus a sentinel τ_n = 0 ([`time_grid`]).
//! * State x in float64; the network sees float32 x and t; x̂ and ẑ are computed in
//!   float32 from float32 (x, F, t) and then promoted; the coefficients of the update are
//!   evaluated on float32 t and promoted.
//! * Extrapolation starts at the third evaluation and uses the previous step's *raw*
//!   predictions; it changes only the next input, never a returned x̂.
//! * The returned sample is the last raw x̂ (at τ_{n−1}); the final update towards the
//!   sentinel is computed and discarded, but with ρ > 0 it still consumes one noise
//!   tensor.
//! * Adaptive ρ (`Stochasticity::Sde`) is computed at the first step and then frozen.
//! * Heun's correction divides by γ(t_cur) and ignores ρ.
//! * Classifier-free guidance in F space, on the network's native time interval
//!   (inclusive), with a doubled batch [x; x] and labels [y; null].
//!
//! One deliberate difference: with `rfba_gap_steps[1] == 0` and order 2 the reference
//! also runs the Heun correction of the last step (towards the sentinel), whose result
//! is discarded; this engine skips that evaluation, which changes no output and keeps
//! NFE = 2n − 1 as the spec's accounting states.

use std::str::FromStr;

use crate::control::RunControl;
use crate::denoiser::Denoiser;
use crate::error::{check_finite, check_len, Error, Result};
use crate::rng::Rng;
use crate::transport::{Transport, TransportKind};

/// How much fresh noise replaces the predicted noise in each update (ρ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stochasticity {
    /// A fixed ρ ∈ [0, 1]: 0 = deterministic (DDIM-like), 1 = full re-noising
    /// (consistency-model multistep sampling).
    Fixed(f64),
    /// The reference's `"SDE"` (v1: `"Auto"`): ρ = clamp(|t_n − t_c|·2α(t_c)/α(t_n)², 0, 1)
    /// computed in float32 at the **first** step and reused unchanged for every later step
    /// (the reference's frozen-value quirk).
    Sde,
}

impl FromStr for Stochasticity {
    type Err = Error;

    /// Parses `"SDE"` (case-insensitive) or a number in [0, 1].
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("sde") {
            return Ok(Stochasticity::Sde);
        }
        let rho: f64 = s
            .parse()
            .map_err(|_| Error::invalid(format!("stochasticity {s:?}: expected \"SDE\" or a number in [0, 1]")))?;
        let parsed = Stochasticity::Fixed(rho);
        parsed.validate()?;
        Ok(parsed)
    }
}

impl Stochasticity {
    fn validate(&self) -> Result<()> {
        match *self {
            Stochasticity::Fixed(rho) if !(rho.is_finite() && (0.0..=1.0).contains(&rho)) => {
                Err(Error::invalid(format!("stochasticity must be in [0, 1], got {rho}")))
            }
            _ => Ok(()),
        }
    }
}

/// UCGM-S settings. [`Default`] gives the v2 reference's defaults: Linear transport, 35
/// steps, order 1, ρ = 0, κ = 0, `time_dist_ctrl` [1, 1, 1] (no warp), `rfba_gap_steps`
/// [0, 0] (v1 defaulted to [0.001, 0.001]; the shipped configs set it explicitly), no
/// guidance, no trajectory.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Transport matching the network's output parameterisation (spec §1.4).
    pub transport: TransportKind,
    /// Requested steps N (`sampling_steps`); for order 2 the grid has ⌊(N+1)/2⌋ points.
    pub steps: usize,
    /// 1 = Euler/DDIM-like, 2 = Heun-like (`sampling_order`).
    pub order: usize,
    /// ρ (`stochast_ratio`).
    pub stochasticity: Stochasticity,
    /// κ ≥ 0 (`extrapol_ratio`); multi-step models use 0.2–0.6.
    pub extrapolation: f64,
    /// Kumaraswamy warp [a, b, c] of the grid (`time_dist_ctrl`); [1.17, 0.8, 1.1] is the
    /// recommended setting, [1, 1, 1] is the identity.
    pub time_dist_ctrl: [f64; 3],
    /// [g₀, g₁] (`rfba_gap_steps`): trims the grid at the noise end (g₀) and the data end
    /// (g₁); g₁ = 0 uses linspace(g₀, 1, n + 1) without its last point.
    pub rfba_gap_steps: [f64; 2],
    /// Classifier-free guidance scale s; guidance is used only when s > 0 (as the
    /// reference: s = 1 still runs the doubled batch).
    pub cfg_scale: f64,
    /// Native-time interval [lo, hi] (inclusive) where guidance is applied.
    pub cfg_interval: [f64; 2],
    /// Guidance acts on the first this many channels only; the others keep the
    /// conditional prediction. `None` (the general rule): every channel. `Some(3)` is
    /// LightningDiT's `forward_with_cfg` quirk (`out[:, :3]`), which its released FIDs
    /// were measured with; the LightningDiT configurations turn it on
    /// ([`crate::Arch::cfg_channels`]).
    pub cfg_channels: Option<usize>,
    /// Also return the whole trajectory `[n + 1, B, C, H, W]` (entry 0 = z).
    pub return_trajectory: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            transport: TransportKind::Linear,
            steps: 35,
            order: 1,
            stochasticity: Stochasticity::Fixed(0.0),
            extrapolation: 0.0,
            time_dist_ctrl: [1.0, 1.0, 1.0],
            rfba_gap_steps: [0.0, 0.0],
            cfg_scale: 0.0,
            cfg_interval: [0.0, 1.0],
            cfg_channels: None,
            return_trajectory: false,
        }
    }
}

impl SamplerConfig {
    /// Checks every setting; errors are [`Error::InvalidArgument`].
    pub fn validate(&self) -> Result<()> {
        crate::limits::check_steps(self.steps)?;
        if self.order != 1 && self.order != 2 {
            return Err(Error::invalid(format!("sampling order must be 1 or 2, got {}", self.order)));
        }
        self.stochasticity.validate()?;
        if !(self.extrapolation.is_finite() && self.extrapolation >= 0.0) {
            return Err(Error::invalid(format!(
                "extrapolation ratio must be finite and >= 0, got {}",
                self.extrapolation
            )));
        }
        if let Some(v) = self.time_dist_ctrl.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(Error::invalid(format!(
                "time_dist_ctrl values must be finite and > 0, got {v} in {:?}",
                self.time_dist_ctrl
            )));
        }
        let [g0, g1] = self.rfba_gap_steps;
        let gap_ok = |g: f64| g.is_finite() && (0.0..1.0).contains(&g);
        if !(gap_ok(g0) && gap_ok(g1) && g0 <= 1.0 - g1) {
            return Err(Error::invalid(format!(
                "rfba_gap_steps must satisfy 0 <= g0, 0 <= g1 < 1 and g0 <= 1 - g1, got {:?}",
                self.rfba_gap_steps
            )));
        }
        if !(self.cfg_scale.is_finite() && self.cfg_scale >= 0.0) {
            return Err(Error::invalid(format!("cfg scale must be finite and >= 0, got {}", self.cfg_scale)));
        }
        let [lo, hi] = self.cfg_interval;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::invalid(format!(
                "cfg interval must be finite with lo <= hi, got {:?}",
                self.cfg_interval
            )));
        }
        Ok(())
    }

    /// Number of grid points n: N for order 1, ⌊(N + 1)/2⌋ for order 2.
    pub fn grid_points(&self) -> usize {
        if self.order == 2 {
            self.steps.div_ceil(2)
        } else {
            self.steps
        }
    }
}

/// `torch.linspace(start, end, steps, dtype=float64)`: the first half counts up from
/// `start`, the second half down from `end` (so both ends are exact); one point gives
/// `[start]`.
pub fn linspace_f64(start: f64, end: f64, steps: usize) -> Vec<f64> {
    if steps <= 1 {
        return vec![start; steps];
    }
    let step = (end - start) / (steps - 1) as f64;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                start + step * i as f64
            } else {
                end - step * (steps - i - 1) as f64
            }
        })
        .collect()
}

/// The Kumaraswamy warp K(u) = (1 − (1 − u^a)^b)^c in float32, with the exponents cast to
/// float32 as torch does for a float32 tensor.
pub fn kumaraswamy_f32(u: f32, [a, b, c]: [f64; 3]) -> f32 {
    (1.0 - (1.0 - u.powf(a as f32)).powf(b as f32)).powf(c as f32)
}

/// The sampling grid (spec §3.2).
#[derive(Clone, Debug, PartialEq)]
pub struct TimeGrid {
    /// Internal times τ_0 … τ_{n−1} and the sentinel τ_n = 0: `[n + 1]`.
    pub internal: Vec<f32>,
    /// Native model times of the n first-stage evaluations: `[n]`.
    pub native: Vec<f32>,
}

impl TimeGrid {
    /// Number of steps n.
    pub fn steps(&self) -> usize {
        self.native.len()
    }
}

/// Builds the grid: u from linspace (float64, cast to float32), τ = 1 − K(u) in float32,
/// sentinel 0 appended; native times are 1 − τ for flipped transports (ReLinear).
pub fn time_grid(cfg: &SamplerConfig) -> Result<TimeGrid> {
    cfg.validate()?;
    let transport = Transport::new(cfg.transport)?;
    let n = cfg.grid_points();
    let [g0, g1] = cfg.rfba_gap_steps;
    let u = if g1 == 0.0 {
        let mut u = linspace_f64(g0, 1.0, n + 1);
        u.pop();
        u
    } else {
        linspace_f64(g0, 1.0 - g1, n)
    };
    let mut internal: Vec<f32> = u.iter().map(|&ui| 1.0 - kumaraswamy_f32(ui as f32, cfg.time_dist_ctrl)).collect();
    let native = internal.iter().map(|&t| transport.native_time(t)).collect();
    internal.push(0.0);
    Ok(TimeGrid { internal, native })
}

/// Where the per-step noise ε of a stochastic update (ρ > 0) comes from.
pub struct NoiseSource<'a> {
    kind: NoiseKind<'a>,
    tensors_drawn: usize,
}

enum NoiseKind<'a> {
    Rng(&'a mut Rng),
    Provided { noise: &'a [f32], offset: usize },
}

impl<'a> NoiseSource<'a> {
    /// Draws N(0, 1) float32 noise from the engine generator: one tensor of B·C·H·W values
    /// per step with ρ > 0 (the reference's CPU-generator `randn` per step); nothing is
    /// drawn when ρ = 0.
    pub fn rng(rng: &'a mut Rng) -> Self {
        NoiseSource {
            kind: NoiseKind::Rng(rng),
            tensors_drawn: 0,
        }
    }

    /// Caller-provided noise, `[S, B, C, H, W]`: step draws consume it tensor by tensor; a
    /// draw beyond its end fails with [`Error::InvalidArgument`].
    pub fn provided(noise: &'a [f32]) -> Self {
        NoiseSource {
            kind: NoiseKind::Provided { noise, offset: 0 },
            tensors_drawn: 0,
        }
    }

    /// How many noise tensors have been drawn so far.
    pub fn tensors_drawn(&self) -> usize {
        self.tensors_drawn
    }

    /// Fills `out` (`[B, C, H, W]`) with the next noise tensor.
    pub fn fill(&mut self, out: &mut [f32]) -> Result<()> {
        match &mut self.kind {
            NoiseKind::Rng(rng) => rng.fill_normal(out),
            NoiseKind::Provided { noise, offset } => {
                let end = offset.checked_add(out.len()).filter(|&e| e <= noise.len()).ok_or_else(|| {
                    Error::invalid(format!(
                        "provided noise exhausted: tensor {} needs {} values, {} of {} left",
                        self.tensors_drawn + 1,
                        out.len(),
                        noise.len() - *offset,
                        noise.len()
                    ))
                })?;
                out.copy_from_slice(&noise[*offset..end]);
                check_finite("provided noise", out)?;
                *offset = end;
            }
        }
        self.tensors_drawn += 1;
        Ok(())
    }
}

/// What [`sample`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOutput {
    /// The sample: the last raw x̂ (at τ_{n−1}). `[B, C, H, W]`
    pub sample: Vec<f32>,
    /// With `return_trajectory`: `[n + 1, B, C, H, W]`, entry 0 = z, entry i + 1 = raw x̂ of
    /// step i (the reference's return value).
    pub trajectory: Option<Vec<f32>>,
    /// Network evaluations (function evaluations of F; a guided evaluation counts once,
    /// as the README's "40×2" notation does).
    pub nfe: usize,
    /// How many of those evaluations ran the doubled guidance batch.
    pub guided_evals: usize,
    /// Native model times of the n first-stage evaluations. `[n]`
    pub model_times: Vec<f32>,
}

/// Runs UCGM-S from the noise `z` (`[B, C, H, W]`) with class labels `labels` (`[B]`, each in
/// 0..=K, K = `net.num_classes()` being the null class). Reports progress and honours
/// cancellation after every step through `ctl`.
pub fn sample(
    net: &mut dyn Denoiser,
    z: &[f32],
    labels: &[usize],
    cfg: &SamplerConfig,
    noise: &mut NoiseSource<'_>,
    ctl: &mut RunControl<'_>,
) -> Result<SampleOutput> {
    cfg.validate()?;
    let [channels, height, width] = net.sample_shape();
    let batch = labels.len();
    if batch == 0 {
        return Err(Error::invalid("empty batch: no labels"));
    }
    let numel = [channels, height, width]
        .iter()
        .try_fold(batch, |acc, &d| acc.checked_mul(d))
        .filter(|&v| v > 0)
        .ok_or_else(|| Error::invalid(format!("bad sample shape {:?} for batch {batch}", net.sample_shape())))?;
    check_len("z", z.len(), numel)?;
    check_finite("z", z)?;
    let null_class = net.num_classes();
    if let Some((i, y)) = labels.iter().enumerate().find(|(_, &y)| y > null_class) {
        return Err(Error::invalid(format!("labels[{i}] = {y} is outside 0..={null_class}")));
    }
    let transport = Transport::new(cfg.transport)?;
    let grid = time_grid(cfg)?;
    let n = grid.steps();
    if cfg.order == 2 {
        // Heun's correction divides by γ(t_cur) (e.g. Linear at t = 1 with g₀ = 0); the
        // reference would silently produce inf/NaN.
        if let Some(&t) = grid.internal[..n - 1].iter().find(|&&t| transport.coefs_f32(t).gamma == 0.0) {
            return Err(Error::invalid(format!(
                "order-2 sampling divides by gamma(t) = 0 at internal time {t} ({}); use rfba_gap_steps[0] > 0",
                cfg.transport
            )));
        }
    }
    // Every buffer below is sized by the caller's batch: refuse what cannot fit before any
    // work (about 120 bytes per element: f64 state, f32 stages, the doubled guidance batch).
    crate::limits::check_bytes("sampling buffers", numel, 120)?;
    let mut trajectory = if cfg.return_trajectory {
        let len = (n + 1)
            .checked_mul(numel)
            .ok_or_else(|| Error::OutOfMemory("trajectory size overflows".into()))?;
        let mut tr = crate::limits::try_with_capacity("trajectory", len)?;
        tr.extend_from_slice(z);
        Some(tr)
    } else {
        None
    };
    ctl.check()?;

    let mut model = Network::new(net, cfg, numel);
    let mut stage = Stage::new(numel, batch);
    let kappa = cfg.extrapolation;
    let mut x: Vec<f64> = z.iter().map(|&v| v as f64).collect(); // [B, C, H, W]
    let mut x_next = crate::limits::try_vec::<f64>("sampler state", numel)?; // [B, C, H, W]
    let mut x_hat = crate::limits::try_vec::<f64>("sampler state", numel)?; // [B, C, H, W]
    let mut z_hat = crate::limits::try_vec::<f64>("sampler state", numel)?; // [B, C, H, W]
    let mut prev_raw = if kappa > 0.0 {
        (
            crate::limits::try_vec::<f64>("sampler state", numel)?,
            crate::limits::try_vec::<f64>("sampler state", numel)?,
        )
    } else {
        (vec![], vec![])
    };
    let mut eps: Vec<f32> = vec![]; // [B, C, H, W], allocated at the first draw
    let mut sde_rho: Option<f32> = None;
    let mut sample = vec![0f32; numel];

    for i in 0..n {
        let (t_cur, t_next) = (grid.internal[i], grid.internal[i + 1]);

        // 1. First-stage prediction, returned raw.
        stage.evaluate(&transport, &mut model, &x, t_cur, labels)?;
        if let Some(tr) = trajectory.as_mut() {
            tr.extend_from_slice(&stage.x_hat);
        }
        if i + 1 == n {
            sample.copy_from_slice(&stage.x_hat);
        }
        promote(&stage.x_hat, &mut x_hat);
        promote(&stage.z_hat, &mut z_hat);

        // 2. Extrapolation from the third evaluation on, against the previous raw values.
        if kappa > 0.0 {
            let (prev_x, prev_z) = &mut prev_raw;
            for (cur, prev) in [(&mut x_hat, prev_x), (&mut z_hat, prev_z)] {
                for (c, p) in cur.iter_mut().zip(prev.iter_mut()) {
                    let raw = *c;
                    if i >= 2 {
                        *c = raw + kappa * (raw - *p);
                    }
                    *p = raw;
                }
            }
        }

        // 3. Update towards t_next, mixing predicted and fresh noise.
        let mix = match cfg.stochasticity {
            Stochasticity::Fixed(rho) => NoiseMix::from_f64(rho),
            Stochasticity::Sde => NoiseMix::from_f32(*sde_rho.get_or_insert_with(|| adaptive_rho(&transport, t_cur, t_next))),
        };
        if mix.draws {
            eps.resize(numel, 0.0);
            noise.fill(&mut eps)?;
        }
        let next = transport.coefs_f32(t_next);
        let (gamma_next, alpha_next) = (next.gamma as f64, next.alpha as f64);
        for (k, xn) in x_next.iter_mut().enumerate() {
            let fresh = if mix.draws { eps[k] as f64 * mix.noise } else { 0.0 };
            *xn = gamma_next * x_hat[k] + alpha_next * (z_hat[k] * mix.keep + fresh);
        }

        // 4. Heun correction (not on the last step): DDIM map with averaged noise estimates.
        if cfg.order == 2 && i + 1 < n {
            stage.evaluate(&transport, &mut model, &x_next, t_next, labels)?;
            let cur = transport.coefs_f32(t_cur);
            // A 0-d float32 expression in the reference: computed in float32, then promoted.
            let noise_coef = (next.alpha - next.gamma * cur.alpha / cur.gamma) as f64;
            let gamma_cur = cur.gamma as f64;
            for (k, xn) in x_next.iter_mut().enumerate() {
                *xn = x[k] * gamma_next / gamma_cur + noise_coef * (0.5 * z_hat[k] + 0.5 * stage.z_hat[k] as f64);
            }
        }

        std::mem::swap(&mut x, &mut x_next);
        ctl.step(i + 1, n)?;
    }

    Ok(SampleOutput {
        sample,
        trajectory,
        nfe: model.nfe,
        guided_evals: model.guided_evals,
        model_times: grid.native,
    })
}

/// Widens float32 values into float64.
fn promote(src: &[f32], dst: &mut [f64]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s as f64;
    }
}

/// The adaptive ρ of the first step, in float32 (spec §3.6):
/// (√|t_n − t_c|·√(2α(t_c))/α(t_n))², clamped to [0, 1] (NaN stays NaN, as torch.clamp).
fn adaptive_rho(transport: &Transport, t_cur: f32, t_next: f32) -> f32 {
    let alpha_cur = transport.coefs_f32(t_cur).alpha;
    let alpha_next = transport.coefs_f32(t_next).alpha;
    let root = (t_next - t_cur).abs().sqrt() * (2.0 * alpha_cur).sqrt() / alpha_next;
    (root * root).clamp(0.0, 1.0)
}

/// √(1 − ρ) and √ρ as used in the update, and whether noise is drawn at all.
struct NoiseMix {
    keep: f64,
    noise: f64,
    draws: bool,
}

impl NoiseMix {
    /// A fixed ρ is a Python float in the reference: float64 arithmetic.
    fn from_f64(rho: f64) -> Self {
        NoiseMix {
            keep: (1.0 - rho).sqrt(),
            noise: rho.sqrt(),
            draws: rho > 0.0,
        }
    }

    /// The adaptive ρ is a float32 tensor in the reference: float32 arithmetic.
    fn from_f32(rho: f32) -> Self {
        NoiseMix {
            keep: (1.0 - rho).sqrt() as f64,
            noise: rho.sqrt() as f64,
            draws: rho > 0.0,
        }
    }
}

/// Float32 buffers of one network evaluation and its recovered endpoints.
struct Stage {
    x: Vec<f32>,     // [B, C, H, W]
    t: Vec<f32>,     // [B]
    f: Vec<f32>,     // [B, C, H, W]
    x_hat: Vec<f32>, // [B, C, H, W]
    z_hat: Vec<f32>, // [B, C, H, W]
}

impl Stage {
    fn new(numel: usize, batch: usize) -> Self {
        Stage {
            x: vec![0.0; numel],
            t: vec![0.0; batch],
            f: vec![0.0; numel],
            x_hat: vec![0.0; numel],
            z_hat: vec![0.0; numel],
        }
    }

    /// The reference's `forward`: F at (float32(x), t) in internal time, then x̂ and ẑ in
    /// float32. x: `[B, C, H, W]` float64 state.
    fn evaluate(&mut self, transport: &Transport, model: &mut Network<'_>, x: &[f64], t: f32, labels: &[usize]) -> Result<()> {
        for (d, &s) in self.x.iter_mut().zip(x) {
            *d = s as f32;
        }
        self.t.fill(t);
        transport.eval_internal(model, &self.x, &self.t, labels, &mut self.f)?;
        if let Some(k) = self.f.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("network output at internal time {t}: F[{k}] = {}", self.f[k])));
        }
        transport.recover(&self.f, &self.x, &self.t, &mut self.x_hat, &mut self.z_hat)
    }
}

/// out = F_u + s·(F_c − F_u) on the first `channels` channels of every image (all when
/// None), F_c elsewhere. cond, uncond, out: `[B, C, H, W]`; shape = [C, H, W].
fn guide(cond: &[f32], uncond: &[f32], scale: f32, channels: Option<usize>, shape: [usize; 3], out: &mut [f32]) {
    let [c, h, w] = shape;
    let plane = h * w;
    let guided = channels.map_or(c, |k| k.min(c)) * plane;
    for (k, ((o, &fc), &fu)) in out.iter_mut().zip(cond).zip(uncond).enumerate() {
        *o = if k % (c * plane) < guided { fu + scale * (fc - fu) } else { fc };
    }
}

/// The reference's `forward_with_cfg` on a stacked batch, as a network: the caller
/// passes x = [x₁; x₂] (2B images) with labels [y; null] and samples without the
/// sampler's own guidance (`cfg_scale` 0). When the first native time lies in the
/// interval (inclusive), the network runs on [x₁; x₁] with all 2B labels and the output
/// is [G, F_c(rest); G, F_u(rest)] (G = F_u + s·(F_c − F_u) on the guided channels);
/// otherwise it runs on x₁ with the first B labels and returns [F_c; F_c]. x₂ is never
/// read: the reference's sampler evolves it, so whole reference trajectories
/// (`sampling_loop` on a CFG stack) are reproduced with this wrapper.
pub struct StackedGuidance<'a> {
    pub net: &'a mut dyn Denoiser,
    /// Guidance scale s.
    pub scale: f32,
    /// Native-time interval [lo, hi] (inclusive).
    pub interval: [f32; 2],
    /// Guided channels per image (None: all; LightningDiT: Some(3)).
    pub channels: Option<usize>,
}

impl Denoiser for StackedGuidance<'_> {
    fn sample_shape(&self) -> [usize; 3] {
        self.net.sample_shape()
    }
    fn num_classes(&self) -> usize {
        self.net.num_classes()
    }
    /// x, out: `[2B, C, H, W]`; t, labels: `[2B]`.
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        if !t.len().is_multiple_of(2) || t.is_empty() {
            return Err(Error::invalid(format!("a guidance stack needs an even, non-zero batch, got {}", t.len())));
        }
        let (b, half) = (t.len() / 2, x.len() / 2);
        let t0 = t[0];
        if self.interval[0] <= t0 && t0 <= self.interval[1] {
            let mut xx = Vec::with_capacity(x.len());
            xx.extend_from_slice(&x[..half]);
            xx.extend_from_slice(&x[..half]);
            let mut f = vec![0f32; x.len()];
            self.net.eval(&xx, t, labels, &mut f)?;
            let (cond, uncond) = f.split_at(half);
            let shape = self.net.sample_shape();
            let (o1, o2) = out.split_at_mut(half);
            guide(cond, uncond, self.scale, self.channels, shape, o1);
            guide(cond, uncond, self.scale, self.channels, shape, o2);
            // The second half keeps the unconditional values on the unguided channels.
            let [c, h, w] = shape;
            let guided = self.channels.map_or(c, |k| k.min(c)) * h * w;
            for (k, (o, &fu)) in o2.iter_mut().zip(uncond).enumerate() {
                if k % (c * h * w) >= guided {
                    *o = fu;
                }
            }
        } else {
            let (o1, o2) = out.split_at_mut(half);
            self.net.eval(&x[..half], &t[..b], &labels[..b], o1)?;
            o2.copy_from_slice(o1);
        }
        Ok(())
    }
}

/// The network as the sampler sees it: optional classifier-free guidance (the
/// reference's `forward_with_cfg`) and evaluation counters.
struct Network<'a> {
    net: &'a mut dyn Denoiser,
    guidance: Option<Guidance>,
    nfe: usize,
    guided_evals: usize,
}

/// Guidance settings and the doubled-batch buffers.
struct Guidance {
    scale: f32,
    interval: [f32; 2],
    /// Guided channels per image (None: all).
    channels: Option<usize>,
    x: Vec<f32>,        // [2B, C, H, W]
    t: Vec<f32>,        // [2B]
    labels: Vec<usize>, // [2B]
    f: Vec<f32>,        // [2B, C, H, W]
}

impl<'a> Network<'a> {
    fn new(net: &'a mut dyn Denoiser, cfg: &SamplerConfig, numel: usize) -> Self {
        let guidance = (cfg.cfg_scale > 0.0).then(|| Guidance {
            scale: cfg.cfg_scale as f32,
            interval: [cfg.cfg_interval[0] as f32, cfg.cfg_interval[1] as f32],
            channels: cfg.cfg_channels,
            x: vec![0.0; 2 * numel],
            t: vec![],
            labels: vec![],
            f: vec![0.0; 2 * numel],
        });
        Network {
            net,
            guidance,
            nfe: 0,
            guided_evals: 0,
        }
    }
}

impl Denoiser for Network<'_> {
    fn sample_shape(&self) -> [usize; 3] {
        self.net.sample_shape()
    }

    fn num_classes(&self) -> usize {
        self.net.num_classes()
    }

    /// x, out: `[B, C, H, W]`; t: `[B]` native times; labels: `[B]`.
    fn eval(&mut self, x: &[f32], t: &[f32], labels: &[usize], out: &mut [f32]) -> Result<()> {
        self.nfe += 1;
        let null_class = self.net.num_classes();
        let Some(g) = self.guidance.as_mut() else {
            return self.net.eval(x, t, labels, out);
        };
        // Tested on the first element in the network's native time, both ends inclusive,
        // compared in float32 (a float32 tensor against Python floats).
        let t0 = t.first().copied().unwrap_or(f32::NAN);
        if !(g.interval[0] <= t0 && t0 <= g.interval[1]) {
            return self.net.eval(x, t, labels, out);
        }
        self.guided_evals += 1;
        let numel = x.len();
        g.x[..numel].copy_from_slice(x);
        g.x[numel..].copy_from_slice(x);
        g.t.clear();
        g.t.extend_from_slice(t);
        g.t.extend_from_slice(t);
        g.labels.clear();
        g.labels.extend_from_slice(labels);
        g.labels.extend(std::iter::repeat_n(null_class, labels.len()));
        self.net.eval(&g.x, &g.t, &g.labels, &mut g.f)?;
        let (cond, uncond) = g.f.split_at(numel);
        guide(cond, uncond, g.scale, g.channels, self.net.sample_shape(), out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |got − want| ≤ half a unit in the last printed decimal of `want`.
    fn assert_printed(got: f32, want: f64, decimals: i32, what: &str) {
        let tol = 0.5 * 10f64.powi(-decimals);
        assert!((got as f64 - want).abs() <= tol, "{what}: got {got}, printed {want} (±{tol})");
    }

    fn grid_of(transport: TransportKind, steps: usize, order: usize, ctrl: [f64; 3], gaps: [f64; 2]) -> TimeGrid {
        let cfg = SamplerConfig {
            transport,
            steps,
            order,
            time_dist_ctrl: ctrl,
            rfba_gap_steps: gaps,
            ..SamplerConfig::default()
        };
        time_grid(&cfg).unwrap()
    }

    #[test]
    fn linspace_follows_torch() {
        assert_eq!(linspace_f64(0.0, 1.0, 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(linspace_f64(0.3, 0.9, 1), vec![0.3]);
        let v = linspace_f64(0.001, 0.999, 4);
        assert_eq!((v[0], v[3]), (0.001, 0.999), "both ends exact");
        assert_eq!(v[2], 0.999 - (0.999 - 0.001) / 3.0, "second half counts down from the end");
    }

    /// `x` moved by `k` float32 ulps (x > 0; zero and negative values are left alone).
    fn nudge(x: f32, k: i32) -> f32 {
        if k == 0 || x <= 0.0 || !x.is_finite() {
            x
        } else {
            f32::from_bits((x.to_bits() as i64 + k as i64) as u32)
        }
    }

    /// The range of τ = 1 − K(u) when each of K's float32 `pow` results may differ by one
    /// ulp: the reference's torch uses SLEEF's powf (1-ulp accuracy), this crate the
    /// platform's. An exponent of exactly 1 is exact in both.
    fn warped_range(u: f32, [a, b, c]: [f64; 3]) -> (f32, f32) {
        let moves = |e: f64| if e == 1.0 { vec![0] } else { vec![-1, 0, 1] };
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for da in moves(a) {
            for db in moves(b) {
                for dc in moves(c) {
                    let x = nudge(u.powf(a as f32), da);
                    let y = nudge((1.0 - x).powf(b as f32), db);
                    let tau = 1.0 - nudge((1.0 - y).powf(c as f32), dc);
                    lo = lo.min(tau);
                    hi = hi.max(tau);
                }
            }
        }
        (lo, hi)
    }

    /// (transport, steps, order, time_dist_ctrl, gaps, printed model times)
    type GridCase = (TransportKind, usize, usize, [f64; 3], [f64; 2], Vec<f64>);

    /// Spec §3.2 examples: model times in float32, printed rounded to 7 decimals. Each
    /// printed value must be within half a unit of its last decimal of our value, where
    /// "our value" may be any result of the pow-ulp freedom of [`warped_range`].
    #[test]
    fn grids_match_spec_examples() {
        let id = [1.0, 1.0, 1.0];
        let kuma = [1.17, 0.8, 1.1];
        let cases: Vec<GridCase> = vec![
            (TransportKind::Linear, 1, 1, id, [0.001, 0.001], vec![0.999]),
            (TransportKind::Linear, 2, 1, id, [0.001, 0.5], vec![0.999, 0.5]),
            (TransportKind::Linear, 2, 1, id, [0.001, 0.3], vec![0.999, 0.3]),
            (TransportKind::Linear, 2, 1, id, [0.0, 0.6], vec![1.0, 0.6]),
            (TransportKind::Linear, 4, 1, id, [0.001, 0.001], vec![0.999, 0.6663333, 0.3336667, 0.001]),
            (TransportKind::Linear, 4, 1, id, [0.0, 0.0], vec![1.0, 0.75, 0.5, 0.25]),
            (
                TransportKind::Linear,
                8,
                1,
                kuma,
                [0.001, 0.001],
                vec![0.9998922, 0.9348874, 0.8392713, 0.7241795, 0.591064, 0.4380457, 0.2579508, 0.0049636],
            ),
            (
                TransportKind::ReLinear,
                4,
                1,
                kuma,
                [0.001, 0.001],
                vec![0.0001078, 0.1970774, 0.5084644, 0.9950364],
            ),
            (TransportKind::Linear, 5, 2, id, [0.001, 0.001], vec![0.999, 0.5, 0.001]),
        ];
        for (kind, steps, order, ctrl, gaps, want) in cases {
            let g = grid_of(kind, steps, order, ctrl, gaps);
            let n = want.len();
            assert_eq!(g.native.len(), n, "{kind} N={steps} gaps {gaps:?}");
            assert_eq!(g.internal.len(), n + 1);
            assert_eq!(g.internal[n], 0.0, "sentinel");
            let u = if gaps[1] == 0.0 {
                linspace_f64(gaps[0], 1.0, n + 1)
            } else {
                linspace_f64(gaps[0], 1.0 - gaps[1], n)
            };
            let flipped = kind == TransportKind::ReLinear;
            for j in 0..n {
                let what = format!("{kind} N={steps} gaps {gaps:?} [{j}]");
                let native = if flipped { 1.0 - g.internal[j] } else { g.internal[j] };
                assert_eq!(g.native[j], native, "{what}: native time");
                let (lo, hi) = warped_range(u[j] as f32, ctrl);
                let (lo, hi) = if flipped { (1.0 - hi, 1.0 - lo) } else { (lo, hi) };
                assert!(lo <= g.native[j] && g.native[j] <= hi, "{what}");
                let nearest = (want[j] as f32).clamp(lo, hi);
                assert_printed(nearest, want[j], 7, &what);
                if ctrl == id {
                    assert_printed(g.native[j], want[j], 7, &what);
                }
            }
        }
    }

    /// The model times listed for the runs of `shared/reference/README.md` (6 decimals).
    #[test]
    fn grids_match_the_reference_tensor_runs() {
        let id = [1.0, 1.0, 1.0];
        let kuma = [1.17, 0.8, 1.1];
        let cases: Vec<GridCase> = vec![
            (TransportKind::Linear, 2, 1, id, [0.001, 0.001], vec![0.999, 0.001]),
            (TransportKind::Linear, 4, 1, id, [0.001, 0.001], vec![0.999, 0.666333, 0.333667, 0.001]),
            (
                TransportKind::Linear,
                6,
                1,
                kuma,
                [0.001, 0.001],
                vec![0.999892, 0.899257, 0.748635, 0.562175, 0.334157, 0.004964],
            ),
            (TransportKind::ReLinear, 4, 1, id, [0.001, 0.001], vec![0.001, 0.333667, 0.666333, 0.999]),
            (TransportKind::TrigFlow, 4, 1, id, [0.001, 0.001], vec![0.999, 0.666333, 0.333667, 0.001]),
        ];
        for (kind, steps, order, ctrl, gaps, want) in cases {
            let g = grid_of(kind, steps, order, ctrl, gaps);
            let u = linspace_f64(gaps[0], 1.0 - gaps[1], steps);
            for (j, &w) in want.iter().enumerate() {
                let (lo, hi) = warped_range(u[j] as f32, ctrl);
                let (lo, hi) = if kind == TransportKind::ReLinear { (1.0 - hi, 1.0 - lo) } else { (lo, hi) };
                assert!(lo <= g.native[j] && g.native[j] <= hi);
                assert_printed((w as f32).clamp(lo, hi), w, 6, &format!("{kind} N={steps} [{j}]"));
                assert_printed(g.native[j], w, 6, &format!("{kind} N={steps} [{j}] (platform pow)"));
            }
        }
    }

    #[test]
    fn grid_n40_kumaraswamy_matches_spec() {
        let g = grid_of(TransportKind::Linear, 40, 1, [1.17, 0.8, 1.1], [0.001, 0.001]);
        let first = [0.999892, 0.992643, 0.982447, 0.970602, 0.957508];
        let last = [0.199537, 0.159549, 0.116407, 0.068162, 0.004964];
        for (j, &w) in first.iter().enumerate() {
            assert_printed(g.native[j], w, 6, &format!("first[{j}]"));
        }
        for (j, &w) in last.iter().enumerate() {
            assert_printed(g.native[35 + j], w, 6, &format!("last[{j}]"));
        }
    }

    /// Spec §8.6, printed to the digits shown.
    #[test]
    fn kumaraswamy_values() {
        let k = |u: f32| kumaraswamy_f32(u, [1.17, 0.8, 1.1]);
        assert_eq!(k(0.0), 0.0);
        assert_eq!(k(1.0), 1.0);
        assert!((k(0.001) as f64 - 1.0775e-4).abs() <= 0.5e-8);
        assert_printed(k(0.25), 0.134497, 6, "K(0.25)");
        assert_printed(k(0.5), 0.340085, 6, "K(0.5)");
        assert_printed(k(0.75), 0.604546, 6, "K(0.75)");
        assert_printed(k(0.999), 0.995036, 6, "K(0.999)");
        for i in 0..=100 {
            let u = i as f32 / 100.0;
            assert_eq!(kumaraswamy_f32(u, [1.0, 1.0, 1.0]), 1.0 - (1.0 - u), "identity warp in float32");
        }
    }

    #[test]
    fn order_two_halves_the_grid() {
        for (steps, n) in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (40, 20)] {
            let cfg = SamplerConfig {
                steps,
                order: 2,
                ..SamplerConfig::default()
            };
            assert_eq!(cfg.grid_points(), n);
            assert_eq!(time_grid(&cfg).unwrap().steps(), n);
        }
    }

    #[test]
    fn defaults_are_the_v2_reference_defaults() {
        let d = SamplerConfig::default();
        assert_eq!(d.transport, TransportKind::Linear);
        assert_eq!((d.steps, d.order), (35, 1));
        assert_eq!(d.stochasticity, Stochasticity::Fixed(0.0));
        assert_eq!(d.extrapolation, 0.0);
        assert_eq!(d.time_dist_ctrl, [1.0, 1.0, 1.0]);
        assert_eq!(d.rfba_gap_steps, [0.0, 0.0]);
        assert_eq!(d.cfg_scale, 0.0);
        assert!(d.validate().is_ok());
        // v2 default gaps start the grid at t = 1 exactly.
        assert_eq!(time_grid(&d).unwrap().native[0], 1.0);
    }

    #[test]
    fn validation_rejects_bad_settings() {
        let bad = [
            SamplerConfig {
                steps: 0,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                order: 3,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                order: 0,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                stochasticity: Stochasticity::Fixed(1.5),
                ..SamplerConfig::default()
            },
            SamplerConfig {
                stochasticity: Stochasticity::Fixed(-0.1),
                ..SamplerConfig::default()
            },
            SamplerConfig {
                stochasticity: Stochasticity::Fixed(f64::NAN),
                ..SamplerConfig::default()
            },
            SamplerConfig {
                extrapolation: -0.5,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                extrapolation: f64::INFINITY,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                time_dist_ctrl: [1.0, 0.0, 1.0],
                ..SamplerConfig::default()
            },
            SamplerConfig {
                time_dist_ctrl: [f64::NAN, 1.0, 1.0],
                ..SamplerConfig::default()
            },
            SamplerConfig {
                rfba_gap_steps: [-0.001, 0.0],
                ..SamplerConfig::default()
            },
            SamplerConfig {
                rfba_gap_steps: [0.0, 1.0],
                ..SamplerConfig::default()
            },
            SamplerConfig {
                rfba_gap_steps: [0.7, 0.5],
                ..SamplerConfig::default()
            },
            SamplerConfig {
                rfba_gap_steps: [f64::NAN, 0.0],
                ..SamplerConfig::default()
            },
            SamplerConfig {
                cfg_scale: -1.0,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                cfg_scale: f64::NAN,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                cfg_interval: [0.8, 0.2],
                ..SamplerConfig::default()
            },
            SamplerConfig {
                cfg_interval: [0.0, f64::INFINITY],
                ..SamplerConfig::default()
            },
        ];
        for cfg in bad {
            assert!(matches!(cfg.validate(), Err(Error::InvalidArgument(_))), "{cfg:?}");
            assert!(matches!(time_grid(&cfg), Err(Error::InvalidArgument(_))), "{cfg:?}");
        }
    }

    #[test]
    fn stochasticity_parses_sde_and_numbers() {
        assert_eq!("SDE".parse::<Stochasticity>().unwrap(), Stochasticity::Sde);
        assert_eq!("sde".parse::<Stochasticity>().unwrap(), Stochasticity::Sde);
        assert_eq!("0.5".parse::<Stochasticity>().unwrap(), Stochasticity::Fixed(0.5));
        assert_eq!("1".parse::<Stochasticity>().unwrap(), Stochasticity::Fixed(1.0));
        assert!(matches!("Auto!".parse::<Stochasticity>(), Err(Error::InvalidArgument(_))));
        assert!(matches!("2".parse::<Stochasticity>(), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn adaptive_rho_formula() {
        let tr = Transport::new(TransportKind::Linear).unwrap();
        // Linear: α(t) = t; (t_c − t_n)·2·t_c / t_n², clamped.
        let rho = adaptive_rho(&tr, 0.75, 0.5);
        let want = 0.25f64 * 2.0 * 0.75 / 0.25;
        assert!((rho as f64 - want.min(1.0)).abs() <= 1e-7);
        let rho_small = adaptive_rho(&tr, 0.51, 0.5);
        let (tc, tn) = (0.51f32 as f64, 0.5f64);
        let want_small = (tc - tn) * 2.0 * tc / (tn * tn);
        assert!(
            (rho_small as f64 - want_small).abs() <= 2e-7 * want_small.max(1e-3),
            "{rho_small} vs {want_small}"
        );
        // Towards the sentinel α(0) = 0: infinite ratio clamps to 1.
        assert_eq!(adaptive_rho(&tr, 0.999, 0.0), 1.0);
    }

    #[test]
    fn provided_noise_is_consumed_in_order_and_runs_out_cleanly() {
        let data = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        let mut src = NoiseSource::provided(&data);
        let mut out = [0f32; 2];
        src.fill(&mut out).unwrap();
        assert_eq!(out, [1.0, 2.0]);
        src.fill(&mut out).unwrap();
        assert_eq!(out, [3.0, 4.0]);
        assert_eq!(src.tensors_drawn(), 2);
        assert!(matches!(src.fill(&mut out), Err(Error::InvalidArgument(_))));
        assert_eq!(src.tensors_drawn(), 2);
        let bad = [f32::NAN, 0.0];
        assert!(matches!(NoiseSource::provided(&bad).fill(&mut out), Err(Error::NonFinite(_))));
    }

    #[test]
    fn rng_noise_matches_the_generator() {
        let mut rng = Rng::new(11);
        let mut src = NoiseSource::rng(&mut rng);
        let mut out = [0f32; 6];
        src.fill(&mut out).unwrap();
        assert_eq!(src.tensors_drawn(), 1);
        assert_eq!(out.to_vec(), Rng::new(11).normal_f32(6));
    }
}
