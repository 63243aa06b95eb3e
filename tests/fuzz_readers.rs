//! Fuzzing every reader of the engine (issue 16): a structure-aware mutation harness on
//! the stable toolchain.
//!
//! Each target takes seed files generated here by the library itself (so they always
//! match the formats), mutates them (bit flips, bytes set to 0x00/0xFF, size fields set
//! to extreme values, truncation, splicing two seeds, inserted and deleted ranges, and
//! format-aware edits of safetensors headers, metadata JSON, YAML and PNG chunks) and
//! hands each case to the reader. The contract every case must keep:
//!
//! * a clean [`ucgm::Error`] or a valid object: a panic is a failure;
//! * no hang: a case over [`HANG`] is a failure, and one over [`WATCHDOG`] aborts the run
//!   naming the input file;
//! * no allocation sized by an untrusted field: this binary's allocator records the
//!   largest single request made on the fuzzing thread, which must stay under the
//!   target's bound (a multiple of the input's size, or the documented image limit);
//!   requests over 4 GiB are refused outright, so a reader that does not use a fallible
//!   allocation aborts the whole binary (the input is then at the path printed first).
//!
//! Crashing inputs are written to `target/tmp/fuzz-crashes/<target>/` (or under
//! `UCGM_FUZZ_OUT`); each one found is
//! committed under `tests/fuzz/regressions/<target>/`, and [`regressions_fail_cleanly`]
//! loads every file there.
//!
//! `UCGM_FUZZ_ITERS` (cases per target, default [`DEFAULT_ITERS`]), `UCGM_FUZZ_SECS`
//! (optional time cap per target), `UCGM_FUZZ_SEED` (reproduce a run) and
//! `UCGM_FUZZ_TARGETS` (comma-separated names) tune a run, e.g. a long local one:
//! `UCGM_FUZZ_ITERS=1000000 UCGM_FUZZ_SECS=600 cargo test --release --test fuzz_readers -- --nocapture`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ucgm::app::train::resume_point;
use ucgm::app::{Quiet, RunConfig, TrainRun};
use ucgm::data::image_folder::ImageFolder;
use ucgm::data::shards::{write_shard, LatentShards};
use ucgm::model::weights::{self, CheckpointWeights};
use ucgm::tensor_file::TensorFile;
use ucgm::trainer::{read_weights, OptimizerKind, OptimizerSection, Trainer, TrainerConfig};
use ucgm::{AnyBackend, AnyTrainer, Arch, CpuBackend, Error, Model, ModelConfig, ParamLayout, SamplerConfig};

// ---------------------------------------------------------------------------------------
// Allocation tracking

/// Requests above this are refused (the reader must then fail cleanly through a fallible
/// allocation, or the binary aborts).
const REFUSE_ABOVE: usize = 4 << 30;

thread_local! {
    /// Largest single allocation request made on this thread since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed on this thread, and its peak since the last reset.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
    let _ = LIVE.try_with(|l| {
        let v = l.get() + size as isize;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get() - size as isize));
}

struct Tracking;

