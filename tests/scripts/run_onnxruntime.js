#!/usr/bin/env node
// Runs an ONNX file in ONNX Runtime (the onnxruntime-node package that scripts/install-deps.sh puts
// in .deps/onnxruntime), the judge of squeeze's ONNX exports.
//
// usage: run_onnxruntime.js MODEL.onnx LEVEL OUT_PREFIX INPUT0.npy [INPUT1.npy ...]
//        run_onnxruntime.js --version     (prints the version; tells whether the package loads)
//   LEVEL       graph optimizations: disabled | basic | extended | all (ONNX Runtime's default)
//   INPUTi.npy  the model's inputs in order (float32, float64, int64, int32, uint8, int8, bool)
//   writes OUT_PREFIX<i>.npy for every output i, in the model's output order
// One intra-op thread (the machines are shared; results do not depend on it).
// Exit 0 on success, 3 when onnxruntime-node is not installed (the caller skips), 1 on any other
// failure (ONNX Runtime rejects or cannot run the model: the message says why).
// SQUEEZE_ONNXRUNTIME_DIR overrides where node_modules/onnxruntime-node is looked for.
'use strict';

const fs = require('fs');
const path = require('path');

const kDefaultDir = path.join(__dirname, '..', '..', '.deps', 'onnxruntime');

function loadOrt() {
  const dir = process.env.SQUEEZE_ONNXRUNTIME_DIR || kDefaultDir;
  const where = path.join(dir, 'node_modules', 'onnxruntime-node');
  try {
    return require(where);
  } catch (e) {
    process.stderr.write(`onnxruntime-node not found in ${where} (run scripts/install-deps.sh): ${e.message}\n`);
    process.exit(3);
  }
}

// NumPy dtype string -> [onnxruntime tensor type, typed array constructor].
const kTypes = {
  '<f4': ['float32', Float32Array],
  '<f8': ['float64', Float64Array],
  '<i8': ['int64', BigInt64Array],
  '<i4': ['int32', Int32Array],
  '|u1': ['uint8', Uint8Array],
  '|i1': ['int8', Int8Array],
  '|b1': ['bool', Uint8Array],
};

function readNpy(ort, file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not an .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const order = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !order || !shape) throw new Error(`${file}: unreadable .npy header ${header}`);
  if (order[1] === 'True') throw new Error(`${file}: Fortran order is not supported`);
  const type = kTypes[descr[1]];
  if (!type) throw new Error(`${file}: dtype ${descr[1]} is not supported (valid: ${Object.keys(kTypes).join(', ')})`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const bytes = buf.subarray(start + headerLen);
  const Ctor = type[1];
  if (bytes.length < count * Ctor.BYTES_PER_ELEMENT) throw new Error(`${file}: truncated data`);
  const data = new Ctor(count);
  new Uint8Array(data.buffer).set(bytes.subarray(0, count * Ctor.BYTES_PER_ELEMENT));
  return new ort.Tensor(type[0], type[0] === 'bool' ? Uint8Array.from(data) : data, dims);
}

function writeNpy(file, tensor) {
  const descr = Object.keys(kTypes).find((k) => kTypes[k][0] === tensor.type);
  if (!descr) throw new Error(`output type ${tensor.type} cannot be written as .npy`);
  const shape = tensor.dims.length === 1 ? `(${tensor.dims[0]},)` : `(${tensor.dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const data = tensor.data;
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
  fs.renameSync(tmp, file);
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length === 1 && args[0] === '--version') {
    const ort = loadOrt();
    process.stdout.write(`onnxruntime-node ${ort.env.versions.node}\n`);
    return;
  }
  if (args.length < 4) {
    process.stderr.write('usage: run_onnxruntime.js MODEL.onnx LEVEL OUT_PREFIX INPUT0.npy [INPUT1.npy ...]\n');
    process.exit(2);
  }
  const [model, level, outPrefix, ...inputs] = args;
  const levels = ['disabled', 'basic', 'extended', 'all'];
  if (!levels.includes(level)) {
    process.stderr.write(`unknown optimization level '${level}' (valid: ${levels.join(', ')})\n`);
    process.exit(2);
  }
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: level,
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionProviders: ['cpu'],
  });
  if (inputs.length !== session.inputNames.length)
    throw new Error(`${model} has ${session.inputNames.length} inputs (${session.inputNames.join(', ')}), got ${inputs.length}`);
  const feeds = {};
  session.inputNames.forEach((name, i) => { feeds[name] = readNpy(ort, inputs[i]); });
  const results = await session.run(feeds);
  session.outputNames.forEach((name, i) => writeNpy(`${outPrefix}${i}.npy`, results[name]));
}

main().catch((e) => {
  process.stderr.write(`onnxruntime: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
});
