//! Times loading a weights file or checkpoint alone (`weights::load_file`: header,
//! parameters, checksum), a few times in one process, for the time to first sample:
//! `cargo run --release --example load_time -- /tmp/sit_xl2.safetensors 3`.
//! Warm the page cache first (`cat FILE > /dev/null`) to time the loader, not the disk.

fn main() -> ucgm::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (path, runs) = match args.as_slice() {
        [_, path] => (path.as_str(), 3),
        [_, path, runs] => (path.as_str(), runs.parse().unwrap_or(3)),
        _ => {
            eprintln!("usage: load_time FILE.safetensors [RUNS]");
            std::process::exit(2);
        }
    };
    for run in 1..=runs {
        let t = std::time::Instant::now();
        let w = ucgm::model::weights::load_file(std::path::Path::new(path), None, None)?;
        let s = t.elapsed().as_secs_f64();
        let gb = w.params.len() as f64 * 4.0 / 1e9;
        println!("run {run}: loaded {} parameters ({gb:.2} GB) in {s:.2} s ({:.2} GB/s)", w.params.len(), gb / s);
    }
    Ok(())
}