// SAFETY: forwards to the system allocator; the bookkeeping uses const thread-locals
// (no allocation, no unwinding).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > REFUSE_ABOVE {
            let _ = LARGEST.try_with(|c| c.set(c.get().max(layout.size())));
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > REFUSE_ABOVE {
            let _ = LARGEST.try_with(|c| c.set(c.get().max(layout.size())));
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > REFUSE_ABOVE {
            let _ = LARGEST.try_with(|c| c.set(c.get().max(new_size)));
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note_free(layout.size());
            note_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Resets this thread's counters.
fn alloc_reset() {
    LARGEST.with(|c| c.set(0));
    let live = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(live));
}

/// (largest single request, peak live bytes above the level at the last reset) on this thread.
fn alloc_stats(base_live: isize) -> (usize, usize) {
    (LARGEST.with(|c| c.get()), (PEAK.with(|p| p.get()) - base_live).max(0) as usize)
}

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// Deterministic randomness

struct R(u64);

impl R {
    fn new(seed: u64) -> Self {
        R(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

fn hash_name(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Values that break size arithmetic.
const EXTREMES: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 38,
    1 << 40,
    1 << 53,
    (1 << 62) - 1,
    i64::MAX as u64,
    1 << 63,
    u64::MAX - 7,
    u64::MAX,
];

// ---------------------------------------------------------------------------------------
// Generic byte mutations

fn mutate_bytes(r: &mut R, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = input.to_vec();
    let ops = 1 + r.below(4);
    for _ in 0..ops {
        let n = d.len();
        match r.below(10) {
            0 if n > 0 => {
                let i = r.below(n);
                d[i] ^= 1 << r.below(8);
            }
            1 if n > 0 => {
                let i = r.below(n);
                d[i] = *r.pick(&[0x00, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'[', b':', b',', b'\n', b'-', b'9']);
            }
            2 => d.truncate(r.below(n + 1)),
            3 if n > 0 => {
                // an extreme little- or big-endian 4- or 8-byte size field
                let w = if r.chance(2) { 4 } else { 8 };
                let i = r.below(n);
                let v = *r.pick(EXTREMES);
                let bytes: Vec<u8> = if r.chance(2) { v.to_le_bytes().to_vec() } else { v.to_be_bytes().to_vec() };
                let src = if w == 4 {
                    &bytes[if bytes[0] == 0 { 4 } else { 0 }..][..4]
                } else {
                    &bytes[..]
                };
                for (k, b) in src.iter().enumerate() {
                    if i + k < n {
                        d[i + k] = *b;
                    }
                }
            }
            4 if n > 0 => {
                // the first 8 bytes (safetensors header length) set to an extreme value
                let v = *r.pick(EXTREMES);
                for (k, b) in v.to_le_bytes().iter().enumerate().take(n) {
                    d[k] = *b;
                }
            }
            5 => {
                // splice: a prefix of this input with a suffix of another seed
                let other = r.pick(seeds);
                let a = r.below(n + 1);
                let b = r.below(other.len() + 1);
                d.truncate(a);
                d.extend_from_slice(&other[b..]);
            }
            6 => {
                // insert a range copied from somewhere, or random bytes
                let i = r.below(n + 1);
                let len = 1 + r.below(64);
                let ins: Vec<u8> = if n > 0 && r.chance(2) {
                    let s = r.below(n);
                    d[s..(s + len).min(n)].to_vec()
                } else {
                    (0..len).map(|_| r.next() as u8).collect()
                };
                d.splice(i..i, ins);
            }
            7 if n > 0 => {
                let i = r.below(n);
                let j = (i + 1 + r.below(64)).min(n);
                d.drain(i..j);
            }
            8 if n > 1 => {
                // duplicate a range in place
                let i = r.below(n);
                let j = (i + 1 + r.below(256)).min(n);
                let copy = d[i..j].to_vec();
                d.splice(j..j, copy);
            }
            _ => {
                let other = r.pick(seeds);
                if !other.is_empty() && n > 0 {
                    let s = r.below(other.len());
                    let len = (1 + r.below(32)).min(other.len() - s);
                    let i = r.below(n);
                    for k in 0..len {
                        if i + k < n {
                            d[i + k] = other[s + k];
                        }
                    }
                }
            }
        }
    }
    d
}

// ---------------------------------------------------------------------------------------
// Safetensors and JSON

/// (header JSON, tensor data) of a safetensors file.
fn st_parse(bytes: &[u8]) -> Option<(serde_json::Map<String, Value>, Vec<u8>)> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    let map = serde_json::from_slice(header).ok()?;
    Some((map, bytes[8 + n..].to_vec()))
}

/// A safetensors file from header text and data (the length field as given).
fn st_build_text(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn st_build(header: &serde_json::Map<String, Value>, data: &[u8]) -> Vec<u8> {
    st_build_text(&serde_json::to_string(header).unwrap(), data)
}

/// An extreme JSON value of some type.
fn json_extreme(r: &mut R) -> Value {
    match r.below(16) {
        0 => json!(*r.pick(EXTREMES)),
        1 => json!(-(r.below(1 << 20) as i64) - 1),
        2 => json!(0),
        3 => json!(1.5),
        4 => json!(1e308),
        5 => Value::Null,
        6 => json!(true),
        7 => json!(""),
        8 => json!("x".repeat(1 + r.below(100_000))),
        9 => json!([]),
        10 => json!({}),
        11 => json!(-1),
        12 => json!(*r.pick(&[4, 16, 64, 256, 1024, 4096, 1 << 20, (1 << 20) + 4])),
        13 => json!("SDE"),
        14 => {
            // deep nesting (serde_json stops at 128 levels)
            let depth = 1 + r.below(300);
            let mut v = json!(1);
            for _ in 0..depth {
                v = json!([v]);
            }
            v
        }
        _ => json!(*r.pick(&["Linear", "ReLinear", "TiT", "SiT", "AdamW", "RAdam", "ft-vs-fe", "Cosine", "F32", "nan", "inf"])),
    }
}

/// Mutates one random node of a JSON value (or deletes/adds an object key).
fn mutate_json(r: &mut R, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() && !r.chance(5) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = r.pick(&keys).clone();
            match r.below(8) {
                0 => {
                    m.remove(&k);
                }
                1 => {
                    let val = m[&k].clone();
                    m.insert(format!("{k}{}", r.below(3)), val);
                }
                _ => mutate_json(r, m.get_mut(&k).unwrap()),
            }
        }
        Value::Array(a) if !a.is_empty() && !r.chance(5) => match r.below(6) {
            0 => {
                a.pop();
            }
            1 => {
                let x = a[0].clone();
                a.push(x);
            }
            _ => {
                let i = r.below(a.len());
                mutate_json(r, &mut a[i]);
            }
        },
        Value::Object(m) if r.chance(2) => {
            m.insert(format!("k{}", r.below(10)), json_extreme(r));
        }
        _ => *v = json_extreme(r),
    }
}

const DTYPES: &[&str] = &[
    "F32", "F16", "BF16", "F64", "I64", "I32", "U8", "I8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2", "C64", "F4", "XX", "",
];

const NAME_EDITS: &[&str] = &[
    "ema.",
    "mod.",
    "optimizer.exp_avg.",
    "optimizer.exp_avg_sq.",
    "blocks.999999.",
    "\u{0}",
    "é",
    "..",
    "/",
    "__metadata__",
];

/// One format-aware edit of a safetensors file.
fn mutate_safetensors(r: &mut R, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let Some((mut h, mut data)) = st_parse(input) else {
        return mutate_bytes(r, input, seeds);
    };
    // Usually drop the checksum so that edits reach the readers past it.
    if !r.chance(4) {
        if let Some(Value::Object(m)) = h.get_mut("__metadata__") {
            m.remove("ucgm_checksum");
        }
    }
    let names: Vec<String> = h.keys().filter(|k| *k != "__metadata__").cloned().collect();
    let edits = 1 + r.below(3);
    for _ in 0..edits {
        match r.below(12) {
            0..=4 if !names.is_empty() => {
                let name = r.pick(&names).clone();
                let Some(Value::Object(t)) = h.get_mut(&name) else { continue };
                match r.below(9) {
                    0 => {
                        // a huge shape with offsets that agree with it
                        let big = *r.pick(&[1u64 << 38, 1 << 30, 1 << 62, u64::MAX, 1 << 20]);
                        t.insert("shape".into(), json!([big, 1024]));
                        if r.chance(2) {
                            t.insert("data_offsets".into(), json!([0, big.wrapping_mul(4096)]));
                        }
                    }
                    1 => {
                        // a dimension set to an extreme or zero (a zero dimension makes others free)
                        if let Some(Value::Array(s)) = t.get_mut("shape") {
                            if s.is_empty() {
                                s.push(json!(0));
                            }
                            let i = r.below(s.len());
                            s[i] = if r.chance(2) { json!(0) } else { json!(*r.pick(EXTREMES)) };
                            if r.chance(2) {
                                s.push(json!(0));
                            }
                        }
                    }
                    2 => {
                        if let Some(Value::Array(o)) = t.get_mut("data_offsets") {
                            if o.len() == 2 {
                                let i = r.below(2);
                                o[i] = json!(*r.pick(EXTREMES));
                            }
                        }
                    }
                    3 => {
                        t.insert("dtype".into(), json!(*r.pick(DTYPES)));
                    }
                    4 => {
                        // swap the offsets
                        if let Some(Value::Array(o)) = t.get_mut("data_offsets") {
                            o.reverse();
                        }
                    }
                    5 => {
                        if let Some(Value::Array(s)) = t.get_mut("shape") {
                            if r.chance(2) {
                                s.pop();
                            } else {
                                s.push(json!(1));
                            }
                        }
                    }
                    _ => {
                        let mut v = Value::Object(t.clone());
                        mutate_json(r, &mut v);
                        h.insert(name, v);
                    }
                }
            }
            5 if !names.is_empty() => {
                // rename (or alias) a tensor
                let name = r.pick(&names).clone();
                let Some(v) = h.get(&name).cloned() else { continue };
                let edit = *r.pick(NAME_EDITS);
                let new = match r.below(4) {
                    0 => format!("{edit}{name}"),
                    1 => name.trim_start_matches("ema.").trim_start_matches("mod.").to_string(),
                    2 => r.pick(&names).clone(),
                    _ => format!("{name}{edit}"),
                };
                if r.chance(2) {
                    h.remove(&name);
                }
                h.insert(new, v);
            }
            6 if !names.is_empty() => {
                h.remove(r.pick(&names));
            }
            7 | 8 => {
                // metadata: one value's JSON mutated, or the value itself replaced
                let meta = h.entry("__metadata__").or_insert_with(|| json!({}));
                if let Value::Object(m) = meta {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    if keys.is_empty() || r.chance(6) {
                        let k = *r.pick(&[
                            "ucgm_config",
                            "ucgm_trainer_state",
                            "ucgm_trainer_config",
                            "ucgm_sampler",
                            "ucgm_checksum",
                            "ucgm_data_state",
                        ]);
                        m.insert(k.into(), json_extreme(r));
                    } else {
                        let k = r.pick(&keys).clone();
                        let text = m[&k].as_str().unwrap_or("").to_string();
                        match serde_json::from_str::<Value>(&text) {
                            Ok(mut v) if !r.chance(4) => {
                                mutate_json(r, &mut v);
                                m.insert(k, json!(v.to_string()));
                            }
                            _ => {
                                let v = if r.chance(3) {
                                    json_extreme(r)
                                } else {
                                    json!(String::from_utf8_lossy(&mutate_bytes(r, text.as_bytes(), seeds)).into_owned())
                                };
                                m.insert(k, v);
                            }
                        }
                    }
                } else {
                    *meta = json_extreme(r);
                }
            }
            9 => {
                // data truncated, extended or damaged
                match r.below(3) {
                    0 => data.truncate(r.below(data.len() + 1)),
                    1 => data.extend(std::iter::repeat_n(0u8, 1 + r.below(64))),
                    _ => {
                        if !data.is_empty() {
                            let i = r.below(data.len());
                            data[i] = *r.pick(&[0x7f, 0xff, 0x80, 0x00]);
                        }
                    }
                }
            }
            10 => {
                let mut v = Value::Object(h.clone());
                mutate_json(r, &mut v);
                match v {
                    Value::Object(m) => h = m,
                    other => return st_build_text(&other.to_string(), &data),
                }
            }
            _ => {
                // raw header text: a duplicated entry, or the length field set wrong
                let text = serde_json::to_string(&h).unwrap();
                let mut out = if r.chance(2) && !names.is_empty() {
                    let name = r.pick(&names);
                    let entry = format!("{}:{}", json!(name), h.get(name).cloned().unwrap_or(Value::Null));
                    st_build_text(&text.replacen('{', &format!("{{{entry},"), 1), &data)
                } else {
                    st_build_text(&text, &data)
                };
                if r.chance(2) {
                    let v = if r.chance(2) {
                        *r.pick(EXTREMES)
                    } else {
                        (out.len() as u64).wrapping_add(r.below(17) as u64).wrapping_sub(8)
                    };
                    out[..8].copy_from_slice(&v.to_le_bytes());
                }
                return out;
            }
        }
    }
    st_build(&h, &data)
}

fn mutate_st_any(r: &mut R, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    if r.chance(4) {
        mutate_bytes(r, input, seeds)
    } else {
        mutate_safetensors(r, input, seeds)
    }
}

fn mutate_json_text(r: &mut R, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(input) {
        Ok(mut v) if !r.chance(4) => {
            for _ in 0..1 + r.below(3) {
                mutate_json(r, &mut v);
            }
            v.to_string().into_bytes()
        }
        _ => mutate_bytes(r, input, seeds),
    }
}

// ---------------------------------------------------------------------------------------
// YAML

const YAML_VALUES: &[&str] = &[
    "0",
    "-1",
    "1e400",
    "-1e400",
    ".nan",
    ".inf",
    "-.inf",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775807",
    "4294967296",
    "1048576",
    "~",
    "null",
    "[]",
    "{}",
    "[1, 2, 3]",
    "yes",
    "true",
    "\"\"",
    "!!binary aGVsbG8=",
    "!custom 3",
    "&a 5",
    "*a",
    "*missing",
    "{a: {b: {c: 1}}}",
    "0x7fffffff",
    "1_000_000_000_000",
    "SDE",
    "ODE",
    "TiT-XL/1",
    "SiT-B/2",
    "Linear",
    "builtin",
    "shards",
    "folder",
    "TiT",
    "'''",
    "[",
    "{",
    ": :",
    "- - -",
];

const YAML_KEYS: &[&str] = &[
    "output_dir",
    "data",
    "model",
    "train",
    "optimizer",
    "transport",
    "sample",
    "backend",
    "vae",
    "data_path",
    "keep_last",
    "sampling_steps",
    "global_batch_size",
    "image_size",
    "num_classes",
    "hidden_size",
    "depth",
    "num_heads",
    "patch_size",
    "max_steps",
    "<<",
    "? complex",
    "",
];

fn billion_laughs(levels: usize) -> String {
    let mut s = String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

fn mutate_yaml(r: &mut R, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    if r.chance(5) {
        return mutate_bytes(r, input, seeds);
    }
    let text = String::from_utf8_lossy(input).into_owned();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..1 + r.below(3) {
        let n = lines.len();
        match r.below(12) {
            0 if n > 0 => {
                lines.remove(r.below(n));
            }
            1 if n > 0 => {
                let l = lines[r.below(n)].clone();
                lines.insert(r.below(n + 1), l);
            }
            2..=4 if n > 0 => {
                // a value replaced: after a ": " at a random place on a line
                let i = r.below(n);
                let l = &lines[i];
                let colons: Vec<usize> = l.match_indices(": ").map(|(k, _)| k).collect();
                if !colons.is_empty() {
                    let at = *r.pick(&colons) + 2;
                    let end = l[at..].find([',', '}', ']']).map_or(l.len(), |e| at + e);
                    let v = *r.pick(YAML_VALUES);
                    lines[i] = format!("{}{v}{}", &l[..at], &l[end..]);
                }
            }
            5 if n > 0 => {
                // a key renamed or a random key added inside a flow mapping
                let i = r.below(n);
                let k = *r.pick(YAML_KEYS);
                lines[i] = lines[i].replacen('{', &format!("{{{k}: {}, ", r.pick(YAML_VALUES)), 1);
            }
            6 => {
                let k = if r.chance(3) {
                    "k".repeat(1 + r.below(200_000))
                } else {
                    r.pick(YAML_KEYS).to_string()
                };
                lines.insert(r.below(n + 1), format!("{k}: {}", r.pick(YAML_VALUES)));
            }
            7 => {
                let depth = 1 + r.below(2000);
                let open = if r.chance(2) { "[" } else { "{a: " };
                let close = if open == "[" { "]" } else { "}" };
                lines.insert(r.below(n + 1), format!("deep: {}1{}", open.repeat(depth), close.repeat(depth)));
            }
            8 => {
                lines.insert(0, billion_laughs(2 + r.below(10)));
            }
            9 if n > 0 => {
                // indentation changed
                let i = r.below(n);
                lines[i] = format!("{}{}", " ".repeat(r.below(5)), lines[i].trim_start());
            }
            10 => lines.push(r.pick(&["---", "...", "--- !!map", "%YAML 1.1", "a: &x {b: *x}", "<<: *a"]).to_string()),
            _ => {
                let other = String::from_utf8_lossy(r.pick(seeds).as_slice()).into_owned();
                let ol: Vec<&str> = other.lines().collect();
                if !ol.is_empty() {
                    lines.insert(r.below(n + 1), r.pick(&ol).to_string());
                }
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

// ---------------------------------------------------------------------------------------
// PNG

fn png_chunks(bytes: &[u8]) -> Option<Vec<([u8; 4], Vec<u8>)>> {
    if bytes.len() < 8 || bytes[..8] != [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a] {
        return None;
    }
    let mut at = 8;
    let mut out = Vec::new();
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        let kind: [u8; 4] = bytes[at + 4..at + 8].try_into().ok()?;
        let data = bytes.get(at + 8..at + 8 + len)?.to_vec();
        out.push((kind, data));
        at += 12 + len;
    }
    Some(out)
}

fn png_build(chunks: &[([u8; 4], Vec<u8>)], fix_crc: bool) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    for (kind, data) in chunks {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut h = crc32fast::Hasher::new();
        h.update(kind);
        h.update(data);
        let crc = if fix_crc { h.finalize() } else { h.finalize() ^ 1 };
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

fn mutate_png(r: &mut R, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let Some(mut chunks) = png_chunks(input) else {
        return mutate_bytes(r, input, seeds);
    };
    if r.chance(4) || chunks.is_empty() {
        return mutate_bytes(r, input, seeds);
    }
    for _ in 0..1 + r.below(3) {
        let n = chunks.len();
        match r.below(9) {
            0..=2 => {
                // IHDR: width / height / depth / colour type / interlace
                if let Some((_, d)) = chunks.iter_mut().find(|(k, _)| k == b"IHDR") {
                    if d.len() >= 13 {
                        match r.below(4) {
                            0 | 1 => {
                                let v = *r.pick(&[0u32, 1, 100_000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 16, 1 << 20, 65_535]);
                                let at = if r.chance(2) { 0 } else { 4 };
                                d[at..at + 4].copy_from_slice(&v.to_be_bytes());
                            }
                            2 => d[8] = *r.pick(&[1, 2, 4, 8, 16, 0, 3, 32]),
                            _ => {
                                d[9] = *r.pick(&[0, 2, 3, 4, 6, 1, 7]);
                                if r.chance(3) {
                                    d[12] = *r.pick(&[0, 1, 2]);
                                }
                            }
                        }
                    }
                }
            }
            3 => {
                let i = r.below(n);
                let c = chunks[i].clone();
                chunks.insert(r.below(n + 1), c);
            }
            4 if n > 1 => {
                chunks.remove(r.below(n));
            }
            5 => {
                // an ancillary or critical chunk inserted
                let kind = *r.pick(&[
                    b"PLTE", b"tRNS", b"tEXt", b"zTXt", b"iCCP", b"IDAT", b"IEND", b"acTL", b"fcTL", b"sBIT", b"gAMA",
                ]);
                let len = *r.pick(&[0usize, 1, 3, 6, 13, 256, 768, 4096, 70_000]);
                let data: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
                chunks.insert(1 + r.below(n), (*kind, data));
            }
            6 => {
                // IDAT payload damaged (keeping the zlib header some of the time)
                if let Some((_, d)) = chunks.iter_mut().find(|(k, _)| k == b"IDAT") {
                    let m = mutate_bytes(r, d, seeds);
                    *d = m;
                }
            }
            7 => {
                // a zlib bomb: a tiny stream of zeros declared for a large image
                if let Some(i) = chunks.iter().position(|(k, _)| k == b"IDAT") {
                    chunks[i].1 = zlib_zeros(1 + r.below(1 << 22));
                }
            }
            _ => {
                let i = r.below(n);
                let m = mutate_bytes(r, &chunks[i].1, seeds);
                chunks[i].1 = m;
            }
        }
    }
    let mut out = png_build(&chunks, !r.chance(10));
    if r.chance(8) {
        // a chunk length field set wrong
        let at = 8 + 13 + 12;
        if out.len() > at + 4 {
            let v = *r.pick(&[0u32, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000, 1 << 24]);
            out[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
    }
    out
}

/// A zlib stream (stored = uncompressed blocks would be large; this uses fixed Huffman
/// runs) holding `n` zero bytes, built with the png encoder on a one-row image.
fn zlib_zeros(n: usize) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<BTreeMap<usize, Vec<u8>>>> = OnceLock::new();
    let n = n.next_power_of_two().min(1 << 22);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&n) {
        return v.clone();
    }
    let png = encode_png(n as u32 - 1, 1, png::ColorType::Grayscale, png::BitDepth::Eight, &vec![0u8; n - 1]);
    let idat: Vec<u8> = png_chunks(&png)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k == b"IDAT")
        .flat_map(|(_, d)| d)
        .collect();
    cache.lock().unwrap().insert(n, idat.clone());
    idat
}

fn encode_png(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(depth);
        if color == png::ColorType::Indexed {
            e.set_palette(vec![0u8, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]);
            e.set_trns(vec![0u8, 128]);
        }
        let mut wr = e.write_header().unwrap();
        wr.write_image_data(pixels).unwrap();
        wr.finish().unwrap();
    }
    out
}

// ---------------------------------------------------------------------------------------
// Seeds, generated by the library

fn tiny(arch: Arch) -> ModelConfig {
    ModelConfig {
        arch,
        input_size: 4,
        in_channels: 2,
        patch: 2,
        hidden: 8,
        depth: 1,
        heads: 2,
        num_classes: 3,
    }
}

fn backend() -> CpuBackend {
    static B: OnceLock<Mutex<CpuBackend>> = OnceLock::new();
    B.get_or_init(|| Mutex::new(CpuBackend::<f32>::new(1).unwrap())).lock().unwrap().clone()
}

fn model(cfg: &ModelConfig, seed: u64) -> Model<CpuBackend> {
    let n = ParamLayout::for_config(cfg).total();
    let p: Vec<f32> = ucgm::Rng::new(seed).normal_f32(n).into_iter().map(|v| 0.05 * v).collect();
    Model::from_params(cfg.clone(), backend(), &p).unwrap()
}

fn trainer_config() -> TrainerConfig {
    TrainerConfig {
        transport: Default::default(),
        optimizer: OptimizerSection {
            kind: OptimizerKind::AdamW,
            lr: 1e-3,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.95,
            max_grad_norm: None,
            eps: 1e-8,
        },
        train: Default::default(),
    }
}

/// The bytes of files written by `write` into a scratch folder.
fn written(write: impl FnOnce(&Path)) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    write(&p);
    std::fs::read(&p).unwrap()
}

/// Strips the metadata keys `drop` from a safetensors file (and so its checksum too).
fn without_metadata(bytes: &[u8], drop: &[&str]) -> Vec<u8> {
    let (mut h, data) = st_parse(bytes).unwrap();
    if let Some(Value::Object(m)) = h.get_mut("__metadata__") {
        for k in drop {
            m.remove(*k);
        }
        m.remove("ucgm_checksum");
    }
    st_build(&h, &data)
}

struct Seeds {
    weights: Vec<Vec<u8>>,
    checkpoints: Vec<Vec<u8>>,
    run_checkpoints: Vec<Vec<u8>>,
    shards: Vec<Vec<u8>>,
    pngs: Vec<Vec<u8>>,
    yaml: Vec<Vec<u8>>,
    presets: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static S: OnceLock<Seeds> = OnceLock::new();
    S.get_or_init(|| {
        let mut weights = Vec::new();
        for arch in [Arch::Sit, Arch::Tit] {
            let m = model(&tiny(arch), 1);
            let meta = ucgm::preset::metadata(&SamplerConfig::default()).unwrap();
            let w = written(|p| m.save_with_metadata(p, &meta).unwrap());
            // Inferred configuration: no ucgm_config (as converted official files).
            weights.push(without_metadata(&w, &["ucgm_config"]));
            weights.push(w);
        }
        let mut checkpoints = Vec::new();
        for arch in [Arch::Sit, Arch::Tit] {
            let mut cfg = trainer_config();
            if arch == Arch::Tit {
                cfg.transport.ema_decay_rate = 0.99; // an EMA `mod` with its ramp
            }
            let mut t = Trainer::new(cfg, model(&tiny(arch), 2)).unwrap();
            let c = tiny(arch);
            let x = ucgm::Rng::new(3).normal_f32(2 * c.image_len());
            t.train_step(&x, &[0, 1]).unwrap();
            checkpoints.push(written(|p| t.save_checkpoint(p).unwrap()));
        }
        // `ucgm train` checkpoints (with the data loader's position), before and after a step.
        let mut run_checkpoints = Vec::new();
        for steps in [0, 1] {
            let dir = tempfile::tempdir().unwrap();
            let mut run = TrainRun::new(run_config(dir.path()), AnyBackend::Cpu(backend()), None, None).unwrap();
            if steps > 0 {
                run.run(&mut Quiet).unwrap();
            }
            let p = run.save_checkpoint().unwrap();
            run_checkpoints.push(std::fs::read(p).unwrap());
        }
        let mut shards = Vec::new();
        for (n, seed) in [(2usize, 4u64), (3, 5)] {
            let shape = [n, 2, 2, 2];
            let len = shape.iter().product();
            let a = ucgm::Rng::new(seed).normal_f32(len);
            let b = ucgm::Rng::new(seed + 1).normal_f32(len);
            let labels: Vec<i64> = (0..n as i64).collect();
            shards.push(written(|p| write_shard(p, shape, &a, &b, &labels, &BTreeMap::new()).unwrap()));
        }
        let mut pngs = Vec::new();
        let g = ucgm::image::make_grid(&ucgm::Rng::new(6).normal_f32(3 * 16), [1, 3, 4, 4], 1, 0).unwrap();
        pngs.push(g.encode_png().unwrap());
        pngs.push(encode_png(3, 2, png::ColorType::Grayscale, png::BitDepth::Eight, &[0, 50, 100, 150, 200, 250]));
        pngs.push(encode_png(2, 2, png::ColorType::Rgba, png::BitDepth::Sixteen, &[7u8; 32]));
        pngs.push(encode_png(4, 2, png::ColorType::Indexed, png::BitDepth::Two, &[0b0001_1011, 0b1110_0100]));
        pngs.push(encode_png(8, 1, png::ColorType::Grayscale, png::BitDepth::One, &[0b1010_1010]));
        pngs.push(encode_png(
            2,
            2,
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Eight,
            &[1, 2, 3, 4, 5, 6, 7, 8],
        ));
        let yaml = [
            "output_dir: runs/a
data: {source: builtin, image_size: 16, num_classes: 10, channels: 3}
model: {type: TiT, hidden_size: 128, depth: 4, num_heads: 4, patch_size: 2}
train: {max_steps: 10, global_batch_size: 8, global_seed: 1, ckpt_every: 10, ema_decay: 0.995, log_every: 250, keep_last: 2}
optimizer: {type: AdamW, lr: 0.0005, beta1: 0.9, beta2: 0.95, weight_decay: 0.0}
transport: {type: Linear, lab_drop_ratio: 0.1, consistc_ratio: 0.0, enhanced_ratio: 0.47, enhanced_style: ft-vs-fe,
  ema_decay_rate: 0.999, enhanced_range: [0.0, 0.75], wt_cosine_loss: true, weight_funcion: Cosine, time_dist_ctrl: [1.0, 1.0, 1.0]}
sample: {type: UNI, sampling_steps: 30, extrapol_ratio: 0.5, time_dist_ctrl: [1.0, 1.0, 1.0], rfba_gap_steps: [0.001, 0.001], per_batch_size: 40}
",
            "output_dir: runs/b
data: {source: builtin, image_size: 16, num_classes: 10, channels: 3}
model: {type: TiT, hidden_size: 128, depth: 4, num_heads: 4, patch_size: 2}
train: {max_steps: 5, global_batch_size: 8, global_seed: 2, ckpt_every: 5, ema_decay: 0.99, log_every: 50}
optimizer: {type: RAdam, lr: 0.0002, beta1: 0.9, beta2: 0.999, weight_decay: 0.0, max_grad_norm: 0.1}
transport: {type: Linear, lab_drop_ratio: 0.1, consistc_ratio: 1.0, enhanced_ratio: 1.0, enhanced_style: fc-vs-xz,
  scaled_cbl_eps: 5.0, ema_decay_rate: 1.0, enhanced_range: [0.0, 0.75], wt_cosine_loss: false, weight_funcion: Cosine,
  time_dist_ctrl: [0.8, 1.0, 1.0]}
sample: {type: UNI, sampling_steps: 2, stochast_ratio: 1.0, time_dist_ctrl: [1.0, 1.0, 1.0], rfba_gap_steps: [0.001, 0.3], per_batch_size: 40}
",
            "# a reference-style config: latent shards, a VAE, a named model
data:
  data_path: /data/latents
  image_size: 256
  num_classes: 1000
vae:
  downsample_ratio: 8
model:
  type: TiT-B/2
  in_chans: 4
train:
  max_steps: 100
  global_batch_size: 32
optimizer:
  type: AdamW
  lr: 0.0001
transport:
  type: Linear
sample:
  type: ODE
  sampling_steps: 40
",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let presets = vec![
            ucgm::preset::to_json(&SamplerConfig::default()).unwrap().into_bytes(),
            ucgm::preset::to_json(&SamplerConfig {
                stochasticity: ucgm::Stochasticity::Sde,
                steps: 2,
                ..Default::default()
            })
            .unwrap()
            .into_bytes(),
        ];
        Seeds {
            weights,
            checkpoints,
            run_checkpoints,
            shards,
            pngs,
            yaml,
            presets,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Targets

type Mutator = fn(&mut R, &[u8], &[Vec<u8>]) -> Vec<u8>;
/// Runs a reader on one input (`dir`: an empty scratch folder; `variant`: which call).
type Runner = fn(&Path, &[u8], u64) -> Result<(), Error>;

struct Target {
    name: &'static str,
    seeds: fn() -> Vec<Vec<u8>>,
    mutate: Mutator,
    run: Runner,
    /// Largest allocation a case may make, from the input's length.
    alloc_bound: fn(usize) -> usize,
}

fn file_in(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Data read is at most the file; f16 → f32 doubles it, u8 → i64 makes it 8×.
fn bound_file(len: usize) -> usize {
    64 * MIB + 16 * len
}

fn bound_png(len: usize) -> usize {
    // The decoder's buffer (≤ 8 bytes per pixel) and the float image (≤ 12 bytes per
    // pixel) within the documented pixel limit.
    64 * MIB + 16 * len + 12 * ucgm::image::MAX_IMAGE_PIXELS
}

fn run_tensor_file(dir: &Path, input: &[u8], _: u64) -> Result<(), Error> {
    let p = file_in(dir, "t.safetensors", input);
    let f = TensorFile::open(&p)?;
    for n in f.names() {
        let _ = f.shape(n)?;
        let _ = f.f32(n);
        let _ = f.i64(n);
    }
    Ok(())
}

fn heads_which(variant: u64) -> (Option<usize>, Option<CheckpointWeights>) {
    // (variant 0, used for the seeds: 2 heads, which the tiny seeds' width needs)
    let heads = [Some(2), None, None, Some(1), Some(0), Some(3), Some(usize::MAX)][(variant % 7) as usize];
    let which = [
        None,
        Some(CheckpointWeights::Ema),
        Some(CheckpointWeights::Online),
        Some(CheckpointWeights::Mod),
    ][(variant / 7 % 4) as usize];
    (heads, which)
}

fn run_weights(dir: &Path, input: &[u8], variant: u64) -> Result<(), Error> {
    let p = file_in(dir, "w.safetensors", input);
    let (heads, which) = heads_which(variant);
    // The pieces, as the CLI and the C ABI use them…
    if let Ok(f) = TensorFile::open(&p) {
        if let Ok(cfg) = weights::config_of(&f, heads) {
            let _ = weights::check_no_extras(&f, &cfg);
            let _ = weights::read_params(&f, &cfg, which.map_or("", |w| w.prefix()));
        }
        let _ = ucgm::preset::from_metadata(&p, f.metadata());
    }
    // …and the whole loader, then a model from what it returns.
    let w = weights::load_file(&p, heads, which)?;
    Model::from_params(w.cfg, backend(), &w.params)?;
    Ok(())
}

fn run_checkpoint(dir: &Path, input: &[u8], variant: u64) -> Result<(), Error> {
    let p = file_in(dir, "c.safetensors", input);
    let which = [CheckpointWeights::Ema, CheckpointWeights::Online, CheckpointWeights::Mod][(variant % 3) as usize];
    let _ = read_weights(&p, which);
    if variant.is_multiple_of(2) {
        let _ = Trainer::from_checkpoint(&p, trainer_config(), backend());
        Trainer::resume(&p, backend())?;
    } else {
        AnyTrainer::resume(&p, AnyBackend::Cpu(backend()))?;
    }
    Ok(())
}

/// A tiny `ucgm train` run on the built-in data, writing under `dir`.
fn run_config(dir: &Path) -> RunConfig {
    RunConfig::from_yaml(&format!(
        "output_dir: {}
data: {{source: builtin, image_size: 16, num_classes: 10, channels: 1, train_len: 8}}
model: {{type: SiT, hidden_size: 8, depth: 1, num_heads: 2, patch_size: 4}}
train: {{max_steps: 1, global_batch_size: 2, global_seed: 1, ckpt_every: 1, log_every: 1}}
optimizer: {{type: AdamW, lr: 0.001}}
",
        dir.join("run").display()
    ))
    .unwrap()
}

fn run_resume(dir: &Path, input: &[u8], _: u64) -> Result<(), Error> {
    let p = file_in(dir, "0000001.safetensors", input);
    let cfg = run_config(dir);
    resume_point(&cfg, &p)?;
    TrainRun::new(cfg, AnyBackend::Cpu(backend()), Some(&p), None)?;
    Ok(())
}

fn run_preset(_: &Path, input: &[u8], _: u64) -> Result<(), Error> {
    let text = std::str::from_utf8(input).map_err(|e| Error::invalid(e.to_string()))?;
    ucgm::preset::from_json(text)?;
    Ok(())
}

fn run_yaml(dir: &Path, input: &[u8], _: u64) -> Result<(), Error> {
    let p = file_in(dir, "run.yaml", input);
    let cfg = RunConfig::from_file(&p)?;
    cfg.model_config()?;
    Ok(())
}

fn run_shards(dir: &Path, input: &[u8], variant: u64) -> Result<(), Error> {
    file_in(dir, "a.safetensors", input);
    if variant.is_multiple_of(3) {
        file_in(dir, "b.safetensors", &seeds().shards[0]);
    }
    let k = [None, Some(1), Some(2), Some(1000), Some(usize::MAX)][(variant / 3 % 5) as usize];
    LatentShards::open(dir, k)?;
    Ok(())
}

fn run_png(dir: &Path, input: &[u8], _: u64) -> Result<(), Error> {
    ucgm::image::decode_png(input, &dir.join("x.png"))?;
    Ok(())
}

fn run_image_folder(dir: &Path, input: &[u8], variant: u64) -> Result<(), Error> {
    std::fs::create_dir_all(dir.join("a")).unwrap();
    file_in(&dir.join("a"), "x.png", input);
    // (variant 0, used for the seeds: a second class holding the same image)
    if variant % 3 != 2 {
        std::fs::create_dir_all(dir.join("b")).unwrap();
        file_in(&dir.join("b"), "y.PNG", if variant.is_multiple_of(3) { input } else { &seeds().pngs[0] });
    }
    ImageFolder::open(dir)?;
    Ok(())
}

fn run_vae(dir: &Path, input: &[u8], _: u64) -> Result<(), Error> {
    let p = file_in(dir, "vae.safetensors", input);
    ucgm::model::vae::Vae::load(&p, backend())?;
    Ok(())
}

fn run_jpeg(dir: &Path, input: &[u8], _: u64) -> Result<(), Error> {
    ucgm::image::decode::decode_rgb8(input, &dir.join("x.jpg"))?;
    Ok(())
}

fn run_stats_npz(dir: &Path, input: &[u8], _: u64) -> Result<(), Error> {
    let p = file_in(dir, "stats.npz", input);
    ucgm::fid::npz::read_stats_npz(&p)?;
    Ok(())
}

/// The VAE seeds: the shared tiny reference VAE under its diffusers and LDM names.
fn vae_seeds() -> Vec<Vec<u8>> {
    ["vae_tiny_diffusers.safetensors", "vae_tiny_ldm.safetensors"]
        .iter()
        .map(|n| std::fs::read(common::reference(n)).expect("shared reference VAE"))
        .collect()
}

/// The JPEG seeds: the image fixture's Pillow-made files (4:2:0 baseline, progressive 4:4:4).
fn jpeg_seeds() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image_preprocess.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    ["jpeg420.file", "jpeg444_progressive.file"]
        .iter()
        .map(|n| st.tensor(n).unwrap().data().to_vec())
        .collect()
}

/// The statistics seeds: `.npz` files written by the engine (D = 3 and 16).
fn npz_seeds() -> Vec<Vec<u8>> {
    [3usize, 16]
        .iter()
        .map(|&d| {
            let mean: Vec<f64> = (0..d).map(|i| i as f64 * 0.5).collect();
            let cov: Vec<f64> = (0..d * d).map(|k| if k / d == k % d { 1.0 + k as f64 * 0.01 } else { 0.1 }).collect();
            let stats = ucgm::metric::GaussianStats::new(mean, cov).unwrap();
            written(|p| ucgm::fid::npz::write_stats_npz(p, &stats).unwrap())
        })
        .collect()
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "safetensors",
            seeds: || {
                let s = seeds();
                s.weights.iter().chain(&s.shards).chain(&s.checkpoints[..1]).cloned().collect()
            },
            mutate: mutate_st_any,
            run: run_tensor_file,
            alloc_bound: bound_file,
        },
        Target {
            name: "weights",
            seeds: || {
                let s = seeds();
                s.weights.iter().chain(&s.checkpoints).cloned().collect()
            },
            mutate: mutate_st_any,
            run: run_weights,
            alloc_bound: bound_file,
        },
        Target {
            name: "checkpoint",
            seeds: || seeds().checkpoints.clone(),
            mutate: mutate_st_any,
            run: run_checkpoint,
            alloc_bound: bound_file,
        },
        Target {
            name: "run_resume",
            seeds: || seeds().run_checkpoints.clone(),
            mutate: mutate_st_any,
            run: run_resume,
            alloc_bound: bound_file,
        },
        Target {
            name: "preset",
            seeds: || seeds().presets.clone(),
            mutate: mutate_json_text,
            run: run_preset,
            alloc_bound: bound_file,
        },
        Target {
            name: "run_config",
            seeds: || seeds().yaml.clone(),
            mutate: mutate_yaml,
            run: run_yaml,
            alloc_bound: bound_file,
        },
        Target {
            name: "shards",
            seeds: || seeds().shards.clone(),
            mutate: mutate_st_any,
            run: run_shards,
            alloc_bound: bound_file,
        },
        Target {
            name: "png",
            seeds: || seeds().pngs.clone(),
            mutate: mutate_png,
            run: run_png,
            alloc_bound: bound_png,
        },
        Target {
            name: "image_folder",
            seeds: || seeds().pngs.clone(),
            mutate: mutate_png,
            run: run_image_folder,
            alloc_bound: bound_png,
        },
        Target {
            name: "vae",
            seeds: vae_seeds,
            mutate: mutate_st_any,
            run: run_vae,
            alloc_bound: bound_file,
        },
        Target {
            name: "jpeg",
            seeds: jpeg_seeds,
            mutate: mutate_bytes,
            run: run_jpeg,
            alloc_bound: bound_png,
        },
        Target {
            name: "stats_npz",
            seeds: npz_seeds,
            mutate: mutate_bytes,
            run: run_stats_npz,
            alloc_bound: bound_file,
        },
    ]
}

fn target(name: &str) -> Target {
    targets().into_iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no target {name}"))
}

// ---------------------------------------------------------------------------------------
// The harness

/// A case slower than this is a finding (a hang).
const HANG: Duration = Duration::from_secs(10);
/// A case slower than this aborts the run (an endless loop would never return).
const WATCHDOG: Duration = Duration::from_secs(120);
/// Cases per target by default: the whole file runs in about a minute on 2 cores.
const DEFAULT_ITERS: usize = 400;

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

/// The kind of an error: its variant and message with numbers, paths and quoted names
/// blurred, cut short.
fn error_kind(e: &Error) -> String {
    let dbg = format!("{e:?}");
    let variant: String = dbg.chars().take_while(|c| c.is_alphanumeric()).collect();
    // Paths (they hold the scratch folder's random name) are blurred.
    let text = e.to_string();
    let msg = text
        .split_whitespace()
        .map(|w| if w.contains('/') { "<path>" } else { w })
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    let mut quoted = false;
    for c in msg.chars() {
        if c == '"' || c == '`' {
            quoted = !quoted;
            continue;
        }
        if quoted {
            continue;
        }
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
        if out.len() >= 100 {
            break;
        }
    }
    format!("{variant}: {out}")
}

#[derive(Default)]
struct Outcome {
    panic: Option<String>,
    error: Option<String>,
    secs: f64,
    largest: usize,
    peak: usize,
}

thread_local! {
    /// Whether this thread is running a case (whose panics are caught and reported).
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the messages of panics caught in cases off stderr (`UCGM_FUZZ_SHOW_PANICS=1`
/// shows them); every other panic prints as usual.
fn quiet_case_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| c.get()) || std::env::var_os("UCGM_FUZZ_SHOW_PANICS").is_some() {
                default(info);
            }
        }));
    });
}

/// Runs one case: no panic escapes; time and allocations measured on this thread.
fn run_case(t: &Target, input: &[u8], variant: u64) -> Outcome {
    quiet_case_panics();
    let dir = tempfile::tempdir().unwrap();
    let base = LIVE.with(|l| l.get());
    alloc_reset();
    let start = Instant::now();
    IN_CASE.with(|c| c.set(true));
    let res = catch_unwind(AssertUnwindSafe(|| (t.run)(dir.path(), input, variant)));
    IN_CASE.with(|c| c.set(false));
    let secs = start.elapsed().as_secs_f64();
    let (largest, peak) = alloc_stats(base);
    let mut o = Outcome {
        secs,
        largest,
        peak,
        ..Default::default()
    };
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => o.error = Some(error_kind(&e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            o.panic = Some(msg);
        }
    }
    o
}

/// The case a watchdog watches: (started, input file).
type Current = Arc<Mutex<Option<(Instant, PathBuf)>>>;

/// Where crashing inputs and the input under test go: `UCGM_FUZZ_OUT`, by default
/// `target/tmp`.
fn out_dir() -> PathBuf {
    let dir = std::env::var_os("UCGM_FUZZ_OUT").map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn crash_dir(target: &str) -> PathBuf {
    out_dir().join("fuzz-crashes").join(target)
}

struct Report {
    iters: usize,
    secs: f64,
    ok: usize,
    kinds: BTreeSet<String>,
    findings: Vec<String>,
    largest: usize,
    slowest: f64,
}

fn fuzz(t: &Target) -> Report {
    let iters = env_u64("UCGM_FUZZ_ITERS").map_or(DEFAULT_ITERS, |v| v as usize);
    let cap = env_u64("UCGM_FUZZ_SECS").map(Duration::from_secs);
    let seed = env_u64("UCGM_FUZZ_SEED").unwrap_or(1);
    let seeds = (t.seeds)();
    let current_file = out_dir().join(format!("fuzz-current-{}.bin", t.name));
    let current: Current = Arc::new(Mutex::new(None));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (current, done, name) = (current.clone(), done.clone(), t.name);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if let Some((start, file)) = current.lock().unwrap().as_ref() {
                    if start.elapsed() > WATCHDOG {
                        eprintln!("fuzz {name}: a case has run for over {WATCHDOG:?} (a hang); its input is {}", file.display());
                        std::process::abort();
                    }
                }
            }
        })
    };
    let mut rep = Report {
        iters: 0,
        secs: 0.0,
        ok: 0,
        kinds: BTreeSet::new(),
        findings: Vec::new(),
        largest: 0,
        slowest: 0.0,
    };
    let start = Instant::now();
    for i in 0..iters {
        if cap.is_some_and(|c| start.elapsed() > c) {
            break;
        }
        let case_seed = seed.wrapping_mul(0x1000_0000_01b3) ^ hash_name(t.name) ^ (i as u64).wrapping_mul(0x9e37_79b9);
        let mut r = R::new(case_seed);
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            let base = r.pick(&seeds).clone();
            let mut m = (t.mutate)(&mut r, &base, &seeds);
            if r.chance(8) {
                m = (t.mutate)(&mut r, &m, &seeds);
            }
            m
        };
        let variant = if i < seeds.len() { 0 } else { r.next() };
        // The input goes to disk first, so an abort leaves it behind.
        std::fs::write(&current_file, &input).unwrap();
        *current.lock().unwrap() = Some((Instant::now(), current_file.clone()));
        let o = run_case(t, &input, variant);
        *current.lock().unwrap() = None;
        rep.iters += 1;
        rep.largest = rep.largest.max(o.largest);
        rep.slowest = rep.slowest.max(o.secs);
        let mut finding = None;
        if let Some(p) = &o.panic {
            finding = Some(format!("panic: {p}"));
        } else if o.secs > HANG.as_secs_f64() {
            finding = Some(format!("hang: {:.1} s", o.secs));
        } else if o.largest > (t.alloc_bound)(input.len()) {
            finding = Some(format!(
                "allocation of {} bytes from a {}-byte input (bound {})",
                o.largest,
                input.len(),
                (t.alloc_bound)(input.len())
            ));
        }
        if i < seeds.len() && (o.error.is_some() || finding.is_some()) {
            rep.findings.push(format!("seed {i} does not load: {:?} {:?}", o.error, finding));
        }
        match (&finding, &o.error) {
            (Some(f), _) => {
                let dir = crash_dir(t.name);
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join(format!("seed{seed}-case{i}-variant{variant}.bin"));
                std::fs::write(&file, &input).unwrap();
                rep.findings.push(format!("{f} (input: {}, variant {variant})", file.display()));
            }
            (None, Some(k)) => {
                rep.kinds.insert(k.clone());
            }
            (None, None) => rep.ok += 1,
        }
        let _ = o.peak;
    }
    rep.secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    let _ = std::fs::remove_file(&current_file);
    println!(
        "fuzz {:<13} seed {seed}: {:>7} cases in {:>6.1} s ({:>6.0}/s), {} valid, {} distinct errors, {} findings, largest allocation {:.1} MiB, slowest case {:.3} s",
        t.name,
        rep.iters,
        rep.secs,
        rep.iters as f64 / rep.secs.max(1e-9),
        rep.ok,
        rep.kinds.len(),
        rep.findings.len(),
        rep.largest as f64 / MIB as f64,
        rep.slowest
    );
    if std::env::var_os("UCGM_FUZZ_VERBOSE").is_some() {
        for k in &rep.kinds {
            println!("    {k}");
        }
    }
    rep
}

