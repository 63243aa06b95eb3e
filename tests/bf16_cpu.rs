//! The CPU's bf16 inference mode (`CpuOptions::bf16`): every family's reference outputs
//! within rel-L2 1e-2 (the bound the CUDA bf16 mode is held to) and measurably not the f32
//! result; the same bits for any thread count; the packed layout's memory (the Linear
//! weights in half the bytes); reading, writing and leaving the packed layout; training
//! refused with a clear error. The products themselves are pinned exactly by the unit
//! tests in `src/backend/cpu/bf16.rs` (every kernel against f64 on the rounded
//! operands, and the kernels against each other bit for bit).

mod common;

use common::{assert_close, reference, rel_l2};
use ucgm::backend::cpu::CpuOptions;
use ucgm::engine::{AnyModel, AnyTrainer, BackendChoice, BackendRequest};
use ucgm::tensor_file::TensorFile;
use ucgm::trainer::{OptimizerSection, TrainSection, TrainerConfig, TransportSection};
use ucgm::{Arch, CpuBackend, Model, ModelConfig};

fn bf16_cpu(threads: usize) -> CpuBackend<f32> {
    CpuBackend::with_options(threads, CpuOptions { bf16: true }).unwrap()
}

/// (weights, reference outputs, configuration when the file does not name it).
fn family(name: &str) -> (String, String, Option<ModelConfig>) {
    match name {
        "sit" | "tit" => (format!("{name}_tiny_weights.safetensors"), format!("{name}_tiny_sampler.safetensors"), None),
        "lightningdit" => (
            "zoo/lightningdit_tiny_weights.safetensors".into(),
            "zoo/lightningdit_tiny_io.safetensors".into(),
            None,
        ),
        _ => (
            "zoo/ddt_tiny_weights.safetensors".into(),
            "zoo/ddt_tiny_io.safetensors".into(),
            Some(common::ddt_tiny()),
        ),
    }
}

fn load(name: &str, be: CpuBackend<f32>) -> Model<CpuBackend<f32>> {
    let (weights, _, cfg) = family(name);
    match cfg {
        Some(cfg) => Model::load_with_config(reference(&weights), cfg, be).unwrap(),
        None => Model::load(reference(&weights), be, Some(4)).unwrap(),
    }
}

#[test]
fn every_family_reproduces_the_reference_within_the_bf16_bound() {
    for name in ["sit", "tit", "lightningdit", "ddt"] {
        let mut model = load(name, bf16_cpu(2));
        model.enter_inference_layout().unwrap();
        assert!(model.in_inference_layout(), "{name}: the packed layout was not entered");
        let f = TensorFile::open(reference(&family(name).1)).unwrap();
        let z = f.f32("z").unwrap().1;
        let labels: Vec<usize> = f.i64("y").unwrap().1.iter().map(|&v| v as usize).collect();
        let mut out = vec![0f32; z.len()];
        for tname in ["0.0", "0.5", "1.0"] {
            let tv: f32 = tname.parse().unwrap();
            model.forward(&z, &[tv, tv], &labels, &mut out).unwrap();
            let want = f.f32(&format!("F_t{tname}")).unwrap().1;
            assert_close(&format!("{name} bf16 F_t{tname}"), &out, &want, 1e-2);
            // bf16 really ran: f32 matches these tensors to 1e-5.
            let (e, _) = rel_l2(&out, &want);
            assert!(e > 1e-5, "{name} F_t{tname}: rel-L2 {e:.2e} is f32 accuracy; the bf16 path did not run");
        }
        model.forward(&z, &[0.5, 0.5], &[10, 10], &mut out).unwrap();
        assert_close(&format!("{name} bf16 F_t0.5_null"), &out, &f.f32("F_t0.5_null").unwrap().1, 1e-2);
    }
}

