//! The three ways VAE weights are named in the files users hold, and their mapping onto
//! the canonical (current diffusers) names the network is built from:
//! * [`VaeNaming::Diffusers`] — `encoder.down_blocks.0.resnets.0.norm1.weight`, attention
//!   as `to_q/to_k/to_v/to_out.0`;
//! * [`VaeNaming::DiffusersLegacy`] — diffusers before 0.14: attention as
//!   `query/key/value/proj_attn` (published SD-VAE files of that era);
//! * [`VaeNaming::Ldm`] — LDM / taming (`encoder.down.0.block.0`, `decoder.up.{k}`
//!   numbered in reverse, `mid.attn_1.{q,k,v,proj_out}` as 1×1 convs, `nin_shortcut`,
//!   `norm_out`): the original SD-VAE, VA-VAE and E2E-VAE checkpoints.
//!
//! Keys that belong to VAE training only (the loss with its discriminator and LPIPS, the
//! VF-loss projection, EMA copies) are recognised by [`is_training_only`] and ignored.

/// A weights file's naming scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaeNaming {
    Diffusers,
    DiffusersLegacy,
    Ldm,
}

/// Whether a key belongs to VAE training only: `loss.*` (discriminator, LPIPS), any
/// `discriminator` tensor, the VF-loss projection (`linear_proj*`), a model EMA copy.
pub fn is_training_only(name: &str) -> bool {
    name.starts_with("loss.")
        || name.contains("discriminator")
        || name.starts_with("linear_proj")
        || name.starts_with("model_ema.")
        || name.starts_with("foundation_model")
}

/// The naming scheme of a file's (non-training) keys; None when no key looks like a VAE's.
pub fn detect(names: &[&str]) -> Option<VaeNaming> {
    let ldm = names
        .iter()
        .any(|n| n.starts_with("encoder.down.") || n.starts_with("decoder.up.") || n.contains(".mid.block_1."));
    if ldm {
        return Some(VaeNaming::Ldm);
    }
    let diffusers = names
        .iter()
        .any(|n| n.starts_with("encoder.down_blocks.") || n.starts_with("decoder.up_blocks."));
    if !diffusers {
        return None;
    }
    let legacy = names
        .iter()
        .any(|n| n.contains(".attentions.0.query.") || n.contains(".attentions.0.proj_attn."));
    Some(if legacy { VaeNaming::DiffusersLegacy } else { VaeNaming::Diffusers })
}

