// mutate.cjs - breaks a rendered manifest in one named way, for the
// self-test of k8s-check.sh: each mutation must make schema.cjs or
// policy.cjs fail with a known message, or the checks prove nothing.
//
//   node tests/deploy/mutate.cjs NAME IN.yaml OUT.yaml
//   node tests/deploy/mutate.cjs --list     # NAME CHECKER EXPECTED-TEXT
//   node tests/deploy/mutate.cjs --self-test IN.yaml --bin NAME=HELP,LIST...
//
// --self-test applies every mutation to IN.yaml in turn and runs its
// checker in this process; one "ok"/"FAIL" line each, exit 1 on any FAIL.
"use strict";

const fs = require("fs");
const YAML = require("yaml");

const container = (docs, kind, name, cname) => {
	const o = docs.find((d) => d.kind === kind && d.metadata.name === name);
	if (!o) throw new Error(`no ${kind}/${name}`);
	return o.spec.template.spec.containers.find((c) => c.name === cname);
};
const drop = (docs, kind, name) => {
	const i = docs.findIndex((d) => d.kind === kind && d.metadata.name === name);
	if (i < 0) throw new Error(`no ${kind}/${name}`);
	docs.splice(i, 1);
};

// name: [checker, text the checker must print, change]
const MUTATIONS = {
	"no-readiness-probe": ["policy", "no readinessProbe", (d) => {
		delete container(d, "Deployment", "gateway", "gateway").readinessProbe;
	}],
	"no-startup-probe": ["policy", "no startupProbe", (d) => {
		delete container(d, "Deployment", "product-service", "product-service").startupProbe;
	}],
	"no-resources": ["policy", "no resources.limits.memory", (d) => {
		delete container(d, "Deployment", "product-service", "product-service").resources.limits;
	}],
	"writable-root": ["policy", "readOnlyRootFilesystem is not true", (d) => {
		container(d, "Job", "catalog-migrate", "migrate").securityContext.readOnlyRootFilesystem = false;
	}],
	"keeps-capabilities": ["policy", "capabilities do not drop ALL", (d) => {
		delete container(d, "Deployment", "gateway", "gateway").securityContext.capabilities;
	}],
	"runs-as-root": ["policy", "runAsNonRoot is not true", (d) => {
		const o = d.find((x) => x.kind === "Deployment" && x.metadata.name === "gateway");
		delete o.spec.template.spec.securityContext.runAsNonRoot;
		delete container(d, "Deployment", "gateway", "gateway").securityContext.runAsNonRoot;
	}],
	"no-pdb": ["policy", "no PodDisruptionBudget selects its pods", (d) => {
		drop(d, "PodDisruptionBudget", "gateway");
	}],
	"no-networkpolicy": ["policy", "no NetworkPolicy selects its pods", (d) => {
		drop(d, "NetworkPolicy", "product-service");
	}],
	"no-default-deny": ["policy", "no default-deny NetworkPolicy", (d) => {
		drop(d, "NetworkPolicy", "default-deny-all");
	}],
	"unknown-variable": ["policy", "sets GATEWAY_TIMEOUT_SECONDS (env), which gateway does not know", (d) => {
		container(d, "Deployment", "gateway", "gateway").env.push(
			{ name: "GATEWAY_TIMEOUT_SECONDS", value: "2" });
	}],
	"unknown-configmap-key": ["policy", "sets PRODUCT_CACHE_TTL_S (ConfigMap product-config)", (d) => {
		d.find((x) => x.kind === "ConfigMap" && x.metadata.name === "product-config")
			.data.PRODUCT_CACHE_TTL_S = "60";
	}],
	"no-upstreams": ["policy", "does not set GATEWAY_UPSTREAMS, which gateway requires", (d) => {
		const c = container(d, "Deployment", "gateway", "gateway");
		c.env = c.env.filter((e) => e.name !== "GATEWAY_UPSTREAMS");
	}],
	"short-grace": ["policy", "terminationGracePeriodSeconds 12 is not longer than the 15 s", (d) => {
		d.find((x) => x.kind === "Deployment" && x.metadata.name === "gateway")
			.spec.template.spec.terminationGracePeriodSeconds = 12;
	}],
	"shell-prestop": ["policy", "preStop runs a shell", (d) => {
		container(d, "Deployment", "product-service", "product-service").lifecycle.preStop =
			{ exec: { command: ["/bin/sh", "-c", "sleep 5"] } };
	}],
	"latest-image": ["policy", "has no tag, or :latest", (d) => {
		const c = container(d, "Deployment", "gateway", "gateway");
		c.image = c.image.replace(/:[^/:]+$/, ":latest");
	}],
	"no-hpa": ["policy", "no HorizontalPodAutoscaler targets it", (d) => {
		drop(d, "HorizontalPodAutoscaler", "product-service");
	}],
	"typo-field": ["schema", "readinesProbe: unknown field", (d) => {
		const c = container(d, "Deployment", "gateway", "gateway");
		c.readinesProbe = c.readinessProbe;
		delete c.readinessProbe;
	}],
	"wrong-type": ["schema", "/spec/replicas: must be integer", (d) => {
		d.find((x) => x.kind === "Deployment" && x.metadata.name === "gateway").spec.replicas = "three";
	}],
	"missing-required": ["schema", "must have required property containerPort", (d) => {
		delete container(d, "Deployment", "gateway", "gateway").ports[0].containerPort;
	}],
	"unknown-kind": ["schema", "unknown apiVersion/kind", (d) => {
		d.push({ apiVersion: "apps/v1", kind: "Deploymnt", metadata: { name: "x" } });
	}],
};

