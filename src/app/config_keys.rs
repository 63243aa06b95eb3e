//! The key schema of a run config, checked before the config is deserialised: every key
//! of the YAML mapping is looked up in a table of the keys this engine reads
//! ([`ENGINE_KEYS`]) and in a table of keys of the reference's schema that this engine
//! does not implement ([`REFERENCE_ONLY_KEYS`]). An unknown key is an error naming its
//! full dotted path and the nearest known key; a reference-only key is reported back (the
//! caller prints one warning line naming them), unless its value is the one neutral
//! value that means "off" (e.g. `data.latent_norm: false`), which is what this engine does.

use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};

/// The sections of a run config that are mappings, and the keys this engine reads in
/// each (`""` is the top level).
pub const ENGINE_KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &["output_dir", "data", "vae", "model", "train", "optimizer", "transport", "sample", "backend"],
    ),
    (
        "data",
        &[
            "source",
            "data_path",
            "image_size",
            "num_classes",
            "channels",
            "train_len",
            "latent_norm",
            "latent_multiplier",
            "latent_stats",
        ],
    ),
    ("vae", &["downsample_ratio"]),
    (
        "model",
        &["type", "in_chans", "hidden_size", "depth", "num_heads", "patch_size", "num_encoder_blocks"],
    ),
    (
        "train",
        &[
            "ckpt",
            "no_reopt",
            "no_reuni",
            "max_steps",
            "global_batch_size",
            "global_seed",
            "log_every",
            "ckpt_every",
            "ema_decay",
            "keep_last",
        ],
    ),
    ("optimizer", &["type", "lr", "weight_decay", "beta1", "beta2", "max_grad_norm", "eps"]),
    (
        "transport",
        &[
            "type",
            "lab_drop_ratio",
            "consistc_ratio",
            "enhanced_ratio",
            "enhanced_style",
            "scaled_cbl_eps",
            "ema_decay_rate",
            "enhanced_range",
            "time_dist_ctrl",
            "weight_funcion",
            "wt_cosine_loss",
        ],
    ),
    (
        "sample",
        &[
            "type",
            "sampling_steps",
            "stochast_ratio",
            "extrapol_ratio",
            "sampling_order",
            "time_dist_ctrl",
            "rfba_gap_steps",
            "cfg_scale",
            "cfg_interval",
            "per_batch_size",
        ],
    ),
    ("backend", &["type", "threads", "device", "tf32", "bf16"]),
];

/// The value of a reference-only key that matches what this engine does anyway (no
/// warning then).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Neutral {
    /// Any value: the key has no effect either way.
    None,
    Bool(bool),
    Number(f64),
}

/// A key of the reference's config schema (its `configs/**/*.yaml`) that this engine does
/// not implement.
#[derive(Clone, Copy, Debug)]
pub struct ReferenceKey {
    /// Dotted path.
    pub key: &'static str,
    /// The value that means "off" here, if there is one.
    pub neutral: Neutral,
    /// What it does in the reference.
    pub what: &'static str,
}

/// Keys of the reference schema (spec §6.2 and the reference's config files) that this
/// engine does not implement.
pub const REFERENCE_ONLY_KEYS: &[ReferenceKey] = &[
    ReferenceKey {
        key: "data.fid_reference_file",
        neutral: Neutral::None,
        what: "FID statistics for evaluation",
    },
    ReferenceKey {
        key: "data.num_workers",
        neutral: Neutral::None,
        what: "data-loader processes",
    },
    ReferenceKey {
        key: "data.json_file",
        neutral: Neutral::None,
        what: "caption file of the Stable Diffusion tuning",
    },
    ReferenceKey {
        key: "data.image_root_path",
        neutral: Neutral::None,
        what: "image folder of the Stable Diffusion tuning",
    },
    ReferenceKey {
        key: "vae.type",
        neutral: Neutral::None,
        what: "the VAE; this engine trains on the data as given",
    },
    ReferenceKey {
        key: "model.pretrained_model_name_or_path",
        neutral: Neutral::None,
        what: "Stable Diffusion tuning",
    },
    ReferenceKey {
        key: "model.image_encoder_path",
        neutral: Neutral::None,
        what: "Stable Diffusion tuning",
    },
    ReferenceKey {
        key: "model.pretrained_ip_adapter_path",
        neutral: Neutral::None,
        what: "Stable Diffusion tuning",
    },
    ReferenceKey {
        key: "train.no_buffer",
        neutral: Neutral::Bool(false),
        what: "DDP buffer broadcasting",
    },
    ReferenceKey {
        key: "sample.ckpt",
        neutral: Neutral::None,
        what: "the checkpoint eval.py samples from",
    },
    ReferenceKey {
        key: "sample.fid_sample_num",
        neutral: Neutral::None,
        what: "FID evaluation",
    },
];

