#!/usr/bin/env node
// ONNX Runtime as a latency worker for bench/torchvision_latency.py: reads one command per line on
// standard input and answers one JSON line on standard output, so that the driver can interleave
// ONNX Runtime's runs with squeeze's and PyTorch's on the same machine and threads.
//
//   load ID MODEL.onnx THREADS        -> {"ok": true, "version": "..."}
//   run ID N DIM0,DIM1,...            -> {"us": [t1, ..., tN]}   (N timed runs on one random float32 input)
//   quit
// ONNX Runtime's default CPU session: all graph optimizations, THREADS intra-op threads, sequential.
// SQUEEZE_ONNXRUNTIME_DIR overrides where node_modules/onnxruntime-node is looked for (default:
// .deps/onnxruntime, as scripts/install-deps.sh installs it). Exit 3 when it is not installed.
'use strict';

const path = require('path');
const readline = require('readline');

const dir = process.env.SQUEEZE_ONNXRUNTIME_DIR || path.join(__dirname, '..', '.deps', 'onnxruntime');
let ort;
try {
  ort = require(path.join(dir, 'node_modules', 'onnxruntime-node'));
} catch (e) {
  process.stderr.write(`onnxruntime-node not found in ${dir} (run scripts/install-deps.sh): ${e.message}\n`);
  process.exit(3);
}

const sessions = new Map();
const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

async function handle(words) {
  const [cmd, id] = words;
  if (cmd === 'load') {
    const threads = parseInt(words[3], 10);
    const session = await ort.InferenceSession.create(words[2], {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    sessions.set(id, session);
    return {ok: true, version: ort.env.versions ? ort.env.versions.common : 'unknown'};
  }
  if (cmd === 'run') {
    const session = sessions.get(id);
    if (!session) throw new Error(`no session '${id}'`);
    const runs = parseInt(words[2], 10);
    const dims = words[3].split(',').map((d) => parseInt(d, 10));
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; ++i) data[i] = Math.random() * 2 - 1;
    const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, dims)};
    const us = [];
    for (let i = 0; i < runs; ++i) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      us.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    return {us};
  }
  if (cmd === 'quit') process.exit(0);
  throw new Error(`unknown command '${cmd}'`);
}

const rl = readline.createInterface({input: process.stdin});
let queue = Promise.resolve();
rl.on('line', (line) => {
  const words = line.trim().split(/\s+/);
  if (!words[0]) return;
  queue = queue.then(() => handle(words)).then(reply, (e) => reply({error: String(e.message || e)}));
});
rl.on('close', () => queue.then(() => process.exit(0)));
