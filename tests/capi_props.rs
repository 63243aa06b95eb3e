//! Property tests of the C surface with random arguments: each case is a random valid
//! call with at most one fault injected (a NULL pointer, a zero or wrong length, a bad
//! `struct_size`, an out-of-range enum, NaN / Inf, an out-of-range label, ...). The
//! oracle: without a fault the call succeeds and writes finite outputs everywhere;
//! with a fault it returns that fault's status with a message naming the argument and
//! the function — never a crash, and the handle keeps working. Cases: `PROPTEST_CASES`.

mod capi_common;

use std::ffi::CString;
use std::ptr;

use capi_common::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use ucgm::capi::model::*;
use ucgm::capi::sample::*;
use ucgm::capi::*;

const K: i32 = 10;

fn non_finite() -> impl Strategy<Value = f64> {
    prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)]
}

fn non_finite_f32() -> impl Strategy<Value = f32> {
    prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)]
}

fn bad_label() -> impl Strategy<Value = i32> {
    prop_oneof![Just(-1), Just(K + 1), Just(i32::MIN), Just(i32::MAX), -1000..-1i32, (K + 1)..1000]
}

/// `struct_size` values the rule rejects, for a struct of `size` bytes.
/// A `struct_size` that is none of `released` (the struct's sizes in released ABIs,
/// oldest first, the current one last) and not a larger size (a newer header).
fn bad_struct_size(released: &[usize]) -> impl Strategy<Value = usize> {
    let size = *released.last().unwrap();
    let released = released.to_vec();
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(8),
        Just(size - 8),
        Just(size - 1),
        Just(65537),
        Just(usize::MAX),
        0..size
    ]
    .prop_filter("a released size", move |s| !released.contains(s))
}

/// A params or info struct in a buffer of `struct_size` bytes (zeroed past the struct).
struct Sized<T: Copy> {
    buf: Vec<u64>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> Sized<T> {
    fn new(v: T, struct_size: usize) -> Self {
        let bytes = struct_size.clamp(std::mem::size_of::<T>(), 1 << 17);
        let mut buf = vec![0u64; bytes.div_ceil(8)];
        unsafe { ptr::write(buf.as_mut_ptr().cast::<T>(), v) };
        buf[0] = struct_size as u64; // struct_size is the first field
        Sized {
            buf,
            _t: std::marker::PhantomData,
        }
    }
    fn ptr(&mut self) -> *mut T {
        self.buf.as_mut_ptr().cast()
    }
    fn set_tail_byte(&mut self, offset: usize) {
        let bytes: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast(), self.buf.len() * 8) };
        bytes[std::mem::size_of::<T>() + offset] = 0x5a;
    }
}

