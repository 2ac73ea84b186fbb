#!/usr/bin/env node
// Hugging Face's own tokenizers library (the Rust one, through npm's
// `tokenizers` package) reads a cllm run's tokenizer.json and must give
// cllm's ids and decode them back to the same text.
//
// usage: node test/hf_tokenizers_node_check.js CLLM_BINARY
// .ci/run.d/hf_tokenizers.sh installs the package into a temporary folder
// (npm) and runs this; elsewhere install it with `npm install tokenizers` and
// point NODE_PATH at that node_modules. Without it this prints SKIP and exits
// 77 (CTest shows it as skipped).
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

let Tokenizer;
try {
  ({ Tokenizer } = require('tokenizers'));
} catch (e) {
  console.log('SKIP: the npm package tokenizers is not installed (npm install tokenizers; NODE_PATH=.../node_modules)');
  process.exit(77);
}

const SAMPLES = [
  "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
  "It's 2024; isn't it? They'll've gone, we'd said, I'm sure, you're right, we've 's 'S ''s",
  'caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe e\u0301t\u00e9 \u00c5ngstr\u00f6m',
  '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u4e2d\u6587\u3002 \ud55c\uad6d\uc5b4',
  'emoji \u{1F600}\u{1F44D}\u{1F3FD} \u{1F1EB}\u{1F1F7} ok \u2764\ufe0f',
  'digits 0 12 345 6789 3.14159 1,000,000 2^10',
  '\u0663\u0664 \u216b \u00bd \u00b2',
  'spaces    and\ttabs\t\t and\n\n\nnewlines \n \n  \r\n end   ',
  '\u3000\u3000x\u00a0y\u2028z \u0085w',
  'a'.repeat(300) + ' '.repeat(501) + '='.repeat(200) + '\n'.repeat(150),
];

async function main() {
  const cllm = path.resolve(process.argv[2]);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cllm-hf-node-'));
  let failures = 0;
  try {
    const run = path.join(tmp, 'run');
    fs.writeFileSync(path.join(tmp, 'corpus.txt'), SAMPLES.join('').repeat(20));
    try {
      execFileSync(cllm, ['train', path.join(tmp, 'corpus.txt'), '--preset', 'tiny', '--steps', '1', '--vocab', '800',
        '--sample-tokens', '0', '--quiet', '--out', run], { stdio: 'pipe' });
    } catch (e) {
      if (e.status === 2 && String(e.stderr).includes('libutf8proc')) {
        console.log('SKIP: cllm was built without libutf8proc');
        process.exit(77);
      }
      throw e;
    }
    const tok = Tokenizer.fromFile(path.join(run, 'tokenizer.json'));
    for (const text of SAMPLES) {
      const ids = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
      const ours = String(execFileSync(cllm, ['tokenizer', 'encode', run], { input: Buffer.from(text, 'utf8') }))
        .split('\n').filter((x) => x.length).map(Number);
      if (JSON.stringify(ids) !== JSON.stringify(ours)) {
        failures++;
        console.log('FAIL: ids of', JSON.stringify(text.slice(0, 40)), ids.slice(0, 12), ours.slice(0, 12));
      }
      const back = await tok.decode(ids, false);
      if (back !== text) {
        failures++;
        console.log('FAIL: decode of', JSON.stringify(text.slice(0, 40)), 'gives', JSON.stringify(back.slice(0, 40)));
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(failures ? `${failures} check(s) failed` : `hf_tokenizers_node_check: ${SAMPLES.length} samples, ` +
    "Hugging Face tokenizers' ids and decoding equal cllm's");
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.log('FAIL:', e.message);
  process.exit(1);
});
