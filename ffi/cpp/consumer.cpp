// A C++ program using libucgm through the RAII wrapper ucgm.hpp: create a tiny TiT,
// train it a few steps, take its EMA weights, evaluate, sample, save, load back and
// sample again. Prints "key value..." lines for
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

        // Train a few UCGM-T steps on a fixed dataset of 6 samples (x [6, C, H, W]).
        const size_t n = model.image_len();
        const size_t batch = 6;
        std::vector<float> data(batch * n);
        std::vector<int32_t> data_labels(batch);
        for (size_t b = 0; b < batch; b++) {
            data_labels[b] = static_cast<int32_t>(b % 3);
            for (size_t j = 0; j < n; j++) data[b * n + j] = 0.7f * std::sin(0.3f * static_cast<float>(j) + static_cast<float>(b % 3));
        }
        ucgm::TrainParams tp;
        tp.lr = 3e-3;
        tp.lab_drop_ratio = 0.0;
        tp.seed = 2;
        tp.ema_decay = 0.8;  // a sampling EMA that moves within these few steps
        ucgm::Trainer trainer(model, tp);
        std::vector<double> losses;
        for (int i = 0; i < 30; i++) losses.push_back(trainer.step(data, data_labels));
        std::vector<float> ten_x, t(batch);
        std::vector<int32_t> ten_l;
        for (int i = 0; i < 10; i++) {
            ten_x.insert(ten_x.end(), data.begin(), data.end());
            ten_l.insert(ten_l.end(), data_labels.begin(), data_labels.end());
        }
        for (double l : trainer.steps(ten_x, ten_l, 10)) losses.push_back(l);
        double first = 0, last = 0;
        for (int i = 0; i < 10; i++) {
            first += losses[i] / 10;
            last += losses[losses.size() - 10 + i] / 10;
        }
        std::cout << "train steps " << trainer.info().step << " first " << first << " last " << last << " decreased " << (last < 0.8 * first) << "\n";
        // The caller's own t and z.
        for (size_t b = 0; b < batch; b++) t[b] = 0.1f + 0.15f * static_cast<float>(b);
        std::vector<float> z(data.size());
        for (size_t i = 0; i < z.size(); i++) z[i] = std::cos(1.7f * static_cast<float>(i));
        std::cout << "step_with finite " << std::isfinite(trainer.step_with(data, data_labels, t, z)) << "\n";
        model = trainer.export_model(UCGM_WEIGHTS_EMA);
        const std::string weights = dir + "/cpp_ema.safetensors";
        trainer.save_weights(UCGM_WEIGHTS_EMA, weights);
        std::cout << "ema_file identical " << (ucgm::Model::load(weights).params() == model.params()) << "\n";
        model.set_log([&log](int32_t level, const std::string& msg) { log.push_back(std::to_string(level) + " " + msg); });

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
