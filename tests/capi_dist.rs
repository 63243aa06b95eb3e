//! Data parallelism through the C ABI: two trainer handles on two threads act as ranks 0
//! and 1 of a process group whose collectives are the host's callbacks (a shared-memory
//! all-reduce written here, standing in for the host's MPI or NCCL). Their
//! `ucgm_train_step_part` steps on the two slices of a global batch equal
//! `ucgm_train_step` on the whole batch up to the gradient's summation order, the two
//! ranks stay bit-identical, and bad communicators and slices are errors.

mod capi_common;

use std::ffi::c_void;
use std::ptr;
use std::sync::{Arc, Barrier, Mutex};

use capi_common::*;
use ucgm::capi::dist::*;
use ucgm::capi::model::*;
use ucgm::capi::train::*;
use ucgm::capi::*;
use ucgm::Rng;

/// Two "ranks" in one process: each writes its buffer into its slot, then every rank sums
/// the slots in rank order (so every rank gets the identical result).
struct Group {
    barrier: Barrier,
    f32_slots: Mutex<[Vec<f32>; 2]>,
    f64_slots: Mutex<[Vec<f64>; 2]>,
    bytes: Mutex<Vec<u8>>,
}

struct RankCtx {
    rank: usize,
    group: Arc<Group>,
}

unsafe extern "C" fn all_reduce_f32(values: *mut f32, n: usize, user: *mut c_void) -> i32 {
    let ctx = &*(user as *const RankCtx);
    let v = std::slice::from_raw_parts_mut(values, n);
    ctx.group.f32_slots.lock().unwrap()[ctx.rank] = v.to_vec();
    ctx.group.barrier.wait();
    {
        let s = ctx.group.f32_slots.lock().unwrap();
        for (i, out) in v.iter_mut().enumerate() {
            *out = s[0][i] + s[1][i];
        }
    }
    ctx.group.barrier.wait();
    0
}

unsafe extern "C" fn all_reduce_f64(values: *mut f64, n: usize, user: *mut c_void) -> i32 {
    let ctx = &*(user as *const RankCtx);
    let v = std::slice::from_raw_parts_mut(values, n);
    ctx.group.f64_slots.lock().unwrap()[ctx.rank] = v.to_vec();
    ctx.group.barrier.wait();
    {
        let s = ctx.group.f64_slots.lock().unwrap();
        for (i, out) in v.iter_mut().enumerate() {
            *out = s[0][i] + s[1][i];
        }
    }
    ctx.group.barrier.wait();
    0
}

unsafe extern "C" fn broadcast(bytes: *mut u8, n: usize, root: u32, user: *mut c_void) -> i32 {
    let ctx = &*(user as *const RankCtx);
    let v = std::slice::from_raw_parts_mut(bytes, n);
    if ctx.rank == root as usize {
        *ctx.group.bytes.lock().unwrap() = v.to_vec();
    }
    ctx.group.barrier.wait();
    v.copy_from_slice(&ctx.group.bytes.lock().unwrap());
    ctx.group.barrier.wait();
    0
}

fn communicator(rank: u32, world: u32, user: *mut c_void) -> ucgm_communicator {
    let mut c = std::mem::MaybeUninit::<ucgm_communicator>::uninit();
    ok(unsafe { ucgm_communicator_default(c.as_mut_ptr(), std::mem::size_of::<ucgm_communicator>()) });
    let mut c = unsafe { c.assume_init() };
    c.rank = rank;
    c.world = world;
    c.all_reduce_f32 = Some(all_reduce_f32);
    c.all_reduce_f64 = Some(all_reduce_f64);
    c.broadcast = Some(broadcast);
    c.timeout_seconds = 60.0;
    c.user_data = user;
    c
}

struct SendTr(Tr);
// SAFETY: each handle is used by exactly one thread at a time (moved into it).
unsafe impl Send for SendTr {}

const GLOBAL: usize = 5; // rank 0: samples 0..3, rank 1: samples 3..5

