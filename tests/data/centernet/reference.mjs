// Reference outputs of the original CenterNet TF.js graph, for tests/test_centernet.py.
//
// Runs @vladmandic/human@3.3.6's models/centernet.json + centernet.bin with @tensorflow/tfjs
// (pure-JavaScript CPU backend, float32) on the PNGs in this folder and on a uniform grey image,
// and writes reference.json. See README.md for the exact commands and versions.
//
//   cd WORKDIR   # where `npm install @tensorflow/tfjs@4.22.0 pngjs@7.0.0` was run
//   node /path/to/tests/data/centernet/reference.mjs MODELS_DIR LABELS_TS OUT_JSON
//
// MODELS_DIR holds centernet.json and centernet.bin; LABELS_TS is the package's
// src/object/labels.ts (the class list human uses to name detections).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(path.join(process.cwd(), 'resolve-from-here.js'));
const tf = require('@tensorflow/tfjs');
const { PNG } = require('pngjs');

const HERE = path.dirname(fileURLToPath(import.meta.url));
const [modelsDir, labelsTs, outJson] = process.argv.slice(2);
const SIZE = 512;

function loadHandler(dir) {
  // The graph model's JSON and its one weights file, as tf.io's ModelArtifacts.
  const model = JSON.parse(fs.readFileSync(path.join(dir, 'centernet.json'), 'utf8'));
  const group = model.weightsManifest[0];
  const bin = fs.readFileSync(path.join(dir, group.paths[0]));
  return {
    load: async () => ({
      modelTopology: model.modelTopology,
      format: model.format,
      generatedBy: model.generatedBy,
      convertedBy: model.convertedBy,
      signature: model.signature,
      weightSpecs: group.weights,
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    }),
  };
}

function pngPixels(file) {
  // The PNG's RGB pixels as float32 (1, side, side, 3) in [0, 255].
  const png = PNG.sync.read(fs.readFileSync(file));
  const rgb = new Float32Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = png.data[i * 4 + c];
  }
  return tf.tensor4d(rgb, [1, png.height, png.width, 3]);
}

function pngInput(file) {
  // RGB pixels of the PNG, each repeated SIZE / side times along both axes, float32 in [0, 255].
  const png = PNG.sync.read(fs.readFileSync(file));
  const rep = SIZE / png.width;
  if (png.width !== png.height || !Number.isInteger(rep)) throw new Error(`bad size ${file}`);
  const out = new Float32Array(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const src = (Math.floor(y / rep) * png.width + Math.floor(x / rep)) * 4;
      for (let c = 0; c < 3; c++) out[(y * SIZE + x) * 3 + c] = png.data[src + c];
    }
  }
  return tf.tensor4d(out, [1, SIZE, SIZE, 3]);
}

function topHeatmap(keypoints, k) {
  // The k largest heatmap values over all (y, x, class), with their positions.
  const flat = keypoints.reshape([-1]);
  const { values, indices } = tf.topk(flat, k, true);
  const v = values.dataSync();
  const idx = indices.dataSync();
  const C = keypoints.shape[3];
  const W = keypoints.shape[2];
  return Array.from(idx, (i, j) => ({
    y: Math.floor(i / C / W), x: Math.floor(i / C) % W, cls: i % C, value: v[j],
  }));
}

async function humanResults(detections, labels) {
  // What human's src/object/centernet.ts process() returns, with its default config
  // (maxDetected 10, iouThreshold 0.4, minConfidence 0.2), boxes relative to the input.
  const det = detections.arraySync()[0];
  const boxes = tf.tensor2d(det.map((d) => [d[1], d[0], d[3], d[2]]));
  const scores = tf.tensor1d(det.map((d) => d[4]));
  const nms = await tf.image.nonMaxSuppressionAsync(boxes, scores, 10, 0.4, 0.2);
  const kept = Array.from(await nms.data());
  return kept.map((id) => ({
    index: id, score: Math.trunc(100 * det[id][4]) / 100, cls: det[id][5],
    label: labels[det[id][5]], box: det[id].slice(0, 4).map((v) => v / SIZE),
  }));
}

