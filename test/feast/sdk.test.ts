/**
 * Proof with Feast's own code: Feast's Python SDK (the `feast` package from PyPI, pinned in
 * test/feast/requirements.txt, installed by `bun scripts/test.ts feast` into .cache/feast-venv)
 * with its `remote` online store pointed at the compiled binary, authenticated by an API key
 * given as Feast's OIDC bearer token. Its answers must equal our native API's.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../harness/services.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = resolve(process.env.FS_BINARY ?? join(ROOT, "dist/feature-store"));
const VENV = resolve(process.env.FEAST_VENV ?? join(ROOT, ".cache/feast-venv"));
const PY = join(VENV, "bin/python");
const FEAST = join(VENV, "bin/feast");
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`bun run build\` first (bun scripts/test.ts feast does)`);
if (!existsSync(FEAST)) throw new Error(`${FEAST} is missing: run \`bun scripts/test.ts feast\`, which installs feast from PyPI into ${VENV}`);

function run(cmd: string[], env: Record<string, string>, cwd = ROOT) {
  const p = Bun.spawnSync(cmd, { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, cwd, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** feature_store.yaml of a Feast repo using feature-store as its remote online store. */
function feastYaml(registry: string, base: string, auth: string): string {
  return `project: demo\nregistry: ${registry}\nprovider: local\nonline_store:\n  type: remote\n  path: ${base}/api/v1/feast\n${auth}entity_key_serialization_version: 3\n`;
}

// biome-ignore lint: JSON of any shape
type Json = any;
const STATUS: Record<string, string> = { present: "PRESENT", not_found: "NOT_FOUND", expired: "OUTSIDE_MAX_AGE" };