fn batches(steps: usize) -> Vec<(Vec<f32>, Vec<i32>)> {
    let mut rng = Rng::new(11);
    (0..steps)
        .map(|_| (rng.normal_f32(GLOBAL * IMAGE_LEN), (0..GLOBAL as i32).map(|i| i % 10).collect()))
        .collect()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn two_ranks_through_host_callbacks_equal_one_trainer() {
    let steps = 3;
    let data = batches(steps);
    let m = Model::tiny_random(UCGM_ARCH_TIT, 1, 1);
    let p = train_params(1e-3, 5);
    let single = Tr::create(&m, &p);
    let mut single_losses = Vec::new();
    for (x, y) in &data {
        single_losses.push(single.step(x, y));
    }
    let group = Arc::new(Group {
        barrier: Barrier::new(2),
        f32_slots: Mutex::new([Vec::new(), Vec::new()]),
        f64_slots: Mutex::new([Vec::new(), Vec::new()]),
        bytes: Mutex::new(Vec::new()),
    });
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            let tr = SendTr(Tr::create(&m, &p));
            let (group, data) = (Arc::clone(&group), data.clone());
            std::thread::spawn(move || {
                let tr = tr;
                let ctx = Box::new(RankCtx { rank, group });
                let c = communicator(rank as u32, 2, &*ctx as *const RankCtx as *mut c_void);
                ok(unsafe { ucgm_trainer_set_communicator(tr.0 .0, &c) });
                let range = if rank == 0 { 0..3 } else { 3..5 };
                let mut losses = Vec::new();
                for (x, y) in &data {
                    let (xs, ys) = (&x[range.start * IMAGE_LEN..range.end * IMAGE_LEN], &y[range.clone()]);
                    let mut loss = f64::NAN;
                    ok(unsafe { ucgm_train_step_part(tr.0 .0, xs.as_ptr(), ys.as_ptr(), ys.len(), GLOBAL, &mut loss) });
                    losses.push(loss);
                }
                let w = (tr.0.weights(UCGM_WEIGHTS_ONLINE), tr.0.weights(UCGM_WEIGHTS_EMA));
                drop(tr);
                drop(ctx);
                (losses, w)
            })
        })
        .collect();
    let results: Vec<_> = ranks.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results[0] == results[1], "the two ranks diverged");
    let (losses, (online, ema)) = &results[0];
    let start = m.params();
    let (d_online, d_ema) = (
        rel_l2(online, &single.weights(UCGM_WEIGHTS_ONLINE)),
        rel_l2(ema, &single.weights(UCGM_WEIGHTS_EMA)),
    );
    let moved = rel_l2(&single.weights(UCGM_WEIGHTS_ONLINE), &start);
    println!("2 ranks (host callbacks) vs 1 trainer after {steps} steps: online rel-L2 {d_online:e}, EMA {d_ema:e}; weights moved {moved:e}");
    // float32 summation order of the gradient (see tests/dist_mpi.rs).
    assert!(d_online <= 1e-7 && d_ema <= 1e-7, "{d_online:e} {d_ema:e}");
    assert!(moved > 1e-4);
    for (a, b) in losses.iter().zip(&single_losses) {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "loss {a} vs {b}");
    }
}

#[test]
fn bad_communicators_and_slices_are_errors() {
    let m = Model::tiny_random(UCGM_ARCH_TIT, 1, 1);
    let tr = Tr::create(&m, &train_params(1e-3, 5));
    let mut c = communicator(2, 2, ptr::null_mut());
    fails(
        unsafe { ucgm_trainer_set_communicator(tr.0, &c) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "rank 2 is not below world 2",
    );
    c.rank = 0;
    c.broadcast = None;
    fails(
        unsafe { ucgm_trainer_set_communicator(tr.0, &c) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "required when world > 1",
    );
    c = communicator(0, 2, ptr::null_mut());
    c.timeout_seconds = 0.0;
    fails(
        unsafe { ucgm_trainer_set_communicator(tr.0, &c) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "timeout_seconds",
    );
    c.struct_size = 3;
    fails(unsafe { ucgm_trainer_set_communicator(tr.0, &c) }, UCGM_STATUS_INVALID_ARGUMENT, "struct_size");
    // Without a communicator a part step is the whole batch; a wrong slice is an error.
    let (x, y) = &batches(1)[0];
    fails(
        unsafe { ucgm_train_step_part(tr.0, x.as_ptr(), y.as_ptr(), 3, GLOBAL, ptr::null_mut()) },
        UCGM_STATUS_INVALID_ARGUMENT,
        "rank 0 of 1 holds 5 samples",
    );
    ok(unsafe { ucgm_trainer_set_communicator(tr.0, ptr::null()) });
    ok(unsafe { ucgm_train_step_part(tr.0, x.as_ptr(), y.as_ptr(), GLOBAL, GLOBAL, ptr::null_mut()) });
}
