use std::time::Instant;
fn run(m: usize, k: usize, n: usize, a: &[f32], rsa: isize, csa: isize, b: &[f32], rsb: isize, csb: isize, c: &mut [f32], rsc: isize, csc: isize) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            csc,
            rsc,
            true,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            csb,
            rsb,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(2),
        );
    }
}
fn main() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for &(rows, i, o) in &[
        (256usize, 384usize, 1536usize),
        (512, 384, 1536),
        (1024, 384, 1536),
        (8, 384, 2304),
        (256, 384, 1536),
    ] {
        let x: Vec<f32> = (0..rows * i).map(|v| (v % 17) as f32 * 0.1).collect();
        let wt: Vec<f32> = (0..i * o).map(|v| (v % 13) as f32 * 0.1).collect();
        let mut y = vec![0f32; rows * o];
        let flops = 2.0 * (rows * i * o) as f64;
        for variant in 0..2 {
            let mut best = f64::MAX;
            for _ in 0..7 {
                let t = Instant::now();
                pool.install(|| {
                    if variant == 0 {
                        run(rows, i, o, &x, i as isize, 1, &wt, o as isize, 1, &mut y, o as isize, 1)
                    } else {
                        run(o, i, rows, &wt, 1, o as isize, &x, 1, i as isize, &mut y, 1, o as isize)
                    }
                });
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{rows}x{i}x{o} {}: {:.2} ms {:.0} GF/s",
                if variant == 0 { "row-major C" } else { "swapped (col-major C)" },
                best * 1e3,
                flops / best / 1e9
            );
        }
    }
}