function selfTest(input, binArgs) {
	const { validateObject } = require("./schema.cjs");
	const { check, loadTable } = require("./policy.cjs");
	const bins = new Map();
	for (let i = 0; i < binArgs.length; i += 2) {
		const [name, spec] = binArgs[i + 1].split("=");
		const [help, list] = spec.split(",");
		bins.set(name, loadTable(help, list));
	}
	const base = YAML.parseAllDocuments(fs.readFileSync(input, "utf8"))
		.map((d) => d.toJSON()).filter(Boolean);
	const checkers = {
		schema: (docs) => docs.flatMap(validateObject),
		policy: (docs) => check(docs, bins).problems,
	};
	let failed = 0;
	const fail = (msg) => {
		failed++;
		console.log(`FAIL ${msg}`);
	};
	if (checkers.schema(base).length || checkers.policy(base).length) {
		fail(`self-test: ${input} is not clean to start with`);
	}
	for (const [name, [checker, expect, change]] of Object.entries(MUTATIONS)) {
		const docs = structuredClone(base);
		try {
			change(docs);
		} catch (e) {
			fail(`self-test ${name}: could not apply: ${e.message}`);
			continue;
		}
		// Through YAML and back, as a file would be.
		const again = YAML.parseAllDocuments(docs.map((d) => YAML.stringify(d))
			.join("---\n")).map((d) => d.toJSON()).filter(Boolean);
		const problems = checkers[checker](again);
		if (problems.length === 0) {
			fail(`self-test ${name}: ${checker} passed a broken manifest`);
		} else if (!problems.some((p) => p.includes(expect))) {
			fail(`self-test ${name}: ${checker} failed without saying "${expect}"`);
			for (const p of problems) console.log(`     ${p}`);
		} else {
			console.log(`ok   self-test ${name}: ${checker} refuses it`);
		}
	}
	return failed ? 1 : 0;
}

function main(argv) {
	if (argv[0] === "--self-test") return selfTest(argv[1], argv.slice(2));
	if (argv[0] === "--list") {
		for (const [name, [checker, text]] of Object.entries(MUTATIONS)) {
			console.log(`${name}\t${checker}\t${text}`);
		}
		return 0;
	}
	const [name, input, output] = argv;
	const m = MUTATIONS[name];
	if (!m || !output) {
		console.error("usage: mutate.cjs NAME IN.yaml OUT.yaml | --list");
		return 2;
	}
	const docs = YAML.parseAllDocuments(fs.readFileSync(input, "utf8"))
		.map((d) => d.toJSON()).filter(Boolean);
	m[2](docs);
	fs.writeFileSync(output, docs.map((d) => YAML.stringify(d)).join("---\n"));
	return 0;
}

process.exitCode = main(process.argv.slice(2));