fn fuzz_target(name: &str) {
    if let Ok(only) = std::env::var("UCGM_FUZZ_TARGETS") {
        if !only.split(',').any(|n| n.trim() == name) {
            return;
        }
    }
    let rep = fuzz(&target(name));
    // The whole process (every target running at once) stays within 2 GiB resident.
    let hwm = common::peak_rss();
    println!("fuzz {name}: process peak resident set (VmHWM) so far {:.0} MiB", hwm as f64 / MIB as f64);
    assert!(hwm < 2 << 30, "fuzz {name}: the process's peak resident set reached {hwm} bytes");
    assert!(
        rep.findings.is_empty(),
        "fuzz {name}: {} findings:\n{}",
        rep.findings.len(),
        rep.findings.join("\n")
    );
    assert!(
        rep.kinds.len() >= 2 || rep.iters < 50,
        "fuzz {name}: the mutations reach too few errors: {:?}",
        rep.kinds
    );
}

#[test]
fn fuzz_safetensors() {
    fuzz_target("safetensors");
}

#[test]
fn fuzz_weights() {
    fuzz_target("weights");
}

#[test]
fn fuzz_checkpoint() {
    fuzz_target("checkpoint");
}

#[test]
fn fuzz_run_resume() {
    fuzz_target("run_resume");
}

