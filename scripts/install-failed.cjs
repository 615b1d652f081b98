#!/usr/bin/env node
// Runs at `npm install` only when `node-gyp-build` failed: no prebuilt
// binary in prebuilds/ matched (or loaded on) this platform, and compiling
// the addon from source failed too. node-gyp's own output is above; this says
// in plain words why, and what to install. Always exits 1 (the install failed).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

// The same platform tags node-gyp-build matches prebuilds by.
const libc = process.env.LIBC || (fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
const here = `${process.platform}-${process.arch}${process.platform === 'linux' ? ` (${libc})` : ''}`;

function onPath(names) {
  const dirs = (process.env.PATH || '').split(path.delimiter).filter(Boolean);
  return names.some((n) => dirs.some((d) => {
    try {
      fs.accessSync(path.join(d, n), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  }));
}

const tools = [
  ['python3', ['python3', 'python']],
  ['make', ['make']],
  ['a C++ compiler (c++, g++ or clang++)', ['c++', 'g++', 'clang++']],
];
const missing = tools.filter(([, names]) => !onPath(names)).map(([what]) => what);

// What prebuilds/ holds for this platform, to say why none was used.
const prebuildDir = path.join(__dirname, '..', 'prebuilds', `${process.platform}-${process.arch}`);
let prebuilds = [];
try {
  // node-gyp-build's tags: forkgc.<libc>.node, or no libc tag at all.
  prebuilds = fs.readdirSync(prebuildDir).filter((f) => f.endsWith('.node') && (!/\.(glibc|musl)\.node$/.test(f) || f.endsWith(`.${libc}.node`)));
} catch { /* none */ }
const why = prebuilds.length === 0
  ? `this package has no prebuilt binary for ${here} (the published package ships one for linux-x64 with glibc 2.34 or newer)`
  : `the prebuilt binary for ${here} (${prebuilds.join(', ')}) did not load here (an older glibc than 2.34?), or a build from source was asked for`;

const lines = [
  '',
  `forkgc: ${why}, so the addon had to be compiled from source (Node ${process.version}), and that failed.`,
  ...(missing.length > 0
    ? [`Compiling needs python3, make and a C++ compiler; missing here: ${missing.join(', ')}.`,
      'Install them (Debian/Ubuntu: apt-get install python3 make g++; Fedora: dnf install python3 make gcc-c++;',
      'Alpine: apk add python3 make g++), then run `npm install` again, or `npm rebuild forkgc`.']
    : ['python3, make and a C++ compiler are all here: node-gyp\'s output above says what went wrong.']),
  process.platform !== 'linux' ? `Note: forkgc runs on Linux only (fork with copy-on-write); this is ${process.platform}.` : '',
  '',
].filter((l, i, all) => l !== '' || i === 0 || i === all.length - 1);
process.stderr.write(`${lines.join('\n')}\n`);
process.exit(1);
