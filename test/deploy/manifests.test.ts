/**
 * The Kubernetes manifests and the compose file: valid against their schemas offline
 * (kubernetes-validate and check-jsonschema's compose-spec, from PyPI into .cache/venv), and in
 * agreement with the binary: ports, probe paths (answered by a live dist/feature-store), setting
 * names (src/config.ts), subcommands (src/cli.ts), drain timing, security settings, wiring.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import {
  BIN,
  CI,
  cliCommands,
  DEPLOY,
  isKnownVariable,
  type Json,
  k8sFiles,
  k8sObjects,
  type LiveServer,
  loadYaml,
  named,
  ofKind,
  podSpec,
  pythonTool,
  ROOT,
  secretVars,
  sh,
  startServer,
  withTools,
} from "./support.ts";

const COMPOSE = join(DEPLOY, "docker-compose.yml");
/** Kubernetes versions validated against: the oldest still supported upstream, and the newest bundled. */
const K8S_VERSIONS = ["1.30.0", "1.37.0"];
/** Manifests applied on their own, not by `kubectl apply -k deploy/k8s`. */
const NOT_IN_KUSTOMIZATION = ["secret.example.yaml", "migrate-job.yaml"];
/** Cleanup after the drain in `serve` (lifecycle.stop(2000) in src/cmd/serve.ts). */
const CLEANUP_S = 2;

const commands = cliCommands();
const objects = k8sObjects();
const compose = loadYaml(COMPOSE)[0] as Json;

/** The environment a container sees from its envFrom ConfigMaps and literal env values. */
function containerEnv(container: Json): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    expect(from.configMapRef?.name, "envFrom: only ConfigMaps (secrets are files)").toBeDefined();
    Object.assign(env, named(objects, "ConfigMap", from.configMapRef.name).data);
  }
  for (const e of container.env ?? []) if (typeof e.value === "string") env[e.name] = e.value;
  return env;
}

/** The effective settings of a container (X_FILE paths dropped: the files exist only in the pod). */
function settingsOf(env: Record<string, string>) {
  const plain = Object.fromEntries(Object.entries(env).filter(([k]) => !k.endsWith("_FILE")));
  return loadConfig(plain);
}

/** Every container of every workload, with its object. */
function containers(): { obj: Json; c: Json; file: string }[] {
  return objects.flatMap((o) => (podSpec(o.value)?.containers ?? []).map((c: Json) => ({ obj: o.value, c, file: o.file })));
}

function portNumber(container: Json, port: string | number): number {
  if (typeof port === "number") return port;
  const p = (container.ports ?? []).find((x: Json) => x.name === port);
  expect(p, `port ${port} is not declared by container ${container.name}`).toBeDefined();
  return p.containerPort;
}

let live: LiveServer | undefined;
beforeAll(async () => {
  if (existsSync(BIN)) live = await startServer();
}, 30_000);
afterAll(async () => {
  await live?.stop();
});

/** Asserts a live `serve` answers `path` with 200 (the probe targets exist in the binary). */
async function servedBy(path: string): Promise<void> {
  if (!live) {
    if (CI) throw new Error(`${BIN} is missing`);
    return;
  }
  expect((await fetch(`${live.base}${path}`)).status, `GET ${path}`).toBe(200);
}

// ───────────────────────────── schemas ─────────────────────────────

