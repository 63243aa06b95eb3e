//! Image folders: a PNG round trip through temp dirs (labels from sorted sub-folder
//! names, exact pixel values, the ½ horizontal flip) and the error cases.

use std::path::Path;

use ucgm::data::image_folder::ImageFolder;
use ucgm::data::{flip_horizontal, Batcher, Dataset};
use ucgm::image::write_png_grid;
use ucgm::{Error, Rng};

/// A float in [−1, 1] that survives PNG quantisation exactly.
fn q(v: u8) -> f32 {
    v as f32 / 255.0 * 2.0 - 1.0
}

/// A `[C, H, W]` image whose pixels encode `seed` (and are not left–right symmetric).
fn image(c: usize, h: usize, w: usize, seed: usize) -> Vec<f32> {
    (0..c * h * w).map(|i| q(((i * 7 + seed * 31) % 256) as u8)).collect()
}

fn save(path: &Path, img: &[f32], shape: [usize; 3]) {
    write_png_grid(path, img, [1, shape[0], shape[1], shape[2]], 1, 0).unwrap();
}

#[test]
fn round_trip_with_labels_from_sorted_folder_names() {
    let root = tempfile::tempdir().unwrap();
    let shape = [3, 4, 5];
    // Classes created out of order; file names out of order within a class.
    let layout = [
        ("zebra", vec!["b.png", "a.PNG"]),
        ("ant", vec!["x.png"]),
        ("moth", vec!["2.png", "10.png", "1.png"]),
    ];
    let mut seed = 0;
    let mut written = Vec::new();
    for (class, files) in &layout {
        std::fs::create_dir(root.path().join(class)).unwrap();
        for f in files {
            let img = image(shape[0], shape[1], shape[2], seed);
            save(&root.path().join(class).join(f), &img, shape);
            written.push((class.to_string(), f.to_string(), img));
            seed += 1;
        }
    }
    // Ignored: hidden folders and files, non-PNG files, loose files in the root.
    std::fs::create_dir(root.path().join(".cache")).unwrap();
    std::fs::write(root.path().join("ant").join("readme.txt"), "x").unwrap();
    std::fs::write(root.path().join("ant").join(".hidden.png"), "x").unwrap();
    std::fs::write(root.path().join("labels.csv"), "x").unwrap();

    let ds = ImageFolder::open(root.path()).unwrap();
    assert_eq!(ds.class_names(), ["ant", "moth", "zebra"]);
    assert_eq!((ds.len(), ds.num_classes(), ds.sample_shape()), (6, 3, shape));
    let order: Vec<String> = ds.files().iter().map(|p| p.strip_prefix(root.path()).unwrap().display().to_string()).collect();
    let sep = std::path::MAIN_SEPARATOR;
    let want: Vec<String> = ["ant/x.png", "moth/1.png", "moth/10.png", "moth/2.png", "zebra/a.PNG", "zebra/b.png"]
        .iter()
        .map(|s| s.replace('/', &sep.to_string()))
        .collect();
    assert_eq!(order, want);

    let mut rng = Rng::new(5);
    let mut x = vec![0.0; ds.sample_len()];
    let (mut saw_plain, mut saw_flipped) = (false, false);
    for _ in 0..20 {
        for (index, path) in ds.files().iter().enumerate() {
            let label = ds.get(index, &mut rng, &mut x).unwrap();
            let class = path.parent().unwrap().file_name().unwrap().to_string_lossy();
            assert_eq!(ds.class_names()[label], class);
            let name = path.file_name().unwrap().to_string_lossy();
            let (_, _, original) = written.iter().find(|(c, f, _)| *c == class && *f == name).unwrap();
            let mut mirrored = original.clone();
            flip_horizontal(&mut mirrored, shape[2]);
            if x == *original {
                saw_plain = true;
            } else if x == mirrored {
                saw_flipped = true;
            } else {
                panic!("{} came back changed", path.display());
            }
        }
    }
    assert!(saw_plain && saw_flipped);
}