#[test]
fn fuzz_preset() {
    fuzz_target("preset");
}

#[test]
fn fuzz_run_config() {
    fuzz_target("run_config");
}

#[test]
fn fuzz_shards() {
    fuzz_target("shards");
}

#[test]
fn fuzz_png() {
    fuzz_target("png");
}

#[test]
fn fuzz_image_folder() {
    fuzz_target("image_folder");
}

#[test]
fn fuzz_vae() {
    fuzz_target("vae");
}

#[test]
fn fuzz_jpeg() {
    fuzz_target("jpeg");
}

/// In its first CI run (seed 338) this target found `.npz` inputs of 556 bytes that made
/// the reader allocate 134 MB – 4 GB: from the zip entry's declared size, from the npy
/// shape, and (662 MB) inside the zip crate's central-directory parser, which reserves
/// room for the entry count an end record claims. The reader now trusts none of them
/// for allocation and reads entries from their local headers; the inputs are kept under
/// `tests/fuzz/regressions/stats_npz/`.
#[test]
fn fuzz_stats_npz() {
    fuzz_target("stats_npz");
}

// ---------------------------------------------------------------------------------------
// Regression inputs and hostile files

/// Every input under `tests/fuzz/regressions/<target>/` (once a crash) now fails cleanly.
#[test]
fn regressions_fail_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions");
    let mut checked = 0;
    for t in targets() {
        let dir = root.join(t.name);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
        files.sort();
        for f in files {
            let input = std::fs::read(&f).unwrap();
            // The variant (which call) is in the file name when it mattered.
            let variant = f
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.rsplit("variant").next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let o = run_case(&t, &input, variant);
            assert!(o.panic.is_none(), "{}: panics: {:?}", f.display(), o.panic);
            assert!(o.error.is_some(), "{}: loads, expected a clean error", f.display());
            assert!(o.secs < HANG.as_secs_f64(), "{}: took {:.1} s", f.display(), o.secs);
            let bound = (t.alloc_bound)(input.len());
            assert!(o.largest <= bound, "{}: allocated {} bytes (bound {bound})", f.display(), o.largest);
            println!("regression {}: {} in {:.3} s", f.display(), o.error.unwrap(), o.secs);
            checked += 1;
        }
    }
    println!("{checked} regression inputs fail cleanly");
}