#[test]
fn same_bits_for_any_thread_count() {
    let cfg = ModelConfig::named(Arch::Sit, "S", 2, 16, 4, 10).unwrap();
    let params = Model::init(cfg.clone(), CpuBackend::<f32>::new(1).unwrap(), 3).unwrap().read_params().unwrap();
    let x: Vec<f32> = (0..3 * cfg.image_len()).map(|i| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5).collect();
    let runs: Vec<Vec<f32>> = [1, 2, 3]
        .iter()
        .map(|&th| {
            let mut m = Model::from_params(cfg.clone(), bf16_cpu(th), &params).unwrap();
            m.enter_inference_layout().unwrap();
            let mut out = vec![0f32; x.len()];
            m.forward(&x, &[0.1, 0.5, 0.9], &[1, 2, 10], &mut out).unwrap();
            out
        })
        .collect();
    assert!(runs[1] == runs[0] && runs[2] == runs[0], "bf16 outputs differ between 1, 2 and 3 threads");
}

#[test]
fn packed_layout_holds_linear_weights_in_half_the_bytes_and_reads_back_rounded() {
    let cfg = ModelConfig::named(Arch::Sit, "S", 2, 32, 4, 1000).unwrap();
    let params = Model::init(cfg.clone(), CpuBackend::<f32>::new(1).unwrap(), 5).unwrap().read_params().unwrap();
    let mut m = Model::from_params(cfg.clone(), bf16_cpu(2), &params).unwrap();
    let f32_bytes = m.weight_bytes();
    assert_eq!(f32_bytes, 4 * params.len());
    m.enter_inference_layout().unwrap();
    // Every Linear weight [o, i] takes ⌈o/16⌉·16·⌈i/2⌉ words; everything else 4 bytes.
    let linear: usize = cfg.hidden * 6 * cfg.hidden * cfg.depth + cfg.hidden * 12 * cfg.hidden * cfg.depth;
    let held = m.weight_bytes();
    eprintln!(
        "SiT-S/2: f32 weights {f32_bytes} bytes, packed {held} bytes ({:.3}×)",
        held as f64 / f32_bytes as f64
    );
    assert!(
        held < f32_bytes / 2 + 4 * (params.len() - linear),
        "packed layout holds {held} of {f32_bytes} bytes"
    );
    assert!(held as f64 <= 0.51 * f32_bytes as f64, "packed layout holds {held} of {f32_bytes} bytes");
    // Reading gives the weights the products use: Linear weights rounded to bf16,
    // everything else exact.
    let back = m.read_params().unwrap();
    let rounded = |v: f32| half::bf16::from_f32(v).to_f32();
    let (mut exact, mut changed) = (0, 0);
    for (&a, &b) in params.iter().zip(&back) {
        if a == b {
            exact += 1;
        } else {
            assert_eq!(b, rounded(a), "a parameter is neither exact nor its bf16 rounding");
            changed += 1;
        }
    }
    assert!(changed > linear / 2 && exact > 0, "{changed} rounded, {exact} exact");
    // Writing goes through the plain layout and packs again; the model stays packed.
    m.write_params(&params).unwrap();
    assert!(m.in_inference_layout());
    assert_eq!(m.read_params().unwrap(), back);
    // Leaving the packed layout gives the rounded weights in f32.
    m.use_plain_layout().unwrap();
    assert!(!m.in_inference_layout());
    assert_eq!(m.read_params().unwrap(), back);
    assert_eq!(m.weight_bytes(), f32_bytes);
}