#[test]
fn flip_probability_is_about_half() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("only")).unwrap();
    let img = image(1, 3, 4, 9);
    save(&root.path().join("only").join("a.png"), &img, [1, 3, 4]);
    let ds = ImageFolder::open(root.path()).unwrap();
    assert_eq!(ds.sample_shape(), [1, 3, 4]);
    let mut rng = Rng::new(77);
    let mut x = vec![0.0; 12];
    let draws = 4000;
    let mut flips = 0;
    for _ in 0..draws {
        ds.get(0, &mut rng, &mut x).unwrap();
        flips += (x != img) as usize;
    }
    // Binomial(4000, ½): std √(4000/4) ≈ 31.6; ±5 std fails a correct implementation
    // with probability < 1e-6 and catches p = 0.45 / 0.55 or a missing flip.
    let dev = (flips as f64 - draws as f64 / 2.0).abs();
    assert!(dev <= 5.0 * (draws as f64 / 4.0).sqrt(), "{flips} flips in {draws} draws");
}

#[test]
fn batcher_over_an_image_folder_resumes_identically() {
    let root = tempfile::tempdir().unwrap();
    for (k, class) in ["a", "b"].iter().enumerate() {
        std::fs::create_dir(root.path().join(class)).unwrap();
        for i in 0..3 {
            save(&root.path().join(class).join(format!("{i}.png")), &image(1, 2, 3, k * 3 + i), [1, 2, 3]);
        }
    }
    let mut a = Batcher::new(ImageFolder::open(root.path()).unwrap(), 3).unwrap();
    let mut x = vec![0.0; 4 * 6];
    let mut labels = vec![0; 4];
    a.next_batch(4, &mut x, &mut labels).unwrap();
    let state = a.state();
    let mut b = Batcher::resume(ImageFolder::open(root.path()).unwrap(), &state).unwrap();
    let (mut xa, mut xb) = (x.clone(), x.clone());
    let (mut la, mut lb) = (labels.clone(), labels);
    for _ in 0..5 {
        a.next_batch(4, &mut xa, &mut la).unwrap();
        b.next_batch(4, &mut xb, &mut lb).unwrap();
        assert_eq!((&xa, &la), (&xb, &lb));
    }
}

#[test]
fn bad_folders_are_errors_naming_the_problem() {
    // Mismatched sizes: a format error naming the odd file.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("a")).unwrap();
    std::fs::create_dir(root.path().join("b")).unwrap();
    save(&root.path().join("a").join("1.png"), &image(3, 4, 4, 0), [3, 4, 4]);
    let odd = root.path().join("b").join("1.png");
    save(&odd, &image(3, 4, 5, 1), [3, 4, 5]);
    match ImageFolder::open(root.path()) {
        Err(Error::Format { path, msg }) => {
            assert_eq!(path, odd);
            assert!(msg.contains("[3, 4, 5]") && msg.contains("[3, 4, 4]"), "{msg}");
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    // Grayscale mixed with RGB: also a shape mismatch.
    save(&odd, &image(1, 4, 4, 1), [1, 4, 4]);
    assert!(matches!(ImageFolder::open(root.path()), Err(Error::Format { path, .. }) if path == odd));
    // A corrupt PNG.
    std::fs::write(&odd, b"\x89PNG\r\n\x1a\nbroken").unwrap();
    assert!(matches!(ImageFolder::open(root.path()), Err(Error::Format { path, .. }) if path == odd));
    // A class folder without images.
    std::fs::remove_file(&odd).unwrap();
    assert!(matches!(ImageFolder::open(root.path()), Err(Error::InvalidArgument(m)) if m.contains("no PNG")));
    // No class folders at all; a missing root.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(ImageFolder::open(empty.path()), Err(Error::InvalidArgument(_))));
    assert!(matches!(ImageFolder::open(empty.path().join("missing")), Err(Error::Io { .. })));
    // Index and buffer checks.
    std::fs::remove_dir(root.path().join("b")).unwrap();
    let ds = ImageFolder::open(root.path()).unwrap();
    let mut x = vec![0.0; 48];
    assert!(matches!(ds.get(1, &mut Rng::new(0), &mut x), Err(Error::InvalidArgument(_))));
    assert!(matches!(ds.get(0, &mut Rng::new(0), &mut x[..47]), Err(Error::InvalidArgument(_))));
}
