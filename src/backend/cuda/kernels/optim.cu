// Optimizer updates, EMA and buffer utilities over flat parameter buffers, in f64
// arithmetic rounded once to f32 on store, as src/backend/cpu/optim.rs does. One thread
// per element; scalars that depend only on the step are computed on the host.

// The reference's AdamW (optimers/adamw.py):
// m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; p ← p − step_size·(m/(√v + eps) + wd·p),
// step_size = lr·√(1−β₂ᵏ)/(1−β₁ᵏ). p, g, m, v: [n].
extern "C" __global__ void adamw_step(float* p, const float* g, float* m, float* v, i64 n, double b1, double b2, double eps, double wd,
                                      double step_size) {
    GRID_STRIDE(i, n) {
        const double pv = (double)p[i], gv = (double)g[i];
        const double mv = b1 * (double)m[i] + (1.0 - b1) * gv;
        const double vv = b2 * (double)v[i] + (1.0 - b2) * gv * gv;
        const float mt = (float)mv, vt = (float)vv;
        m[i] = mt;
        v[i] = vt;
        const double update = (double)mt / (sqrt((double)vt) + eps) + wd * pv;
        p[i] = (float)(pv - step_size * update);
    }
}

// torch.optim.RAdam (decoupled_weight_decay = False): g' = g + wd·p; m ← m + (1−β₁)(g' − m);
// v ← β₂v + (1−β₂)g'²; m̂ = m/bc1; p ← p − (rectified ? rect·m̂/(√v + eps) : lr·m̂),
// rect = lr·r·√(1−β₂ᵏ) from the host. p, g, m, v: [n].
extern "C" __global__ void radam_step(float* p, const float* g, float* m, float* v, i64 n, double b1, double b2, double eps, double wd,
                                      double lr, double bc1, double rect, i64 rectified) {
    GRID_STRIDE(i, n) {
        const double pv = (double)p[i];
        const double gv = (double)g[i] + wd * pv;
        const double mv = (double)m[i];
        const float mt = (float)(mv + (1.0 - b1) * (gv - mv));
        const float vt = (float)(b2 * (double)v[i] + (1.0 - b2) * gv * gv);
        m[i] = mt;
        v[i] = vt;
        const double m_hat = (double)mt / bc1;
        const double delta = rectified ? rect * m_hat / (sqrt((double)vt) + eps) : lr * m_hat;
        p[i] = (float)(pv - delta);
    }
}

// dst ← decay·dst + (1 − decay)·src. src, dst: [n].
extern "C" __global__ void ema(const float* src, float* dst, i64 n, double decay) {
    GRID_STRIDE(i, n) dst[i] = (float)(decay * (double)dst[i] + (1.0 - decay) * (double)src[i]);
}

// x ← s·x. x: [n].
extern "C" __global__ void scale(float* x, i64 n, double s) {
    GRID_STRIDE(i, n) x[i] = (float)((double)x[i] * s);
}

// NaN, ±inf → 0. x: [n].
extern "C" __global__ void zero_non_finite(float* x, i64 n) {
    GRID_STRIDE(i, n) {
        if (!finitef_(x[i])) x[i] = 0.0f;
    }
}
