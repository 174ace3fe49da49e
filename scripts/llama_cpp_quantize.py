"""llama_cpp_quantize.py: llama.cpp's own quantizer (llama_model_quantize, what its
llama-quantize tool runs) from the prebuilt library node-llama-cpp ships, so that
scripts/check_llama_cpp.sh can import GGUF files written by llama.cpp itself.

python3 scripts/llama_cpp_quantize.py NODE_MODULES IN.gguf OUT.gguf f16|bf16|q8_0

The parameters are llama.cpp's defaults (llama_model_quantize_default_params) with the
file type set; the struct starts with int32 nthread, int32 ftype in llama.cpp up to the
version node-llama-cpp 3.21.1 bundles. Exits non-zero if llama.cpp reports a failure.
"""
import ctypes
import glob
import os
import sys

node_modules, src, dst, kind = sys.argv[1:5]
ftype = {"f16": 1, "q8_0": 7, "bf16": 32}[kind]  # enum llama_ftype
libs = glob.glob(os.path.join(node_modules, "@node-llama-cpp", "linux-x64", "bins", "linux-x64", "libllama.*so"))
if not libs:
    sys.exit(f"llama_cpp_quantize.py: no libllama under {node_modules}/@node-llama-cpp/linux-x64")
bins = os.path.dirname(libs[0])
ggml = ctypes.CDLL(glob.glob(os.path.join(bins, "libggml.*so"))[0], mode=ctypes.RTLD_GLOBAL)
llama = ctypes.CDLL(libs[0], mode=ctypes.RTLD_GLOBAL)


class Params(ctypes.Structure):
    # Larger than llama_model_quantize_params in any version: a struct this size is returned
    # through a caller-provided buffer, so the library writes its own size into it.
    _fields_ = [("raw", ctypes.c_uint8 * 1024)]


llama.llama_model_quantize_default_params.restype = Params
llama.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Params)]
llama.llama_model_quantize.restype = ctypes.c_uint32
devnull = os.open(os.devnull, os.O_WRONLY)
saved = os.dup(1), os.dup(2)
os.dup2(devnull, 1), os.dup2(devnull, 2)  # llama.cpp logs its backends and every tensor
cwd = os.getcwd()
os.chdir(bins)  # the CPU backends are found next to the library
ggml.ggml_backend_load_all()
llama.llama_backend_init()
os.chdir(cwd)
p = llama.llama_model_quantize_default_params()
ctypes.c_int32.from_buffer(p.raw, 0).value = 1      # nthread
ctypes.c_int32.from_buffer(p.raw, 4).value = ftype  # ftype
rc = llama.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
os.dup2(saved[0], 1), os.dup2(saved[1], 2)
sys.exit(1 if rc else 0)
