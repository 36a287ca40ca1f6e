// Runs a wasm32-wasi program under Node's WASI (Node >= 20), started by cross/bin/wasi-run. Arguments, environment and exit status pass through; the working
// folder is the program's "." and "/" is the host's root.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { WASI } = require('node:wasi');

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: wasi-run program.wasm [args...]\n');
  process.exit(2);
}
const wasi = new WASI({
  version: 'preview1',
  args: [path.basename(file), ...process.argv.slice(3)],
  env: process.env,
  preopens: { '/': '/', '.': process.cwd() },
  returnOnExit: true,
});
WebAssembly.compile(fs.readFileSync(file))
  .then((module) => WebAssembly.instantiate(module, wasi.getImportObject()))
  .then((instance) => { process.exitCode = wasi.start(instance) ?? 0; })
  .catch((err) => {
    process.stderr.write(`wasi-run: ${file}: ${err && err.stack ? err.stack : err}\n`);
    process.exit(134); // a trap (abort, unreachable): as a crash, not a test failure count
  });
