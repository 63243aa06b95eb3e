//! Data-parallel training over MPI (`--features mpi`, Open MPI's `mpirun`):
//! * `mpirun -np 2 ucgm train` equals one process on the same global batch (relative L2
//!   difference of the weights at float32 summation rounding) and is bit-identical
//!   across reruns;
//! * resuming on 1 rank from a 2-rank checkpoint continues the same trajectory;
//! * a rank killed mid-run ends the job, a hung rank trips the other's watchdog within
//!   `UCGM_DIST_TIMEOUT`, and the last checkpoint loads.
//!
//! * `mpirun -np 2 ucgm eval` gives the statistics, FID and IS of one process: bit for
//!   bit when every rank's batches are the single process's, to rounding otherwise.
//!
//! Each test prints "skipped: …" and passes when this build has no MPI or `mpirun` is
//! missing, unless `UCGM_REQUIRE_MPI=1` (CI), which turns a skip into a failure.

mod cli_common;
mod eval_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ucgm::trainer::{read_weights, CheckpointWeights};

/// Whether the MPI tests can run here; prints why not.
fn mpi_ready() -> bool {
    let why = if !cfg!(feature = "mpi") {
        Some("built without feature mpi")
    } else if Command::new("mpirun").arg("--version").output().is_err() {
        Some("mpirun not found")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            assert!(std::env::var("UCGM_REQUIRE_MPI").as_deref() != Ok("1"), "UCGM_REQUIRE_MPI=1 but {why}");
            println!("skipped: {why}");
            false
        }
    }
}

/// A tiny run: `steps` steps at global batch 7 (4 + 3 samples on 2 ranks, the last
/// sample's label dropped), a checkpoint every `every` steps.
fn config(dir: &Path, name: &str, steps: u64, every: u64, model: &str) -> PathBuf {
    let out = dir.join(name);
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "output_dir: {}\ndata: {{source: builtin, image_size: 16, num_classes: 10, channels: 1, train_len: 64}}\n\
             model: {model}\n\
             train: {{max_steps: {steps}, global_batch_size: 7, ckpt_every: {every}, global_seed: 3}}\n\
             optimizer: {{type: AdamW, lr: 0.001}}\nsample: {{sampling_steps: 1, per_batch_size: 2}}\n",
            out.display()
        ),
    )
    .unwrap();
    path
}

const TINY: &str = "{type: TiT, hidden_size: 16, depth: 1, num_heads: 2, patch_size: 4}";

fn ucgm_train_args<'a>(cfg: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--config", cfg, "--backend", "cpu", "--threads", "1"];
    args.extend_from_slice(extra);
    args
}

