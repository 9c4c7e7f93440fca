// policy.cjs - the project's rules for rendered Kubernetes manifests.
//
//   node tests/deploy/policy.cjs --bin gateway=HELP,LIST \
//       --bin product-service=HELP,LIST FILE.yaml...
//
// HELP and LIST are files holding a binary's `--help` and `--list-env`
// output; a container runs that binary when its image's last path part
// (tag and digest aside) is the binary's name. One line per problem on
// stderr, exit 1 when there is any.
//
// Every workload (Deployment, StatefulSet, DaemonSet, Job, CronJob):
//   - each container: requests and limits for cpu and memory; the
//     restricted securityContext (runAsNonRoot, allowPrivilegeEscalation
//     false, readOnlyRootFilesystem, capabilities drop ALL and add none,
//     seccompProfile RuntimeDefault, not privileged, set on the container
//     or, where Kubernetes allows, the pod); an image with a tag or digest
//     other than latest; no shell in lifecycle hooks; named probe ports
//     that exist;
//   - a NetworkPolicy that selects its pods, besides a default deny of
//     ingress and egress in its namespace.
// Long-running ones (not Jobs): startup, liveness and readiness probes on
//   every container, a PodDisruptionBudget that selects the pods, a grace
//   period longer than a preStop sleep or the gateway's drain (delay plus
//   timeout, from the env or the binary's defaults);
//   Deployments also an HPA.
// Containers of our binaries: every variable they get (env, envFrom of a
//   ConfigMap or Secret in the render) is in the binary's table, and every
//   required one is set.
// Services: the selector matches some workload's pods.
"use strict";

const fs = require("fs");
const YAML = require("yaml");

const WORKLOADS = ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"];
// What a stopping gateway waits through, with the defaults used when the
// binary's table does not say.
const GATEWAY_DRAIN = { GATEWAY_DRAIN_DELAY_S: 5, GATEWAY_DRAIN_TIMEOUT_S: 0 };

function parseArgs(argv) {
	const bins = new Map();
	const files = [];
	for (let i = 0; i < argv.length; i++) {
		if (argv[i] === "--bin") {
			const [name, spec] = argv[++i].split("=");
			const [help, list] = spec.split(",");
			bins.set(name, loadTable(help, list));
		} else {
			files.push(argv[i]);
		}
	}
	return { bins, files };
}

// A binary's settings: names from --list-env, required ones and defaults
// from --help (a line after a variable's name says "(required)" or
// "default VALUE").
function loadTable(helpFile, listFile) {
	const names = new Set(fs.readFileSync(listFile, "utf8").split("\n")
		.map((s) => s.trim()).filter(Boolean));
	const required = new Set();
	const defaults = new Map();
	let last = null;
	for (const line of fs.readFileSync(helpFile, "utf8").split("\n")) {
		const m = /^ {2}([A-Z][A-Z0-9_]*)\s/.exec(line);
		if (m) last = m[1];
		if (last && /\(required\)/.test(line)) required.add(last);
		const d = /^\s+default ([^\s,]+)/.exec(line);
		if (last && d && !defaults.has(last)) defaults.set(last, d[1]);
	}
	if (names.size === 0) throw new Error(`${listFile}: no variables listed`);
	for (const r of required) {
		if (!names.has(r)) throw new Error(`${helpFile}: ${r} is not in ${listFile}`);
	}
	return { names, required, defaults };
}

function load(files) {
	const objs = [];
	for (const f of files) {
		for (const doc of YAML.parseAllDocuments(fs.readFileSync(f, "utf8"))) {
			const o = doc.toJSON();
			if (o && o.kind) objs.push(o);
		}
	}
	return objs;
}

const nsOf = (o) => (o.metadata && o.metadata.namespace) || "default";
const nameOf = (o) => `${o.kind}/${o.metadata && o.metadata.name}`;

function podTemplate(o) {
	if (o.kind === "CronJob") {
		return (((o.spec || {}).jobTemplate || {}).spec || {}).template || {};
	}
	return (o.spec || {}).template || {};
}

// Does a LabelSelector select these labels? An empty selector selects all.
function selects(sel, labels) {
	if (!sel) return false;
	labels = labels || {};
	for (const [k, v] of Object.entries(sel.matchLabels || {})) {
		if (labels[k] !== v) return false;
	}
	for (const e of sel.matchExpressions || []) {
		const has = Object.prototype.hasOwnProperty.call(labels, e.key);
		const val = labels[e.key];
		const vals = e.values || [];
		if (e.operator === "In" && !(has && vals.includes(val))) return false;
		if (e.operator === "NotIn" && has && vals.includes(val)) return false;
		if (e.operator === "Exists" && !has) return false;
		if (e.operator === "DoesNotExist" && has) return false;
	}
	return true;
}

