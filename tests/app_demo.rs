//! A very short `ucgm demo` through the library: the report carries the class figures
//! and the grids are written enlarged, one class per column.

use std::path::Path;

use ucgm::app::demo::{GRID_GAP, GRID_ROWS, GRID_SCALE};
use ucgm::app::{run_demo, DemoOptions, Quiet};
use ucgm::{BackendChoice, BackendRequest};

fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let reader = decoder.read_info().expect("a PNG");
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn short_demo_reports_class_figures_and_writes_enlarged_class_grids() {
    let dir = tempfile::tempdir().unwrap();
    let o = DemoOptions {
        output_dir: dir.path().join("demo"),
        backend: BackendRequest {
            choice: BackendChoice::Cpu,
            ..BackendRequest::default()
        },
        multistep_steps: 4,
        fewstep_steps: 2,
        batch: 8,
        eval_images: 40,
        ..DemoOptions::default()
    };
    let r = run_demo(&o, &mut Quiet).unwrap();

    let unit = |v: f64| (0.0..=1.0).contains(&v);
    assert!(unit(r.real_class_accuracy), "{}", r.real_class_accuracy);
    assert!(r.real_class_accuracy >= 0.9, "classifier ceiling {}", r.real_class_accuracy);
    assert_eq!(r.real_per_class_accuracy.len(), 10);
    assert!(r.real_floor.is_finite() && r.real_class_floor.is_finite());
    assert!(r.real_inception_floor.is_none() && r.rows.iter().all(|row| row.inception_fid.is_none()));
    // multi-step 30, multi-step 30 guided, multi-step 2, few-step 1, few-step 2.
    assert_eq!(r.rows.len(), 5);
    assert!(r.rows.iter().any(|row| row.cfg_scale > 0.0 && row.nfe > row.steps));
    for row in &r.rows {
        assert!(unit(row.class_accuracy), "{row:?}");
        assert_eq!(row.per_class_accuracy.len(), 10);
        assert!(row.per_class_accuracy.iter().all(|&v| unit(v)), "{row:?}");
        assert!(row.frechet.is_finite() && row.class_frechet.is_finite(), "{row:?}");
    }

    // 40 images → 4 rows of 10 classes; cells 16·GRID_SCALE pixels with GRID_GAP between.
    assert_eq!(r.grid_columns, 10);
    assert_eq!(r.grid_rows, 4.min(GRID_ROWS));
    let cell = (16 * GRID_SCALE + GRID_GAP) as u32;
    let expected = (10 * cell + GRID_GAP as u32, r.grid_rows as u32 * cell + GRID_GAP as u32);
    assert_eq!(GRID_SCALE, 4);
    for grid in r.rows.iter().map(|row| &row.grid).chain([&r.real_grid]) {
        assert_eq!(png_size(grid), expected, "{}", grid.display());
    }
}

/// With an Inception file every row and the real floor get an Inception FID next to the
/// pixel FD (20 images per set with the shared random Inception); without one, none.
#[test]
fn demo_adds_inception_fid_when_given_weights() {
    let dir = tempfile::tempdir().unwrap();
    let weights = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/fid_inception_random.safetensors");
    let o = DemoOptions {
        output_dir: dir.path().join("demo"),
        backend: BackendRequest {
            choice: BackendChoice::Cpu,
            ..BackendRequest::default()
        },
        multistep_steps: 2,
        fewstep_steps: 1,
        batch: 4,
        eval_images: 20,
        cfg_scale: 0.0,
        inception: Some(weights),
        ..DemoOptions::default()
    };
    let r = run_demo(&o, &mut Quiet).unwrap();
    let floor = r.real_inception_floor.expect("real Inception floor");
    assert!(floor.is_finite() && floor > 0.0, "{floor}");
    assert_eq!(r.rows.len(), 4);
    for row in &r.rows {
        let fid = row.inception_fid.expect("Inception FID per row");
        // Barely trained models are further from the held-out images than real ones.
        assert!(fid.is_finite() && fid > floor, "{row:?} vs floor {floor}");
    }
    // A wrong Inception file fails before any training.
    let bad = DemoOptions {
        output_dir: dir.path().join("bad"),
        inception: Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/vae_tiny_diffusers.safetensors")),
        ..o.clone()
    };
    let e = run_demo(&bad, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("FID Inception"), "{e}");
    assert!(!dir.path().join("bad/checkpoints").exists());
}
