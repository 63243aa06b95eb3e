// ucgm.hpp — header-only C++17 RAII wrapper over the C API in ucgm.h.
//
// * Handles are move-only objects freed by their destructor (ucgm::Model, ucgm::Trainer,
//   ucgm::Vae).
// * Every failed call throws ucgm::Error, which carries the status and the library's
//   message; nothing else is hidden: get() gives the raw handle for any C call.
// * Buffers are std::vector<float> in the C API's layout (NCHW, lengths in elements).
// * Threading is the C API's: one object used by one thread at a time; cancel() from
//   any thread.
#ifndef UCGM_HPP
#define UCGM_HPP

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ucgm.h"

namespace ucgm {

// A failed call: the status and the thread's last error message at that moment.
class Error : public std::runtime_error {
public:
    Error(ucgm_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    ucgm_status status() const noexcept { return status_; }

private:
    ucgm_status status_;
};

inline void check(ucgm_status s) {
    if (s != UCGM_STATUS_OK) throw Error(s, ucgm_last_error_message());
}

// Params structs filled with the library's defaults.
struct ModelParams : ucgm_model_params {
    ModelParams() : ucgm_model_params() { check(ucgm_model_params_default(this, sizeof(ucgm_model_params))); }
};

struct SampleParams : ucgm_sample_params {
    SampleParams() : ucgm_sample_params() { check(ucgm_sample_params_default(this, sizeof(ucgm_sample_params))); }
};

struct TrainParams : ucgm_train_params {
    TrainParams() : ucgm_train_params() { check(ucgm_train_params_default(this, sizeof(ucgm_train_params))); }
};

// A log callback as a std::function(level, message).
using LogFn = std::function<void(int32_t, const std::string&)>;

namespace detail {
inline void log_trampoline(int32_t level, const char* message, void* user_data) {
    (*static_cast<LogFn*>(user_data))(level, message);
}
struct ModelDeleter {
    void operator()(ucgm_model* m) const noexcept { ucgm_model_free(m); }
};
struct TrainerDeleter {
    void operator()(ucgm_trainer* t) const noexcept { ucgm_trainer_free(t); }
};
struct VaeDeleter {
    void operator()(ucgm_vae* v) const noexcept { ucgm_vae_free(v); }
};
}  // namespace detail

class Trainer;

// A latent autoencoder (SD-VAE, VA-VAE, E2E-VAE, ...) for Model::sample_image.
class Vae {
public:
    // From a safetensors file; p may be null (defaults: the automatic backend).
    static Vae load(const std::string& path, const ucgm_model_params* p = nullptr) {
        ucgm_vae* v = nullptr;
        check(ucgm_vae_load(path.c_str(), p, &v));
        return Vae(v);
    }

    ucgm_vae* get() const noexcept { return handle_.get(); }

    ucgm_vae_info info() const {
        ucgm_vae_info i{};
        i.struct_size = sizeof i;
        check(ucgm_vae_get_info(get(), &i));
        return i;
    }

    // Raw latents [n, z, h, w] -> images [n, 3, h·f, w·f], nominally in [-1, 1].
    std::vector<float> decode(const std::vector<float>& latents, size_t n, size_t h, size_t w) const {
        const auto i = info();
        std::vector<float> out(n * i.out_channels * h * i.downsample_factor * w * i.downsample_factor);
        check(ucgm_vae_decode(get(), latents.data(), n, h, w, out.data(), out.size()));
        return out;
    }

    void set_progress(ucgm_progress_callback cb, void* user_data) { check(ucgm_vae_set_progress_callback(get(), cb, user_data)); }
    // Any thread, any time.
    void cancel() const { check(ucgm_vae_cancel(get())); }

private:
    explicit Vae(ucgm_vae* v) : handle_(v) {}
    std::unique_ptr<ucgm_vae, detail::VaeDeleter> handle_;
};

class Model {
public:
    // A new model with the reference initialisation (seeded).
    static Model create(const ModelParams& p) {
        ucgm_model* m = nullptr;
        check(ucgm_model_create(&p, &m));
        return Model(m);
    }
    // A model from a safetensors file; p may be null (defaults).
    static Model load(const std::string& path, const ucgm_model_params* p = nullptr) {
        ucgm_model* m = nullptr;
        check(ucgm_model_load(path.c_str(), p, &m));
        return Model(m);
    }

    ucgm_model* get() const noexcept { return handle_.get(); }

    ucgm_model_info info() const {
        ucgm_model_info i{};
        i.struct_size = sizeof i;
        check(ucgm_model_get_info(get(), &i));
        return i;
    }
    size_t image_len() const { return static_cast<size_t>(info().image_len); }

    void save(const std::string& path) const { check(ucgm_model_save(get(), path.c_str())); }

    // Flat parameters in layout order.
    std::vector<float> params() const {
        std::vector<float> v(static_cast<size_t>(info().param_count));
        check(ucgm_model_read_params(get(), v.data(), v.size()));
        return v;
    }
    void set_params(const std::vector<float>& v) { check(ucgm_model_write_params(get(), v.data(), v.size())); }

