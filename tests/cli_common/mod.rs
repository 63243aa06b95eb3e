//! Helpers shared by the command-line tests: run the `ucgm` binary of this build.
#![allow(dead_code)]

use std::process::Command;

/// Runs `ucgm ARGS`: (exit 0?, stdout, stderr).
pub fn ucgm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ucgm")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `ucgm train --config CFG --backend cpu --threads 1 EXTRA…`.
pub fn train(cfg: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["train", "--config", cfg, "--backend", "cpu", "--threads", "1"];
    args.extend_from_slice(extra);
    ucgm(&args)
}