/// The engine keys of `section` (None when it is not a section).
fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    ENGINE_KEYS.iter().find(|(s, _)| *s == section).map(|(_, k)| *k)
}

fn join(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// Every known dotted key: engine keys (sections included) and reference-only keys.
pub fn known_keys() -> Vec<String> {
    let mut all: Vec<String> = ENGINE_KEYS.iter().flat_map(|(s, keys)| keys.iter().map(move |k| join(s, k))).collect();
    all.extend(REFERENCE_ONLY_KEYS.iter().map(|r| r.key.to_string()));
    all
}

/// Optimal-string-alignment distance (Levenshtein with adjacent transpositions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Unknown keys longer than this (in characters) get no suggestion.
const MAX_SUGGEST_LEN: usize = 64;

/// The known key nearest to the unknown dotted `path`: a close spelling in the same
/// section, else the same key name in another section, else a close spelling anywhere.
pub fn suggest(path: &str) -> Option<String> {
    // No known key is near one this long, and the distances would cost time and memory
    // in proportion to its length (a megabyte-long key took 20 s and 300 MB).
    if path.chars().count() > MAX_SUGGEST_LEN {
        return None;
    }
    let known = known_keys();
    let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
    let close = |a: &str, b: &str| {
        let d = edit_distance(a, b);
        (d <= (a.chars().count().max(b.chars().count()) / 3).max(2)).then_some(d)
    };
    let best = |cands: Vec<(String, usize)>| cands.into_iter().min_by_key(|(_, d)| *d).map(|(k, _)| k);
    let same_section: Vec<(String, usize)> = known
        .iter()
        .filter_map(|k| {
            let (s, name) = k.rsplit_once('.').unwrap_or(("", k));
            if s == section {
                close(key, name).map(|d| (k.clone(), d))
            } else {
                None
            }
        })
        .collect();
    if let Some(k) = best(same_section) {
        return Some(k);
    }
    if let Some(k) = known.iter().find(|k| k.rsplit_once('.').map(|(_, n)| n).unwrap_or(k) == key) {
        return Some(k.clone());
    }
    best(known.iter().filter_map(|k| close(path, k).map(|d| (k.clone(), d))).collect())
}

/// Checks every key of a parsed YAML config. Unknown keys are an error naming the dotted
/// path (and the nearest known key); returns the reference-only keys present with a
/// non-neutral value, in file order.
pub fn check_keys(root: &Value) -> Result<Vec<&'static ReferenceKey>> {
    let mut not_implemented = Vec::new();
    let empty = Mapping::new();
    let top = match root {
        Value::Mapping(m) => m,
        Value::Null => &empty,
        _ => {
            return Err(Error::invalid(
                "config: the file must be a YAML mapping of sections (output_dir, data, model, train, …)",
            ))
        }
    };
    walk("", top, &mut not_implemented)?;
    Ok(not_implemented)
}

fn walk(section: &str, map: &Mapping, out: &mut Vec<&'static ReferenceKey>) -> Result<()> {
    let keys = section_keys(section).unwrap_or(&[]);
    for (k, v) in map {
        let name = match k {
            Value::String(s) => s.as_str(),
            other => {
                let shown = serde_yaml::to_string(other).unwrap_or_default();
                let where_ = if section.is_empty() {
                    "the top level".to_string()
                } else {
                    format!("`{section}`")
                };
                return Err(Error::invalid(format!("config key `{}` in {where_} is not a string", shown.trim())));
            }
        };
        let path = join(section, name);
        if keys.contains(&name) {
            if section.is_empty() && section_keys(name).is_some() {
                if let Value::Mapping(inner) = v {
                    walk(name, inner, out)?;
                }
            }
            continue;
        }
        if let Some(r) = REFERENCE_ONLY_KEYS.iter().find(|r| r.key == path) {
            let neutral = match (r.neutral, v) {
                (Neutral::Bool(b), Value::Bool(x)) => *x == b,
                (Neutral::Number(n), Value::Number(x)) => x.as_f64() == Some(n),
                _ => false,
            };
            if !neutral {
                out.push(r);
            }
            continue;
        }
        let hint = suggest(&path).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
        return Err(Error::invalid(format!("unknown key `{path}`{hint}")));
    }
    Ok(())
}

