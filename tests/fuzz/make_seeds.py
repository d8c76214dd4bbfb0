#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora under tests/fuzz/corpus/<target>/ (committed; rerun and
commit again after a format change). Small valid files, a few hundred bytes to a few KB each, of
every variant each reader accepts, so the fuzzers start from inside the formats.

  tests/fuzz/make_seeds.py BUILD_DIR     # BUILD_DIR holds a built squeeze (for .sqz and .onnx)

idx, csv, npy: written here; hdf5: by a tiny C program built with h5cc (libhdf5-dev); sqz, onnx:
by `squeeze run` of a data-free workflow on tiny zoo models (float, pruned and quantized
checkpoints, and their ONNX exports). The config target also replays examples/*.yaml and
tests/pipeline/fixtures/*.yaml (cmake/fuzz.cmake, scripts/fuzz.sh); its own seeds here are the
short pipeline and data forms those do not show.
"""
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def idx_bytes(code, arr, fmt):
    head = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(fmt).tobytes()


def idx_seeds():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 4)).astype(np.uint8)
    out("idx", "images-u8", idx_bytes(0x08, images, "u1"))
    out("idx", "images-u8.gz", gzip.compress(idx_bytes(0x08, images, "u1"), mtime=0))
    out("idx", "labels-u8", idx_bytes(0x08, np.array([0, 3, 9], np.uint8), "u1"))
    out("idx", "i8", idx_bytes(0x09, np.array([[-1, 2], [3, -128]], np.int8), "i1"))
    out("idx", "i16", idx_bytes(0x0B, np.array([[1, -2, 300]]), ">i2"))
    out("idx", "i32", idx_bytes(0x0C, np.array([7, -70000]), ">i4"))
    out("idx", "f32", idx_bytes(0x0D, np.array([[0.5, -1.25], [3.0, 1e-3]]), ">f4"))
    out("idx", "f64", idx_bytes(0x0E, np.array([2.5, -0.125]), ">f8"))


def csv_seeds():
    out("csv", "numeric.csv", "f0,f1,f2,label\n0.5,1,-2.25,0\n1e-3,2.5,3,1\n-4,0,7.5,2\n")
    out("csv", "string-labels.csv", "label,x,y\ncat,1,2\ndog,3,4\ncat,5.5,-6\n")
    out("csv", "quoted-crlf.csv", 'a,"b c",label\r\n"1",2,"x"\r\n\r\n3,"4",y\r\n')
    out("csv", "spaces.csv", "  f0 , label \n 1.5 , 1 \n\n 2 , 0 \n")


def npy_bytes(arr, version=(1, 0)):
    descr = arr.dtype.str if arr.dtype.itemsize > 1 else "|" + arr.dtype.str[1:]
    shape = "(" + "".join(f"{d}, " if arr.ndim == 1 else f"{d}," for d in arr.shape)
    shape = "(" + ", ".join(str(d) for d in arr.shape) + ("," if arr.ndim == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    prefix = 10 if version[0] == 1 else 12
    total = (prefix + len(header) + 1 + 63) // 64 * 64
    header = header + " " * (total - prefix - len(header) - 1) + "\n"
    size = struct.pack("<H", len(header)) if version[0] == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes(version) + size + header.encode() + arr.tobytes()


def npy_seeds():
    out("npy", "f32-2d.npy", npy_bytes(np.arange(6, dtype="<f4").reshape(2, 3) / 4))
    out("npy", "f64-3d.npy", npy_bytes(np.linspace(-1, 1, 8).reshape(2, 2, 2)))
    out("npy", "i64-labels.npy", npy_bytes(np.array([0, 2, 1, 2], dtype="<i8")))
    out("npy", "i32-onehot.npy", npy_bytes(np.eye(3, dtype="<i4")))
    out("npy", "u1.npy", npy_bytes(np.array([1, 0, 4], dtype="u1")))
    out("npy", "b1.npy", npy_bytes(np.array([True, False, True])))
    out("npy", "empty.npy", npy_bytes(np.zeros((0, 3), dtype="<f4")))
    out("npy", "v2.npy", npy_bytes(np.array([0.5, 1.5], dtype="<f4"), version=(2, 0)))
    out("npy", "probs-f32.npy", npy_bytes(np.array([[0.1, 0.9], [0.7, 0.3]], dtype="<f4")))


HDF5_WRITER = r"""
#include <hdf5.h>
#include <stdlib.h>
/* argv[1]: file; argv[2]: variant 0 (float x 4x3, int64 y), 1 (double x 2x2x2, one-hot y, chunked
   and gzip'd), 2 (int32 x in a group plus a link, uint8 y) */