    // out [B, C, H, W] = F(x [B, C, H, W], t [B], labels [B]).
    std::vector<float> forward(const std::vector<float>& x, const std::vector<float>& t, const std::vector<int32_t>& labels) {
        if (labels.size() != t.size()) throw Error(UCGM_STATUS_INVALID_ARGUMENT, "ucgm::Model::forward: labels and t differ in length");
        if (x.size() != t.size() * image_len()) throw Error(UCGM_STATUS_INVALID_ARGUMENT, "ucgm::Model::forward: x has the wrong length");
        std::vector<float> out(x.size());
        check(ucgm_forward(get(), x.data(), t.data(), labels.data(), t.size(), out.data(), out.size()));
        return out;
    }

    // Samples [batch, C, H, W]; with `trajectory`, also the whole trajectory.
    std::vector<float> sample(const SampleParams& p, std::vector<float>* trajectory = nullptr, ucgm_sample_info* info_out = nullptr) {
        std::vector<float> out(static_cast<size_t>(p.batch) * image_len());
        float* traj = nullptr;
        size_t traj_len = 0;
        if (trajectory) {
            check(ucgm_sample_trajectory_len(get(), &p, &traj_len));
            trajectory->assign(traj_len, 0.0f);
            traj = trajectory->data();
        }
        check(ucgm_sample_ext(get(), &p, out.data(), out.size(), traj, traj_len, info_out));
        return out;
    }
    // One sample with the model's sampler preset (else the defaults) and `steps` steps
    // (0 = the preset's); the handle's seed advances by one per call.
    std::vector<float> sample(uint32_t steps = 0) {
        std::vector<float> out(image_len());
        check(ucgm_sample(get(), steps, out.data(), out.size()));
        return out;
    }
    // The seed of the next sample(steps) call.
    void set_seed(uint64_t seed) { check(ucgm_model_set_seed(get(), seed)); }
    // The settings this model is meant to be sampled with (its stored preset, else the
    // defaults); `has_preset` tells which.
    SampleParams sample_params(bool* has_preset = nullptr) {
        SampleParams p;
        int32_t has = 0;
        check(ucgm_model_get_sample_params(get(), &p, sizeof(ucgm_sample_params), &has));
        if (has_preset) *has_preset = has != 0;
        return p;
    }
    // Stores `p`'s sampler settings as the model's preset (saved with save()).
    void set_sample_params(const SampleParams& p) { check(ucgm_model_set_sample_params(get(), &p)); }

    // How the model's latents are normalised (UCGM_LATENT_NORM_*; mean and stdev [C] for
    // UCGM_LATENT_NORM_STATS, else empty); sample_image inverts it.
    void set_latent_norm(ucgm_latent_norm_kind kind, float multiplier, const std::vector<float>& mean = {}, const std::vector<float>& stdev = {}) {
        if (mean.size() != stdev.size()) throw Error(UCGM_STATUS_INVALID_ARGUMENT, "ucgm::Model::set_latent_norm: mean and std differ in length");
        check(ucgm_model_set_latent_norm(get(), kind, multiplier, mean.empty() ? nullptr : mean.data(), stdev.empty() ? nullptr : stdev.data(), mean.size()));
    }
    // Per-channel statistics from the reference's statistics file (as safetensors).
    void load_latent_stats(const std::string& path, float multiplier = 1.0f) { check(ucgm_model_load_latent_stats(get(), path.c_str(), multiplier)); }

    // Samples labels.size() images (labels empty: one image of a random class) and decodes
    // them with `vae`: [n, H·f, W·f, 3] bytes. seed null: the handle's seed (advances).
    std::vector<uint8_t> sample_image_rgb8(const Vae& vae, const std::vector<int32_t>& labels, uint32_t steps = 0, const uint64_t* seed = nullptr) {
        const size_t n = labels.empty() ? 1 : labels.size();
        std::vector<uint8_t> out(n * image_pixels(vae) * 3);
        check(ucgm_sample_image_rgb8(get(), vae.get(), steps, labels.empty() ? nullptr : labels.data(), n, seed, out.data(), out.size()));
        return out;
    }
    // As sample_image_rgb8, as float [n, 3, H·f, W·f] in [0, 1].
    std::vector<float> sample_image(const Vae& vae, const std::vector<int32_t>& labels, uint32_t steps = 0, const uint64_t* seed = nullptr) {
        const size_t n = labels.empty() ? 1 : labels.size();
        std::vector<float> out(n * 3 * image_pixels(vae));
        check(ucgm_sample_image(get(), vae.get(), steps, labels.empty() ? nullptr : labels.data(), n, seed, out.data(), out.size()));
        return out;
    }
    // Side of the images sample_image gives with `vae`.
    size_t image_side(const Vae& vae) const { return static_cast<size_t>(info().input_size) * vae.info().downsample_factor; }