/// A final layer with fewer than 16 outputs packs into more than its o·i values (its
/// panel is padded to 16 columns); the in-place rewrite still fits it behind the
/// weights packed before it, and the results stay within the bound.
#[test]
fn narrow_final_layer_packs_and_matches_f32_within_the_bound() {
    let cfg = ModelConfig {
        in_channels: 1,
        ..ModelConfig::reference_tiny(Arch::Tit)
    };
    let params = Model::init(cfg.clone(), CpuBackend::<f32>::new(1).unwrap(), 9).unwrap().read_params().unwrap();
    // Non-zero final layer and gates (the reference init zeroes them).
    let params: Vec<f32> = params
        .iter()
        .enumerate()
        .map(|(k, &v)| if v == 0.0 { 0.02 * ((k % 7) as f32 - 3.0) } else { v })
        .collect();
    let x: Vec<f32> = (0..2 * cfg.image_len()).map(|i| ((i * 31 % 17) as f32 / 17.0) - 0.5).collect();
    let mut f32_model = Model::from_params(cfg.clone(), CpuBackend::<f32>::new(1).unwrap(), &params).unwrap();
    let mut want = vec![0f32; x.len()];
    f32_model.forward(&x, &[0.3, 0.7], &[1, 10], &mut want).unwrap();
    let mut m = Model::from_params(cfg, bf16_cpu(2), &params).unwrap();
    m.enter_inference_layout().unwrap();
    let mut out = vec![0f32; x.len()];
    m.forward(&x, &[0.3, 0.7], &[1, 10], &mut out).unwrap();
    assert_close("narrow TiT bf16 vs f32", &out, &want, 1e-2);
    let rounded = |v: f32| half::bf16::from_f32(v).to_f32();
    assert!(m.read_params().unwrap().iter().zip(&params).all(|(&b, &a)| b == a || b == rounded(a)));
}

/// The in-place rewrite refuses a step that would write past its own source and leaves
/// the buffer untouched (the model then packs into a new buffer); a fitting plan moves,
/// packs and shrinks.
#[test]
fn pack_in_place_checks_its_plan() {
    use ucgm::backend::{Backend, PackStep};
    let be = bf16_cpu(1);
    let plain: Vec<f32> = (0..40).map(|v| v as f32 * 0.25).collect();
    // W[4, 3] at 0..12 packs into ⌈4/16⌉·16·⌈3/2⌉ = 32 words: more than its 12 values.
    let mut buf = plain.clone();
    let too_big = [PackStep::Pack {
        from: 0..12,
        to: 0,
        i: 3,
        o: 4,
    }];
    assert!(!be.pack_in_place(&mut buf, &too_big, 32).unwrap());
    assert_eq!(buf, plain, "a refused plan must leave the buffer untouched");
    // W[16, 2] at 4..36 packs into 16 words at 4; the run 36..40 moves to 20.
    let steps = [
        PackStep::Copy { from: 0..4, to: 0 },
        PackStep::Pack {
            from: 4..36,
            to: 4,
            i: 2,
            o: 16,
        },
        PackStep::Copy { from: 36..40, to: 20 },
    ];
    assert!(be.pack_in_place(&mut buf, &steps, 24).unwrap());
    assert_eq!(buf.len(), 24);
    assert_eq!(&buf[..4], &plain[..4]);
    assert_eq!(&buf[20..], &plain[36..]);
    let mut w = vec![0f32; 32];
    be.unpack_weight(&buf[4..20], &mut w, 2, 16);
    assert!(w.iter().zip(&plain[4..36]).all(|(&a, &b)| a == half::bf16::from_f32(b).to_f32()));
}

#[test]
fn float32_mode_is_unchanged_and_bf16_is_not_used_for_training() {
    // Without bf16 the inference layout is the exact transposed one.
    let be = CpuBackend::<f32>::new(2).unwrap();
    let mut m = load("sit", be);
    let before = m.read_params().unwrap();
    m.enter_inference_layout().unwrap();
    assert_eq!(m.read_params().unwrap(), before);
    // A trainer on a bf16 CPU backend is refused with a message that says why.
    let req = BackendRequest {
        choice: BackendChoice::Cpu,
        threads: 1,
        bf16: true,
        ..Default::default()
    };
    let sel = ucgm::engine::select(&req).unwrap();
    assert!(sel.backend.bf16(), "the CPU backend reports its bf16 mode");
    assert!(sel.backend.describe().contains("bf16"), "{}", sel.backend.describe());
    let model = AnyModel::init(ModelConfig::reference_tiny(Arch::Sit), sel.backend, 1).unwrap();
    let tc = TrainerConfig {
        transport: TransportSection::default(),
        optimizer: OptimizerSection::adamw(1e-3),
        train: TrainSection::default(),
    };
    let e = AnyTrainer::new(tc, model).err().expect("a bf16 CPU trainer must be refused").to_string();
    assert!(e.contains("bf16 on the CPU is a sampling mode"), "{e}");
}
