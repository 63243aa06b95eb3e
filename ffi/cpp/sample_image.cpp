// Checkpoint in, pictures out, through the RAII wrapper ucgm.hpp: load a latent model
// and its VAE, set the latent normalisation, sample two class-conditional images into
// 8-bit RGB (Model::sample_image_rgb8) and write them as binary PPM files. Prints one
// "image INDEX PATH WIDTH HEIGHT" line per file for tests/capi_consumers.rs; exits
// non-zero on any ucgm::Error.
//
//   sample_image_cpp MODEL VAE OUT_DIR [STATS]
//
// Without STATS the latents are SD-VAE's (x = 0.18215 * z); with STATS (the reference's
// latent statistics as safetensors: VA-VAE / E2E-VAE) they are standardised per channel.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "ucgm.hpp"

// One [side, side, 3] image as a binary PPM.
static bool write_ppm(const std::string& path, const uint8_t* rgb, size_t side) {
    std::ofstream f(path, std::ios::binary);
    f << "P6\n" << side << " " << side << "\n255\n";
    f.write(reinterpret_cast<const char*>(rgb), static_cast<std::streamsize>(side * side * 3));
    f.close();
    return static_cast<bool>(f);
}

int main(int argc, char** argv) {
    if (argc < 4 || argc > 5) {
        std::cerr << "usage: " << argv[0] << " MODEL VAE OUT_DIR [STATS]\n";
        return 2;
    }
    try {
        ucgm::Model model = ucgm::Model::load(argv[1]);
        ucgm::Vae vae = ucgm::Vae::load(argv[2]);
        if (argc == 5)
            model.load_latent_stats(argv[4]);
        else
            model.set_latent_norm(UCGM_LATENT_NORM_SCALE, UCGM_SD_VAE_MULTIPLIER);

        const uint64_t seed = 42;
        const std::vector<uint8_t> rgb = model.sample_image_rgb8(vae, {1, 7}, 8, &seed);
        const size_t side = model.image_side(vae);
        for (size_t i = 0; i < 2; i++) {
            const std::string path = std::string(argv[3]) + "/cpp_image_" + std::to_string(i) + ".ppm";
            if (!write_ppm(path, rgb.data() + i * side * side * 3, side)) {
                std::cerr << "cannot write " << path << "\n";
                return 1;
            }
            std::cout << "image " << i << " " << path << " " << side << " " << side << "\n";
        }
    } catch (const ucgm::Error& e) {
        std::cerr << "ucgm error " << e.status() << ": " << e.what() << "\n";
        return 1;
    }
    std::cout << "done\n";
    return 0;
}