/// One line (for a warning) naming the reference-only keys that were given (None when none).
pub fn warning_line(keys: &[&ReferenceKey]) -> Option<String> {
    if keys.is_empty() {
        return None;
    }
    let list: Vec<String> = keys.iter().map(|r| format!("{} ({})", r.key, r.what)).collect();
    Some(format!(
        "ignored config keys of the reference schema that this engine does not implement: {}",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<Vec<&'static str>> {
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        check_keys(&v).map(|r| r.iter().map(|k| k.key).collect())
    }

    fn err(yaml: &str) -> String {
        check(yaml).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_name_the_path_and_the_nearest_key() {
        assert_eq!(
            err("train: {max_stepz: 10}"),
            "invalid argument: unknown key `train.max_stepz` (did you mean `train.max_steps`?)"
        );
        assert!(err("transport: {weight_function: Cosine}").contains("did you mean `transport.weight_funcion`?"));
        assert!(err("backend: {tf23: true}").contains("`backend.tf23` (did you mean `backend.tf32`?)"));
        // A key in the wrong section: the section that has it.
        assert!(err("train: {lr: 0.1}").contains("unknown key `train.lr` (did you mean `optimizer.lr`?)"));
        assert!(err("max_steps: 5").contains("unknown key `max_steps` (did you mean `train.max_steps`?)"));
        // A misspelt section.
        assert!(err("trian: {max_steps: 5}").contains("unknown key `trian` (did you mean `train`?)"));
        // Nothing close: no suggestion.
        assert_eq!(err("model: {zzzzzzzz: 1}"), "invalid argument: unknown key `model.zzzzzzzz`");
        assert!(err("data: {1: 2}").contains("not a string"));
        assert!(err("[1, 2]").contains("mapping"));
    }

    #[test]
    fn reference_only_keys_are_reported_unless_neutral() {
        let yaml = "data: {latent_norm: true, latent_multiplier: 1.0, num_workers: 8}\nvae: {type: sdvae, downsample_ratio: 8}\n\
                    train: {no_buffer: false}\nsample: {ckpt: a.pt, fid_sample_num: 50000}";
        assert_eq!(check(yaml).unwrap(), ["data.num_workers", "vae.type", "sample.ckpt", "sample.fid_sample_num"]);
        // Implemented since the VAE work (data.latent_stats is this engine's addition).
        assert!(check("data: {latent_norm: false, latent_multiplier: 0.18215}").unwrap().is_empty());
        assert!(check("train: {no_buffer: true}").unwrap() == ["train.no_buffer"]);
        let keys: Vec<&ReferenceKey> = REFERENCE_ONLY_KEYS.iter().filter(|r| r.key == "vae.type").collect();
        let line = warning_line(&keys).unwrap();
        assert!(
            line.starts_with("ignored config keys") && line.contains("vae.type") && !line.contains('\n'),
            "{line}"
        );
        assert!(warning_line(&[]).is_none());
    }

    #[test]
    fn engine_keys_and_empty_configs_pass() {
        assert!(check("").unwrap().is_empty());
        assert!(check("sample:\noutput_dir: x\n").unwrap().is_empty());
        let all: String = ENGINE_KEYS
            .iter()
            .filter(|(s, _)| !s.is_empty())
            .map(|(s, keys)| format!("{s}: {{{}}}\n", keys.iter().map(|k| format!("{k}: 1")).collect::<Vec<_>>().join(", ")))
            .collect();
        assert!(check(&all).unwrap().is_empty());
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("max_stepz", "max_steps"), 1);
        assert_eq!(edit_distance("tf23", "tf32"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
