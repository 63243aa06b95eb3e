//! The checkpoints folder of `ucgm train`: `train.keep_last` / `--keep-last` retention, the
//! `latest` pointer and `--resume latest` / `--resume <dir>`, removal of the temporary
//! files of interrupted writes, and a bad output directory failing before any step.

mod cli_common;

use cli_common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ucgm::tensor_file::TensorFile;

/// A tiny run config writing to `out`, checkpointing every step.
fn config(dir: &Path, out: &Path, steps: u64, train_extra: &str) -> String {
    let path = dir.join("run.yaml");
    std::fs::write(
        &path,
        format!(
            "output_dir: {}\ndata: {{source: builtin, image_size: 16, num_classes: 10, channels: 1, train_len: 16}}\n\
             model: {{type: TiT, hidden_size: 16, depth: 1, num_heads: 2, patch_size: 4}}\n\
             train: {{max_steps: {steps}, global_batch_size: 2, ckpt_every: 1{train_extra}}}\n\
             optimizer: {{type: AdamW, lr: 0.001}}\nsample: {{sampling_steps: 1, per_batch_size: 2}}\n",
            out.display()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// Sorted file names of a folder.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn latest(ckpts: &Path) -> String {
    std::fs::read_to_string(ckpts.join("latest")).unwrap()
}

#[test]
fn keep_last_retention_latest_pointer_and_resume_latest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let ckpts = out.join("checkpoints");
    let cfg = config(dir.path(), &out, 4, ", keep_last: 2");
    let (ok, _, err) = train(&cfg, &[]);
    assert!(ok, "{err}");
    assert_eq!(names(&ckpts), ["0000003.safetensors", "0000004.safetensors", "latest"]);
    assert_eq!(latest(&ckpts), "0000004.safetensors\n");
    assert!(err.contains("removed old checkpoint") && err.contains("0000001.safetensors"), "{err}");
    // A file of another name in the folder is never deleted.
    std::fs::write(ckpts.join("best.safetensors"), b"mine").unwrap();

    // --resume latest continues from step 4; --keep-last overrides the config.
    let (ok, _, err) = train(&cfg, &["--resume", "latest", "--max-steps", "5", "--keep-last", "1"]);
    assert!(ok, "{err}");
    assert_eq!(names(&ckpts), ["0000005.safetensors", "best.safetensors", "latest"]);
    assert_eq!(latest(&ckpts), "0000005.safetensors\n");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("checkpoint ")).count(),
        1,
        "one step, one checkpoint: {err}"
    );

    // --resume <run folder> follows the same pointer.
    let (ok, _, err) = train(&cfg, &["--resume", out.to_str().unwrap(), "--max-steps", "6"]);
    assert!(ok, "{err}");
    assert_eq!(latest(&ckpts), "0000006.safetensors\n");
    assert!(ckpts.join("0000005.safetensors").exists(), "keep_last 2 from the config again");
    assert!(!err.contains("0000001.safetensors"), "{err}");

    // The resumed run equals an uninterrupted one.
    let straight = dir.path().join("straight");
    let cfg2 = config(dir.path(), &straight, 6, "");
    let (ok, _, err) = train(&cfg2, &[]);
    assert!(ok, "{err}");
    let a = TensorFile::open(straight.join("checkpoints/0000006.safetensors")).unwrap();
    let b = TensorFile::open(ckpts.join("0000006.safetensors")).unwrap();
    assert_eq!(a.names(), b.names());
    for n in a.names() {
        assert!(a.f32(n).unwrap() == b.f32(n).unwrap(), "{n} differs after resume");
    }

    // No pointer: a clear error.
    let empty = dir.path().join("empty");
    let cfg3 = config(dir.path(), &empty, 1, "");
    let (ok, _, err) = train(&cfg3, &["--resume", "latest"]);
    assert!(
        !ok && err.starts_with("ucgm: error:") && err.contains("latest") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn stale_temporary_files_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let ckpts = out.join("checkpoints");
    std::fs::create_dir_all(&ckpts).unwrap();
    std::fs::create_dir_all(out.join("samples")).unwrap();
    // The PID of a process that has exited.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = [
        ckpts.join(format!(".0000007.safetensors.{dead}.tmp")),
        ckpts.join(format!(".latest.{dead}.tmp")),
        out.join("samples").join(format!(".0000007.png.{dead}.tmp")),
    ];
    // A live writer's file (PID 1 always runs) and files of other names stay.
    let live = ckpts.join(".0000008.safetensors.1.tmp");
    let other = [ckpts.join(format!(".notes.{dead}.tmp")), ckpts.join(format!("0000007.safetensors.{dead}.tmp"))];
    for f in stale.iter().chain([&live]).chain(&other) {
        std::fs::write(f, vec![0u8; 4096]).unwrap();
    }
    let cfg = config(dir.path(), &out, 1, "");
    let (ok, _, err) = train(&cfg, &[]);
    assert!(ok, "{err}");
    for f in &stale {
        assert!(!f.exists(), "{} was not removed", f.display());
        let line = err.lines().find(|l| l.contains(&*f.file_name().unwrap().to_string_lossy()));
        assert!(line.is_some_and(|l| l.contains("removed stale temporary file")), "{err}");
    }
    assert!(live.exists() && other.iter().all(|f| f.exists()));
    assert!(err.contains("process 1 is running"), "{err}");
    // Every write of the run itself was renamed into place: no temporary file of its own left.
    let tmp: Vec<String> = names(&ckpts).into_iter().filter(|n| n.ends_with(".tmp")).collect();
    let mut want: Vec<String> = [&live, &other[0], &other[1]]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    want.sort();
    assert_eq!(tmp, want);
}

#[test]
fn bad_output_dir_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    // A million steps: only an early check can make this fail fast.
    let cfg = config(dir.path(), &file.join("run"), 1_000_000, "");
    let start = Instant::now();
    let (ok, _, err) = train(&cfg, &[]);
    assert!(!ok, "{err}");
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ucgm: error:") && err.contains("cannot create the output directory") && err.contains("a-file"),
        "{err}"
    );
    assert!(!err.contains("backend"), "fails before the backend starts: {err}");
}