function pooledMax(keypoints, pool) {
  // Heatmap max over classes, then max over pool x pool cells: (128 / pool)^2 numbers.
  const m = keypoints.max(3, true);
  return Array.from(tf.maxPool(m, pool, pool, 'valid').dataSync());
}

const PROBE = [0, 1, 100, 255, 256, 511];

function inputProbe(input) {
  // The input at rows x columns PROBE, all 3 channels: checks how it was made (the resize).
  const a = input.arraySync()[0];
  return PROBE.map((y) => PROBE.map((x) => a[y][x]));
}

async function describe(model, input, labels) {
  const t0 = Date.now();
  const [keypoints, wh, detections] = model.execute(
    input, ['tower_0/keypoints', 'tower_0/wh', 'tower_0/detections']);
  const ms = Date.now() - t0;
  const top = topHeatmap(keypoints, 20);
  const whData = wh.arraySync()[0];
  return {
    execute_ms: ms,
    input_sum: input.sum().dataSync()[0],
    input_probe: inputProbe(input),
    detections: detections.arraySync()[0].slice(0, 20),
    class_max: Array.from(keypoints.max([0, 1, 2]).dataSync()),
    heatmap_top: top.map((t) => ({ ...t, wh: whData[t.y][t.x] })),
    heatmap_pooled_max_8: pooledMax(keypoints, 8),
    wh_channel_mean: Array.from(wh.mean([0, 1, 2]).dataSync()),
    human: await humanResults(detections, labels),
  };
}

async function main() {
  await tf.setBackend('cpu');
  const labels = [...fs.readFileSync(labelsTs, 'utf8').matchAll(/label: '([^']+)'/g)]
    .map((m) => m[1]);
  const model = await tf.loadGraphModel(loadHandler(modelsDir));
  const images = {};
  const names = fs.readdirSync(HERE).filter((f) => f.endsWith('.png')).sort();
  for (const file of names) {
    images[file.replace('.png', '')] = await describe(model, pngInput(path.join(HERE, file)), labels);
  }
  images.grey128 = await describe(model, tf.fill([1, SIZE, SIZE, 3], 128), labels);
  // As human feeds the model: any size, resized by tf.image.resizeBilinear (legacy mode). The
  // top-left 224 x 224 of avatar.png (a preferred image's size) and group.png (256 x 256).
  const avatar = pngPixels(path.join(HERE, 'avatar.png')).slice([0, 0, 0, 0], [1, 224, 224, 3]);
  images.avatar224_resized = await describe(
    model, tf.image.resizeBilinear(avatar, [SIZE, SIZE]), labels);
  images.group_resized = await describe(
    model, tf.image.resizeBilinear(pngPixels(path.join(HERE, 'group.png')), [SIZE, SIZE]), labels);
  const out = {
    how: 'tests/data/centernet/reference.mjs (see README.md)',
    node: process.version,
    tfjs: tf.version.tfjs,
    backend: tf.getBackend(),
    model: 'centernet.json + centernet.bin from @vladmandic/human@3.3.6',
    input: 'float32 RGB in [0, 255], NHWC, 512 x 512: a PNG\'s pixels repeated 512/side times '
      + 'per axis; grey128 all 128; *_resized: tf.image.resizeBilinear of the PNG (or its '
      + 'top-left 224 x 224) to 512 x 512, legacy mode',
    detections: 'the first 20 rows of tower_0/detections: x1, y1, x2, y2, score, class',
    labels,
    images,
  };
  // One number array per line: readable, and small.
  const text = JSON.stringify(out, null, 1).replace(
    /\[[-+\d.e,\s]*\]/g, (m) => m.replace(/\s+/g, ''));
  fs.writeFileSync(outJson, text + '\n');
  for (const [name, r] of Object.entries(images)) {
    console.log(name, r.execute_ms, 'ms', r.human.map((h) => `${h.label} ${h.score}`).join(', '));
  }
}

main();
