//! Quality benchmark on the built-in dataset (not a test): the demo's two-stage UCGM-T
//! run, then the Fréchet distance to held-out images of the multi-step model at 30 and
//! 2 steps and of the few-step tuned model at 1 and 2 steps. The method's claim at this
//! scale: the tuned model at 2 steps comes close to the multi-step model at 30 steps and
//! is far better than the multi-step model at 2 steps.
//!
//! `cargo bench --bench quality` (a few minutes on 2 cores). Environment overrides:
//! `UCGM_QUALITY_MULTISTEP`, `UCGM_QUALITY_FEWSTEP` (steps), `UCGM_QUALITY_EVAL` (images).

use ucgm::app::{run_demo, DemoOptions, Quiet};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / test discovery
    }
    let d = DemoOptions::default();
    let o = DemoOptions {
        output_dir: std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("quality"),
        multistep_steps: env_or("UCGM_QUALITY_MULTISTEP", d.multistep_steps),
        fewstep_steps: env_or("UCGM_QUALITY_FEWSTEP", d.fewstep_steps),
        eval_images: env_or("UCGM_QUALITY_EVAL", d.eval_images),
        ..d
    };
    let r = run_demo(&o, &mut Quiet).expect("quality run");
    println!("quality (built-in shapes-10, FD to {} held-out images; lower is better)", o.eval_images);
    println!("{:<12} {:>6} {:>10}", "model", "steps", "FD");
    for row in &r.rows {
        println!("{:<12} {:>6} {:>10.3}", row.model, row.steps, row.frechet);
    }
    println!("{:<12} {:>6} {:>10.3}", "real floor", "-", r.real_floor);
    println!(
        "training: {:.0} s multi-step ({} steps), {:.0} s few-step ({} steps)",
        r.multistep_secs, o.multistep_steps, r.fewstep_secs, o.fewstep_steps
    );
}
