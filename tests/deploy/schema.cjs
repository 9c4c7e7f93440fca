// schema.cjs - validates rendered Kubernetes manifests offline against the
// Kubernetes OpenAPI schema, as packaged by kubernetes-models (pinned in
// package-lock.json), and refuses fields the schema does not know, as
// `kubectl apply --validate=strict` does against a live API server.
//
//   node tests/deploy/schema.cjs FILE.yaml...
//
// Every document must be an apiVersion/kind that the package knows; one
// line per problem on stderr; exit 1 when there is any.
"use strict";

const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

const MODELS = path.dirname(require.resolve("kubernetes-models/package.json"));
const APIMACHINERY = path.dirname(
	require.resolve("@kubernetes-models/apimachinery/package.json"));

// The interfaces in the packages' .d.ts files: global name -> {field: type}.
// Fields sit four spaces in; map types ({ [key: string]: ... }) span lines
// with deeper indentation and are treated as free-form.
function loadInterfaces() {
	const types = new Map();
	const walk = (dir) => {
		for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
			const p = path.join(dir, e.name);
			if (e.isDirectory()) {
				if (e.name !== "node_modules") walk(p);
			} else if (e.name.endsWith(".d.ts")) {
				parseDts(fs.readFileSync(p, "utf8"), types);
			}
		}
	};
	walk(MODELS);
	walk(APIMACHINERY);
	return types;
}

function parseDts(text, types) {
	const local = new Map();
	let cur = null;
	for (const line of text.split("\n")) {
		let m;
		if ((m = /^export interface (I\w+)(?: extends [^{]*)? \{/.exec(line))) {
			cur = {};
			local.set(m[1], cur);
		} else if (cur && line === "}") {
			cur = null;
		} else if (cur && (m = /^ {4}"([^"]+)"\??: (.*?);?$/.exec(line))) {
			cur[m[1]] = m[2];
		} else if ((m = /^export \{ (I\w+) as (I\w+)/.exec(line))) {
			if (local.has(m[1])) types.set(m[2], local.get(m[1]));
		}
	}
}

// The root interface and validator of an apiVersion/kind, or null.
function modelFor(apiVersion, kind) {
	const group = apiVersion.includes("/") ? apiVersion : `v1`;
	const dir = path.join(MODELS, group === "v1" ? "v1" : group);
	const dts = path.join(dir, `${kind}.d.ts`);
	if (apiVersion === "v1" && !fs.existsSync(dts)) return null;
	if (!fs.existsSync(dts)) return null;
	const m = /^export \{ I\w+ as (I\w+),/m.exec(fs.readFileSync(dts, "utf8"));
	const mod = require(path.join(dir, `${kind}.js`));
	const cls = mod[kind];
	if (!m || !cls || cls.apiVersion !== apiVersion) return null;
	return { root: m[1], cls };
}

// Fields that the schema does not define, as JSON paths.
function unknownFields(value, typeName, types, at, out) {
	const fields = types.get(typeName);
	if (!fields || value === null || typeof value !== "object") return;
	if (Array.isArray(value)) return;
	for (const [k, v] of Object.entries(value)) {
		if (!(k in fields)) {
			out.push(`${at}/${k}: unknown field (not in ${typeName.replace(/^IIoK8s/, "")})`);
			continue;
		}
		let t = fields[k];
		const arr = /^Array<(I\w+)>$/.exec(t);
		if (arr) {
			if (Array.isArray(v)) {
				v.forEach((item, i) =>
					unknownFields(item, arr[1], types, `${at}/${k}/${i}`, out));
			}
		} else if (/^I\w+$/.test(t)) {
			unknownFields(v, t, types, `${at}/${k}`, out);
		}
	}
}

let TYPES = null;

// Problems of one parsed object, as "Kind/name: path: message" strings.
function validateObject(obj) {
	if (!TYPES) TYPES = loadInterfaces();
	const id = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
	const model = modelFor(String(obj.apiVersion), String(obj.kind));
	if (!model) return [`${id}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`];
	const problems = [];
	try {
		new model.cls(obj).validate();
	} catch (e) {
		for (const err of e.errors || [{ instancePath: "", message: e.message }]) {
			const extra = err.params && err.params.allowedValues ?
				` (${err.params.allowedValues.join(", ")})` : "";
			problems.push(`${err.instancePath || "/"}: ${err.message}${extra}`);
		}
	}
	if (!TYPES.has(model.root)) {
		// Without the field list the strict check would pass anything.
		problems.push(`no field list for ${model.root} in the .d.ts files`);
	}
	unknownFields(obj, model.root, TYPES, "", problems);
	return problems.map((p) => `${id}: ${p}`);
}

function main(files) {
	if (files.length === 0) {
		console.error("usage: schema.cjs FILE.yaml...");
		return 2;
	}
	let bad = 0;
	let objects = 0;
	for (const file of files) {
		const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
		for (const doc of docs) {
			if (doc.errors.length) {
				console.error(`${file}: YAML: ${doc.errors[0].message}`);
				bad++;
				continue;
			}
			const obj = doc.toJSON();
			if (obj === null || obj === undefined) continue;
			objects++;
			const problems = validateObject(obj);
			for (const p of problems) console.error(`${file}: ${p}`);
			if (problems.length) bad++;
		}
	}
	console.log(`schema: ${objects - bad} of ${objects} objects valid in ${files.length} file(s)`);
	return bad ? 1 : 0;
}

module.exports = { validateObject };
if (require.main === module) process.exitCode = main(process.argv.slice(2));
