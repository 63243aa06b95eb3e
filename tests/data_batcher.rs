//! The `Batcher` (epoch permutations, determinism, bit-identical resume, errors leave
//! the state untouched) and the built-in shapes dataset (determinism, shapes, ranges,
//! label balance, disjoint splits).

use std::sync::atomic::{AtomicUsize, Ordering};

use ucgm::data::builtin::{self, BuiltinShapes, Split};
use ucgm::data::{Batcher, BatcherState, Dataset};
use ucgm::{Error, Result, Rng};

/// A dataset whose sample records its index and one augmentation draw:
/// `x = [index, uniform draw]`, label `index % 3`.
struct Probe {
    len: usize,
    fail_at: Option<usize>,
    calls: AtomicUsize,
}

impl Probe {
    fn new(len: usize) -> Self {
        Probe {
            len,
            fail_at: None,
            calls: AtomicUsize::new(0),
        }
    }
}

impl Dataset for Probe {
    fn sample_shape(&self) -> [usize; 3] {
        [1, 1, 2]
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, index: usize, rng: &mut Rng, x_out: &mut [f32]) -> Result<usize> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if Some(index) == self.fail_at {
            return Err(Error::invalid("probe failure"));
        }
        x_out[0] = index as f32;
        x_out[1] = rng.uniform() as f32;
        Ok(index % 3)
    }
}

fn draw(b: &mut Batcher<Probe>, batch: usize) -> (Vec<f32>, Vec<usize>) {
    let mut x = vec![0.0; batch * 2];
    let mut labels = vec![0; batch];
    b.next_batch(batch, &mut x, &mut labels).unwrap();
    (x, labels)
}

#[test]
fn every_epoch_visits_each_index_once_in_a_fresh_order() {
    let len = 50;
    let mut b = Batcher::new(Probe::new(len), 11).unwrap();
    // 3 epochs in batches of 7 (not a divisor: batches straddle epoch boundaries).
    let mut seen = Vec::new();
    while seen.len() < 3 * len {
        let (x, labels) = draw(&mut b, 7);
        for (k, l) in labels.iter().enumerate() {
            let index = x[2 * k] as usize;
            assert_eq!(*l, index % 3);
            seen.push(index);
        }
    }
    // 22 batches = 154 samples: three full epochs and 4 samples of the fourth.
    assert_eq!(seen.len(), 154);
    assert_eq!((b.epoch(), b.position()), (3, 4));
    let epochs: Vec<&[usize]> = seen.chunks(len).take(3).collect();
    for e in &epochs {
        let mut sorted = e.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..len).collect::<Vec<_>>());
    }
    assert_ne!(epochs[0], epochs[1]);
    assert_ne!(epochs[1], epochs[2]);
    assert_ne!(epochs[0], (0..len).collect::<Vec<_>>().as_slice(), "epoch 0 is not shuffled");
}

#[test]
fn same_seed_same_batches_other_seed_other_batches() {
    let mut a = Batcher::new(Probe::new(100), 5).unwrap();
    let mut b = Batcher::new(Probe::new(100), 5).unwrap();
    let mut c = Batcher::new(Probe::new(100), 6).unwrap();
    for _ in 0..10 {
        let (xa, la) = draw(&mut a, 16);
        let (xb, lb) = draw(&mut b, 16);
        assert_eq!(xa, xb);
        assert_eq!(la, lb);
    }
    assert_ne!(draw(&mut a, 16).0, draw(&mut c, 16).0);
}