withTools({ validate: await pythonTool("kubernetes-validate") }, ({ validate }) => {
  describe("Kubernetes manifests validate against the Kubernetes schemas (offline, strict)", () => {
    for (const version of K8S_VERSIONS) {
      test(`kubernetes ${version}: ${k8sFiles().length} files`, () => {
        const r = sh([validate, "--strict", "--kubernetes-version", version, ...k8sFiles()], { timeoutMs: 120_000 });
        expect(r.code, r.stdout + r.stderr).toBe(0);
        // one line per document: "INFO FILE passed for resource KIND/NAME against version V"
        const passed = (r.stdout + r.stderr).split("\n").filter((l) => / passed for resource .* against version /.test(l));
        expect(passed.length).toBe(objects.length);
        expect(passed.every((l) => l.endsWith(` ${version.split(".").slice(0, 2).join(".")}`))).toBe(true);
      });
    }

    test("the validator is not a no-op: an unknown field and a wrong type are rejected", () => {
      const dir = mkdtempSync(join(tmpdir(), "fs-k8s-"));
      try {
        const bad = join(dir, "bad.yaml");
        const api = readFileSync(join(DEPLOY, "k8s/api-deployment.yaml"), "utf8");
        writeFileSync(bad, api.replace("terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: thirty-five"));
        expect(sh([validate, "--strict", bad]).code).not.toBe(0);
        writeFileSync(bad, api.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: true\n            readOnlyRootFileSystem: true"));
        expect(sh([validate, "--strict", bad]).code).not.toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

withTools({ check: await pythonTool("check-jsonschema") }, ({ check }) => {
  describe("docker-compose.yml validates against the Compose Specification schema (offline)", () => {
    test("check-jsonschema --builtin-schema vendor.compose-spec", () => {
      const r = sh([check, "--builtin-schema", "vendor.compose-spec", COMPOSE]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    });

    test("the schema check is not a no-op: an unknown service key is rejected", () => {
      const dir = mkdtempSync(join(tmpdir(), "fs-compose-"));
      try {
        const bad = join(dir, "docker-compose.yml");
        writeFileSync(bad, readFileSync(COMPOSE, "utf8").replace("  redis:\n", "  redis:\n    restart_policy: always\n"));
        expect(sh([check, "--builtin-schema", "vendor.compose-spec", bad]).code).not.toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

// ───────────────────────────── Kubernetes: agreement with the binary ─────────────────────────────

describe("Kubernetes manifests agree with the binary", () => {
  test("the expected objects exist", () => {
    const have = objects.map((o) => `${o.value.kind}/${(o.value.metadata as Json).name}`).sort();
    expect(have).toEqual(
      [
        "ConfigMap/feature-store",
        "Deployment/feature-store-api",
        "Deployment/feature-store-worker",
        "HorizontalPodAutoscaler/feature-store-api",
        "Job/feature-store-migrate",
        "Namespace/feature-store",
        "PodDisruptionBudget/feature-store-api",
        "Secret/feature-store-secrets",
        "Service/feature-store-api",
        "ServiceAccount/feature-store",
      ].sort(),
    );
  });

  test("kustomization.yaml lists every manifest but the example Secret and the migrate Job", () => {
    const k = loadYaml(join(DEPLOY, "k8s/kustomization.yaml"))[0] as Json;
    const listed = [...k.resources].sort();
    const files = k8sFiles().map((f) => f.split("/").at(-1) as string);
    expect(listed).toEqual(files.filter((f) => !NOT_IN_KUSTOMIZATION.includes(f)).sort());
    expect(k.namespace).toBe(named(objects, "Namespace", "feature-store").metadata.name);
    const images = new Set(containers().map(({ c }) => c.image.split(":")[0]));
    expect(k.images.map((i: Json) => i.name)).toEqual([...images]);
  });

  test("every container: pinned image, a real subcommand, only known setting names", () => {
    for (const { c, file } of containers()) {
      expect(c.image, file).toMatch(/^[^@]+:[^:/@]+$/);
      expect(c.image.endsWith(":latest")).toBe(false);
      expect(c.command, `${file}: use args, keep the image's ENTRYPOINT`).toBeUndefined();
      expect(commands, `${file}: args ${c.args}`).toContain(c.args[0]);
      for (const name of Object.keys(containerEnv(c))) expect(isKnownVariable(name), `${file}: ${name} is not a setting in src/config.ts`).toBe(true);
      for (const e of c.env ?? []) expect(isKnownVariable(e.name), `${file}: ${e.name}`).toBe(true);
    }
    expect(containers().map(({ c }) => c.args[0]).sort()).toEqual(["migrate", "serve", "worker"]);
  });

  test("the ConfigMap is a valid configuration (as the binary would load it)", () => {
    const data = named(objects, "ConfigMap", "feature-store").data as Record<string, string>;
    for (const k of Object.keys(data)) expect(isKnownVariable(k), k).toBe(true);
    expect(() => loadConfig(data)).not.toThrow();
    const worker = named(objects, "Deployment", "feature-store-worker");
    const cfg = settingsOf(containerEnv(podSpec(worker).containers[0]));
    expect(cfg.KAFKA_BROKERS).toBeTruthy();
    expect(cfg.KAFKA_TENANTS).toBeTruthy();
  });

  test("secrets arrive as X_FILE paths inside a mounted Secret volume, for secret-bearing settings only", () => {
    const secret = named(objects, "Secret", "feature-store-secrets");
    const keys = Object.keys(secret.stringData ?? secret.data);
    for (const { obj, c, file } of containers()) {
      const spec = podSpec(obj);
      for (const e of c.env ?? []) {
        if (!e.name.endsWith("_FILE")) continue;
        expect(secretVars(), file).toContain(e.name.slice(0, -5));
        const mount = (c.volumeMounts ?? []).find((m: Json) => e.value.startsWith(`${m.mountPath}/`));
        expect(mount, `${file}: ${e.name}=${e.value} is on no mount`).toBeDefined();
        const vol = spec.volumes.find((v: Json) => v.name === mount.name);
        expect(vol.secret?.secretName, file).toBe(secret.metadata.name);
        const inFile = e.value.slice(mount.mountPath.length + 1);
        const item = vol.secret.items ? vol.secret.items.find((i: Json) => i.path === inFile)?.key : inFile;
        expect(keys, `${file}: ${e.name} names key ${item}`).toContain(item);
      }
      // no secret value in plain env, and the ConfigMap holds no secret-bearing setting
      for (const e of c.env ?? []) expect(secretVars(), `${file}: ${e.name} must be ${e.name}_FILE`).not.toContain(e.name);
    }
    const data = named(objects, "ConfigMap", "feature-store").data as Record<string, string>;
    for (const v of secretVars()) expect(Object.keys(data)).not.toContain(v);
  });

  test("ports: the API on PORT (8000) named http, the worker's metrics on WORKER_METRICS_PORT (9464); Service and scrape annotations agree", () => {
    const api = named(objects, "Deployment", "feature-store-api");
    const apiC = podSpec(api).containers[0];
    const apiCfg = settingsOf(containerEnv(apiC));
    expect(apiCfg.PORT).toBe(8000);
    expect(portNumber(apiC, "http")).toBe(apiCfg.PORT);
    expect(Number(api.spec.template.metadata.annotations["prometheus.io/port"])).toBe(apiCfg.PORT);
    const svc = named(objects, "Service", "feature-store-api");
    expect(svc.spec.ports.map((p: Json) => [p.port, portNumber(apiC, p.targetPort)])).toEqual([[8000, apiCfg.PORT]]);

    const worker = named(objects, "Deployment", "feature-store-worker");
    const wC = podSpec(worker).containers[0];
    const wCfg = settingsOf(containerEnv(wC));
    expect(wCfg.WORKER_METRICS_PORT).toBe(9464);
    expect(portNumber(wC, "metrics")).toBe(wCfg.WORKER_METRICS_PORT);
    expect(Number(worker.spec.template.metadata.annotations["prometheus.io/port"])).toBe(wCfg.WORKER_METRICS_PORT);
    for (const d of [api, worker]) expect(d.spec.template.metadata.annotations["prometheus.io/path"]).toBe("/metrics");
  });

  test("API probes: startup and liveness on /healthz, readiness on /readyz, on the http port; the binary answers them", async () => {
    const apiC = podSpec(named(objects, "Deployment", "feature-store-api")).containers[0];
    expect(apiC.startupProbe.httpGet.path).toBe("/healthz");
    expect(apiC.livenessProbe.httpGet.path).toBe("/healthz");
    expect(apiC.readinessProbe.httpGet.path).toBe("/readyz");
    for (const p of [apiC.startupProbe, apiC.livenessProbe, apiC.readinessProbe]) {
      expect(portNumber(apiC, p.httpGet.port)).toBe(8000);
      await servedBy(p.httpGet.path);
    }
    // a pod that stops answering /healthz is restarted only after the startup probe allowed for a slow start
    expect(apiC.startupProbe.periodSeconds * apiC.startupProbe.failureThreshold).toBeGreaterThanOrEqual(30);
  });

  test("worker probes: /healthz on the metrics port", () => {
    const wC = podSpec(named(objects, "Deployment", "feature-store-worker")).containers[0];
    for (const p of [wC.startupProbe, wC.livenessProbe]) {
      expect(p.httpGet.path).toBe("/healthz");
      expect(portNumber(wC, p.httpGet.port)).toBe(9464);
    }
  });

  test("graceful termination: the API's terminationGracePeriodSeconds > SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT + cleanup; the worker's > SHUTDOWN_TIMEOUT + cleanup", () => {
    const api = named(objects, "Deployment", "feature-store-api");
    const cfg = settingsOf(containerEnv(podSpec(api).containers[0]));
    expect(cfg.SHUTDOWN_DELAY).toBeGreaterThan(0); // endpoints are removed while the pod still serves
    expect(podSpec(api).terminationGracePeriodSeconds).toBeGreaterThan(cfg.SHUTDOWN_DELAY + cfg.SHUTDOWN_TIMEOUT + CLEANUP_S);
    // the worker finishes its batch, commits and leaves the group within SHUTDOWN_TIMEOUT
    const worker = named(objects, "Deployment", "feature-store-worker");
    const wcfg = settingsOf(containerEnv(podSpec(worker).containers[0]));
    expect(podSpec(worker).terminationGracePeriodSeconds).toBeGreaterThan(wcfg.SHUTDOWN_TIMEOUT + CLEANUP_S);
  });

  test("security: non-root 65532, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp, no API token", () => {
    for (const { obj, c, file } of containers()) {
      const spec = podSpec(obj);
      expect(spec.securityContext, file).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: "RuntimeDefault" } });
      expect(spec.automountServiceAccountToken, file).toBe(false);
      expect(c.securityContext, file).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    }
  });

  test("read-only root: DATA_DIR and /tmp are writable volumes", () => {
    for (const { obj, c, file } of containers()) {
      const cfg = settingsOf(containerEnv(c));
      const mounts = (c.volumeMounts ?? []).map((m: Json) => m.mountPath);
      expect(mounts, file).toContain(cfg.DATA_DIR);
      expect(mounts, file).toContain("/tmp");
      for (const m of c.volumeMounts ?? []) {
        if (m.mountPath !== cfg.DATA_DIR && m.mountPath !== "/tmp") continue;
        const vol = podSpec(obj).volumes.find((v: Json) => v.name === m.name);
        expect(vol.emptyDir ?? vol.persistentVolumeClaim, `${file}: ${m.mountPath}`).toBeDefined();
        expect(m.readOnly ?? false).toBe(false);
      }
    }
  });

  test("resources: CPU and memory requests and a memory limit on every container", () => {
    for (const { c, file } of containers()) {
      expect(c.resources?.requests?.cpu, file).toBeDefined();
      expect(c.resources?.requests?.memory, file).toBeDefined();
      expect(c.resources?.limits?.memory, file).toBeDefined();
    }
  });

  test("wiring: Service, HPA and PDB select the API pods (and only them); the Job runs migrate once", () => {
    const api = named(objects, "Deployment", "feature-store-api");
    const worker = named(objects, "Deployment", "feature-store-worker");
    const apiLabels = api.spec.template.metadata.labels;
    const workerLabels = worker.spec.template.metadata.labels;
    const selects = (sel: Record<string, string>, labels: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
    expect(selects(api.spec.selector.matchLabels, apiLabels)).toBe(true);
    expect(selects(worker.spec.selector.matchLabels, workerLabels)).toBe(true);
    for (const sel of [named(objects, "Service", "feature-store-api").spec.selector, named(objects, "PodDisruptionBudget", "feature-store-api").spec.selector.matchLabels]) {
      expect(selects(sel, apiLabels)).toBe(true);
      expect(selects(sel, workerLabels)).toBe(false);
    }
    expect(api.spec.replicas, "the HPA owns the replica count").toBeUndefined();
    const hpa = named(objects, "HorizontalPodAutoscaler", "feature-store-api");
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: "feature-store-api" });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2); // with the PDB's maxUnavailable 1, a drain never empties the API
    expect(named(objects, "PodDisruptionBudget", "feature-store-api").spec.maxUnavailable).toBe(1);
    const job = named(objects, "Job", "feature-store-migrate");
    expect(podSpec(job).restartPolicy).toBe("Never");
    expect(podSpec(job).containers[0].args).toEqual(["migrate"]);
    for (const o of ofKind(objects, "Deployment")) expect(podSpec(o.value).serviceAccountName).toBe("feature-store");
  });
});

// ───────────────────────────── compose: agreement with the binary ─────────────────────────────

describe("docker-compose.yml agrees with the binary and the repository", () => {
  const services = compose.services as Record<string, Json>;
  /** The services that run our image. */
  const ours = Object.entries(services).filter(([, s]) => s.build !== undefined);

  /** A service's environment as a map (map or KEY=VALUE list form). */
  const envOf = (s: Json): Record<string, string> =>
    Array.isArray(s.environment) ? Object.fromEntries(s.environment.map((e: string) => e.split(/=(.*)/s).slice(0, 2))) : Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v)]));

  /** Container ports published (HOST_IP:HOST:CONTAINER). */
  const published = (s: Json): { hostIp: string; container: number }[] =>
    (s.ports ?? []).map((p: string) => {
      const parts = String(p).split(":");
      return { hostIp: parts.length === 3 ? (parts[0] as string) : "", container: Number(parts.at(-1)) };
    });

  test("services: the stores, Kafka, a one-shot migrate, the API, the worker, Prometheus and Grafana", () => {
    for (const s of ["postgres", "redis", "kafka", "migrate", "api", "worker", "prometheus", "grafana"]) expect(Object.keys(services)).toContain(s);
    expect(ours.map(([n]) => n).sort()).toEqual(["api", "migrate", "worker"]);
    expect(services.kafka.image).toMatch(/^apache\/kafka:/);
    expect(envOf(services.kafka).KAFKA_PROCESS_ROLES).toBe("broker,controller"); // KRaft, no ZooKeeper
  });

  test("every image is pinned by a tag (never latest); ours builds from the top-level Dockerfile", () => {
    for (const [name, s] of Object.entries(services)) {
      expect(s.image, name).toMatch(/^[^@]+:[^:/@]+$/);
      expect(s.image.endsWith(":latest"), name).toBe(false);
    }
    for (const [, s] of ours) {
      expect(existsSync(join(DEPLOY, s.build.context, s.build.dockerfile ?? "Dockerfile"))).toBe(true);
      expect(join(DEPLOY, s.build.context)).toBe(ROOT);
    }
  });

  test("our services: real subcommands, only known setting names, a valid configuration, read-only, /data a volume", () => {
    for (const [name, s] of ours) {
      expect(commands, name).toContain(s.command[0]);
      const env = envOf(s);
      for (const k of Object.keys(env)) expect(isKnownVariable(k), `${name}: ${k} is not a setting in src/config.ts`).toBe(true);
      const cfg = loadConfig(env);
      expect(s.read_only, name).toBe(true);
      expect(String(s.user)).toBe("65532:65532");
      if (s.command[0] !== "migrate") expect((s.volumes ?? []).some((v: string) => v.endsWith(`:${cfg.DATA_DIR}`)), `${name}: ${cfg.DATA_DIR} volume`).toBe(true);
    }
    expect(services.migrate.command).toEqual(["migrate"]);
    expect(services.api.command).toEqual(["serve"]);
    expect(services.worker.command).toEqual(["worker"]);
  });

  test("stores: URLs point at the compose services with their credentials", () => {
    const pg = envOf(services.postgres);
    for (const [name, s] of ours) {
      const env = envOf(s);
      const u = new URL(env.POSTGRES_URL as string);
      expect([u.hostname, u.port, u.username, u.password, u.pathname], name).toEqual(["postgres", "5432", pg.POSTGRES_USER as string, pg.POSTGRES_PASSWORD as string, `/${pg.POSTGRES_DB}`]);
      expect(new URL(env.REDIS_URL as string).hostname).toBe("redis");
    }
    const worker = loadConfig(envOf(services.worker));
    expect(worker.KAFKA_BROKERS).toBe("kafka:9092");
    expect(envOf(services.kafka).KAFKA_ADVERTISED_LISTENERS).toContain("//kafka:9092");
    expect(worker.KAFKA_TENANTS).toBeTruthy();
    const topics = services["kafka-topics"].command.join(" ");
    expect(topics).toContain(`--topic ${worker.KAFKA_TOPIC} `);
    expect(topics).toContain(`--topic ${worker.KAFKA_DLQ_TOPIC} `);
  });

  test("ordering: migrate after PostgreSQL is healthy; the API and the worker after migrate succeeded", () => {
    expect(services.migrate.depends_on.postgres.condition).toBe("service_healthy");
    expect(services.migrate.restart).toBe("no");
    for (const s of ["api", "worker"]) expect(services[s].depends_on.migrate.condition).toBe("service_completed_successfully");
    expect(services.worker.depends_on["kafka-topics"].condition).toBe("service_completed_successfully");
  });

  test("ports: the API on PORT (8000), the worker's metrics on WORKER_METRICS_PORT (9464), all published on 127.0.0.1 only", () => {
    const api = loadConfig(envOf(services.api));
    const worker = loadConfig(envOf(services.worker));
    expect(published(services.api).map((p) => p.container)).toEqual([api.PORT]);
    expect(api.PORT).toBe(8000);
    expect(published(services.worker).map((p) => p.container)).toEqual([worker.WORKER_METRICS_PORT]);
    expect(worker.WORKER_METRICS_PORT).toBe(9464);
    for (const [name, s] of Object.entries(services)) for (const p of published(s)) expect(p.hostIp, `${name} publishes on all interfaces`).toBe("127.0.0.1");
  });

  test("the API's healthcheck is the binary's healthcheck on its port; stop_grace_period covers the drain", async () => {
    const api = loadConfig(envOf(services.api));
    const test_ = services.api.healthcheck.test as string[];
    expect(test_.slice(0, 3)).toEqual(["CMD", "/feature-store", "healthcheck"]);
    const url = new URL(test_[3] as string);
    expect(Number(url.port)).toBe(api.PORT);
    await servedBy("/readyz");
    const seconds = (s: string) => Number(/^(\d+)s$/.exec(s)?.[1]);
    expect(seconds(services.api.stop_grace_period)).toBeGreaterThan(api.SHUTDOWN_DELAY + api.SHUTDOWN_TIMEOUT + CLEANUP_S);
    const worker = loadConfig(envOf(services.worker));
    expect(seconds(services.worker.stop_grace_period)).toBeGreaterThan(worker.SHUTDOWN_TIMEOUT + CLEANUP_S);
    // the image's HEALTHCHECK targets serve: one-shot and worker containers must not inherit it
    expect(services.migrate.healthcheck.disable).toBe(true);
    expect(services.worker.healthcheck.disable).toBe(true);
  });

  test("Prometheus scrapes the API and the worker where compose runs them, and mounts the rules; Grafana gets its provisioning", () => {
    const prom = loadYaml(join(DEPLOY, "prometheus.yml"))[0] as Json;
    const targets = Object.fromEntries(prom.scrape_configs.map((j: Json) => [j.job_name, j.static_configs.flatMap((s: Json) => s.targets)]));
    const api = loadConfig(envOf(services.api));
    const worker = loadConfig(envOf(services.worker));
    expect(targets["feature-store-api"]).toEqual([`api:${api.PORT}`]);
    expect(targets["feature-store-worker"]).toEqual([`worker:${worker.WORKER_METRICS_PORT}`]);
    // every bind mount's source exists in the repository
    for (const [name, s] of Object.entries(services)) {
      for (const v of s.volumes ?? []) {
        const src = String(v).split(":")[0] as string;
        if (src.startsWith(".")) expect(existsSync(join(DEPLOY, src)), `${name}: ${src}`).toBe(true);
      }
    }
    const mounts = (services.prometheus.volumes as string[]).map((v) => v.split(":"));
    const configMount = mounts.find((m) => m[1] === "/etc/prometheus/prometheus.yml");
    expect(configMount?.[0]).toBe("./prometheus.yml");
    for (const rf of prom.rule_files as string[]) {
      // rule files are relative to the config file, both here and in the container
      expect(existsSync(join(DEPLOY, rf)), rf).toBe(true);
      expect(mounts.some((m) => rf.startsWith(`${(m[1] as string).replace("/etc/prometheus/", "")}/`) && m[0] === `./${rf.split("/")[0]}`)).toBe(true);
    }
    const grafana = (services.grafana.volumes as string[]).map((v) => v.split(":"));
    expect(grafana.some((m) => m[0] === "./grafana/provisioning" && m[1] === "/etc/grafana/provisioning")).toBe(true);
  });
});
