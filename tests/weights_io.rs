//! Weights files: save → load round trip, f16 / bf16 files converted on load, and a
//! clear error naming the tensor for a missing, extra, mis-shaped or wrongly typed
//! tensor, and for truncated or corrupt files.

mod common;

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use ucgm::tensor_file::TensorFile;
use ucgm::{CpuBackend, Error, Model};

/// name → (dtype, shape, little-endian bytes) of a weights file being edited.
type TensorMap = HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>;
/// An edit of a weights file.
type Edit = Box<dyn FnOnce(&mut TensorMap)>;

fn be() -> CpuBackend<f32> {
    CpuBackend::<f32>::new(1).unwrap()
}

/// Rewrites the reference SiT weights with `edit` applied to the (name → (dtype, shape, bytes)) map.
fn rewrite(dir: &std::path::Path, name: &str, edit: impl FnOnce(&mut TensorMap)) -> std::path::PathBuf {
    let f = TensorFile::open(common::reference("sit_tiny_weights.safetensors")).unwrap();
    let mut map = HashMap::new();
    for n in f.names() {
        let (shape, v) = f.f32(n).unwrap();
        map.insert(n.clone(), (Dtype::F32, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()));
    }
    edit(&mut map);
    let views: Vec<(String, TensorView<'_>)> = map
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn forward(m: &mut Model<CpuBackend>) -> Vec<f32> {
    let f = TensorFile::open(common::reference("sit_tiny_sampler.safetensors")).unwrap();
    let (_, z) = f.f32("z").unwrap();
    let mut out = vec![0f32; z.len()];
    m.forward(&z, &[0.5, 0.5], &[1, 7], &mut out).unwrap();
    out
}

#[test]
fn save_load_roundtrip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Model::load(common::reference("sit_tiny_weights.safetensors"), be(), Some(4)).unwrap();
    let p = dir.path().join("w.safetensors");
    a.save(&p).unwrap();
    // The saved file carries its configuration: no heads needed.
    let mut b = Model::load(&p, be(), None).unwrap();
    assert_eq!(a.read_params().unwrap(), b.read_params().unwrap());
    assert_eq!(forward(&mut a), forward(&mut b));
}

#[test]
fn half_precision_files_are_converted() {
    let dir = tempfile::tempdir().unwrap();
    let mut f32_model = Model::load(common::reference("sit_tiny_weights.safetensors"), be(), Some(4)).unwrap();
    let want = forward(&mut f32_model);
    for (dtype, tol) in [(Dtype::F16, 2e-3), (Dtype::BF16, 2e-2)] {
        let p = rewrite(dir.path(), "h.safetensors", |m| {
            for (d, _, b) in m.values_mut() {
                let vals: Vec<f32> = b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                *b = match dtype {
                    Dtype::F16 => vals.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
                    _ => vals.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
                };
                *d = dtype;
            }
        });
        let mut m = Model::load(&p, be(), Some(4)).unwrap();
        common::assert_close(&format!("{dtype:?} weights"), &forward(&mut m), &want, tol);
    }
}

#[test]
fn every_mismatch_is_a_clear_error_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "blocks.1.mlp.fc2.bias",
            Box::new(|m| {
                m.remove("blocks.1.mlp.fc2.bias");
            }),
        ),
        (
            "blocks.0.attn.extra",
            Box::new(|m| {
                m.insert("blocks.0.attn.extra".into(), (Dtype::F32, vec![1], vec![0; 4]));
            }),
        ),
        (
            "blocks.0.attn.proj.weight",
            Box::new(|m| {
                let e = m.get_mut("blocks.0.attn.proj.weight").unwrap();
                e.1 = vec![32, 128];
            }),
        ),
        (
            "final_layer.linear.bias",
            Box::new(|m| {
                let e = m.get_mut("final_layer.linear.bias").unwrap();
                e.0 = Dtype::I32;
            }),
        ),
    ];
    for (i, (name, edit)) in cases.into_iter().enumerate() {
        let p = rewrite(dir.path(), &format!("bad{i}.safetensors"), edit);
        let e = Model::load(&p, be(), Some(4)).err().unwrap_or_else(|| panic!("{name}: loaded"));
        assert!(matches!(e, Error::Weights(_)), "{name}: {e}");
        assert!(e.to_string().contains(name), "{name}: {e}");
    }
    // Truncated and corrupt files.
    let bytes = std::fs::read(common::reference("sit_tiny_weights.safetensors")).unwrap();
    let p = dir.path().join("trunc.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(Model::load(&p, be(), Some(4)), Err(Error::Format { .. })));
    std::fs::write(&p, &bytes[..5]).unwrap();
    assert!(matches!(Model::load(&p, be(), Some(4)), Err(Error::Format { .. })));
    let mut corrupt = bytes.clone();
    corrupt[8..16].copy_from_slice(b"{{{{{{{{");
    std::fs::write(&p, &corrupt).unwrap();
    assert!(matches!(Model::load(&p, be(), Some(4)), Err(Error::Format { .. })));
    // Unwritable destination.
    let m = Model::load(common::reference("sit_tiny_weights.safetensors"), be(), Some(4)).unwrap();
    assert!(matches!(m.save("/no/such/dir/w.safetensors"), Err(Error::Io { .. })));
}
