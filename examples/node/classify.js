// Classify an image with modelwire from Node.js, through modelwire.api.v1 and through the
// source document's ImageClassifier service. The .proto files are loaded at run time.
//
//   npm install @grpc/grpc-js @grpc/proto-loader
//   node classify.js IMAGE [HOST:PORT]
//
// MODELWIRE_PROTOS names the folder holding modelwire/api/... (`modelwire protos` prints
// it); by default the repository's proto/ folder is used.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const protoRoot = process.env.MODELWIRE_PROTOS || path.join(__dirname, '..', '..', 'proto');
const loadOptions = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoRoot],
};

function load(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, loadOptions));
}

function call(client, method, request) {
  const deadline = new Date(Date.now() + 30000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, reply) => (error ? reject(error) : resolve(reply)));
  });
}

async function main() {
  const [imagePath, target = 'localhost:50051'] = process.argv.slice(2);
  if (!imagePath) {
    console.error('usage: node classify.js IMAGE [HOST:PORT]');
    process.exit(2);
  }
  const image = fs.readFileSync(imagePath);
  const credentials = grpc.credentials.createInsecure();

  const v1 = load('modelwire/api/v1/inference.proto').modelwire.api.v1;
  const inference = new v1.InferenceService(target, credentials);
  const reply = await call(inference, 'Classify', { image, top_k: 3 });
  const ranked = reply.classes.map((c) => `${c.label} ${c.score.toFixed(4)}`).join(', ');
  console.log(`v1 ${reply.model} version ${reply.version}: ${ranked}`);

  const compat = load('modelwire/api/compat/image_classifier.proto');
  const classifier = new compat.ImageClassifier(target, credentials);
  const result = await call(classifier, 'ClassifyImage', { data: image });
  console.log(`ImageClassifier: ${result.label} ${result.score.toFixed(4)}`);

  inference.close();
  classifier.close();
}

main().catch((error) => {
  console.error(`error: ${error.details || error.message}`);
  process.exit(1);
});
