//! The `ucgm` command-line tool: `info` and `sample` on the reference weights, PNG and
//! safetensors outputs, and one-line errors with a non-zero exit code for bad input.

mod common;

use std::process::Command;

fn ucgm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ucgm")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn info_and_sample_on_reference_weights() {
    let w = common::reference("tit_tiny_weights.safetensors");
    let w = w.to_str().unwrap();
    let (ok, out, err) = ucgm(&["info", w]);
    assert!(ok, "{err}");
    assert!(out.contains("TiT") && out.contains("4×8×8") && out.contains("10 classes"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("s.safetensors");
    let (ok, _, err) = ucgm(&[
        "sample",
        "--ckpt",
        w,
        "--heads",
        "4",
        "--steps",
        "4",
        "--n",
        "3",
        "--labels",
        "1,7",
        "--out",
        st.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(ok, "{err}");
    let f = ucgm::tensor_file::TensorFile::open(&st).unwrap();
    let (shape, v) = f.f32("samples").unwrap();
    assert_eq!(shape, vec![3, 4, 8, 8]);
    assert!(v.iter().all(|x| x.is_finite()));
    assert_eq!(f.i64("labels").unwrap().1, vec![1, 7, 1]);
    // 4 channels cannot be a PNG: a clear error, non-zero exit.
    let (ok, _, err) = ucgm(&[
        "sample",
        "--ckpt",
        w,
        "--heads",
        "4",
        "--steps",
        "1",
        "--out",
        dir.path().join("x.png").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("channels") && err.lines().count() == 1, "{err}");
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    for args in [
        vec!["info", junk.to_str().unwrap()],
        vec!["info", "/no/such/file.safetensors"],
        vec!["sample", "--ckpt", junk.to_str().unwrap()],
        vec!["train", "--config", "/no/such/config.yaml"],
    ] {
        let (ok, _, err) = ucgm(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.starts_with("ucgm: error:") && err.lines().count() == 1, "{args:?}: {err}");
    }
    let w = common::reference("sit_tiny_weights.safetensors");
    let (ok, _, err) = ucgm(&["sample", "--ckpt", w.to_str().unwrap(), "--heads", "4", "--transport", "Warp"]);
    assert!(!ok && err.contains("Warp"), "{err}");
}