describe("Feast's SDK against the binary", () => {
  let dir: string;
  let server: ReturnType<typeof Bun.spawn>;
  let base: string;
  let admin: string;
  let sdk: Json;
  let imported: ReturnType<typeof run>;
  let asYaml: ReturnType<typeof run>;
  let registerAgain: ReturnType<typeof run>;

  async function native(body: unknown): Promise<Json> {
    const res = await fetch(`${base}/api/v1/features/online`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": admin }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    return res.json();
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fs-feast-"));
    const env = { DATA_DIR: join(dir, "data"), LOG_LEVEL: "warn" };
    expect(run([BIN, "migrate"], env).code).toBe(0);
    const key = (scopes: string) => run([BIN, "keys", "create", "--tenant", "acme", "--scopes", scopes], env).stdout.trimEnd().split("\n").at(-1) ?? "";
    admin = key("admin");
    const writer = key("write");
    const reader = key("read");
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = Bun.spawn([BIN, "serve", "--port", String(port), "--host", "127.0.0.1"], { env: { PATH: process.env.PATH ?? "", ...env }, stdout: "pipe", stderr: "pipe" });
    for (let i = 0; i < 300 && (await fetch(`${base}/readyz`).then((r) => r.status, () => 0)) !== 200; i++) await Bun.sleep(50);

    // The repo as a Feast user has it, applied to a local registry; two more configurations on
    // the same registry: without credentials, and with a read-only key.
    const repo = join(dir, "repo");
    mkdirSync(repo);
    cpSync(join(ROOT, "test/feast/repo/definitions.py"), join(repo, "definitions.py"));
    const registry = join(dir, "registry.db");
    writeFileSync(join(repo, "feature_store.yaml"), feastYaml(registry, base, "auth:\n  type: oidc\n  token_env_var: FEATURE_STORE_API_KEY\n"));
    for (const [name, auth] of [
      ["noauth", "auth:\n  type: no_auth\n"],
      ["readonly", "auth:\n  type: oidc\n  token_env_var: FEATURE_STORE_READ_KEY\n"],
    ] as const) {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, "feature_store.yaml"), feastYaml(registry, base, auth));
    }
    const feastEnv = { FEATURE_STORE_API_KEY: writer, FEATURE_STORE_READ_KEY: reader, FEAST_USAGE: "False" };
    const applied = run([FEAST, "apply"], feastEnv, repo);
    if (applied.code !== 0) throw new Error(`feast apply failed:\n${applied.stdout}\n${applied.stderr}`);

    // The migration as the README tells it: dump Feast's registry, import it.
    const dumped = run([FEAST, "registry-dump"], feastEnv, repo);
    if (dumped.code !== 0) throw new Error(`feast registry-dump failed:\n${dumped.stderr}`);
    writeFileSync(join(dir, "dump.json"), dumped.stdout);
    const dry = run([BIN, "import-feast", join(dir, "dump.json"), "--tenant", "acme", "--dry-run"], env);
    imported = run([BIN, "import-feast", join(dir, "dump.json"), "--tenant", "acme"], env);
    expect(dry.stdout).toBe(imported.stdout);
    asYaml = run([BIN, "import-feast", join(dir, "dump.json"), "--yaml"], env);
    writeFileSync(join(dir, "imported.yaml"), asYaml.stdout);
    registerAgain = run([BIN, "register", join(dir, "imported.yaml"), "--tenant", "acme", "--dry-run"], env);

    // the server sees another process's registration within a second
    for (let i = 0; i < 100; i++) {
      const list = await fetch(`${base}/api/v1/feature-services`, { headers: { "x-api-key": admin } }).then((r) => r.json() as Promise<Json>);
      if (list.feature_services?.length > 0) break;
      await Bun.sleep(50);
    }
    const client = run([PY, join(ROOT, "test/feast/client.py"), repo, join(dir, "noauth"), join(dir, "readonly")], feastEnv, repo);
    if (client.code !== 0) throw new Error(`Feast's SDK failed:\n${client.stderr}`);
    sdk = JSON.parse(client.stdout.trim().split("\n").at(-1) ?? "{}");
  }, 120_000);

  afterAll(() => {
    server?.kill("SIGKILL");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("feast registry-dump | import-feast: views, features, services registered; the on-demand view and sources listed", () => {
    expect(imported.code).toBe(0);
    const lines = imported.stdout.trim().split("\n");
    for (const l of ["new         conv_rate@1", "new         old_score@1", "new         spend@1", "new         view driver_stats@1", "new         view pair_stats@1", "new         service ranking@1"]) {
      expect(lines).toContain(l);
    }
    expect(lines.filter((l) => l.startsWith("unsupported "))).toEqual([
      "unsupported on-demand feature view (a Python transformation) boosted_rate: not supported",
      expect.stringMatching(/^unsupported data sources .*customer_source.*driver_push.*: not imported/),
    ]);
    expect(imported.stderr).toContain("2 part(s) of the Feast registry were not imported");
    // --yaml writes the same definitions as a register file: registering it changes nothing
    expect(asYaml.stdout).toContain("join_keys:");
    expect(registerAgain.code).toBe(0);
    expect(registerAgain.stdout.trim().split("\n").every((l) => l.startsWith("unchanged "))).toBe(true);
    expect(registerAgain.stdout).toContain("unchanged service ranking@1");
  });

  test("get_online_features: several rows, a missing entity, an expired value; same as the native API", async () => {
    expect(sdk.online.values).toEqual({ driver_id: [1001, 1003, 4242], conv_rate: [0.5, 0.125, null], trips: [7, 9, null], old_score: [null, null, null] });
    expect(sdk.online.statuses.old_score).toEqual(["OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]);
    const refs = ["driver_stats:conv_rate", "driver_stats:trips", "driver_recent:old_score"];
    const ours = await native({ entity_ids: ["1001", "1003", "4242"], feature_names: refs });
    for (const ref of refs) {
      const name = ref.split(":")[1] as string;
      expect(sdk.online.values[name]).toEqual(ours.results.map((r: Json) => r.features[ref]));
      expect(sdk.online.statuses[name]).toEqual(ours.results.map((r: Json) => STATUS[r.metadata[ref].status]));
    }
  });

  test("a feature service spanning two entities, full feature names; same as the native API", async () => {
    expect(sdk.service.values).toEqual({
      driver_id: [1002, 1001],
      customer_id: ["c1", "nobody"],
      driver_stats__conv_rate: [0.75, 0.5],
      driver_stats__trips: [8, 7],
      customer_stats__rating: [4.5, null],
    });
    const ours = await native({ entity_rows: [{ driver: "1002", customer: "c1" }, { driver: "1001", customer: "nobody" }], feature_service: "ranking" });
    for (const ref of Object.keys(ours.results[0].features)) {
      const name = ref.replace(":", "__");
      expect(sdk.service.values[name]).toEqual(ours.results.map((r: Json) => r.features[ref]));
      expect(sdk.service.statuses[name]).toEqual(ours.results.map((r: Json) => STATUS[r.metadata[ref].status]));
    }
  });

  test("write_to_online_store and push (PushMode.ONLINE) stored what the native API reads", async () => {
    const ours = await native({ entity_ids: ["1001", "1002", "1003"], feature_names: ["trips", "conv_rate"] });
    expect(ours.results.map((r: Json) => r.features)).toEqual([
      { trips: 7, conv_rate: 0.5 },
      { trips: 8, conv_rate: 0.75 },
      { trips: 9, conv_rate: 0.125 },
    ]);
    expect(ours.results[2].metadata.trips.event_time).toBe("2024-01-15T09:58:00.000Z");
  });

  test("composite keys (user_id + merchant_id): ('a|b','c') and ('a','b|c') stay apart; same as the native API", async () => {
    expect(sdk.composite.values).toEqual({ user_id: ["a", "a|b", "a"], merchant_id: ["b|c", "c", "b"], spend: [2, 1, null] });
    const ours = await native({
      entity_rows: [{ user_merchant: { user_id: "a", merchant_id: "b|c" } }, { user_merchant: { user_id: "a|b", merchant_id: "c" } }, { user_merchant: { user_id: "a", merchant_id: "b" } }],
      feature_names: ["pair_stats:spend"],
    });
    expect(sdk.composite.values.spend).toEqual(ours.results.map((r: Json) => r.features["pair_stats:spend"]));
    expect(sdk.composite.statuses.spend).toEqual(ours.results.map((r: Json) => STATUS[r.metadata["pair_stats:spend"].status]));
  });

  test("no anonymous access: without a key the SDK is refused; a read key reads but cannot write", () => {
    expect(sdk.noauth_error).toContain("401");
    expect(sdk.readonly_read.values.trips).toEqual([7]);
    expect(sdk.readonly_write_error).toContain("403");
  });
});