#[test]
fn resuming_from_a_serialized_state_continues_bit_identically() {
    let mut uninterrupted = Batcher::new(Probe::new(37), 9).unwrap();
    let mut first = Batcher::new(Probe::new(37), 9).unwrap();
    for _ in 0..6 {
        assert_eq!(draw(&mut uninterrupted, 10), draw(&mut first, 10));
    }
    let json = serde_json::to_string(&first.state()).unwrap();
    drop(first);
    let state: BatcherState = serde_json::from_str(&json).unwrap();
    assert_eq!((state.epoch, state.position, state.len), (1, 60 - 37, 37));
    let mut resumed = Batcher::resume(Probe::new(37), &state).unwrap();
    for _ in 0..10 {
        assert_eq!(draw(&mut uninterrupted, 10), draw(&mut resumed, 10));
    }
    assert_eq!(uninterrupted.state(), resumed.state());
}

#[test]
fn errors_leave_the_state_unchanged() {
    let mut b = Batcher::new(Probe::new(20), 1).unwrap();
    draw(&mut b, 15);
    let before = b.state();
    let mut x = vec![0.0; 8];
    let mut labels = vec![0; 4];
    // Wrong buffer lengths.
    assert!(matches!(b.next_batch(4, &mut x[..7], &mut labels), Err(Error::InvalidArgument(_))));
    assert!(matches!(b.next_batch(4, &mut x, &mut labels[..3]), Err(Error::InvalidArgument(_))));
    assert_eq!(b.state(), before);

    // A dataset failure in the middle of a batch that crosses into the next epoch.
    let probe = Probe {
        len: 20,
        fail_at: None,
        calls: AtomicUsize::new(0),
    };
    let mut reference = Batcher::resume(probe, &before).unwrap();
    let (want_x, want_labels) = draw(&mut reference, 10);
    let failing_index = want_x[2 * 7] as usize; // the 8th sample, in epoch 1
    let probe = Probe {
        len: 20,
        fail_at: Some(failing_index),
        calls: AtomicUsize::new(0),
    };
    let mut failing = Batcher::resume(probe, &before).unwrap();
    let mut x = vec![0.0; 20];
    let mut labels = vec![0; 10];
    assert!(failing.next_batch(10, &mut x, &mut labels).is_err());
    assert_eq!(failing.dataset().calls.load(Ordering::Relaxed), 8);
    assert_eq!(failing.state(), before);
    // After the failure, a retry on a healthy dataset gives the batch the reference gave.
    let mut retried = Batcher::resume(Probe::new(20), &failing.state()).unwrap();
    assert_eq!(draw(&mut retried, 10), (want_x, want_labels));
}

#[test]
fn bad_construction_is_an_error() {
    assert!(matches!(Batcher::new(Probe::new(0), 1), Err(Error::InvalidArgument(_))));
    let state = Batcher::new(Probe::new(10), 1).unwrap().state();
    assert!(matches!(Batcher::resume(Probe::new(11), &state), Err(Error::InvalidArgument(_))));
    let past_end = BatcherState { position: 11, ..state };
    assert!(matches!(Batcher::resume(Probe::new(10), &past_end), Err(Error::InvalidArgument(_))));
}

#[test]
fn builtin_items_are_deterministic_shaped_bounded_and_labelled() {
    for channels in [1usize, 3] {
        let a = BuiltinShapes::new(Split::Train, channels, 42).unwrap().with_len(200).unwrap();
        let b = BuiltinShapes::new(Split::Train, channels, 42).unwrap().with_len(200).unwrap();
        let other_seed = BuiltinShapes::new(Split::Train, channels, 43).unwrap().with_len(200).unwrap();
        assert_eq!(a.sample_shape(), [channels, builtin::SIZE, builtin::SIZE]);
        assert_eq!((a.len(), a.num_classes()), (200, builtin::NUM_CLASSES));
        let (xa, la) = a.render_all(200).unwrap();
        let (xb, lb) = b.render_all(200).unwrap();
        let (xo, lo) = other_seed.render_all(200).unwrap();
        assert_eq!(xa, xb);
        assert_eq!(la, lb);
        assert_eq!(la, lo, "labels depend on the index only");
        assert_ne!(xa, xo);
        assert!(xa.iter().all(|v| (-1.0..=1.0).contains(v)));
        // Balanced labels in range.
        let mut counts = [0usize; builtin::NUM_CLASSES];
        la.iter().for_each(|&l| counts[l] += 1);
        assert_eq!(counts, [20; builtin::NUM_CLASSES]);
        // `get` ignores the rng (no augmentation) and agrees with `render_all`.
        let sample_len = a.sample_len();
        let mut x = vec![0.0; sample_len];
        let mut rng = Rng::new(1);
        let before = rng.state();
        assert_eq!(a.get(17, &mut rng, &mut x).unwrap(), 7);
        assert_eq!(x, xa[17 * sample_len..18 * sample_len]);
        assert_eq!(rng.state(), before);
        // Every image has a dark background and a brighter shape.
        for img in xa.chunks_exact(sample_len) {
            let (lo, hi) = img.iter().fold((1.0f32, -1.0f32), |(l, h), &v| (l.min(v), h.max(v)));
            assert!(lo <= -0.65 && hi - lo >= 0.5, "contrast {lo}..{hi}");
        }
    }
}