/// Checks the outcome against the expected fault.
fn check(fname: &str, status: ucgm_status, expect: &Option<(ucgm_status, String)>) -> Result<(), TestCaseError> {
    let msg = last_error();
    match expect {
        None => prop_assert_eq!(status, UCGM_STATUS_OK, "unexpected failure: {}", msg),
        Some((want, needle)) => {
            prop_assert_eq!(status, *want, "expected {} ({}), got {}: {}", want, needle, status, msg);
            prop_assert!(msg.starts_with(&format!("{fname}: ")), "message {:?} does not name {}", msg, fname);
            prop_assert!(msg.contains(needle.as_str()), "message {:?} does not mention {:?}", msg, needle);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// ucgm_sample_ext

#[derive(Clone, Debug)]
enum SampleFault {
    None,
    ModelNull,
    ParamsNull,
    StructSize(usize),
    StructTail(usize),
    Transport(i32),
    Stochasticity(i32),
    Order(u32),
    Steps0,
    RhoNonFinite(f64),
    RhoRange(f64),
    Kappa(f64),
    Tdc(usize, f64),
    Gap(usize, f64),
    CfgScale(f64),
    Interval(f64, f64),
    Batch0,
    Label(usize, i32),
    NoiseLen(usize),
    NoiseNonFinite(usize, f32),
    StepNoiseNotMultiple,
    StepNoiseNonFinite(usize, f32),
    StepNoiseTooFew,
    OutNull,
    OutLen(usize),
    TrajLen(usize),
    InfoSize(usize),
}

#[derive(Clone, Debug)]
struct SampleCase {
    p: SampleBase,
    fault: SampleFault,
}

#[derive(Clone, Debug)]
struct SampleBase {
    transport: i32,
    order: u32,
    steps: u32,
    sde: bool,
    rho: f64,
    kappa: f64,
    tdc: [f64; 3],
    gaps: [f64; 2],
    cfg: f64,
    interval: [f64; 2],
    batch: u32,
    seed: u64,
    labels: Option<Vec<i32>>,
    noise: bool,
    step_noise: bool,
    trajectory: bool,
    info: bool,
}

fn sample_base() -> impl Strategy<Value = SampleBase> {
    (
        (0..6i32, 1..=2u32, 1..=4u32, any::<bool>(), 0.0..=1.0f64, 0.0..1.0f64),
        (
            prop::array::uniform3(0.5..2.0f64),
            0.01..0.2f64,
            0.0..0.2f64,
            0.0..3.0f64,
            0.0..1.0f64,
            0.0..1.0f64,
        ),
        (1..=3u32, any::<u64>(), prop::option::of(prop::collection::vec(0..=K, 3))),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((transport, order, steps, sde, rho, kappa), (tdc, g0, g1, cfg, a, b), (batch, seed, labels), (noise, step_noise, trajectory, info))| SampleBase {
                transport,
                order,
                steps,
                sde,
                rho,
                kappa,
                tdc,
                gaps: [g0, g1],
                cfg,
                interval: [a.min(b), a.max(b)],
                batch,
                seed,
                labels: labels.map(|mut l| {
                    l.truncate(batch as usize);
                    l
                }),
                noise,
                step_noise,
                trajectory,
                info,
            },
        )
}

fn sample_fault() -> impl Strategy<Value = SampleFault> {
    use SampleFault::*;
    let size = std::mem::size_of::<ucgm_sample_params>();
    prop_oneof![
        4 => Just(None),
        1 => Just(ModelNull),
        1 => Just(ParamsNull),
        1 => bad_struct_size(&[size]).prop_map(StructSize),
        1 => (0..24usize).prop_map(StructTail),
        1 => prop_oneof![Just(-1), Just(6), Just(i32::MAX), Just(i32::MIN), 7..100i32].prop_map(Transport),
        1 => prop_oneof![Just(-1), Just(2), Just(i32::MAX)].prop_map(Stochasticity),
        1 => prop_oneof![Just(0u32), Just(3), Just(u32::MAX)].prop_map(Order),
        1 => Just(Steps0),
        1 => non_finite().prop_map(RhoNonFinite),
        1 => prop_oneof![-5.0..-1e-9f64, 1.0 + 1e-9..5.0f64].prop_map(RhoRange),
        1 => prop_oneof![non_finite(), -5.0..-1e-9f64].prop_map(Kappa),
        1 => (0..3usize, prop_oneof![non_finite(), -2.0..=0.0f64]).prop_map(|(i, v)| Tdc(i, v)),
        1 => (0..2usize, prop_oneof![non_finite(), -1.0..-1e-9f64, Just(1.0), 1.0..5.0f64]).prop_map(|(i, v)| Gap(i, v)),
        1 => prop_oneof![non_finite(), -5.0..-1e-9f64].prop_map(CfgScale),
        1 => prop_oneof![
            (non_finite(), 0.0..1.0f64).prop_map(|(a, b)| (a, b)),
            (0.5..1.0f64, 0.0..0.49f64).prop_map(|(a, b)| (a, b))
        ]
        .prop_map(|(a, b)| Interval(a, b)),
        1 => Just(Batch0),
        1 => (0..3usize, bad_label()).prop_map(|(i, l)| Label(i, l)),
        1 => prop_oneof![Just(0usize), Just(1), Just(255), Just(257), Just(10_000)].prop_map(NoiseLen),
        1 => (any::<usize>(), non_finite_f32()).prop_map(|(i, v)| NoiseNonFinite(i, v)),
        1 => Just(StepNoiseNotMultiple),
        1 => (any::<usize>(), non_finite_f32()).prop_map(|(i, v)| StepNoiseNonFinite(i, v)),
        1 => Just(StepNoiseTooFew),
        1 => Just(OutNull),
        1 => prop_oneof![Just(0usize), Just(1), Just(IMAGE_LEN - 1), Just(4 * IMAGE_LEN)].prop_map(OutLen),
        1 => prop_oneof![Just(0usize), Just(1), Just(IMAGE_LEN)].prop_map(TrajLen),
        1 => bad_struct_size(&[std::mem::size_of::<ucgm_sample_info>()]).prop_map(InfoSize),
    ]
}

fn grid_points(order: u32, steps: u32) -> usize {
    if order == 2 {
        steps.div_ceil(2) as usize
    } else {
        steps as usize
    }
}

fn run_sample_case(m: &Model, c: &SampleCase) -> Result<(), TestCaseError> {
    use SampleFault as F;
    let mut b = c.p.clone();
    let fault = &c.fault;
    // Faults that need a particular base.
    match fault {
        F::RhoRange(_) | F::StepNoiseTooFew => {
            b.sde = false;
            b.rho = b.rho.max(0.25);
        }
        F::Label(..) if b.labels.is_none() => b.labels = Some(vec![1; b.batch as usize]),
        F::NoiseLen(_) | F::NoiseNonFinite(..) => b.noise = true,
        F::StepNoiseNotMultiple | F::StepNoiseNonFinite(..) => b.step_noise = true,
        F::TrajLen(_) => b.trajectory = true,
        F::InfoSize(_) => b.info = true,
        _ => {}
    }
    let mut p = sample_params(b.steps, b.batch, b.seed);
    p.transport = b.transport;
    p.order = b.order;
    p.stochasticity = if b.sde { UCGM_STOCHASTICITY_SDE } else { UCGM_STOCHASTICITY_FIXED };
    p.rho = b.rho;
    p.extrapolation = b.kappa;
    p.time_dist_ctrl = b.tdc;
    p.rfba_gap_steps = b.gaps;
    p.cfg_scale = b.cfg;
    p.cfg_interval = b.interval;
    let batch = b.batch as usize;
    let numel = batch * IMAGE_LEN;
    let n = grid_points(b.order, b.steps);
    let mut labels = b.labels.clone();
    let mut noise = b.noise.then(|| vec![0.5f32; numel]);
    let mut step_noise = b.step_noise.then(|| vec![-0.25f32; (n + 1) * numel]);
    let mut out_len = numel;
    let mut traj_len = (n + 1) * numel;
    let mut info_size = std::mem::size_of::<ucgm_sample_info>();
    let (mut model, mut out_null, mut params_null, mut struct_size, mut tail) = (m.0, false, false, std::mem::size_of::<ucgm_sample_params>(), None);
    let inv = |s: &str| Some((UCGM_STATUS_INVALID_ARGUMENT, s.to_string()));
    let nonfinite = |s: &str| Some((UCGM_STATUS_NON_FINITE, s.to_string()));
    let expect = match *fault {
        F::None => None,
        F::ModelNull => {
            model = ptr::null_mut();
            inv("model is NULL")
        }
        F::ParamsNull => {
            params_null = true;
            inv("ucgm_sample_params is NULL")
        }
        F::StructSize(s) => {
            struct_size = s;
            inv("ucgm_sample_params.struct_size")
        }
        F::StructTail(o) => {
            struct_size += 24;
            tail = Some(o);
            inv("non-zero")
        }
        F::Transport(v) => {
            p.transport = v;
            inv(&format!("ucgm_sample_params.transport = {v} is not one of"))
        }
        F::Stochasticity(v) => {
            p.stochasticity = v;
            inv(&format!("ucgm_sample_params.stochasticity = {v}"))
        }
        F::Order(v) => {
            p.order = v;
            inv(&format!("sampling order must be 1 or 2, got {v}"))
        }
        F::Steps0 => {
            p.steps = 0;
            inv("steps must be at least 1")
        }
        F::RhoNonFinite(v) => {
            p.rho = v;
            nonfinite("ucgm_sample_params.rho")
        }
        F::RhoRange(v) => {
            p.rho = v;
            inv("stochasticity must be in [0, 1]")
        }
        F::Kappa(v) => {
            p.extrapolation = v;
            if v.is_finite() {
                inv("extrapolation ratio")
            } else {
                nonfinite("ucgm_sample_params.extrapolation")
            }
        }
        F::Tdc(i, v) => {
            p.time_dist_ctrl[i] = v;
            if v.is_finite() {
                inv("time_dist_ctrl values must be finite and > 0")
            } else {
                nonfinite(&format!("ucgm_sample_params.time_dist_ctrl[{i}]"))
            }
        }
        F::Gap(i, v) => {
            p.rfba_gap_steps[i] = v;
            if v.is_finite() {
                inv("rfba_gap_steps must satisfy")
            } else {
                nonfinite(&format!("ucgm_sample_params.rfba_gap_steps[{i}]"))
            }
        }
        F::CfgScale(v) => {
            p.cfg_scale = v;
            if v.is_finite() {
                inv("cfg scale")
            } else {
                nonfinite("ucgm_sample_params.cfg_scale")
            }
        }
        F::Interval(a, bb) => {
            p.cfg_interval = [a, bb];
            if a.is_finite() {
                inv("cfg interval")
            } else {
                nonfinite("ucgm_sample_params.cfg_interval[0]")
            }
        }
        F::Batch0 => {
            p.batch = 0;
            inv("batch must be at least 1")
        }
        F::Label(i, v) => {
            let l = labels.as_mut().unwrap();
            let i = i % l.len();
            l[i] = v;
            inv(&format!("ucgm_sample_params.labels[{i}] = {v} is outside 0..=10"))
        }
        F::NoiseLen(len) if len != numel => {
            noise = Some(vec![0.5; len]);
            inv("ucgm_sample_params.noise_len")
        }
        F::NoiseLen(_) => None,
        F::NoiseNonFinite(i, v) => {
            let z = noise.as_mut().unwrap();
            let i = i % z.len();
            z[i] = v;
            nonfinite(&format!("ucgm_sample_params.noise[{i}]"))
        }
        F::StepNoiseNotMultiple => {
            step_noise.as_mut().unwrap().push(0.0);
            inv("is not a multiple of batch")
        }
        F::StepNoiseNonFinite(i, v) => {
            let s = step_noise.as_mut().unwrap();
            let i = i % s.len();
            s[i] = v;
            nonfinite(&format!("ucgm_sample_params.step_noise[{i}]"))
        }
        F::StepNoiseTooFew => {
            step_noise = Some(vec![0.1; (n - 1) * numel]);
            inv("provided noise exhausted")
        }
        F::OutNull => {
            out_null = true;
            inv("out is NULL")
        }
        F::OutLen(len) if len != numel => {
            out_len = len;
            inv("out: length")
        }
        F::OutLen(_) => None,
        F::TrajLen(len) => {
            traj_len = len;
            inv("trajectory: length")
        }
        F::InfoSize(s) => {
            info_size = s;
            inv("ucgm_sample_info.struct_size")
        }
    };
    p.labels = labels.as_ref().map_or(ptr::null(), |l| l.as_ptr());
    if let Some(z) = noise.as_ref() {
        p.noise = z.as_ptr();
        p.noise_len = z.len();
    }
    if let Some(s) = step_noise.as_ref() {
        p.step_noise = s.as_ptr();
        p.step_noise_len = s.len();
    }
    let mut sized = Sized::new(p, struct_size);
    if let Some(o) = tail {
        sized.set_tail_byte(o);
    }
    let params = if params_null { ptr::null_mut() } else { sized.ptr() };
    let mut out = vec![f32::NAN; out_len.max(1)];
    let out_ptr = if out_null { ptr::null_mut() } else { out.as_mut_ptr() };
    let mut traj = vec![f32::NAN; traj_len.max(1)];
    let traj_ptr = if b.trajectory { traj.as_mut_ptr() } else { ptr::null_mut() };
    let mut info = Sized::new(ucgm_sample_info::default(), info_size);
    let info_ptr = if b.info { info.ptr() } else { ptr::null_mut() };
    let status = unsafe { ucgm_sample_ext(model, params, out_ptr, out_len, traj_ptr, traj_len, info_ptr) };
    check("ucgm_sample_ext", status, &expect)?;
    if expect.is_none() {
        prop_assert!(out[..numel].iter().all(|v| v.is_finite()), "non-finite sample");
        if b.trajectory {
            prop_assert!(traj[..traj_len].iter().all(|v| v.is_finite()), "non-finite trajectory");
            prop_assert!(traj[traj_len - numel..] == out[..numel], "trajectory does not end at the sample");
        }
        if b.info {
            let i = unsafe { *info.ptr() };
            prop_assert_eq!(i.grid_points as usize, n);
        }
    }
    Ok(())
}

#[test]
fn sample_ext_with_random_arguments() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 1, 1);
    let reference = m.sample(&sample_params(3, 1, 5)).unwrap();
    let mut runner = TestRunner::new(proptest_config(file!()));
    let case = (sample_base(), sample_fault()).prop_map(|(p, fault)| SampleCase { p, fault });
    runner.run(&case, |c| run_sample_case(&m, &c)).unwrap();
    assert!(m.sample(&sample_params(3, 1, 5)).unwrap() == reference, "the handle changed after the failures");
}

// ---------------------------------------------------------------------------------------
// ucgm_forward

#[derive(Clone, Debug)]
enum ForwardFault {
    None,
    ModelNull,
    XNull,
    TNull,
    LabelsNull,
    OutNull,
    Batch0,
    OutLen(usize),
    X(usize, f32),
    T(usize, f32),
    Label(usize, i32),
}

fn forward_fault() -> impl Strategy<Value = ForwardFault> {
    use ForwardFault::*;
    prop_oneof![
        3 => Just(None),
        1 => Just(ModelNull),
        1 => Just(XNull),
        1 => Just(TNull),
        1 => Just(LabelsNull),
        1 => Just(OutNull),
        1 => Just(Batch0),
        1 => prop_oneof![Just(0usize), Just(1), Just(IMAGE_LEN - 1), Just(100 * IMAGE_LEN)].prop_map(OutLen),
        1 => (any::<usize>(), non_finite_f32()).prop_map(|(i, v)| X(i, v)),
        1 => (any::<usize>(), non_finite_f32()).prop_map(|(i, v)| T(i, v)),
        1 => (any::<usize>(), bad_label()).prop_map(|(i, v)| Label(i, v)),
    ]
}

fn run_forward_case(m: &Model, batch: usize, t0: f32, labels0: &[i32], fault: &ForwardFault) -> Result<(), TestCaseError> {
    use ForwardFault as F;
    let mut x = vec![0.3f32; batch * IMAGE_LEN];
    x.iter_mut().enumerate().for_each(|(i, v)| *v = ((i * 37 % 101) as f32 - 50.0) / 25.0);
    let mut t = vec![t0; batch];
    let mut labels = labels0[..batch].to_vec();
    let (mut model, mut batch_arg, mut out_len) = (m.0, batch, batch * IMAGE_LEN);
    let (mut x_null, mut t_null, mut l_null, mut out_null) = (false, false, false, false);
    let inv = |s: String| Some((UCGM_STATUS_INVALID_ARGUMENT, s));
    let expect = match *fault {
        F::None => None,
        F::ModelNull => {
            model = ptr::null_mut();
            inv("model is NULL".into())
        }
        F::XNull => {
            x_null = true;
            inv("x is NULL".into())
        }
        F::TNull => {
            t_null = true;
            inv("t is NULL".into())
        }
        F::LabelsNull => {
            l_null = true;
            inv("labels is NULL".into())
        }
        F::OutNull => {
            out_null = true;
            inv("out is NULL".into())
        }
        F::Batch0 => {
            batch_arg = 0;
            inv("batch must be at least 1".into())
        }
        F::OutLen(l) => {
            out_len = l;
            inv(format!("out: length {l} elements, expected {}", batch * IMAGE_LEN))
        }
        F::X(i, v) => {
            let i = i % x.len();
            x[i] = v;
            Some((UCGM_STATUS_NON_FINITE, format!("x[{i}] = {v}")))
        }
        F::T(i, v) => {
            let i = i % batch;
            t[i] = v;
            Some((UCGM_STATUS_NON_FINITE, format!("t[{i}] = {v}")))
        }
        F::Label(i, v) => {
            let i = i % batch;
            labels[i] = v;
            inv(format!("labels[{i}] = {v} is outside 0..=10"))
        }
    };
    let mut out = vec![f32::NAN; out_len.max(1)];
    let pick = |null: bool, p: *const f32| if null { ptr::null() } else { p };
    let status = unsafe {
        ucgm_forward(
            model,
            pick(x_null, x.as_ptr()),
            pick(t_null, t.as_ptr()),
            if l_null { ptr::null() } else { labels.as_ptr() },
            batch_arg,
            if out_null { ptr::null_mut() } else { out.as_mut_ptr() },
            out_len,
        )
    };
    check("ucgm_forward", status, &expect)?;
    if expect.is_none() {
        prop_assert!(out.iter().all(|v| v.is_finite()), "non-finite or unwritten output");
    }
    Ok(())
}

#[test]
fn forward_with_random_arguments() {
    let m = Model::tiny_random(UCGM_ARCH_SIT, 2, 1);
    let mut runner = TestRunner::new(proptest_config(file!()));
    let case = (1..=3usize, -2.0..2.0f32, prop::collection::vec(0..=K, 3), forward_fault());
    runner
        .run(&case, |(batch, t, labels, fault)| run_forward_case(&m, batch, t, &labels, &fault))
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// ucgm_model_create

#[derive(Clone, Debug)]
struct Shape {
    arch: i32,
    input: u32,
    patch: u32,
    channels: u32,
    hidden: u32,
    heads: u32,
    depth: u32,
    classes: u32,
    threads: i32,
}

fn valid_shape() -> impl Strategy<Value = Shape> {
    (
        0..2i32,
        prop_oneof![Just(4u32), Just(8)],
        1..=2u32,
        1..=4u32,
        prop_oneof![Just(8u32), Just(16), Just(32)],
        1..=2u32,
        1..=2u32,
        1..=5u32,
        1..=2i32,
    )
        .prop_map(|(arch, input, patch, channels, hidden, heads, depth, classes, threads)| Shape {
            arch,
            input,
            patch,
            channels,
            hidden,
            heads,
            depth,
            classes,
            threads,
        })
}

#[derive(Clone, Debug)]
enum CreateFault {
    None,
    ParamsNull,
    OutNull,
    StructSize(usize),
    StructTail(usize),
    Arch(i32),
    Backend(i32),
    Cuda,
    Threads(i32),
    Name(&'static str),
    Zero(usize),
    PatchDoesNotDivide,
    HeadsDoNotDivide,
}

fn create_fault() -> impl Strategy<Value = CreateFault> {
    use CreateFault::*;
    let sizes = model_params_sizes();
    prop_oneof![
        3 => Just(None),
        1 => Just(ParamsNull),
        1 => Just(OutNull),
        1 => bad_struct_size(&sizes).prop_map(StructSize),
        1 => (0..16usize).prop_map(StructTail),
        1 => prop_oneof![Just(-1), Just(3), Just(4), Just(5), Just(i32::MAX)].prop_map(Arch),
        1 => prop_oneof![Just(-1), Just(3), Just(i32::MIN)].prop_map(Backend),
        1 => Just(Cuda),
        1 => prop_oneof![Just(-1), Just(1025), Just(i32::MIN)].prop_map(Threads),
        1 => prop_oneof![Just("TiT-M/2"), Just("TiT-S/3"), Just("XiT-S/2"), Just(""), Just("TiT"), Just("SiT-S/x")].prop_map(Name),
        1 => (0..5usize).prop_map(Zero),
        1 => Just(PatchDoesNotDivide),
        1 => Just(HeadsDoNotDivide),
    ]
}

fn run_create_case(s: &Shape, fault: &CreateFault) -> Result<(), TestCaseError> {
    use CreateFault as F;
    let mut p = tiny_params(s.arch, 3, s.threads);
    (p.input_size, p.patch, p.in_channels, p.hidden, p.heads, p.depth, p.num_classes) = (s.input, s.patch, s.channels, s.hidden, s.heads, s.depth, s.classes);
    let mut struct_size = std::mem::size_of::<ucgm_model_params>();
    let (mut params_null, mut out_null, mut tail, mut name) = (false, false, None, None);
    let inv = |m: String| Some((UCGM_STATUS_INVALID_ARGUMENT, m));
    let expect = match *fault {
        F::None => None,
        F::ParamsNull => {
            params_null = true;
            inv("ucgm_model_params is NULL".into())
        }
        F::OutNull => {
            out_null = true;
            inv("out is NULL".into())
        }
        F::StructSize(v) => {
            struct_size = v;
            inv("ucgm_model_params.struct_size".into())
        }
        F::StructTail(o) => {
            struct_size += 16;
            tail = Some(o);
            inv("non-zero".into())
        }
        F::Arch(v) => {
            p.arch = v;
            inv(format!("ucgm_model_params.arch = {v}"))
        }
        F::Backend(v) => {
            p.backend = v;
            inv(format!("backend {v} is not one of"))
        }
        F::Cuda => {
            p.backend = UCGM_BACKEND_CUDA;
            cuda_here().err().map(|why| (UCGM_STATUS_BACKEND, format!("CUDA backend not available: {why}")))
        }
        F::Threads(v) => {
            p.threads = v;
            inv(format!("threads = {v}"))
        }
        F::Name(n) => {
            name = Some(CString::new(n).unwrap());
            inv("model".into())
        }
        F::Zero(i) => {
            *[&mut p.input_size, &mut p.in_channels, &mut p.patch, &mut p.hidden, &mut p.depth][i] = 0;
            inv("zero size".into())
        }
        F::PatchDoesNotDivide => {
            p.patch = p.input_size + 1;
            inv("is not divisible by patch".into())
        }
        F::HeadsDoNotDivide => {
            p.heads = 3;
            inv("is not divisible by heads 3".into())
        }
    };
    if let Some(n) = name.as_ref() {
        p.name = n.as_ptr();
    }
    let mut sized = Sized::new(p, struct_size);
    if let Some(o) = tail {
        sized.set_tail_byte(o);
    }
    let mut h: *mut ucgm_model = ptr::dangling_mut();
    let status = unsafe {
        ucgm_model_create(
            if params_null { ptr::null() } else { sized.ptr() },
            if out_null { ptr::null_mut() } else { &mut h },
        )
    };
    check("ucgm_model_create", status, &expect)?;
    if out_null {
        return Ok(());
    }
    let m = Model(h);
    if expect.is_some() {
        prop_assert!(h.is_null(), "a failed create left a handle");
        std::mem::forget(m);
        return Ok(());
    }
    let i = m.info();
    prop_assert_eq!(
        (i.arch, i.input_size, i.patch, i.in_channels, i.hidden, i.heads, i.depth, i.num_classes),
        (s.arch, s.input, s.patch, s.channels, s.hidden, s.heads, s.depth, s.classes)
    );
    if matches!(fault, F::Cuda) {
        prop_assert_eq!((i.backend, i.threads, i.cuda_device), (UCGM_BACKEND_CUDA, 0, 0));
    } else {
        prop_assert_eq!((i.backend, i.threads as i32, i.cuda_device), (UCGM_BACKEND_CPU, s.threads, -1));
    }
    Ok(())
}

#[test]
fn model_create_with_random_arguments() {
    let mut runner = TestRunner::new(proptest_config(file!()));
    runner.run(&(valid_shape(), create_fault()), |(s, f)| run_create_case(&s, &f)).unwrap();
}

// ---------------------------------------------------------------------------------------
// *_params_default, info structs, parameter buffers

#[test]
fn params_default_and_info_sizes() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 1, 1);
    let n = m.param_count();
    let sizes = prop_oneof![any::<usize>(), 0..200usize, 60..300usize, Just(65536usize), Just(65537usize)];
    let mut runner = TestRunner::new(proptest_config(file!()));
    runner
        .run(&(sizes, 0..4usize, 0..(2 * n)), |(size, which, len)| {
            let accept = |released: &[usize]| released.contains(&size) || (size > *released.last().unwrap() && size <= 65536);
            let (status, released, fname) = match which {
                0 => {
                    let mut b = Sized::new(sample_params(1, 1, 0), size);
                    let s = unsafe { ucgm_sample_params_default(b.ptr(), size) };
                    if s == UCGM_STATUS_OK {
                        let p = unsafe { *b.ptr() };
                        prop_assert_eq!((p.struct_size, p.steps, p.batch), (size, 35, 1));
                    }
                    (s, vec![std::mem::size_of::<ucgm_sample_params>()], "ucgm_sample_params_default")
                }
                1 => {
                    let mut b = Sized::new(tiny_params(0, 0, 1), size);
                    let s = unsafe { ucgm_model_params_default(b.ptr(), size) };
                    (s, model_params_sizes().to_vec(), "ucgm_model_params_default")
                }
                2 => {
                    let mut b = Sized::new(ucgm_model_info::default(), size);
                    let s = unsafe { ucgm_model_get_info(m.0, b.ptr()) };
                    if s == UCGM_STATUS_OK {
                        prop_assert_eq!(unsafe { *b.ptr() }.param_count as usize, n);
                    }
                    (s, model_info_sizes().to_vec(), "ucgm_model_get_info")
                }
                _ => {
                    let mut b = Sized::new(ucgm_system_info::default(), size);
                    let s = unsafe { ucgm_get_system_info(b.ptr()) };
                    (s, vec![std::mem::size_of::<ucgm_system_info>()], "ucgm_get_system_info")
                }
            };
            let expect = (!accept(&released)).then(|| (UCGM_STATUS_INVALID_ARGUMENT, "struct_size".to_string()));
            check(fname, status, &expect)?;

            // Parameter buffers of random lengths.
            let mut buf = vec![0.25f32; len.max(1)];
            let s = unsafe { ucgm_model_read_params(m.0, buf.as_mut_ptr(), len) };
            let expect = (len != n).then(|| (UCGM_STATUS_INVALID_ARGUMENT, format!("out: length {len} elements, expected {n}")));
            check("ucgm_model_read_params", s, &expect)?;
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Corrupted weights files

#[test]
fn load_of_randomly_corrupted_files() {
    let dir = tempfile::tempdir().unwrap();
    let m = Model::tiny_random(UCGM_ARCH_TIT, 3, 1);
    let good = dir.path().join("good.safetensors");
    ok(unsafe { ucgm_model_save(m.0, CString::new(good.to_str().unwrap()).unwrap().as_ptr()) });
    let bytes = std::fs::read(&good).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
    let edit = prop_oneof![
        (0..bytes.len()).prop_map(|n| (Some(n), vec![])),
        prop::collection::vec((0..header_len, any::<u8>()), 1..4).prop_map(|v| (None, v)),
        prop::collection::vec((0..bytes.len(), any::<u8>()), 1..4).prop_map(|v| (None, v)),
    ];
    let mut runner = TestRunner::new(proptest_config(file!()));
    let path = dir.path().join("case.safetensors");
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    runner
        .run(&edit, |(truncate, flips)| {
            let mut b = bytes.clone();
            if let Some(n) = truncate {
                b.truncate(n);
            }
            for (i, v) in flips {
                b[i] = v;
            }
            std::fs::write(&path, &b).unwrap();
            let mut h = ptr::null_mut();
            let s = unsafe { ucgm_model_load(cpath.as_ptr(), &cpu_load_params(), &mut h) };
            let loaded = Model(h);
            if s == UCGM_STATUS_OK {
                // Whatever loaded is a working model with finite weights.
                prop_assert!(loaded.params().iter().all(|v| v.is_finite()));
                // Finite but huge weights may overflow: then sampling says so.
                match loaded.sample(&sample_params(2, 1, 0)) {
                    Ok(x) => prop_assert!(x.iter().all(|v| v.is_finite())),
                    Err(st) => prop_assert_eq!(st, UCGM_STATUS_NON_FINITE, "{}", last_error()),
                }
            } else {
                prop_assert!(h.is_null());
                prop_assert!(
                    [UCGM_STATUS_FORMAT, UCGM_STATUS_WEIGHTS, UCGM_STATUS_NON_FINITE, UCGM_STATUS_INVALID_ARGUMENT].contains(&s),
                    "status {} for a corrupt file: {}",
                    s,
                    last_error()
                );
                prop_assert!(last_error().starts_with("ucgm_model_load: "));
            }
            if truncate.is_some_and(|n| n < bytes.len()) {
                prop_assert_ne!(s, UCGM_STATUS_OK, "a truncated file loaded");
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// ucgm_trainer_create + ucgm_train_step_with

use ucgm::capi::train::*;

#[derive(Clone, Debug)]
enum TrainFault {
    None,
    ParamsStructSize(usize),
    Enum(usize, i32),
    Bool(usize, i32),
    NonFinite(usize, f64),
    OutOfRange(usize),
    TrainerNull,
    XNull,
    LabelsNull,
    TNull,
    ZNull,
    Batch0,
    X(usize, f32),
    Z(usize, f32),
    T(usize, f32),
    TRange(usize, f32),
    Label(usize, i32),
}

fn train_fault() -> impl Strategy<Value = TrainFault> {
    use TrainFault::*;
    prop_oneof![
        3 => Just(None),
        1 => bad_struct_size(&[std::mem::size_of::<ucgm_train_params>()]).prop_map(ParamsStructSize),
        1 => (0..4usize, prop_oneof![Just(-1), Just(4), Just(77), Just(i32::MIN)]).prop_map(|(i, v)| Enum(i, v)),
        1 => (0..3usize, prop_oneof![Just(-1), Just(2), Just(i32::MAX)]).prop_map(|(i, v)| Bool(i, v)),
        1 => (0..11usize, non_finite()).prop_map(|(i, v)| NonFinite(i, v)),
        1 => (0..7usize).prop_map(OutOfRange),
        1 => Just(TrainerNull),
        1 => Just(XNull),
        1 => Just(LabelsNull),
        1 => Just(TNull),
        1 => Just(ZNull),
        1 => Just(Batch0),
        1 => (any::<usize>(), non_finite_f32()).prop_map(|(i, v)| X(i, v)),
        1 => (any::<usize>(), non_finite_f32()).prop_map(|(i, v)| Z(i, v)),
        1 => (any::<usize>(), non_finite_f32()).prop_map(|(i, v)| T(i, v)),
        1 => (any::<usize>(), prop_oneof![-5.0..-1e-6f32, 1.0001..5.0f32]).prop_map(|(i, v)| TRange(i, v)),
        1 => (any::<usize>(), bad_label()).prop_map(|(i, v)| Label(i, v)),
    ]
}

fn run_train_case(m: &Model, batch: usize, lr: f64, lambda_zero: bool, fault: &TrainFault) -> Result<(), TestCaseError> {
    use TrainFault as F;
    let mut p = std::mem::MaybeUninit::<ucgm_train_params>::uninit();
    ok(unsafe { ucgm_train_params_default(p.as_mut_ptr(), std::mem::size_of::<ucgm_train_params>()) });
    let mut p = unsafe { p.assume_init() };
    p.lr = lr;
    if !lambda_zero {
        p.consistc_ratio = 1.0;
    }
    let mut x = vec![0.25f32; batch * IMAGE_LEN];
    let mut z = vec![-0.5f32; batch * IMAGE_LEN];
    let mut t: Vec<f32> = (0..batch).map(|i| 0.1 + 0.8 * i as f32 / batch as f32).collect();
    let mut labels: Vec<i32> = (0..batch as i32).collect();
    let (mut null_trainer, mut x_null, mut l_null, mut t_null, mut z_null, mut batch_arg) = (false, false, false, false, false, batch);
    let mut in_create = false;
    let inv = |m: String| Some((UCGM_STATUS_INVALID_ARGUMENT, m));
    let nonfinite = |m: String| Some((UCGM_STATUS_NON_FINITE, m));
    let expect = match *fault {
        F::None => None,
        F::ParamsStructSize(s) => {
            in_create = true;
            p.struct_size = s;
            inv("ucgm_train_params.struct_size".into())
        }
        F::Enum(i, v) => {
            in_create = true;
            let (field, name) = [
                (&mut p.transport, "transport"),
                (&mut p.enhanced_style, "enhanced_style"),
                (&mut p.weight_function, "weight_function"),
                (&mut p.optimizer, "optimizer"),
            ]
            .into_iter()
            .nth(i)
            .unwrap();
            *field = if name == "transport" && v == 4 { 6 } else { v };
            inv(format!("ucgm_train_params.{name} = {}", *field))
        }
        F::Bool(i, v) => {
            in_create = true;
            let (field, name) = [
                (&mut p.wt_cosine_loss, "wt_cosine_loss"),
                (&mut p.no_reopt, "no_reopt"),
                (&mut p.no_reuni, "no_reuni"),
            ]
            .into_iter()
            .nth(i)
            .unwrap();
            *field = v;
            inv(format!("ucgm_train_params.{name} = {v} is not a boolean"))
        }
        F::NonFinite(i, v) => {
            in_create = true;
            let (field, name) = [
                (&mut p.lab_drop_ratio, "lab_drop_ratio"),
                (&mut p.consistc_ratio, "consistc_ratio"),
                (&mut p.enhanced_ratio, "enhanced_ratio"),
                (&mut p.scaled_cbl_eps, "scaled_cbl_eps"),
                (&mut p.ema_decay_rate, "ema_decay_rate"),
                (&mut p.lr, "lr"),
                (&mut p.weight_decay, "weight_decay"),
                (&mut p.beta1, "beta1"),
                (&mut p.beta2, "beta2"),
                (&mut p.eps, "eps"),
                (&mut p.ema_decay, "ema_decay"),
            ]
            .into_iter()
            .nth(i)
            .unwrap();
            *field = v;
            nonfinite(format!("ucgm_train_params.{name}"))
        }
        F::OutOfRange(i) => {
            in_create = true;
            let (field, value, needle) = [
                (&mut p.lab_drop_ratio, 1.5, "lab_drop_ratio"),
                (&mut p.consistc_ratio, -0.5, "consistc_ratio"),
                (&mut p.ema_decay_rate, 1.01, "ema_decay_rate"),
                (&mut p.lr, -1e-3, "lr"),
                (&mut p.beta1, 1.0, "beta1"),
                (&mut p.eps, 0.0, "eps"),
                (&mut p.max_grad_norm, -1.0, "max_grad_norm"),
            ]
            .into_iter()
            .nth(i)
            .unwrap();
            *field = value;
            inv(needle.to_string())
        }
        F::TrainerNull => {
            null_trainer = true;
            inv("trainer is NULL".into())
        }
        F::XNull => {
            x_null = true;
            inv("x is NULL".into())
        }
        F::LabelsNull => {
            l_null = true;
            inv("labels is NULL".into())
        }
        F::TNull => {
            t_null = true;
            inv("t is NULL".into())
        }
        F::ZNull => {
            z_null = true;
            inv("z is NULL".into())
        }
        F::Batch0 => {
            batch_arg = 0;
            inv("batch must be at least 1".into())
        }
        F::X(i, v) => {
            let i = i % x.len();
            x[i] = v;
            nonfinite(format!("x[{i}]"))
        }
        F::Z(i, v) => {
            let i = i % z.len();
            z[i] = v;
            nonfinite(format!("z[{i}]"))
        }
        F::T(i, v) => {
            let i = i % batch;
            t[i] = v;
            nonfinite(format!("t[{i}]"))
        }
        F::TRange(i, v) => {
            let i = i % batch;
            t[i] = v;
            inv(format!("t[{i}] = {v} is outside [0, 1]"))
        }
        F::Label(i, v) => {
            let i = i % batch;
            labels[i] = v;
            inv(format!("labels[{i}] = {v} is outside 0..=10"))
        }
    };
    let mut tr: *mut ucgm_trainer = ptr::null_mut();
    let status = unsafe { ucgm_trainer_create(m.0, &p, &mut tr) };
    if in_create {
        check("ucgm_trainer_create", status, &expect)?;
        prop_assert!(tr.is_null());
        return Ok(());
    }
    ok(status);
    let mut loss = f64::NAN;
    let status = unsafe {
        ucgm_train_step_with(
            if null_trainer { ptr::null_mut() } else { tr },
            if x_null { ptr::null() } else { x.as_ptr() },
            if l_null { ptr::null() } else { labels.as_ptr() },
            if t_null { ptr::null() } else { t.as_ptr() },
            if z_null { ptr::null() } else { z.as_ptr() },
            batch_arg,
            &mut loss,
        )
    };
    check("ucgm_train_step_with", status, &expect)?;
    let mut info = ucgm_trainer_info {
        struct_size: std::mem::size_of::<ucgm_trainer_info>(),
        ..Default::default()
    };
    ok(unsafe { ucgm_trainer_get_info(tr, &mut info) });
    unsafe { ucgm_trainer_free(tr) };
    if expect.is_none() {
        prop_assert!(loss.is_finite(), "loss {}", loss);
        prop_assert_eq!(info.step, 1);
    } else {
        prop_assert_eq!(info.step, 0, "a failed step changed the trainer");
    }
    Ok(())
}

#[test]
fn training_with_random_arguments() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 4, 1);
    let mut runner = TestRunner::new(proptest_config(file!()));
    let case = (1..=3usize, 1e-5..1e-2f64, any::<bool>(), train_fault());
    runner
        .run(&case, |(batch, lr, lambda_zero, fault)| run_train_case(&m, batch, lr, lambda_zero, &fault))
        .unwrap();
}
