// A C++ program using libucgm through the RAII wrapper ucgm.hpp: create a tiny TiT,
// train it a few steps, save, load back and sample. Prints "key value..." lines for
// tests/capi_consumers.rs; exits non-zero on any ucgm::Error.
//
//   consumer_cpp WORK_DIR
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "ucgm.hpp"

static bool all_finite(const std::vector<float>& v) {
    for (float x : v)
        if (!std::isfinite(x)) return false;
    return true;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " WORK_DIR\n";
        return 2;
    }
    const std::string dir = argv[1];
    try {
        ucgm::ModelParams mp;
        mp.arch = UCGM_ARCH_TIT;
        mp.input_size = 8;
        mp.in_channels = 4;
        mp.num_classes = 10;
        mp.patch = 2;
        mp.hidden = 32;
        mp.depth = 2;
        mp.heads = 2;
        mp.seed = 3;
        mp.threads = 1;
        ucgm::Model model = ucgm::Model::create(mp);
        std::vector<std::string> log;
        model.set_log([&log](int32_t level, const std::string& msg) { log.push_back(std::to_string(level) + " " + msg); });
        const auto info = model.info();
        std::cout << "info arch " << info.arch << " params " << info.param_count << " image_len " << info.image_len << "\n";

        // Every weight non-zero (a fresh network outputs zero).
        std::vector<float> w = model.params();
        for (size_t i = 0; i < w.size(); i++) w[i] += 0.02f * std::sin(0.37f * static_cast<float>(i));
        model.set_params(w);

        const size_t n = model.image_len();
        std::vector<float> x(2 * n);
        for (size_t i = 0; i < x.size(); i++) x[i] = std::cos(0.1f * static_cast<float>(i));
        std::vector<float> f = model.forward(x, {0.3f, 0.6f}, {1, 2});
        std::cout << "forward finite " << all_finite(f) << " size " << f.size() << "\n";

        ucgm::SampleParams sp;
        sp.steps = 5;
        sp.batch = 3;
        sp.seed = 4;
        sp.transport = UCGM_TRANSPORT_LINEAR;
        sp.order = 2;
        sp.rfba_gap_steps[0] = 0.02;
        sp.extrapolation = 0.3;
        std::vector<float> trajectory;
        ucgm_sample_info si{};
        si.struct_size = sizeof si;
        std::vector<float> s1 = model.sample(sp, &trajectory, &si);
        std::cout << "sample finite " << all_finite(s1) << " size " << s1.size() << " trajectory " << trajectory.size() << " nfe " << si.nfe << "\n";

        const std::string path = dir + "/cpp_model.safetensors";
        model.save(path);
        ucgm::Model loaded = ucgm::Model::load(path);
        std::vector<float> s2 = loaded.sample(sp);
        std::cout << "reload identical " << (s1 == s2) << "\n";
        std::cout << "params identical " << (loaded.params() == model.params()) << "\n";

        // Errors are exceptions with the status and message; the object stays usable.
        try {
            sp.transport = 42;
            loaded.sample(sp);
            std::cout << "bad_transport no_error\n";
        } catch (const ucgm::Error& e) {
            std::cout << "bad_transport_status " << e.status() << " " << e.what() << "\n";
        }
        std::cout << "sample_default finite " << all_finite(loaded.sample(3)) << "\n";
        std::cout << "log_lines " << log.size() << "\n";
        for (const auto& l : log) std::cout << "log " << l << "\n";
    } catch (const ucgm::Error& e) {
        std::cerr << "ucgm error " << e.status() << ": " << e.what() << "\n";
        return 1;
    }
    std::cout << "done\n";
    return 0;
}
