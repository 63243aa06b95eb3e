//! `ucgm train` reads its YAML strictly: an unknown key is a one-line error naming the key
//! and the nearest known one; keys of the reference's schema that the engine does not
//! implement are one warning line naming them; contradicting values are errors naming
//! the keys; `--resume` with a config for another model (or other trainer settings) is an
//! error naming the differing fields.

mod cli_common;

use cli_common::*;

use std::path::Path;

/// A tiny run config: `data`, `model`, `train` and `extra` sections are spliced in.
fn config(dir: &Path, name: &str, data: &str, model: &str, train: &str, extra: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "output_dir: {}\ndata: {{source: builtin, image_size: 16, num_classes: 10, channels: 1, train_len: 16{data}}}\n\
             model: {{type: TiT, hidden_size: 16, depth: 1, num_heads: 2, patch_size: 4{model}}}\n\
             train: {{max_steps: 1, global_batch_size: 2, ckpt_every: 1{train}}}\noptimizer: {{type: AdamW, lr: 0.001}}\n\
             sample: {{sampling_steps: 1, per_batch_size: 2}}\n{extra}",
            dir.join("run").display()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// The one error line of a failed run.
fn one_error_line(ok: bool, err: &str) -> &str {
    assert!(!ok, "succeeded: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ucgm: error:"), "{err}");
    err.trim_end()
}

#[test]
fn unknown_key_is_an_error_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "a.yaml", "", "", ", max_stepz: 3", "");
    let (ok, _, err) = train(&cfg, &[]);
    let line = one_error_line(ok, &err);
    assert!(line.contains("unknown key `train.max_stepz` (did you mean `train.max_steps`?)"), "{line}");
    assert!(line.contains("a.yaml"), "the error names the file: {line}");
    assert!(!dir.path().join("run").exists(), "nothing ran");
    // A key in the wrong section points to the right one.
    let cfg = config(dir.path(), "b.yaml", "", "", ", lr: 0.1", "");
    let (ok, _, err) = train(&cfg, &[]);
    assert!(
        one_error_line(ok, &err).contains("unknown key `train.lr` (did you mean `optimizer.lr`?)"),
        "{err}"
    );
}

#[test]
fn reference_only_keys_are_one_warning_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "a.yaml",
        ", num_workers: 8",
        "",
        ", no_buffer: false",
        "vae: {type: sdvae_f8c4, downsample_ratio: 1}\n",
    );
    let (ok, _, err) = train(&cfg, &[]);
    assert!(ok, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    let w = warnings[0];
    assert!(w.starts_with("ucgm: warning:") && w.contains("a.yaml"), "{w}");
    for key in ["data.num_workers", "vae.type"] {
        assert!(w.contains(key), "{key} not named: {w}");
    }
    // Neutral values (what the engine does anyway) are not warned about.
    assert!(!w.contains("train.no_buffer"), "train.no_buffer named: {w}");
    assert!(dir.path().join("run/checkpoints/0000001.safetensors").exists());
    // No reference-only keys: no warning.
    let cfg = config(dir.path(), "b.yaml", "", "", "", "");
    let (ok, _, err) = train(&cfg, &[]);
    assert!(ok && !err.contains("warning"), "{err}");
}

#[test]
fn contradictions_are_errors_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "a.yaml", "", "", "", "");
    let base = std::fs::read_to_string(&cfg).unwrap();
    for (from, to, keys) in [
        ("channels: 1", "channels: 1, data_path: /data", &["data.data_path", "data.source"][..]),
        ("patch_size: 4", "patch_size: 4, in_chans: 3", &["model.in_chans", "data.channels"]),
        ("image_size: 16", "image_size: 18", &["data.image_size", "model.patch_size"]),
        // A named model with a shape key that says otherwise.
        (
            "type: TiT, hidden_size: 16, depth: 1, num_heads: 2, patch_size: 4",
            "type: TiT-S/4, depth: 2",
            &["model.depth", "model.type", "TiT-S/4"],
        ),
    ] {
        assert!(base.contains(from));
        std::fs::write(&cfg, base.replace(from, to)).unwrap();
        let (ok, _, err) = train(&cfg, &[]);
        let line = one_error_line(ok, &err);
        assert!(keys.iter().all(|k| line.contains(k)), "{keys:?}: {line}");
    }
    assert!(!dir.path().join("run").exists(), "nothing ran");
}

#[test]
fn resume_with_another_model_or_settings_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "a.yaml", "", "", "", "");
    let (ok, _, err) = train(&cfg, &[]);
    assert!(ok, "{err}");
    let ckpt = dir.path().join("run/checkpoints/0000001.safetensors");
    assert!(ckpt.exists());
    let ckpt = ckpt.to_str().unwrap();
    let other = config(dir.path(), "b.yaml", "", "", "", "");
    let text = std::fs::read_to_string(&other)
        .unwrap()
        .replace("hidden_size: 16, depth: 1", "hidden_size: 32, depth: 2")
        .replace("lr: 0.001", "lr: 0.002");
    std::fs::write(&other, text).unwrap();
    let (ok, _, err) = train(&other, &["--resume", ckpt, "--max-steps", "2"]);
    let line = one_error_line(ok, &err);
    for want in [
        "model.hidden_size: config 32, checkpoint 16",
        "model.depth: config 2, checkpoint 1",
        "optimizer.lr: config 0.002, checkpoint 0.001",
    ] {
        assert!(line.contains(want), "{want}: {line}");
    }
    assert!(!line.contains("max_steps"), "{line}");
    assert!(!dir.path().join("run/checkpoints/0000002.safetensors").exists());
    // The run's own config resumes (max_steps may change).
    let (ok, _, err) = train(&cfg, &["--resume", ckpt, "--max-steps", "2"]);
    assert!(ok, "{err}");
    assert!(dir.path().join("run/checkpoints/0000002.safetensors").exists());
}
