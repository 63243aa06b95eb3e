#!/usr/bin/env python3
"""How far independent f64 evaluations of the shared reference's Fréchet distance land
from its `fd_ab` (issue 11 asks the engine for 1e-8 relative).

The shared features are 64 samples in 2048 dimensions, so Σ_a, Σ_b have rank ≤ 63 and
Σ_aΣ_b has ~1985 eigenvalues that are zero in exact arithmetic; in floating point they
come out as rounding noise of order ε‖Σ_aΣ_b‖, and the real parts of their square roots
add ~2.2e-5 (9e-8 relative) to tr √(Σ_aΣ_b). That amount depends on the exact rounding of
the product and of the eigen-solver, so it differs between LAPACK builds. This script
evaluates the distance several ways with the numpy/scipy installed here and prints each
one's relative distance from `fd_ab` (computed by pytorch-fid's
`calculate_frechet_distance` on the machine that made the reference):

    /work/venv/bin/python scripts/fd_noise.py [../shared/reference/fid_io_shared.safetensors]

On 2026-12-05 (numpy/scipy from PyPI, OpenBLAS): 4.9e-9 to 5.3e-9 for the scipy `sqrtm`
and numpy/scipy eigenvalue forms; a 1e-16 relative perturbation of the product moves it to
4.3e-9. ucgm (faer's eigenvalues, `src/fid/frechet.rs`) lands at 1.09e-8.

Most of the spread comes from how the product Σ_aΣ_b is rounded, not from the eigen-solver:
with `--products` the same numpy eigenvalue form is applied to the product summed in other
orders — einsum's plain loop lands at −4.1e-8 and the product taken in x87 extended
precision and rounded once (nearly correctly rounded) at +3.5e-8 (90 s), while faer's
eigenvalues of numpy's OpenBLAS product land at 3e-10. So 1e-8 relative to `fd_ab` is below
what the rounding of one 2048×2048 product decides; only the reference machine's own BLAS
summation order reproduces it.
"""
import sys

import numpy as np
import scipy.linalg as sl
from safetensors import safe_open
from safetensors.numpy import load_file


def main():
    args = [a for a in sys.argv[1:] if a != "--products"]
    path = args[0] if args else "../shared/reference/fid_io_shared.safetensors"
    tensors = load_file(path)
    with safe_open(path, "np") as f:
        fd_ref = float(f.metadata()["fd_ab"])
    a, b = tensors["feats_a"], tensors["feats_b"]
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    rest = ((ma - mb) ** 2).sum() + np.trace(ca) + np.trace(cb)

    def eig_trace(m):
        return np.sum(np.sqrt(np.linalg.eigvals(m).astype(complex))).real

    rng = np.random.default_rng(0)
    prod = ca @ cb
    forms = {
        "scipy sqrtm(Σa·Σb) (pytorch-fid's form)": np.trace(sl.sqrtm(ca.dot(cb))).real,
        "numpy eigvals(Σa@Σb)": eig_trace(prod),
        "numpy eigvals(Σb@Σa)": eig_trace(cb @ ca),
        "scipy eigvals(Σa@Σb)": np.sum(np.sqrt(sl.eigvals(prod).astype(complex))).real,
        "numpy eigvals(Σa@Σb · (1 + 1e-16·N(0,1)))": eig_trace(prod * (1 + 1e-16 * rng.standard_normal(prod.shape))),
    }
    if "--products" in sys.argv:
        forms["numpy eigvals(einsum Σa·Σb, plain loop)"] = eig_trace(np.einsum("ik,kj->ij", ca, cb, optimize=False))
        extended = (ca.astype(np.longdouble) @ cb.astype(np.longdouble)).astype(np.float64)
        forms["numpy eigvals(Σa·Σb in long double)"] = eig_trace(extended)
    print(f"fd_ab = {fd_ref!r}")
    for name, tr in forms.items():
        fd = rest - 2 * tr
        print(f"{name:45s} fd = {fd:.12f}  relative to fd_ab: {abs(fd - fd_ref) / fd_ref:.2e}")


if __name__ == "__main__":
    main()