#[test]
fn builtin_train_and_held_out_splits_are_disjoint() {
    let train = BuiltinShapes::new(Split::Train, 3, 0).unwrap();
    let held = BuiltinShapes::new(Split::HeldOut, 3, 0).unwrap();
    assert_eq!((train.len(), held.len()), (builtin::DEFAULT_TRAIN_LEN, builtin::DEFAULT_HELD_OUT_LEN));
    let n = 300;
    let (xt, lt) = train.render_all(n).unwrap();
    let (xh, lh) = held.render_all(n).unwrap();
    assert_eq!(lt, lh);
    let sample_len = train.sample_len();
    let held_items: Vec<&[f32]> = xh.chunks_exact(sample_len).collect();
    for t in xt.chunks_exact(sample_len) {
        assert!(!held_items.contains(&t), "a held-out item equals a train item");
    }
}

#[test]
fn builtin_argument_errors() {
    assert!(matches!(BuiltinShapes::new(Split::Train, 2, 0), Err(Error::InvalidArgument(_))));
    let d = BuiltinShapes::new(Split::Train, 1, 0).unwrap().with_len(5).unwrap();
    let mut x = vec![0.0; 256];
    let mut rng = Rng::new(0);
    assert!(matches!(d.get(5, &mut rng, &mut x), Err(Error::InvalidArgument(_))));
    assert!(matches!(d.get(0, &mut rng, &mut x[..255]), Err(Error::InvalidArgument(_))));
    assert!(matches!(d.with_len(1 << 41), Err(Error::InvalidArgument(_))));
}

#[test]
fn batcher_over_builtin_gives_full_batches() {
    let d = BuiltinShapes::new(Split::Train, 3, 0).unwrap().with_len(64).unwrap();
    let mut b = Batcher::new(&d, 2).unwrap();
    let mut x = vec![f32::NAN; 16 * 3 * 16 * 16];
    let mut labels = vec![usize::MAX; 16];
    b.next_batch(16, &mut x, &mut labels).unwrap();
    assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert!(labels.iter().all(|&l| l < builtin::NUM_CLASSES));
}

/// A dataset that breaks its contract: labels past `num_classes()`.
struct BadLabels;

impl Dataset for BadLabels {
    fn sample_shape(&self) -> [usize; 3] {
        [1, 1, 1]
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn len(&self) -> usize {
        4
    }
    fn get(&self, index: usize, _rng: &mut Rng, x_out: &mut [f32]) -> Result<usize> {
        x_out[0] = 0.0;
        Ok(index)
    }
}

#[test]
fn a_label_out_of_range_is_reported_not_passed_on() {
    let mut b = Batcher::new(BadLabels, 0).unwrap();
    let before = b.state();
    let mut x = [0.0; 4];
    let mut labels = [0; 4];
    assert!(matches!(b.next_batch(4, &mut x, &mut labels), Err(Error::Internal(_))));
    assert_eq!(b.state(), before);
}