    void set_log(LogFn fn) {
        auto holder = fn ? std::make_unique<LogFn>(std::move(fn)) : nullptr;
        check(ucgm_model_set_log_callback(get(), holder ? detail::log_trampoline : nullptr, holder.get()));
        log_ = std::move(holder);
    }
    void set_progress(ucgm_progress_callback cb, void* user_data) { check(ucgm_model_set_progress_callback(get(), cb, user_data)); }
    // Any thread, any time.
    void cancel() const { check(ucgm_model_cancel(get())); }

private:
    friend class Trainer;
    explicit Model(ucgm_model* m) : handle_(m) {}
    size_t image_pixels(const Vae& vae) const { return image_side(vae) * image_side(vae); }
    // Declared first, destroyed last: the handle is freed before the log function.
    std::unique_ptr<LogFn> log_;
    std::unique_ptr<ucgm_model, detail::ModelDeleter> handle_;
};

// UCGM-T over a copy of a model's weights.
class Trainer {
public:
    Trainer(const Model& model, const TrainParams& p) {
        ucgm_trainer* t = nullptr;
        check(ucgm_trainer_create(model.get(), &p, &t));
        handle_.reset(t);
    }
    // Continues a run from a checkpoint exactly; p may be null (defaults).
    static Trainer resume(const std::string& path, const ucgm_model_params* p = nullptr) {
        ucgm_trainer* t = nullptr;
        check(ucgm_trainer_resume(path.c_str(), p, &t));
        return Trainer(t);
    }

    ucgm_trainer* get() const noexcept { return handle_.get(); }

    ucgm_trainer_info info() const {
        ucgm_trainer_info i{};
        i.struct_size = sizeof i;
        check(ucgm_trainer_get_info(get(), &i));
        return i;
    }

    // One step on x [B, C, H, W] with labels [B]; returns the loss.
    double step(const std::vector<float>& x, const std::vector<int32_t>& labels) {
        check_batch(x, labels.size());
        double loss = 0;
        check(ucgm_train_step(get(), x.data(), labels.data(), labels.size(), &loss));
        return loss;
    }
    // One step with the caller's times t [B] (internal, in [0, 1]) and noise z [B, C, H, W].
    double step_with(const std::vector<float>& x, const std::vector<int32_t>& labels, const std::vector<float>& t, const std::vector<float>& z) {
        check_batch(x, labels.size());
        if (t.size() != labels.size() || z.size() != x.size()) throw Error(UCGM_STATUS_INVALID_ARGUMENT, "ucgm::Trainer::step_with: t or z has the wrong length");
        double loss = 0;
        check(ucgm_train_step_with(get(), x.data(), labels.data(), t.data(), z.data(), labels.size(), &loss));
        return loss;
    }
    // n_batches steps: x [n_batches, B, C, H, W], labels [n_batches, B]; returns the losses.
    std::vector<double> steps(const std::vector<float>& x, const std::vector<int32_t>& labels, size_t n_batches) {
        if (n_batches == 0 || labels.size() % n_batches != 0) throw Error(UCGM_STATUS_INVALID_ARGUMENT, "ucgm::Trainer::steps: labels do not split into n_batches");
        check_batch(x, labels.size());
        std::vector<double> losses(n_batches);
        check(ucgm_train_steps(get(), x.data(), labels.data(), n_batches, labels.size() / n_batches, losses.data(), losses.size()));
        return losses;
    }

    void save_checkpoint(const std::string& path) const { check(ucgm_trainer_save_checkpoint(get(), path.c_str())); }
    void save_weights(ucgm_weights which, const std::string& path) const { check(ucgm_trainer_save_weights(get(), which, path.c_str())); }
    // A model holding a copy of the online, EMA or mod weights.
    Model export_model(ucgm_weights which) const {
        ucgm_model* m = nullptr;
        check(ucgm_trainer_export_model(get(), which, &m));
        return Model(m);
    }

    void set_log(LogFn fn) {
        auto holder = fn ? std::make_unique<LogFn>(std::move(fn)) : nullptr;
        check(ucgm_trainer_set_log_callback(get(), holder ? detail::log_trampoline : nullptr, holder.get()));
        log_ = std::move(holder);
    }
    void set_progress(ucgm_progress_callback cb, void* user_data) { check(ucgm_trainer_set_progress_callback(get(), cb, user_data)); }
    // Any thread, any time.
    void cancel() const { check(ucgm_trainer_cancel(get())); }

private:
    explicit Trainer(ucgm_trainer* t) : handle_(t) {}
    void check_batch(const std::vector<float>& x, size_t batch) const {
        if (batch == 0 || x.size() != batch * static_cast<size_t>(info().image_len))
            throw Error(UCGM_STATUS_INVALID_ARGUMENT, "ucgm::Trainer: x does not hold labels.size() samples");
    }
    std::unique_ptr<LogFn> log_;
    std::unique_ptr<ucgm_trainer, detail::TrainerDeleter> handle_;
};

}  // namespace ucgm

#endif  // UCGM_HPP
