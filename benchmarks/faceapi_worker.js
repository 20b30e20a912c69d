// face-api.js (@vladmandic/face-api, MIT) on TensorFlow.js's wasm backend, as a line-protocol worker
// for benchmarks/photos.py. stdin: one JSON per line {"id", "h", "w", "rgb": base64 of h*w*3 bytes},
// an image taken as one face; stdout: {"id", "probs": {expression: p}}, faceExpressionNet's output
// (it resizes to 112 px). Its own SSD detector was tried on muxspace_dev's whole photos and found
// no face in 902 of 937 (they are face-filling 224 px crops), so the photo itself is the face.
// Run from a folder where `npm install @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0
// @tensorflow/tfjs-backend-wasm@4.22.0` was done (NODE_PATH pointing at its node_modules).
const path = require('path');
const readline = require('readline');
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

async function main() {
  const root = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  wasm.setWasmPaths(path.join(root, 'dist') + path.sep);  // local files read from disk, no CDN
  await tf.setBackend('wasm');
  await tf.ready();
  const models = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await faceapi.nets.faceExpressionNet.loadFromDisk(models);
  process.stdout.write(JSON.stringify({ ready: true, faceapi: faceapi.version, tfjs: tf.version_core,
    backend: tf.getBackend() }) + '\n');
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const req = JSON.parse(line);
    const bytes = Buffer.from(req.rgb, 'base64');
    const img = tf.tensor3d(new Uint8Array(bytes), [req.h, req.w, 3], 'int32');
    let probs;
    try {
      probs = { ...(await faceapi.nets.faceExpressionNet.predictExpressions(img)) };
    } finally {
      tf.dispose(img);
    }
    process.stdout.write(JSON.stringify({ id: req.id, probs }) + '\n');
  }
}

main().catch((e) => { process.stderr.write(`faceapi_worker: ${e.stack || e}\n`); process.exit(1); });
