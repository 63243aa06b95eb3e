// Data-movement kernels: patchify / unpatchify and their adjoints, label-embedding
// gather and scatter-add. Mirrors src/backend/cpu/layout_ops.rs. One thread per pixel
// (patch ops are bijections, so every output element is written exactly once).

// Decomposes pixel index i of an NCHW [b, c, side, side] tensor into the token it belongs
// to and its position inside the patch.
__device__ __forceinline__ void patch_of(i64 i, i64 c, i64 side, i64 p, i64* tok, i64* ch, i64* py, i64* px) {
    const i64 xx = i % side;
    const i64 yy = (i / side) % side;
    *ch = (i / (side * side)) % c;
    const i64 bi = i / (side * side * c);
    const i64 l = side / p;
    *tok = bi * l * l + (yy / p) * l + xx / p;
    *py = yy % p;
    *px = xx % p;
}

// x [b, c, side, side] → out [b·T, c·p·p] in (c, row, col) order. n = b·c·side².
extern "C" __global__ void patchify(const float* x, float* out, i64 n, i64 c, i64 side, i64 p) {
    GRID_STRIDE(i, n) {
        i64 tok, ch, py, px;
        patch_of(i, c, side, p, &tok, &ch, &py, &px);
        out[tok * c * p * p + (ch * p + py) * p + px] = x[i];
    }
}

// Adjoint of patchify (assign): dpatch [b·T, c·p·p] → dx [b, c, side, side].
extern "C" __global__ void patchify_bwd(const float* dpatch, float* dx, i64 n, i64 c, i64 side, i64 p) {
    GRID_STRIDE(i, n) {
        i64 tok, ch, py, px;
        patch_of(i, c, side, p, &tok, &ch, &py, &px);
        dx[i] = dpatch[tok * c * p * p + (ch * p + py) * p + px];
    }
}

// tok [b·T, p·p·c] in (row, col, c) order → out [b, c, side, side].
extern "C" __global__ void unpatchify(const float* tokens, float* out, i64 n, i64 c, i64 side, i64 p) {
    GRID_STRIDE(i, n) {
        i64 tok, ch, py, px;
        patch_of(i, c, side, p, &tok, &ch, &py, &px);
        out[i] = tokens[tok * c * p * p + (py * p + px) * c + ch];
    }
}

// Adjoint of unpatchify (assign): dout [b, c, side, side] → dtok [b·T, p·p·c].
extern "C" __global__ void unpatchify_bwd(const float* dout, float* dtok, i64 n, i64 c, i64 side, i64 p) {
    GRID_STRIDE(i, n) {
        i64 tok, ch, py, px;
        patch_of(i, c, side, p, &tok, &ch, &py, &px);
        dtok[tok * c * p * p + (py * p + px) * c + ch] = dout[i];
    }
}

// out[bi, j] = table[labels[bi], j]. labels: [b]; table: [K+1, d]; out: [b, d] (n = b·d).
extern "C" __global__ void embedding_fwd(const float* table, const i64* labels, float* out, i64 n, i64 d) {
    GRID_STRIDE(i, n) out[i] = table[labels[i / d] * d + i % d];
}

// dtable[labels[bi], j] += dout[bi, j]: one thread per column j walks the batch in order,
// so repeated labels accumulate in batch order exactly as on the CPU (no atomics).
extern "C" __global__ void embedding_bwd(const float* dout, const i64* labels, float* dtable, i64 b, i64 d) {
    GRID_STRIDE(j, d) {
        for (i64 bi = 0; bi < b; ++bi) {
            float* dst = dtable + labels[bi] * d + j;
            *dst = *dst + dout[bi * d + j];
        }
    }
}
