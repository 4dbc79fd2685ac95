#!/usr/bin/env node
// How far each layer kind reaches: the source files under native/ and lib/ whose code names the kind, as an
// identifier's words (LayerNorm, layer_norm_unit, layerNorm) or as a string that is a name ('gru'). Comments and
// prose strings (messages, paths) are left out: they name kinds as examples, not to dispatch on them. A kind should
// live in its unit file, the registry, its device kernels and its TypeScript file (CONTRIBUTING.md, "Adding a layer
// kind").
// usage: node scripts/kind-spread.js [--max N] [--all]   (--max: exit 1 when a kind is in more than N files;
// --all: comments and every string count too)
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const max = args.includes('--max') ? Number(args[args.indexOf('--max') + 1]) : Infinity;
const all = args.includes('--all');

// The layer types of the JS spec, as units/registry.cpp lists them (block markers aside).
const registry = fs.readFileSync(path.join(root, 'native/units/registry.cpp'), 'utf8');
const kinds = [...registry.matchAll(/&(\w+)_layer\b/g)]
  .map((m) => m[1])
  .filter((k) => !/_(begin|end)$/.test(k) && k !== 'activation' && k !== 'flatten');

const words = (id) =>
  id
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/_/g, ' ')
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean);

// Comments out, and every string literal that is not a bare name.
function strip(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
    .replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`/g, (q) =>
      /^.[A-Za-z_][A-Za-z0-9_]*.$/.test(q) ? q.slice(1, -1) : ' ',
    );
}

function files(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p));
    else if (/\.(ts|cpp|h|cu|cuh)$/.test(e.name)) out.push(p);
  }
  return out;
}

const sources = [...files(path.join(root, 'native')), ...files(path.join(root, 'lib'))].map((f) => {
  const text = fs.readFileSync(f, 'utf8');
  // JavaScript's own String/Array methods that share a kind's name ('ab'.repeat(2), a.concat(b)) are not the kind
  const code = (all ? text : strip(text)).replace(/\.(repeat|concat)\(/g, '.(');
  // every identifier and string's word sequence, joined by single spaces with sentinels
  const seqs = (code.match(/[A-Za-z_][A-Za-z0-9_]*/g) || []).map((id) => ` ${words(id).join(' ')} `);
  return { file: path.relative(root, f), seqs };
});

let worst = 0;
const rows = [];
for (const k of kinds) {
  const needle = ` ${words(k).join(' ')} `;
  const hits = sources.filter((s) => s.seqs.some((q) => q.includes(needle))).map((s) => s.file);
  worst = Math.max(worst, hits.length);
  rows.push([k, hits]);
}
rows.sort((a, b) => b[1].length - a[1].length);
for (const [k, hits] of rows) console.log(`${String(hits.length).padStart(3)} ${k}: ${hits.join(' ')}`);
if (worst > max) {
  console.error(`a layer kind is named in ${worst} files (at most ${max})`);
  process.exit(1);
}