/// Number of levels an LDM file implies: distinct `encoder.down.{i}` indices.
pub fn ldm_levels(names: &[&str]) -> usize {
    names
        .iter()
        .filter_map(|n| n.strip_prefix("encoder.down.")?.split('.').next()?.parse::<usize>().ok())
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

/// The canonical name of key `name` under `naming` (`levels` = the LDM file's level
/// count, for the reversed decoder numbering); None for a key the scheme does not know.
pub fn canonical(name: &str, naming: VaeNaming, levels: usize) -> Option<String> {
    match naming {
        VaeNaming::Diffusers => Some(name.to_string()),
        VaeNaming::DiffusersLegacy => Some(legacy_to_canonical(name)),
        VaeNaming::Ldm => ldm_to_canonical(name, levels),
    }
}

fn legacy_to_canonical(name: &str) -> String {
    const MAP: [(&str, &str); 4] = [
        (".attentions.0.query.", ".attentions.0.to_q."),
        (".attentions.0.key.", ".attentions.0.to_k."),
        (".attentions.0.value.", ".attentions.0.to_v."),
        (".attentions.0.proj_attn.", ".attentions.0.to_out.0."),
    ];
    for (old, new) in MAP {
        if name.contains(old) {
            return name.replace(old, new);
        }
    }
    name.to_string()
}

fn ldm_to_canonical(name: &str, levels: usize) -> Option<String> {
    let (part, rest) = name.split_once('.')?;
    let rest = match part {
        "encoder" | "decoder" => rest,
        "quant_conv" | "post_quant_conv" => return Some(name.to_string()),
        _ => return None,
    };
    let resnet_leaf = |leaf: &str| -> Option<String> {
        let (layer, param) = leaf.split_once('.')?;
        let layer = match layer {
            "nin_shortcut" => "conv_shortcut",
            "norm1" | "norm2" | "conv1" | "conv2" => layer,
            _ => return None,
        };
        matches!(param, "weight" | "bias").then(|| format!("{layer}.{param}"))
    };
    let mapped = if let Some(r) = rest.strip_prefix("down.").filter(|_| part == "encoder") {
        let (i, r) = r.split_once('.')?;
        let i: usize = i.parse().ok()?;
        if let Some(r) = r.strip_prefix("block.") {
            let (j, leaf) = r.split_once('.')?;
            format!("down_blocks.{i}.resnets.{}.{}", j.parse::<usize>().ok()?, resnet_leaf(leaf)?)
        } else {
            format!("down_blocks.{i}.downsamplers.0.conv.{}", r.strip_prefix("downsample.conv.")?)
        }
    } else if let Some(r) = rest.strip_prefix("up.").filter(|_| part == "decoder") {
        let (k, r) = r.split_once('.')?;
        let k: usize = k.parse().ok()?;
        let i = levels.checked_sub(1)?.checked_sub(k)?;
        if let Some(r) = r.strip_prefix("block.") {
            let (j, leaf) = r.split_once('.')?;
            format!("up_blocks.{i}.resnets.{}.{}", j.parse::<usize>().ok()?, resnet_leaf(leaf)?)
        } else {
            format!("up_blocks.{i}.upsamplers.0.conv.{}", r.strip_prefix("upsample.conv.")?)
        }
    } else if let Some(r) = rest.strip_prefix("mid.") {
        let (blk, leaf) = r.split_once('.')?;
        match blk {
            "block_1" => format!("mid_block.resnets.0.{}", resnet_leaf(leaf)?),
            "block_2" => format!("mid_block.resnets.1.{}", resnet_leaf(leaf)?),
            "attn_1" => {
                let (layer, param) = leaf.split_once('.')?;
                let layer = match layer {
                    "norm" => "group_norm",
                    "q" => "to_q",
                    "k" => "to_k",
                    "v" => "to_v",
                    "proj_out" => "to_out.0",
                    _ => return None,
                };
                format!("mid_block.attentions.0.{layer}.{param}")
            }
            _ => return None,
        }
    } else if let Some(param) = rest.strip_prefix("norm_out.") {
        format!("conv_norm_out.{param}")
    } else if rest.starts_with("conv_in.") || rest.starts_with("conv_out.") {
        rest.to_string()
    } else {
        return None;
    };
    Some(format!("{part}.{mapped}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldm_names_map_as_the_reference_table_says() {
        let n = 3;
        for (ldm, diff) in [
            (
                "encoder.down.1.block.0.nin_shortcut.weight",
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            ("encoder.down.0.downsample.conv.bias", "encoder.down_blocks.0.downsamplers.0.conv.bias"),
            ("decoder.up.0.block.2.conv1.weight", "decoder.up_blocks.2.resnets.2.conv1.weight"),
            ("decoder.up.2.upsample.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight"),
            ("decoder.mid.block_2.norm1.bias", "decoder.mid_block.resnets.1.norm1.bias"),
            ("encoder.mid.attn_1.proj_out.weight", "encoder.mid_block.attentions.0.to_out.0.weight"),
            ("encoder.mid.attn_1.norm.weight", "encoder.mid_block.attentions.0.group_norm.weight"),
            ("decoder.norm_out.weight", "decoder.conv_norm_out.weight"),
            ("quant_conv.bias", "quant_conv.bias"),
            ("encoder.conv_in.weight", "encoder.conv_in.weight"),
        ] {
            assert_eq!(canonical(ldm, VaeNaming::Ldm, n).as_deref(), Some(diff), "{ldm}");
        }
        assert_eq!(canonical("decoder.up.3.block.0.conv1.weight", VaeNaming::Ldm, n), None);
        assert_eq!(canonical("encoder.down.0.attn.0.q.weight", VaeNaming::Ldm, n), None);
        assert_eq!(
            canonical("decoder.mid_block.attentions.0.proj_attn.weight", VaeNaming::DiffusersLegacy, n).as_deref(),
            Some("decoder.mid_block.attentions.0.to_out.0.weight")
        );
        assert!(is_training_only("loss.discriminator.main.0.weight"));
        assert!(is_training_only("linear_proj.weight"));
        assert!(!is_training_only("encoder.conv_in.weight"));
        assert_eq!(detect(&["x_embedder.proj.weight", "final_layer.linear.weight"]), None);
    }
}
