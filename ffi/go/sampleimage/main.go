// Checkpoint in, pictures out, from Go (cgo): load a latent model and its VAE, set the
// latent normalisation, sample two class-conditional images into 8-bit RGB
// (ucgm_sample_image_rgb8) and write them as PNG files with the standard library.
// Prints one "image INDEX PATH WIDTH HEIGHT" line per file for tests/capi_consumers.rs;
// exits non-zero when a call fails.
//
//	CGO_LDFLAGS="-L<dir of libucgm.so> -Wl,-rpath,<dir>" go build ./sampleimage
//	./sampleimage MODEL VAE OUT_DIR [STATS]
//
// Without STATS the latents are SD-VAE's (x = 0.18215 * z); with STATS (the reference's
// latent statistics as safetensors: VA-VAE / E2E-VAE) they are standardised per channel.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include
#cgo LDFLAGS: -lucgm -lm
#include <stdlib.h>
#include "ucgm.h"
*/
import "C"

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"unsafe"
)

// check exits with the library's message when a call failed.
func check(what string, s C.ucgm_status) {
	if s != C.UCGM_STATUS_OK {
		fmt.Fprintf(os.Stderr, "%s: %s: %s\n", what, C.GoString(C.ucgm_status_str(s)), C.GoString(C.ucgm_last_error_message()))
		os.Exit(1)
	}
}

// sampleImages samples len(labels) images of the given classes and decodes them with
// vae: one opaque image per label.
func sampleImages(m *C.ucgm_model, vae *C.ucgm_vae, labels []int32, steps uint32, seed uint64) []*image.NRGBA {
	var mi C.ucgm_model_info
	mi.struct_size = C.size_t(unsafe.Sizeof(mi))
	check("ucgm_model_get_info", C.ucgm_model_get_info(m, &mi))
	var vi C.ucgm_vae_info
	vi.struct_size = C.size_t(unsafe.Sizeof(vi))
	check("ucgm_vae_get_info", C.ucgm_vae_get_info(vae, &vi))
	side := int(mi.input_size) * int(vi.downsample_factor)

	n := len(labels)
	rgb := make([]byte, n*side*side*3) // [n, side, side, 3]
	cLabels := make([]C.int32_t, n)
	for i, l := range labels {
		cLabels[i] = C.int32_t(l)
	}
	cSeed := C.uint64_t(seed)
	check("ucgm_sample_image_rgb8", C.ucgm_sample_image_rgb8(m, vae, C.uint32_t(steps), &cLabels[0], C.size_t(n), &cSeed,
		(*C.uint8_t)(unsafe.Pointer(&rgb[0])), C.size_t(len(rgb))))

	images := make([]*image.NRGBA, n)
	for i := range images {
		img := image.NewNRGBA(image.Rect(0, 0, side, side))
		src := rgb[i*side*side*3:]
		for p := 0; p < side*side; p++ {
			copy(img.Pix[4*p:4*p+3], src[3*p:3*p+3])
			img.Pix[4*p+3] = 255
		}
		images[i] = img
	}
	return images
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func main() {
	if len(os.Args) < 4 || len(os.Args) > 5 {
		fmt.Fprintln(os.Stderr, "usage: sampleimage MODEL VAE OUT_DIR [STATS]")
		os.Exit(2)
	}
	modelPath, vaePath := C.CString(os.Args[1]), C.CString(os.Args[2])
	defer C.free(unsafe.Pointer(modelPath))
	defer C.free(unsafe.Pointer(vaePath))
	// NULL params: the defaults (the automatic backend: CUDA where usable, else the CPU).
	var m *C.ucgm_model
	check("ucgm_model_load", C.ucgm_model_load(modelPath, nil, &m))
	defer C.ucgm_model_free(m)
	var vae *C.ucgm_vae
	check("ucgm_vae_load", C.ucgm_vae_load(vaePath, nil, &vae))
	defer C.ucgm_vae_free(vae)
	if len(os.Args) == 5 {
		stats := C.CString(os.Args[4])
		defer C.free(unsafe.Pointer(stats))
		check("ucgm_model_load_latent_stats", C.ucgm_model_load_latent_stats(m, stats, 1.0))
	} else {
		check("ucgm_model_set_latent_norm", C.ucgm_model_set_latent_norm(m, C.UCGM_LATENT_NORM_SCALE, C.UCGM_SD_VAE_MULTIPLIER, nil, nil, 0))
	}

	for i, img := range sampleImages(m, vae, []int32{1, 7}, 8, 42) {
		path := filepath.Join(os.Args[3], fmt.Sprintf("go_image_%d.png", i))
		if err := writePNG(path, img); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		b := img.Bounds()
		fmt.Printf("image %d %s %d %d\n", i, path, b.Dx(), b.Dy())
	}
	fmt.Println("done")
}
