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
