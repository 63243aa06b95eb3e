/*
 * Checkpoint in, pictures out: load a latent diffusion model and its VAE, say how the
 * model's latents are normalised, and sample two class-conditional images straight into
 * 8-bit RGB with ucgm_sample_image_rgb8, written as binary PPM files (P6). Prints one
 * "image INDEX PATH WIDTH HEIGHT" line per file for tests/capi_consumers.rs and exits
 * non-zero (with the library's message on stderr) when a call fails.
 *
 *   sample_image MODEL VAE OUT_DIR [STATS]
 *
 * Without STATS the latents are taken to be SD-VAE's (x = 0.18215 * z); with STATS (the
 * reference's latent statistics as safetensors, VA-VAE / E2E-VAE) they are standardised
 * per channel. A model file that stores its normalisation needs neither call.
 */
#include <stdio.h>
#include <stdlib.h>

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

/* One [height, width, 3] image as a binary PPM. */
static int write_ppm(const char *path, const unsigned char *rgb, unsigned width, unsigned height) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    const size_t n = (size_t)width * height * 3;
    int ok = fprintf(f, "P6\n%u %u\n255\n", width, height) > 0 && fwrite(rgb, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s MODEL VAE OUT_DIR [STATS]\n", argv[0]);
        return 2;
    }
    /* NULL params: the defaults (the automatic backend: CUDA where usable, else the CPU). */
    ucgm_model *model = NULL;
    CHECK(ucgm_model_load(argv[1], NULL, &model));
    ucgm_vae *vae = NULL;
    CHECK(ucgm_vae_load(argv[2], NULL, &vae));
    if (argc == 5)
        CHECK(ucgm_model_load_latent_stats(model, argv[4], 1.0f));
    else
        CHECK(ucgm_model_set_latent_norm(model, UCGM_LATENT_NORM_SCALE, UCGM_SD_VAE_MULTIPLIER, NULL, NULL, 0));

    /* The image size: the model's latent side times the VAE's downsampling factor. */
    ucgm_model_info mi = {0};
    mi.struct_size = sizeof mi;
    CHECK(ucgm_model_get_info(model, &mi));
    ucgm_vae_info vi = {0};
    vi.struct_size = sizeof vi;
    CHECK(ucgm_vae_get_info(vae, &vi));
    const unsigned side = mi.input_size * vi.downsample_factor;

    /* Two images of classes 1 and 7, seed 42, 8 sampling steps: out [2, side, side, 3]. */
    enum { N = 2 };
    const int32_t labels[N] = {1, 7};
    const uint64_t seed = 42;
    const size_t per_image = (size_t)side * side * 3;
    unsigned char *rgb = malloc(N * per_image);
    if (!rgb) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    CHECK(ucgm_sample_image_rgb8(model, vae, 8, labels, N, &seed, rgb, N * per_image));

    for (int i = 0; i < N; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/c_image_%d.ppm", argv[3], i);
        if (!write_ppm(path, rgb + i * per_image, side, side)) {
            fprintf(stderr, "cannot write %s\n", path);
            return 1;
        }
        printf("image %d %s %u %u\n", i, path, side, side);
    }
    free(rgb);
    ucgm_vae_free(vae);
    ucgm_model_free(model);
    printf("done\n");
    return 0;
}