/// `mpirun -np N ucgm train …` (not yet waited for).
fn mpirun(n: usize, args: &[&str], timeout_s: &str) -> Child {
    Command::new("mpirun")
        .args(["-np", &n.to_string(), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none"])
        .args(["-x", "UCGM_DIST_TIMEOUT"])
        .env("UCGM_DIST_TIMEOUT", timeout_s)
        // Containers often forbid the cross-memory-attach single-copy path.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .arg(env!("CARGO_BIN_EXE_ucgm"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun")
}

fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn weights(out: &Path, step: u64, which: CheckpointWeights) -> Vec<f32> {
    read_weights(out.join(format!("checkpoints/{step:07}.safetensors")), which).unwrap().1
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// The float32 summation-order bound: each rank sums its part's gradient contributions
/// and the parts are then added, where one process adds all samples in one order — a
/// difference of the order of float32 rounding (6e-8 relative) in the gradient, carried
/// into the weights by AdamW. Measured: ~4e-9 (online) and ~6e-14 (EMA) after 3 steps.
const SUMMATION_TOLERANCE: f64 = 1e-7;

#[test]
fn two_ranks_equal_one_process_and_rerun_bit_identically() {
    if !mpi_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let steps = 3;
    let one = config(dir.path(), "one", steps, steps, TINY);
    let (ok, _, err) = cli_common::ucgm(&ucgm_train_args(one.to_str().unwrap(), &[]));
    assert!(ok, "{err}");
    let mut runs = Vec::new();
    for name in ["two_a", "two_b"] {
        let cfg = config(dir.path(), name, steps, steps, TINY);
        let (ok, text) = finish(mpirun(2, &ucgm_train_args(cfg.to_str().unwrap(), &[]), "60"));
        assert!(ok, "{text}");
        assert!(text.contains("data parallel: 2 ranks over mpi, global batch 7"), "{text}");
        runs.push(dir.path().join(name));
    }
    for which in [CheckpointWeights::Online, CheckpointWeights::Ema] {
        let single = weights(&dir.path().join("one"), steps, which);
        let (a, b) = (weights(&runs[0], steps, which), weights(&runs[1], steps, which));
        assert!(a == b, "{which:?}: two 2-rank runs differ (rel-L2 {:e})", rel_l2(&a, &b));
        let start = ucgm::AnyModel::init(
            read_weights(runs[0].join("checkpoints/0000003.safetensors"), which).unwrap().0,
            ucgm::AnyBackend::Cpu(ucgm::CpuBackend::new(1).unwrap()),
            3,
        )
        .unwrap()
        .read_params()
        .unwrap();
        let (d, moved) = (rel_l2(&a, &single), rel_l2(&single, &start));
        println!("{which:?}: 2 ranks vs 1 process after {steps} steps: rel-L2 {d:e} (the weights moved by rel-L2 {moved:e})");
        assert!(d <= SUMMATION_TOLERANCE, "{which:?}: rel-L2 {d:e}");
        assert!(
            moved > 1e3 * d.max(1e-12),
            "training moved the weights ({moved:e}) far beyond the rank difference"
        );
    }
}

#[test]
fn one_rank_resumes_a_two_rank_checkpoint_on_the_same_trajectory() {
    if !mpi_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let two = config(dir.path(), "two", 4, 2, TINY);
    let (ok, text) = finish(mpirun(2, &ucgm_train_args(two.to_str().unwrap(), &[]), "60"));
    assert!(ok, "{text}");
    // One process continues the 2-rank run from its step-2 checkpoint to step 4.
    let resumed = config(dir.path(), "resumed", 4, 2, TINY);
    let ckpt = dir.path().join("two/checkpoints/0000002.safetensors");
    let (ok, _, err) = cli_common::ucgm(&ucgm_train_args(resumed.to_str().unwrap(), &["--resume", ckpt.to_str().unwrap()]));
    assert!(ok, "{err}");
    // One process all the way.
    let one = config(dir.path(), "one", 4, 2, TINY);
    let (ok, _, err) = cli_common::ucgm(&ucgm_train_args(one.to_str().unwrap(), &[]));
    assert!(ok, "{err}");
    for which in [CheckpointWeights::Online, CheckpointWeights::Ema] {
        let r = weights(&dir.path().join("resumed"), 4, which);
        let t = weights(&dir.path().join("two"), 4, which);
        let o = weights(&dir.path().join("one"), 4, which);
        let (rt, ro) = (rel_l2(&r, &t), rel_l2(&r, &o));
        println!("{which:?}: step 4, resumed on 1 rank from 2 ranks at step 2: rel-L2 {rt:e} vs 2 ranks throughout, {ro:e} vs 1 process throughout");
        assert!(rt <= SUMMATION_TOLERANCE && ro <= SUMMATION_TOLERANCE, "{which:?}: {rt:e} {ro:e}");
    }
}

/// The pid of rank `rank` among mpirun's children (read from their environment).
fn rank_pid(mpirun_pid: u32, rank: usize) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid != Some(mpirun_pid) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Starts a long 2-rank run, waits for its step-2 checkpoint, applies `signal` to rank 1
/// and returns (seconds until mpirun exited after the signal, its output, the run folder).
fn disturb_rank1(signal: i32, timeout_s: u64) -> (f64, bool, String, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "long", 1_000_000, 2, TINY);
    let mut child = mpirun(2, &ucgm_train_args(cfg.to_str().unwrap(), &[]), &timeout_s.to_string());
    let out = dir.path().join("long");
    let start = Instant::now();
    while !out.join("checkpoints/0000002.safetensors").exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rank_pid(child.id(), 1).expect("rank 1's process");
    // SAFETY: a signal to a process this test started (through mpirun).
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let hit = Instant::now();
    let deadline = Duration::from_secs(timeout_s + 60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if hit.elapsed() > deadline {
            // SAFETY: as above; ends what this test started before failing.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let _ = child.kill();
            panic!("the run did not end within {} s of the signal", deadline.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = hit.elapsed().as_secs_f64();
    // SAFETY: rank 1 may still be stopped; it is this test's process.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let (ok, text) = finish(child);
    (secs, ok, text, out, dir)
}

fn latest_checkpoint_loads(out: &Path) {
    let latest = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .max()
        .unwrap();
    read_weights(&latest, CheckpointWeights::Online).unwrap_or_else(|e| panic!("{}: {e}", latest.display()));
    read_weights(&latest, CheckpointWeights::Ema).unwrap();
    println!("the last checkpoint {} loads", latest.display());
}

#[test]
fn a_killed_rank_ends_the_run_and_the_checkpoint_loads() {
    if !mpi_ready() {
        return;
    }
    let timeout = 10;
    let (secs, ok, text, out, _dir) = disturb_rank1(libc::SIGKILL, timeout);
    println!(
        "rank 1 killed: mpirun exited after {secs:.1} s (timeout {timeout} s)\n{}",
        text.lines().rev().take(8).collect::<Vec<_>>().join("\n")
    );
    assert!(!ok, "the run must fail:\n{text}");
    assert!(secs <= timeout as f64 + 15.0, "{secs} s");
    latest_checkpoint_loads(&out);
}

#[test]
fn a_hung_rank_trips_the_watchdog_within_the_timeout() {
    if !mpi_ready() {
        return;
    }
    let timeout = 5;
    let (secs, ok, text, out, _dir) = disturb_rank1(libc::SIGSTOP, timeout);
    println!("rank 1 stopped: mpirun exited after {secs:.1} s (timeout {timeout} s)");
    assert!(!ok, "the run must fail:\n{text}");
    assert!(text.contains("rank 0 of 2 (mpi)") && text.contains("did not complete within 5.0 s"), "{text}");
    assert!(secs >= timeout as f64 - 0.5 && secs <= timeout as f64 + 15.0, "{secs} s");
    latest_checkpoint_loads(&out);
}

/// `ucgm eval` arguments of tests/eval_common with `--batch` set to `batch`.
fn eval_with_batch(model: &Path, reference: &Path, batch: &str, extra: &[&str]) -> Vec<String> {
    let mut a = eval_common::eval_args(model, reference, extra);
    let at = a.iter().position(|v| v == "--batch").unwrap();
    a[at + 1] = batch.into();
    a
}

fn rel_l2_f64(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn two_rank_eval_equals_one_process() {
    if !mpi_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = eval_common::tiny_model(dir.path());
    let reference = eval_common::reference_stats(dir.path());
    // Batch 10: ranks 0 and 1 evaluate images 0–9 and 10–19 in one batch each, exactly
    // the single process's two batches, and the merge is the same pairwise update: the
    // same bits. (With more batches per rank the merge order differs, (b₁+b₂)+(b₃+b₄)
    // against ((b₁+b₂)+b₃)+b₄, and the statistics differ by f64 rounding.) Batch 3: other batches (3+3+3+1 per rank vs 3×6+2), so the network's
    // float32 results differ by rounding.
    for batch in ["10", "3"] {
        let one_npz = dir.path().join(format!("one{batch}.npz"));
        let two_npz = dir.path().join(format!("two{batch}.npz"));
        let feats = dir.path().join(format!("f{batch}.safetensors"));
        let mut one = vec!["--backend".to_string(), "cpu".into(), "--threads".into(), "1".into()];
        one.extend(eval_with_batch(&model, &reference, batch, &["--save-stats", one_npz.to_str().unwrap()]));
        let (ok, out_one, err) = cli_common::ucgm(&one.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{err}");
        let mut two = vec!["--backend".to_string(), "cpu".into(), "--threads".into(), "1".into()];
        two.extend(eval_with_batch(
            &model,
            &reference,
            batch,
            &["--save-stats", two_npz.to_str().unwrap(), "--features-file", feats.to_str().unwrap()],
        ));
        let (ok, text) = finish(mpirun(2, &two.iter().map(String::as_str).collect::<Vec<_>>(), "120"));
        assert!(ok, "{text}");
        assert!(text.contains("2 rank(s)"), "{text}");
        for r in 0..2 {
            assert!(dir.path().join(format!("f{batch}.rank{r}of2.safetensors")).exists(), "rank {r}'s features file");
        }
        let (a, b) = (ucgm::fid::read_stats_npz(&one_npz).unwrap(), ucgm::fid::read_stats_npz(&two_npz).unwrap());
        let (dm, dc) = (rel_l2_f64(b.mean(), a.mean()), rel_l2_f64(b.cov(), a.cov()));
        let figure = |name: &str| (eval_common::figure(&out_one, name), eval_common::figure(&text, name));
        let ((fid1, fid2), (is1, is2)) = (figure("FID "), figure("IS "));
        println!("batch {batch}: 2 ranks vs 1 process: mean rel-L2 {dm:e}, cov rel-L2 {dc:e}, FID {fid2} vs {fid1}, IS {is2} vs {is1}");
        if batch == "10" {
            assert!(dm == 0.0 && dc == 0.0 && fid1 == fid2 && is1 == is2);
            assert!(is1 > 1.0, "a non-trivial Inception Score ({is1})");
        } else {
            // float32 rounding of the features (~1e-7 relative) under different batches;
            // the covariance of 10 images sees it relative to their small spread.
            assert!(dm < 1e-6 && dc < 1e-4, "mean {dm:e} cov {dc:e}");
            assert!((fid1 - fid2).abs() <= 1e-6 * fid1 && (is1 - is2).abs() <= 1e-6 * is1);
        }
    }
}

/// `ucgm sample` under mpirun: 2 ranks (3 images each) give the same samples as 1 rank
/// (all 6), latents and VAE-decoded images alike — every image's noise comes from its
/// own stream and rank 0 gathers the shares.
#[test]
fn two_rank_sample_equals_one_rank() {
    if !mpi_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = eval_common::tiny_model(dir.path());
    let run = |ranks: usize, out: &Path, vae: bool| {
        let mut args = vec![
            "--backend".to_string(),
            "cpu".into(),
            "--threads".into(),
            "1".into(),
            "sample".into(),
            "--ckpt".into(),
            eval_common::s(&model),
            "--n".into(),
            "6".into(),
            "--steps".into(),
            "2".into(),
            "--seed".into(),
            "5".into(),
            "--out".into(),
            eval_common::s(out),
        ];
        if vae {
            let dir = out.with_extension("d");
            args.extend([
                "--vae".into(),
                eval_common::s(&eval_common::vae()),
                "--latent-multiplier".into(),
                "1".into(),
                "--images-dir".into(),
                eval_common::s(&dir),
            ]);
        }
        let (ok, text) = finish(mpirun(ranks, &args.iter().map(String::as_str).collect::<Vec<_>>(), "120"));
        assert!(ok, "{ranks} rank(s): {text}");
    };
    let (one, two) = (dir.path().join("one.safetensors"), dir.path().join("two.safetensors"));
    run(1, &one, false);
    run(2, &two, false);
    let read = |p: &Path| ucgm::tensor_file::TensorFile::open(p).unwrap().f32("samples").unwrap().1;
    let (a, b) = (read(&one), read(&two));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().all(|v| v.is_finite()));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    println!("latents: 2 ranks vs 1, max |difference| {diff:e}");
    assert!(diff <= 1e-5, "2 ranks differ from 1 by {diff}");
    // Decoded: each rank decodes its share; the PNGs of the two runs match.
    let (p1, p2) = (dir.path().join("one.png"), dir.path().join("two.png"));
    run(1, &p1, true);
    run(2, &p2, true);
    let files = |d: PathBuf| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    let (f1, f2) = (files(p1.with_extension("d")), files(p2.with_extension("d")));
    assert_eq!(f1.len(), 6, "{f1:?}");
    for (a, b) in f1.iter().zip(&f2) {
        assert_eq!(a.file_name(), b.file_name());
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{} differs", a.display());
    }
    let (g1, g2) = (std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
    assert!(g1 == g2, "the decoded grids of 1 and 2 ranks differ");
}
