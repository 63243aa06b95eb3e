//! Writes a weights file of a named size with small random weights, for memory and
//! speed measurements on models whose trained weights are not at hand:
//! `cargo run --release --example synth_weights -- SiT-XL/2 /tmp/sit_xl2.safetensors`.

fn main() -> ucgm::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (name, out) = match args.as_slice() {
        [_, name, out] => (name.as_str(), out.as_str()),
        _ => {
            eprintln!("usage: synth_weights NAME OUT.safetensors   (NAME e.g. SiT-XL/2; 4×32×32 latents, 1000 classes)");
            std::process::exit(2);
        }
    };
    let cfg = ucgm::ModelConfig::from_name(name, 32, 4, 1000)?;
    let n = ucgm::ParamLayout::for_config(&cfg).total();
    let p: Vec<f32> = ucgm::Rng::new(1).normal_f32(n).into_iter().map(|v| 0.02 * v).collect();
    let model = ucgm::Model::from_params(cfg, ucgm::CpuBackend::<f32>::new(0)?, &p)?;
    drop(p);
    model.save(out)?;
    println!("wrote {name} ({n} parameters) to {out}");
    Ok(())
}
