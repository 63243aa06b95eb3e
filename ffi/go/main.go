// A Go program (cgo) sampling from libucgm: create a tiny TiT, sample a batch, check
// determinism, save and reload, and show an error. Prints "key value..." lines for
// tests/capi_consumers.rs; exits non-zero when a call fails.
//
//	CGO_LDFLAGS="-L<dir of libucgm.so> -Wl,-rpath,<dir>" go build && ./consumer WORK_DIR
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -lucgm -lm
#include <stdlib.h>
#include "ucgm.h"
*/
import "C"

import (
	"fmt"
	"math"
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

func allFinite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}

func sample(m *C.ucgm_model, p *C.ucgm_sample_params, n int) []float32 {
	out := make([]float32, n)
	check("ucgm_sample_ext", C.ucgm_sample_ext(m, p, (*C.float)(unsafe.Pointer(&out[0])), C.size_t(n), nil, 0, nil))
	return out
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: consumer WORK_DIR")
		os.Exit(2)
	}
	fmt.Printf("version %s abi %d\n", C.GoString(C.ucgm_version()), uint32(C.ucgm_abi_version()))

	var mp C.ucgm_model_params
	check("ucgm_model_params_default", C.ucgm_model_params_default(&mp, C.size_t(unsafe.Sizeof(mp))))
	mp.arch = C.UCGM_ARCH_SIT
	mp.input_size, mp.in_channels, mp.num_classes = 8, 4, 10
	mp.patch, mp.hidden, mp.depth, mp.heads = 2, 32, 1, 2
	mp.seed, mp.threads = 5, 1
	var m *C.ucgm_model
	check("ucgm_model_create", C.ucgm_model_create(&mp, &m))
	defer C.ucgm_model_free(m)

	var info C.ucgm_model_info
	info.struct_size = C.size_t(unsafe.Sizeof(info))
	check("ucgm_model_get_info", C.ucgm_model_get_info(m, &info))
	imageLen := int(info.image_len)
	fmt.Printf("info arch %d params %d image_len %d\n", int(info.arch), uint64(info.param_count), imageLen)

	// Give every weight a value (a fresh network outputs zero).
	w := make([]float32, int(info.param_count))
	check("ucgm_model_read_params", C.ucgm_model_read_params(m, (*C.float)(unsafe.Pointer(&w[0])), C.size_t(len(w))))
	for i := range w {
		w[i] += 0.02 * float32(math.Sin(0.37*float64(i)))
	}
	check("ucgm_model_write_params", C.ucgm_model_write_params(m, (*C.float)(unsafe.Pointer(&w[0])), C.size_t(len(w))))

	// Labels live in C memory: a C struct passed to C may not point into Go memory.
	const batch = 2
	labels := (*[batch]C.int32_t)(C.malloc(C.size_t(batch * 4)))
	defer C.free(unsafe.Pointer(labels))
	labels[0], labels[1] = 4, 10 // 10 = the null class

	var sp C.ucgm_sample_params
	check("ucgm_sample_params_default", C.ucgm_sample_params_default(&sp, C.size_t(unsafe.Sizeof(sp))))
	sp.steps, sp.batch, sp.seed = 6, batch, 99
	sp.stochasticity = C.UCGM_STOCHASTICITY_SDE
	sp.labels = &labels[0]
	s1 := sample(m, &sp, batch*imageLen)
	s2 := sample(m, &sp, batch*imageLen)
	fmt.Printf("sample finite %t size %d deterministic %t\n", allFinite(s1), len(s1), equal(s1, s2))

	path := filepath.Join(os.Args[1], "go_model.safetensors")
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	check("ucgm_model_save", C.ucgm_model_save(m, cpath))
	var loaded *C.ucgm_model
	check("ucgm_model_load", C.ucgm_model_load(cpath, nil, &loaded))
	defer C.ucgm_model_free(loaded)
	s3 := sample(loaded, &sp, batch*imageLen)
	fmt.Printf("reload identical %t\n", equal(s1, s3))

	sp.steps = 0
	out := make([]float32, batch*imageLen)
	st := C.ucgm_sample_ext(m, &sp, (*C.float)(unsafe.Pointer(&out[0])), C.size_t(len(out)), nil, 0, nil)
	fmt.Printf("zero_steps_status %d %s\n", int(st), C.GoString(C.ucgm_last_error_message()))
	fmt.Println("done")
}