/// A hostile input: it must fail quickly, and neither a single allocation nor this
/// thread's live heap may grow past `limit` bytes.
fn assert_refused_small(what: &str, limit: usize, f: impl FnOnce() -> Result<(), Error>) {
    let base = LIVE.with(|l| l.get());
    let hwm = common::peak_rss();
    alloc_reset();
    let start = Instant::now();
    let res = f();
    let secs = start.elapsed().as_secs_f64();
    let (largest, peak) = alloc_stats(base);
    let e = res.err().unwrap_or_else(|| panic!("{what}: accepted"));
    let e: String = e.to_string().chars().take(240).collect();
    println!(
        "{what}: refused in {:.4} s, largest allocation {largest} bytes, peak heap {peak} bytes, VmHWM {:.1} → {:.1} MiB: {e}",
        secs,
        hwm as f64 / MIB as f64,
        common::peak_rss() as f64 / MIB as f64
    );
    assert!(secs < 2.0, "{what}: {secs} s");
    assert!(
        largest <= limit && peak <= limit,
        "{what}: allocated {largest} bytes at once, {peak} at peak (limit {limit})"
    );
}

#[test]
fn header_claiming_1tb_tensor_is_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let tb = (1u64 << 38) * 1024 * 4;
    let header = json!({
        "__metadata__": {"format": "pt"},
        "x_embedder.proj.weight": {"dtype": "F32", "shape": [1u64 << 38, 1024], "data_offsets": [0, tb]},
    });
    let p = file_in(dir.path(), "tb.safetensors", &st_build(header.as_object().unwrap(), &[0u8; 16]));
    assert_refused_small("1 TB tensor, TensorFile::open", MIB, || TensorFile::open(&p).map(|_| ()));
    assert_refused_small("1 TB tensor, load_file", MIB, || weights::load_file(&p, None, None).map(|_| ()));
    assert_refused_small("1 TB tensor, resume", MIB, || Trainer::resume(&p, backend()).map(|_| ()));
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let latents = json!({
        "latents": {"dtype": "F32", "shape": [1u64 << 38, 1024], "data_offsets": [0, tb]},
        "latents_flip": {"dtype": "F32", "shape": [1u64 << 38, 1024], "data_offsets": [tb, 2 * tb]},
        "labels": {"dtype": "I64", "shape": [1u64 << 38], "data_offsets": [2 * tb, 2 * tb + (1 << 41)]},
    });
    file_in(&shards, "a.safetensors", &st_build(latents.as_object().unwrap(), &[0u8; 64]));
    assert_refused_small("1 TB tensor, latent shards", MIB, || LatentShards::open(&shards, None).map(|_| ()));
    // The header length itself claims a terabyte.
    let mut bytes = st_build(header.as_object().unwrap(), &[0u8; 16]);
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let q = file_in(dir.path(), "hl.safetensors", &bytes);
    assert_refused_small("1 TB header length", MIB, || TensorFile::open(&q).map(|_| ()));
}