function imageBinary(image) {
	const noDigest = String(image).split("@")[0];
	const last = noDigest.split("/").pop();
	return last.split(":")[0];
}

function imageTagOk(image) {
	const s = String(image);
	if (s.includes("@sha256:")) return true;
	const last = s.split("/").pop();
	const i = last.indexOf(":");
	return i > 0 && last.slice(i + 1) !== "" && last.slice(i + 1) !== "latest";
}

function check(objs, bins) {
	const problems = [];
	const bad = (o, msg) => problems.push(`${nsOf(o)}/${nameOf(o)}: ${msg}`);
	const byKind = (k) => objs.filter((o) => o.kind === k);
	const find = (kind, ns, name) => objs.find((o) => o.kind === kind &&
		nsOf(o) === ns && o.metadata && o.metadata.name === name);

	const workloads = objs.filter((o) => WORKLOADS.includes(o.kind));
	const pdbs = byKind("PodDisruptionBudget");
	const hpas = byKind("HorizontalPodAutoscaler");
	const netpols = byKind("NetworkPolicy");

	for (const w of workloads) {
		const ns = nsOf(w);
		const tpl = podTemplate(w);
		const labels = (tpl.metadata || {}).labels || {};
		const spec = tpl.spec || {};
		const psc = spec.securityContext || {};
		const longRunning = w.kind !== "Job" && w.kind !== "CronJob";
		const containers = [...(spec.initContainers || []), ...(spec.containers || [])];
		if ((spec.containers || []).length === 0) bad(w, "no containers");
		if (spec.hostNetwork || spec.hostPID || spec.hostIPC) {
			bad(w, "uses the host's network, PID or IPC namespace");
		}

		for (const c of containers) {
			const at = `container ${c.name}`;
			const sc = c.securityContext || {};
			const r = c.resources || {};
			for (const kind of ["requests", "limits"]) {
				for (const res of ["cpu", "memory"]) {
					if (!(r[kind] && r[kind][res] !== undefined)) {
						bad(w, `${at}: no resources.${kind}.${res}`);
					}
				}
			}
			const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
			if (nonRoot !== true) bad(w, `${at}: runAsNonRoot is not true`);
			const uid = sc.runAsUser ?? psc.runAsUser;
			if (uid === 0) bad(w, `${at}: runAsUser 0`);
			if (sc.allowPrivilegeEscalation !== false) {
				bad(w, `${at}: allowPrivilegeEscalation is not false`);
			}
			if (sc.readOnlyRootFilesystem !== true) {
				bad(w, `${at}: readOnlyRootFilesystem is not true`);
			}
			if (sc.privileged) bad(w, `${at}: privileged`);
			const caps = sc.capabilities || {};
			if (!(caps.drop || []).includes("ALL")) {
				bad(w, `${at}: capabilities do not drop ALL`);
			}
			if ((caps.add || []).length) bad(w, `${at}: adds capabilities`);
			const seccomp = ((sc.seccompProfile || psc.seccompProfile) || {}).type;
			if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") {
				bad(w, `${at}: seccompProfile is not RuntimeDefault`);
			}
			if (!imageTagOk(c.image)) {
				bad(w, `${at}: image ${c.image} has no tag, or :latest`);
			}
			const portNames = new Set((c.ports || []).map((p) => p.name).filter(Boolean));
			for (const p of ["startupProbe", "livenessProbe", "readinessProbe"]) {
				const probe = c[p];
				const isInit = (spec.initContainers || []).includes(c);
				if (!probe) {
					if (longRunning && !isInit) bad(w, `${at}: no ${p}`);
					continue;
				}
				const h = probe.httpGet || probe.tcpSocket || probe.grpc;
				if (h && typeof h.port === "string" && !portNames.has(h.port)) {
					bad(w, `${at}: ${p} uses port "${h.port}", which the container does not name`);
				}
			}
			for (const [hook, h] of Object.entries(c.lifecycle || {})) {
				const cmd = ((h || {}).exec || {}).command || [];
				if (/(^|\/)(ba|da|z)?sh$/.test(cmd[0] || "")) {
					bad(w, `${at}: ${hook} runs a shell (${cmd[0]}); use the sleep action`);
				}
			}
			checkEnv(w, c, bins, ns, bad, find);
		}

		if (longRunning) {
			const grace = spec.terminationGracePeriodSeconds ?? 30;
			for (const c of spec.containers || []) {
				let need = (((c.lifecycle || {}).preStop || {}).sleep || {}).seconds || 0;
				const gw = bins.get("gateway");
				if (imageBinary(c.image) === "gateway") {
					for (const [v, fallback] of Object.entries(GATEWAY_DRAIN)) {
						const e = (c.env || []).find((x) => x.name === v);
						const def = gw && gw.defaults.has(v) ? gw.defaults.get(v) : fallback;
						need += Number(e && e.value !== undefined ? e.value : def);
					}
				}
				if (!(grace > need)) {
					bad(w, `terminationGracePeriodSeconds ${grace} is not longer than the ${need} s that container ${c.name} needs to stop`);
				}
			}
			if (!pdbs.some((p) => nsOf(p) === ns && selects(p.spec && p.spec.selector, labels))) {
				bad(w, "no PodDisruptionBudget selects its pods");
			}
		}
		if (w.kind === "Deployment" && !hpas.some((h) => nsOf(h) === ns &&
			h.spec && h.spec.scaleTargetRef && h.spec.scaleTargetRef.kind === "Deployment" &&
			h.spec.scaleTargetRef.name === w.metadata.name)) {
			bad(w, "no HorizontalPodAutoscaler targets it");
		}
		const nsPols = netpols.filter((p) => nsOf(p) === ns);
		const denyAll = nsPols.some((p) => {
			const s = p.spec || {};
			const types = s.policyTypes || [];
			return s.podSelector && Object.keys(s.podSelector).length === 0 &&
				types.includes("Ingress") && types.includes("Egress") &&
				!(s.ingress || []).length && !(s.egress || []).length;
		});
		if (!denyAll) bad(w, `no default-deny NetworkPolicy (ingress and egress) in namespace ${ns}`);
		const own = nsPols.some((p) => {
			const sel = (p.spec || {}).podSelector || {};
			const specific = Object.keys(sel.matchLabels || {}).length ||
				(sel.matchExpressions || []).length;
			return specific && selects(sel, labels);
		});
		if (!own) bad(w, "no NetworkPolicy selects its pods");
	}

	for (const s of byKind("Service")) {
		const sel = (s.spec || {}).selector;
		if (!sel) continue;
		const hit = workloads.some((w) => nsOf(w) === nsOf(s) &&
			selects({ matchLabels: sel }, (podTemplate(w).metadata || {}).labels));
		if (!hit) bad(s, "its selector matches no workload's pods");
	}
	return { problems, workloads: workloads.length };
}

