/*
 * A C program using libucgm the way an embedding application would: create a tiny
 * TiT model, train it a few steps (and resume from a checkpoint), evaluate it, sample,
 * save it, load it back and sample again. It prints one "key value..." line per result for tests/capi_consumers.rs, and
 * exits non-zero (with the library's message on stderr) when a call fails.
 *
 *   consumer WORK_DIR [TRAIN_STEPS]     (TRAIN_STEPS >= 20, default 40)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ucgm.h"

#define CHECK(call)                                                                                   \
    do {                                                                                              \
        ucgm_status status_ = (call);                                                                 \
        if (status_ != UCGM_STATUS_OK) {                                                              \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call, ucgm_status_str(status_), \
                    ucgm_last_error_message());                                                       \
            exit(1);                                                                                  \
        }                                                                                             \
    } while (0)

static int all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

static float *alloc_floats(size_t n) {
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv) {
    const int steps = argc == 3 ? atoi(argv[2]) : 40;
    if (argc < 2 || argc > 3 || steps < 20 || steps > 1000) {
        fprintf(stderr, "usage: %s WORK_DIR [TRAIN_STEPS]  (20 <= TRAIN_STEPS <= 1000)\n", argv[0]);
        return 2;
    }
    if (ucgm_abi_version() != UCGM_ABI_VERSION) {
        fprintf(stderr, "ABI mismatch: library %u, header %u\n", ucgm_abi_version(), UCGM_ABI_VERSION);
        return 1;
    }
    printf("version %s abi %u\n", ucgm_version(), ucgm_abi_version());
    printf("system %s\n", ucgm_system_info_string());

    /* Errors are statuses with a thread-local message; nothing is printed by the library. */
    ucgm_status st = ucgm_forward(NULL, NULL, NULL, NULL, 1, NULL, 0);
    printf("null_model_status %d %s\n", st, ucgm_last_error_message());
    st = ucgm_backend_available(UCGM_BACKEND_CUDA);
    printf("cuda_status %d %s\n", st, ucgm_last_error_message());

    /* A tiny TiT: 4x8x8 input, patch 2, hidden 32, depth 2, 2 heads, 10 classes. */
    ucgm_model_params mp;
    CHECK(ucgm_model_params_default(&mp, sizeof mp));
    mp.arch = UCGM_ARCH_TIT;
    mp.input_size = 8;
    mp.in_channels = 4;
    mp.num_classes = 10;
    mp.patch = 2;
    mp.hidden = 32;
    mp.depth = 2;
    mp.heads = 2;
    mp.seed = 7;
    mp.threads = 2;
    ucgm_model *model = NULL;
    CHECK(ucgm_model_create(&mp, &model));

    ucgm_model_info info = {0}; /* info structs: set struct_size, the library fills the rest */
    info.struct_size = sizeof info;
    CHECK(ucgm_model_get_info(model, &info));
    const size_t image_len = (size_t)info.image_len;
    printf("info arch %d input %u channels %u classes %u params %llu image_len %zu\n", info.arch, info.input_size,
           info.in_channels, info.num_classes, (unsigned long long)info.param_count, image_len);

    /* Train it: UCGM-T (plain flow matching here) on a fixed little dataset of 8 samples,
     * x [8, C, H, W] with labels [8]. Losses are noisy (random t and z per step), so
     * compare the mean of the first and the last steps. */
    enum { N = 8, CHUNK = 10 };
    float *data = alloc_floats(N * image_len);
    int32_t data_labels[N];
    for (size_t b = 0; b < N; b++) {
        data_labels[b] = (int32_t)(b % 3);
        for (size_t j = 0; j < image_len; j++) data[b * image_len + j] = 0.7f * sinf(0.3f * (float)j + (float)(b % 3));
    }
    ucgm_train_params tp;
    CHECK(ucgm_train_params_default(&tp, sizeof tp));
    tp.lr = 3e-3;
    tp.lab_drop_ratio = 0.0;
    tp.seed = 1;
    ucgm_trainer *trainer = NULL;
    CHECK(ucgm_trainer_create(model, &tp, &trainer));
    double losses[1000];
    for (int i = 0; i < steps - CHUNK; i++) CHECK(ucgm_train_step(trainer, data, data_labels, N, &losses[i]));
    /* The last steps in one call: CHUNK batches [CHUNK, N, C, H, W] (the same data). */
    float *chunk = alloc_floats(CHUNK * N * image_len);
    int32_t chunk_labels[CHUNK * N];
    for (int c = 0; c < CHUNK; c++) {
        memcpy(chunk + c * N * image_len, data, N * image_len * sizeof *data);
        memcpy(chunk_labels + c * N, data_labels, sizeof data_labels);
    }
    CHECK(ucgm_train_steps(trainer, chunk, chunk_labels, CHUNK, N, losses + steps - CHUNK, CHUNK));
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++) {
        first += losses[i] / 10;
        last += losses[steps - 10 + i] / 10;
    }
    ucgm_trainer_info ti = {0};
    ti.struct_size = sizeof ti;
    CHECK(ucgm_trainer_get_info(trainer, &ti));
    printf("train steps %llu first %.4f last %.4f decreased %d\n", (unsigned long long)ti.step, first, last, last < 0.8 * first);

    /* A checkpoint resumes exactly: the next step gives the same loss either way. */
    char path[4096];
    snprintf(path, sizeof path, "%s/c_checkpoint.safetensors", argv[1]);
    CHECK(ucgm_trainer_save_checkpoint(trainer, path));
    ucgm_trainer *resumed = NULL;
    CHECK(ucgm_trainer_resume(path, NULL, &resumed));
    double l1 = 0, l2 = 0;
    CHECK(ucgm_train_step(trainer, data, data_labels, N, &l1));
    CHECK(ucgm_train_step(resumed, data, data_labels, N, &l2));
    printf("resume identical %d\n", l1 == l2);
    ucgm_trainer_free(resumed);

    /* Sample from the trained network: a model handle with its weights. */
    ucgm_model_free(model);
    model = NULL;
    CHECK(ucgm_trainer_export_model(trainer, UCGM_WEIGHTS_ONLINE, &model));
    ucgm_trainer_free(trainer);
    free(chunk);
    free(data);

    /* Raw network evaluation: x [B, C, H, W], t [B], labels [B] -> out [B, C, H, W]. */
    enum { B = 2 };
    float *x = alloc_floats(B * image_len), *out = alloc_floats(B * image_len);
    for (size_t i = 0; i < B * image_len; i++) x[i] = cosf(0.1f * (float)i);
    const float t[B] = {0.25f, 0.75f};
    const int32_t labels[B] = {3, 10 /* the null class */};
    CHECK(ucgm_forward(model, x, t, labels, B, out, B * image_len));
    double norm = 0;
    for (size_t i = 0; i < B * image_len; i++) norm += (double)out[i] * out[i];
    printf("forward finite %d nonzero %d\n", all_finite(out, B * image_len), norm > 0);

    /* Sampling with every setting available; the trajectory buffer is optional. */
    ucgm_sample_params sp;
    CHECK(ucgm_sample_params_default(&sp, sizeof sp));
    sp.steps = 6;
    sp.batch = B;
    sp.seed = 11;
    sp.labels = labels;
    sp.stochasticity = UCGM_STOCHASTICITY_FIXED;
    sp.rho = 0.5;
    size_t traj_len = 0;
    CHECK(ucgm_sample_trajectory_len(model, &sp, &traj_len));
    float *traj = alloc_floats(traj_len), *s1 = alloc_floats(B * image_len), *s2 = alloc_floats(B * image_len);
    ucgm_sample_info si = {0};
    si.struct_size = sizeof si;
    CHECK(ucgm_sample_ext(model, &sp, s1, B * image_len, traj, traj_len, &si));
    printf("sample finite %d batch %d steps %u nfe %u trajectory %zu\n", all_finite(s1, B * image_len), B,
           si.grid_points, si.nfe, traj_len);

    /* The raw samples, for the test to compare with the library called from Rust. */
    snprintf(path, sizeof path, "%s/c_samples.f32", argv[1]);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s1, sizeof *s1, B * image_len, f) != B * image_len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }

    /* Save, load back, sample again: the same numbers. */
    snprintf(path, sizeof path, "%s/c_model.safetensors", argv[1]);
    CHECK(ucgm_model_save(model, path));
    ucgm_model *loaded = NULL;
    CHECK(ucgm_model_load(path, NULL, &loaded));
    CHECK(ucgm_sample_ext(loaded, &sp, s2, B * image_len, NULL, 0, NULL));
    printf("reload identical %d\n", memcmp(s1, s2, B * image_len * sizeof *s1) == 0);

    /* The simple call: one image, defaults. */
    CHECK(ucgm_sample(loaded, 4, s2, image_len));
    printf("sample_default finite %d\n", all_finite(s2, image_len));

    /* A bad argument leaves the handle usable. */
    st = ucgm_sample(loaded, 4, s2, image_len - 1);
    printf("bad_length_status %d %s\n", st, ucgm_last_error_message());
    CHECK(ucgm_sample(loaded, 4, s2, image_len));

    ucgm_model_free(loaded);
    ucgm_model_free(model);
    ucgm_model_free(NULL);
    free(x);
    free(out);
    free(traj);
    free(s1);
    free(s2);
    printf("done\n");
    return 0;
}
