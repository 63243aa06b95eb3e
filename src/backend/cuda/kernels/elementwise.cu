// Elementwise kernels: accumulate, activations (GELU-tanh, SiLU, SwiGLU) and their
// backward passes, the gated residual, broadcast row adds. One thread per output
// element (grid-stride), so no two threads ever write the same element. The formulas
// and their evaluation order mirror src/backend/cpu/activation.rs and norm.rs.

// dst[i] += src[i]. src, dst: [n].
extern "C" __global__ void add_assign(const float* src, float* dst, i64 n) {
    GRID_STRIDE(i, n) dst[i] = dst[i] + src[i];
}

// y[i] = bias[i % o]. bias: [o]; y: [rows·o].
extern "C" __global__ void bias_rows(const float* bias, float* y, i64 n, i64 o) {
    GRID_STRIDE(i, n) y[i] = bias[i % o];
}

// x[i] += rows[i % (t·d)]. rows: [t, d]; x: [b·t, d] (n = b·t·d).
extern "C" __global__ void add_rows(const float* rows, float* x, i64 n, i64 td) {
    GRID_STRIDE(i, n) x[i] = x[i] + rows[i % td];
}

// GELU with the tanh approximation, written as x·σ(2u), u = √(2/π)(x + 0.044715x³).
// c2 = 2√(2/π) and a = 0.044715 come from the host (same f32 values as the CPU).
extern "C" __global__ void gelu_tanh_fwd(const float* x, float* y, i64 n, float c2, float a) {
    GRID_STRIDE(i, n) {
        const float xv = x[i];
        const float u2 = c2 * (xv + a * xv * xv * xv);
        y[i] = xv * sigmoidf_(u2);
    }
}

// dx = dy·(s + x·s(1 − s)·c2(1 + 3a·x²)), s = σ(2u).
extern "C" __global__ void gelu_tanh_bwd(const float* x, const float* dy, float* dx, i64 n, float c2, float a) {
    GRID_STRIDE(i, n) {
        const float xv = x[i];
        const float s = sigmoidf_(c2 * (xv + a * xv * xv * xv));
        const float du2 = c2 * (1.0f + 3.0f * a * xv * xv);
        dx[i] = dy[i] * (s + xv * s * (1.0f - s) * du2);
    }
}

// y = x·σ(x).
extern "C" __global__ void silu_fwd(const float* x, float* y, i64 n) {
    GRID_STRIDE(i, n) {
        const float xv = x[i];
        y[i] = xv * sigmoidf_(xv);
    }
}

// dx = dy·σ(x)(1 + x(1 − σ(x))).
extern "C" __global__ void silu_bwd(const float* x, const float* dy, float* dx, i64 n) {
    GRID_STRIDE(i, n) {
        const float xv = x[i];
        const float s = sigmoidf_(xv);
        dx[i] = dy[i] * (s * (1.0f + xv * (1.0f - s)));
    }
}

// y[r, j] = SiLU(x12[r, j]) · x12[r, h + j]. x12: [rows, 2h]; y: [rows, h] (n = rows·h).
extern "C" __global__ void swiglu_fwd(const float* x12, float* y, i64 n, i64 h) {
    GRID_STRIDE(i, n) {
        const i64 r = i / h, j = i % h;
        const float x1 = x12[r * 2 * h + j], x2 = x12[r * 2 * h + h + j];
        y[i] = x1 * sigmoidf_(x1) * x2;
    }
}

// dx12 [rows, 2h] (assign) from dy [rows, h]; one thread per (r, j) writes both halves.
extern "C" __global__ void swiglu_bwd(const float* x12, const float* dy, float* dx12, i64 n, i64 h) {
    GRID_STRIDE(i, n) {
        const i64 r = i / h, j = i % h;
        const float x1 = x12[r * 2 * h + j], x2 = x12[r * 2 * h + h + j];
        const float g = dy[i];
        const float s = sigmoidf_(x1);
        dx12[r * 2 * h + j] = g * x2 * s * (1.0f + x1 * (1.0f - s));
        dx12[r * 2 * h + h + j] = g * x1 * s;
    }
}

// h[r, j] += ada[r / t, gate_col + j] · y[r, j]. y, h: [b·t, d] (n = b·t·d); ada: [b, stride].
extern "C" __global__ void gate_residual_fwd(const float* y, const float* ada, float* h, i64 n, i64 t, i64 d, i64 stride, i64 gate_col) {
    GRID_STRIDE(i, n) {
        const i64 r = i / d, j = i % d;
        h[i] = h[i] + ada[(r / t) * stride + gate_col + j] * y[i];
    }
}

// dy[r, j] = ada[r / t, gate_col + j] · dh[r, j] (assign).
extern "C" __global__ void gate_residual_bwd_dy(const float* dh, const float* ada, float* dy, i64 n, i64 t, i64 d, i64 stride, i64 gate_col) {
    GRID_STRIDE(i, n) {
        const i64 r = i / d, j = i % d;
        dy[i] = ada[(r / t) * stride + gate_col + j] * dh[i];
    }
}

// dada[bi, gate_col + j] += Σₜ dh[bi·t + t', j] · y[bi·t + t', j], one thread per (bi, j),
// tokens summed in order onto the existing value (the CPU's order). n = b·d.
extern "C" __global__ void gate_residual_bwd_ada(const float* dh, const float* y, float* dada, i64 n, i64 t, i64 d, i64 stride, i64 gate_col) {
    GRID_STRIDE(i, n) {
        const i64 bi = i / d, j = i % d;
        float acc = dada[bi * stride + gate_col + j];
        for (i64 k = 0; k < t; ++k) {
            const i64 e = (bi * t + k) * d + j;
            acc = acc + dh[e] * y[e];
        }
        dada[bi * stride + gate_col + j] = acc;
    }
}

// dst[i] = bf16(src[i]), round to nearest even (NaN stays NaN), as the bits of a
// `__nv_bfloat16` (the sources include no CUDA header). src: [n] f32; dst: [n] u16.
extern "C" __global__ void f32_to_bf16(const float* src, unsigned short* dst, i64 n) {
    GRID_STRIDE(i, n) dst[i] = bf16_bits(src[i]);
}
