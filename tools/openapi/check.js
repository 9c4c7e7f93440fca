#!/usr/bin/env node
// check.js - the OpenAPI check behind `make openapi-check`:
//   1. lints gateway/openapi.yaml with the pinned redocly, offline;
//   2. compares the "METHOD /path" pairs the gateway serves (from
//      `gateway --list-routes`, i.e. the route table in gw_route.c) with
//      the operations of openapi.yaml, and fails on any difference.
// Usage: node check.js <path to the gateway binary> [openapi.yaml]
'use strict';

const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');

const here = __dirname;
const gateway = process.argv[2];
const spec = path.resolve(process.argv[3] || path.join(here, '../../gateway/openapi.yaml'));
const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options', 'trace'];

function die(msg) {
  console.error(`openapi-check: ${msg}`);
  process.exit(1);
}

if (!gateway) die('usage: node check.js <gateway binary> [openapi.yaml]');

// 1. Lint. Telemetry and update checks off: no network at run time.
const env = Object.assign({}, process.env, {
  REDOCLY_TELEMETRY: 'off',
  REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true',
  NO_UPDATE_NOTIFIER: '1',
});
const redocly = path.join(here, 'node_modules', '.bin', 'redocly');
if (!fs.existsSync(redocly)) die(`${redocly} is missing: run npm ci in ${here}`);
const lint = spawnSync(redocly, ['lint', '--config', path.join(here, 'redocly.yaml'), spec], {
  env, stdio: 'inherit',
});
if (lint.status !== 0) die(`redocly lint failed on ${spec}`);

// 2. Routes: the code's truth against the document.
let served;
try {
  served = execFileSync(gateway, ['--list-routes'], { encoding: 'utf8' });
} catch (e) {
  die(`cannot run ${gateway} --list-routes: ${e.message}`);
}
const code = new Set(served.split('\n').filter((l) => l.trim() !== ''));
for (const l of code) {
  if (!/^[A-Z]+ \/\S*$/.test(l)) die(`unexpected line from --list-routes: ${JSON.stringify(l)}`);
}

const doc = yaml.load(fs.readFileSync(spec, 'utf8'));
const documented = new Set();
for (const [p, item] of Object.entries(doc.paths || {})) {
  for (const m of METHODS) {
    if (item && item[m]) documented.add(`${m.toUpperCase()} ${p}`);
  }
}

const missing = [...code].filter((r) => !documented.has(r)).sort();
const extra = [...documented].filter((r) => !code.has(r)).sort();
for (const r of missing) console.error(`served but not in ${path.basename(spec)}: ${r}`);
for (const r of extra) console.error(`in ${path.basename(spec)} but not served: ${r}`);
if (missing.length || extra.length) die('routes and OpenAPI document differ');
console.log(`openapi-check: ${code.size} routes match ${path.relative(process.cwd(), spec)}`);