static void put(hid_t loc, const char* name, hid_t type, hid_t mem, int rank, const hsize_t* dims,
                const void* data, int chunked) {
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
  if (chunked) { H5Pset_chunk(plist, rank, dims); H5Pset_deflate(plist, 6); }
  hid_t ds = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, plist, H5P_DEFAULT);
  H5Dwrite(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  H5Dclose(ds); H5Pclose(plist); H5Sclose(space);
}
int main(int argc, char** argv) {
  int variant = atoi(argv[2]);
  hid_t f = H5Fcreate(argv[1], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (variant == 0) {
    float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    long long y[4] = {0, 1, 2, 1};
    hsize_t dx[2] = {4, 3}, dy[1] = {4};
    put(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dx, x, 0);
    put(f, "y", H5T_STD_I64LE, H5T_NATIVE_LLONG, 1, dy, y, 0);
  } else if (variant == 1) {
    double x[8] = {0.5, -1, 2, 3, 4, 5, 6, 7};
    double y[4] = {1, 0, 0, 1};
    hsize_t dx[3] = {2, 2, 2}, dy[2] = {2, 2};
    put(f, "x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, dx, x, 1);
    put(f, "y", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dy, y, 1);
  } else {
    int x[3] = {1, -2, 3};
    unsigned char y[3] = {2, 0, 1};
    hsize_t d[1] = {3};
    hid_t g = H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "x", H5T_STD_I32BE, H5T_NATIVE_INT, 1, d, x, 0);
    H5Lcreate_soft("/g/x", f, "x", H5P_DEFAULT, H5P_DEFAULT);
    put(f, "y", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, d, y, 0);
    H5Gclose(g);
  }
  H5Fclose(f);
  return 0;
}
"""


def hdf5_seeds(tmp):
    src = os.path.join(tmp, "h5seed.c")
    exe = os.path.join(tmp, "h5seed")
    with open(src, "w") as f:
        f.write(HDF5_WRITER)
    subprocess.run(["h5cc", src, "-o", exe], check=True, cwd=tmp)  # h5cc leaves its .o in cwd
    for v, name in enumerate(["f32-i64.h5", "f64-onehot-gzip.h5", "group-link-u8.h5"]):
        path = os.path.join(tmp, name)
        subprocess.run([exe, path, str(v)], check=True)
        with open(path, "rb") as f:
            out("hdf5", name, f.read())


WORKFLOW = """
seed: 0
model: %s
experiments:
  - name: pruned
    stages: [{method: prune, params: {kind: unstructured, ratio: 0.6}}]
  - name: int8
    stages: [{method: quantize, params: {mode: dynamic, weight_bits: 8}}]
output: {dir: %s, export: [onnx], latency: false}
"""


def model_seeds(build, tmp):
    squeeze = os.path.join(build, "squeeze")
    models = {
        "mlp": "{zoo: mlp, params: {in_features: 6, hidden: '5', num_classes: 3}}",
        "cnn": "{zoo: small_cnn, params: {in_channels: 1, input_size: 8, channels: 2, num_classes: 3}}",
    }
    for tag, model in models.items():
        run_dir = os.path.join(tmp, "run-" + tag)
        cfg = os.path.join(tmp, tag + ".yaml")
        with open(cfg, "w") as f:
            f.write(WORKFLOW % (model, run_dir))
        subprocess.run([squeeze, "run", cfg, "--quiet", "--threads", "1"], check=True)
        mdir = os.path.join(run_dir, "models")
        for name in sorted(os.listdir(mdir)):
            base, ext = os.path.splitext(name)
            if ext in (".sqz", ".onnx"):
                with open(os.path.join(mdir, name), "rb") as f:
                    out(ext[1:], f"{tag}-{base}{ext}", f.read())


CONFIGS = {
    "short-form.yaml": """model: {type: mlp, params: {in_features: 4, num_classes: 2}}
data: {dataset: csv, path: d.csv, label: y, batch_size: 8}
compression:
  - method: pruning
    params: {sparsity: 0.5}
    finetuning: {epochs: 1, lr: 0.001}
  - method: quantization
    params: {dtype: qint8}
""",
    "npy-validation.yaml": """seed: 3
threads: 1
model: {checkpoint: m.sqz}
data: {dataset: npy, features: x.npy, labels: y.npy, split: {val: 0.2}, limit: {train: 100}}
pipeline:
  type: validation
  guard: {max_drop: 0.02, relative: false}
  steps:
    - {method: lowrank, params: {energy: 0.9}, finetune: {epochs: 1}}
    - {method: quantize, params: {mode: ptq, weight_bits: 4, act_bits: 8, per_channel: true}}
output: {dir: out, export: [onnx, qonnx], latency_batches: [1, 8], recommend: {max_drop: 0.01, by: flops}}
""",
    "hdf5-progressive.yaml": """model: {onnx: m.onnx}
data: {dataset: hdf5, path: j.h5, features: x, labels: y, normalize: minmax}
baseline: {train: {epochs: 2, optimizer: sgd, lr: 0.1}}
pipeline: {type: progressive, preserve_accuracy: 0.98, target_compression: 8, max_steps: 3}
""",
}


def config_seeds():
    for name, text in CONFIGS.items():
        out("config", name, text)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = sys.argv[1]
    for t in ["idx", "csv", "npy", "hdf5", "sqz", "onnx", "config"]:
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    idx_seeds()
    csv_seeds()
    npy_seeds()
    config_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        hdf5_seeds(tmp)
        model_seeds(build, tmp)


if __name__ == "__main__":
    main()
