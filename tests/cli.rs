//! The `ucgm` command-line tool: `info` and `sample` on the reference weights, PNG and
//! safetensors outputs, and one-line errors with a non-zero exit code for bad input.

mod cli_common;

use cli_common::*;

mod common;

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

/// `--backend`: auto says on stderr which backend runs and why; an explicit `cuda` that
/// cannot be had is a one-line error with the reason and a non-zero exit (never a panic);
/// a run config's `backend:` key is honoured and the flag overrides it.
#[test]
fn backend_choice_is_reported_and_unavailable_cuda_fails_cleanly() {
    let w = common::reference("tit_tiny_weights.safetensors");
    let w = w.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.safetensors");
    let sample = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--ckpt",
            w,
            "--heads",
            "4",
            "--steps",
            "2",
            "--n",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ucgm(&args)
    };
    let cuda = ucgm::engine::cuda_availability(0);

    let (ok, _, err) = sample(&["--threads", "1"]);
    assert!(ok, "{err}");
    let first = err.lines().next().unwrap_or_default();
    match &cuda {
        Ok(device) => assert!(first.starts_with(&format!("backend auto: {device}")), "{err}"),
        Err(why) => assert_eq!(first, format!("backend auto: cpu (1 thread); cuda unavailable: {why}")),
    }

    let (ok, _, err) = sample(&["--backend", "cpu", "--threads", "2", "--tf32"]);
    assert!(ok && err.lines().next() == Some("backend cpu: cpu (2 threads)"), "{err}");

    let (ok, _, err) = sample(&["--backend", "cuda"]);
    match &cuda {
        Ok(device) => assert!(ok && err.starts_with(&format!("backend cuda: {device}")), "{err}"),
        Err(why) => {
            assert!(!ok, "--backend cuda succeeded without CUDA");
            assert_eq!(err.trim_end(), format!("ucgm: error: backend error: CUDA backend not available: {why}"));
            assert!(!err.contains("panicked"), "{err}");
        }
    }

    let (ok, _, err) = sample(&["--backend", "tpu"]);
    assert!(!ok && err.contains("expected auto, cpu or cuda"), "{err}");

    // A run config asking for CUDA: the same clean error without CUDA; `--backend cpu` overrides.
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "output_dir: {}\ndata: {{source: builtin, image_size: 16, num_classes: 10, channels: 1, train_len: 16}}\n\
             model: {{type: TiT, hidden_size: 16, depth: 1, num_heads: 2, patch_size: 4}}\n\
             train: {{max_steps: 1, global_batch_size: 2, ckpt_every: 1}}\noptimizer: {{type: AdamW, lr: 0.001}}\nsample: {{sampling_steps: 1, per_batch_size: 2}}\n\
             backend: {{type: cuda, device: 0}}\n",
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let (ok, _, err) = ucgm(&["train", "--config", config.to_str().unwrap(), "--threads", "1"]);
    match &cuda {
        Ok(_) => assert!(ok && err.starts_with("backend cuda: cuda:0"), "{err}"),
        Err(why) => assert!(
            !ok && err.trim_end() == format!("ucgm: error: backend error: CUDA backend not available: {why}"),
            "{err}"
        ),
    }
    let (ok, _, err) = ucgm(&["train", "--config", config.to_str().unwrap(), "--backend", "cpu", "--threads", "1"]);
    assert!(ok && err.starts_with("backend cpu: cpu (1 thread)"), "{err}");
}