/// A valid, tiny file whose `ucgm_config` claims the largest model the validation lets
/// through (hidden 2^20, depth 1024: ~10^16 parameters): the loaders must refuse it from
/// the tensors present, not allocate the parameter vector first (the layout's table of
/// ~15 000 names takes a few MiB).
#[test]
fn config_claiming_a_huge_model_is_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig {
        arch: Arch::Sit,
        input_size: 256,
        in_channels: 4096,
        patch: 1,
        hidden: 1 << 20,
        depth: 1024,
        heads: 1 << 10,
        num_classes: 1 << 20,
    };
    cfg.validate().unwrap();
    let config = serde_json::to_string(&cfg).unwrap();
    let state = serde_json::to_string(&json!({
        "step": 1, "optimizer_step": 1,
        "rng": {"seed_hex": [0, 0, 0, 0], "stream": 0, "word_pos": 0},
        "teacher_created": false, "teacher_ramp": null
    }))
    .unwrap();
    let trainer = serde_json::to_string(&trainer_config()).unwrap();
    for (name, meta) in [
        ("weights", json!({"ucgm_config": config})),
        (
            "checkpoint",
            json!({"ucgm_config": config, "ucgm_trainer_state": state, "ucgm_trainer_config": trainer}),
        ),
    ] {
        let mut h = serde_json::Map::new();
        h.insert("__metadata__".into(), meta);
        // Names of the layout only (a weights file may hold no others), shapes wrong.
        h.insert("x_embedder.proj.bias".into(), json!({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}));
        if name == "checkpoint" {
            h.insert(
                "ema.x_embedder.proj.weight".into(),
                json!({"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}),
            );
        }
        let data: &[u8] = if name == "checkpoint" { &[0u8; 8] } else { &[0u8; 4] };
        let p = file_in(dir.path(), &format!("{name}.safetensors"), &st_build(&h, data));
        assert_refused_small(&format!("huge ucgm_config ({name}), load_file"), 16 * MIB, || {
            weights::load_file(&p, None, None).map(|_| ())
        });
        let f = TensorFile::open(&p).unwrap();
        assert_refused_small(&format!("huge ucgm_config ({name}), read_params"), 16 * MIB, || {
            weights::read_params(&f, &cfg, "").map(|_| ())
        });
        if name == "checkpoint" {
            assert_refused_small("huge ucgm_config, resume", 16 * MIB, || Trainer::resume(&p, backend()).map(|_| ()));
            assert_refused_small("huge ucgm_config, read_weights", 16 * MIB, || {
                read_weights(&p, CheckpointWeights::Ema).map(|_| ())
            });
        }
    }
}

#[test]
fn png_claiming_100000_square_pixels_is_refused_before_allocation() {
    let seed = encode_png(2, 2, png::ColorType::Rgba, png::BitDepth::Sixteen, &[7u8; 32]);
    for (w, h) in [(100_000u32, 100_000u32), (0x7fff_ffff, 0x7fff_ffff), (1 << 20, 1 << 20), (100_000, 1)] {
        let mut chunks = png_chunks(&seed).unwrap();
        chunks[0].1[0..4].copy_from_slice(&w.to_be_bytes());
        chunks[0].1[4..8].copy_from_slice(&h.to_be_bytes());
        let bytes = png_build(&chunks, true);
        let what = format!("PNG of {w}×{h} RGBA16");
        let limit = if (w as usize) * (h as usize) <= ucgm::image::MAX_IMAGE_PIXELS {
            64 * MIB
        } else {
            MIB
        };
        assert_refused_small(&what, limit, || ucgm::image::decode_png(&bytes, Path::new("big.png")).map(|_| ()));
    }
}

#[test]
fn yaml_alias_bomb_and_deep_nesting_are_refused_quickly() {
    let bomb = format!("{}output_dir: x\n", billion_laughs(12));
    assert_refused_small("YAML billion laughs", 64 * MIB, || RunConfig::from_yaml(&bomb).map(|_| ()));
    let deep = format!("data: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert_refused_small("YAML nested 100000 deep", 64 * MIB, || RunConfig::from_yaml(&deep).map(|_| ()));
    // (an explicit key: plain keys stop at 1024 characters)
    let long_key = format!("? {}\n: 1\n", "k".repeat(1_000_000));
    assert_refused_small("YAML unknown key of 1 MB", 64 * MIB, || RunConfig::from_yaml(&long_key).map(|_| ()));
}

/// The harness's own bookkeeping: seeds load, and a mutation of each changes it.
#[test]
fn seeds_load_and_mutations_mutate() {
    for t in targets() {
        let seeds = (t.seeds)();
        assert!(!seeds.is_empty(), "{}", t.name);
        for (i, s) in seeds.iter().enumerate() {
            let o = run_case(&t, s, 0);
            assert!(o.panic.is_none() && o.error.is_none(), "{} seed {i}: {:?} {:?}", t.name, o.panic, o.error);
        }
        let mut r = R::new(7);
        let changed = (0..20).filter(|_| (t.mutate)(&mut r, &seeds[0], &seeds) != seeds[0]).count();
        assert!(changed >= 15, "{}: {changed}/20 mutations changed the seed", t.name);
    }
}

// ---------------------------------------------------------------------------------------
// Tool comparison (README: Fuzzing): the PNG mutations against the decoder as
// `decode_png` used it before its palette check, to measure how soon this harness finds
// the png crate's palette panic. `UCGM_FUZZ_SECS` bounds it; it also writes the PNG seeds
// to `$UCGM_FUZZ_OUT/png-seeds/` for another fuzzer (cargo-afl) to start from.

fn decode_unguarded(bytes: &[u8]) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    if let Ok(mut reader) = decoder.read_info() {
        if let Some(size) = reader.output_buffer_size().filter(|&s| s <= 64 * MIB) {
            let mut buf = vec![0u8; size];
            let _ = reader.next_frame(&mut buf);
        }
    }
}

#[test]
#[ignore = "a measurement for the README, not a check"]
fn compare_png_unguarded() {
    quiet_case_panics();
    let seeds = seeds().pngs.clone();
    let dir = out_dir().join("png-seeds");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed{i}.png")), s).unwrap();
    }
    let secs = env_u64("UCGM_FUZZ_SECS").unwrap_or(60) as f64;
    let seed = env_u64("UCGM_FUZZ_SEED").unwrap_or(1);
    let start = Instant::now();
    let mut panics: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    let mut i = 0usize;
    while start.elapsed().as_secs_f64() < secs {
        let mut r = R::new(seed.wrapping_mul(0x1000_0000_01b3) ^ i as u64);
        let base = r.pick(&seeds).clone();
        let input = mutate_png(&mut r, &base, &seeds);
        IN_CASE.with(|c| c.set(true));
        let res = catch_unwind(AssertUnwindSafe(|| decode_unguarded(&input)));
        IN_CASE.with(|c| c.set(false));
        if let Err(p) = res {
            let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
            let at = start.elapsed().as_secs_f64();
            panics.entry(msg).or_insert((i, at));
        }
        i += 1;
    }
    println!("unguarded png decoder: {i} cases in {secs} s, {} distinct panics", panics.len());
    for (msg, (case, at)) in &panics {
        println!("    first at case {case} ({at:.2} s): {msg}");
    }
}