// The variables a container of one of our binaries gets must be in that
// binary's table, and the required ones must be there.
function checkEnv(w, c, bins, ns, bad, find) {
	const bin = imageBinary(c.image);
	const table = bins.get(bin);
	if (!table) return;
	const at = `container ${c.name} (${bin})`;
	const set = new Map();
	for (const src of c.envFrom || []) {
		const ref = src.configMapRef || src.secretRef;
		const kind = src.configMapRef ? "ConfigMap" : "Secret";
		const obj = ref && find(kind, ns, ref.name);
		if (!obj) {
			if (!(ref && ref.optional)) {
				bad(w, `${at}: envFrom ${kind} ${ref && ref.name} is not in the render, so its keys cannot be checked`);
			}
			continue;
		}
		const keys = Object.keys({ ...(obj.data || {}), ...(obj.stringData || {}) });
		for (const k of keys) set.set((src.prefix || "") + k, `${kind} ${ref.name}`);
	}
	for (const e of c.env || []) set.set(e.name, "env");
	for (const [name, from] of set) {
		if (!table.names.has(name)) {
			bad(w, `${at}: sets ${name} (${from}), which ${bin} does not know (${bin} --list-env)`);
		}
	}
	for (const r of table.required) {
		if (!set.has(r)) bad(w, `${at}: does not set ${r}, which ${bin} requires`);
	}
}

function main() {
	const { bins, files } = parseArgs(process.argv.slice(2));
	if (files.length === 0 || bins.size === 0) {
		console.error("usage: policy.cjs --bin NAME=HELP,LIST... FILE.yaml...");
		return 2;
	}
	const { problems, workloads } = check(load(files), bins);
	for (const p of problems) console.error(p);
	console.log(`policy: ${workloads} workload(s), ${problems.length} problem(s)`);
	return problems.length ? 1 : 0;
}

module.exports = { check, loadTable };
if (require.main === module) process.exitCode = main();
