/**
 * Resolves the jars of an Apache Kafka broker from Maven Central (through `mvn` and
 * `test/harness/pom.xml`) into a cache directory that survives between runs.
 *
 * Maven Central has no Kafka distribution tarball (no bin/, no config/), only the
 * artifacts, so the test harness runs `kafka.Kafka` straight from a classpath made of
 * `org.apache.kafka:kafka_2.13:<version>` and its runtime dependencies, plus
 * `slf4j-simple` so that the broker logs somewhere.
 *
 * Cache layout: `$FEATURE_STORE_TEST_CACHE` or `$XDG_CACHE_HOME/feature-store-test` or
 * `~/.cache/feature-store-test`, then `kafka-<version>-<pom hash>/lib/*.jar` with a
 * `.complete` marker. A changed pom.xml gets a new directory. Resolution goes into a
 * private temp directory first and is renamed into place, so concurrent test processes
 * never see a half-filled cache.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** Kafka release lines the harness knows, mapped to the exact version it runs. */
export const KAFKA_VERSIONS = {
  /** Newest 4.x served by Maven Central when this was written. */
  "4": "4.4.0",
  /** Newest 3.9.x (the last line that still has ZooKeeper mode; we use KRaft). */
  "3.9": "3.9.2",
} as const;

/** A Kafka release line accepted by {@link resolveKafkaJars}. */
export type KafkaLine = keyof typeof KAFKA_VERSIONS;

/** Where the jars of one Kafka version live. */
export interface KafkaJars {
  /** Exact Kafka version, e.g. `4.4.0`. */
  version: string;
  /** Directory holding every jar. */
  libDir: string;
  /** A java `-cp` value (`<libDir>/*`). */
  classpath: string;
}

const POM_PATH = join(import.meta.dir, "pom.xml");

/** Root of the harness's persistent cache. */
export function cacheRoot(): string {
  const explicit = process.env["FEATURE_STORE_TEST_CACHE"];
  if (explicit !== undefined && explicit !== "") return explicit;
  const xdg = process.env["XDG_CACHE_HOME"];
  const base = xdg !== undefined && xdg !== "" ? xdg : join(homedir(), ".cache");
  return join(base, "feature-store-test");
}

/** Exact version for a release line, or the argument itself when it already is an exact version (`x.y.z`). */
export function kafkaVersionFor(lineOrVersion: string): string {
  if (lineOrVersion in KAFKA_VERSIONS) return KAFKA_VERSIONS[lineOrVersion as KafkaLine];
  if (/^\d+\.\d+\.\d+$/.test(lineOrVersion)) return lineOrVersion;
  throw new Error(`unknown Kafka version "${lineOrVersion}" (use ${Object.keys(KAFKA_VERSIONS).join(", ")} or x.y.z)`);
}

/** Runs a command, returns its exit code and combined output. */
async function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn({
    cmd,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    env: opts.env ?? process.env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = opts.timeoutMs !== undefined ? setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs) : undefined;
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (timer !== undefined) clearTimeout(timer);
  return { code, output: out + err };
}

function onPath(bin: string): boolean {
  return Bun.which(bin) !== null;
}

let javaToolsPromise: Promise<void> | undefined;

/**
 * Makes sure `java` (17+) and `mvn` exist, installing Debian's `openjdk-17-jre-headless`
 * / `maven` with apt-get when they do not (root only).
 */
export function ensureJavaTools(): Promise<void> {
  javaToolsPromise ??= (async () => {
    const missing: string[] = [];
    if (!onPath("java")) missing.push("openjdk-17-jre-headless");
    if (!onPath("mvn")) missing.push("maven");
    if (missing.length === 0) return;
    const { aptInstall } = await import("./services.ts");
    await aptInstall(missing);
    if (!onPath("java") || !onPath("mvn")) throw new Error(`java/mvn still missing after apt-get install ${missing.join(" ")}`);
  })();
  javaToolsPromise.catch(() => {
    javaToolsPromise = undefined;
  });
  return javaToolsPromise;
}

const inFlight = new Map<string, Promise<KafkaJars>>();

/**
 * Returns the jars of the given Kafka line or version, downloading them through Maven
 * on the first call (several minutes on a cold Maven cache; instant afterwards).
 */
export function resolveKafkaJars(lineOrVersion: string = "4"): Promise<KafkaJars> {
  const version = kafkaVersionFor(lineOrVersion);
  let p = inFlight.get(version);
  if (p === undefined) {
    p = doResolve(version);
    inFlight.set(version, p);
    p.catch(() => inFlight.delete(version));
  }
  return p;
}

async function doResolve(version: string): Promise<KafkaJars> {
  const pomHash = createHash("sha256").update(readFileSync(POM_PATH)).digest("hex").slice(0, 10);
  const root = cacheRoot();
  const dir = join(root, `kafka-${version}-${pomHash}`);
  const libDir = join(dir, "lib");
  const result: KafkaJars = { version, libDir, classpath: join(libDir, "*") };
  if (existsSync(join(dir, ".complete"))) return result;

  await ensureJavaTools();
  mkdirSync(root, { recursive: true });
  const tmp = join(root, `.tmp-kafka-${version}-${process.pid}-${Date.now()}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const { code, output } = await run(
      [
        "mvn",
        "-B",
        "-ntp",
        "-Dstyle.color=never",
        "-f",
        POM_PATH,
        `-Dkafka.version=${version}`,
        `-Dkafka.libdir=${join(tmp, "lib")}`,
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
      ],
      // Maven writes nothing next to the pom for this goal, but run it from the temp dir anyway.
      { cwd: tmp, timeoutMs: 20 * 60_000 },
    );
    const jars = existsSync(join(tmp, "lib")) ? readdirSync(join(tmp, "lib")).filter((f) => f.endsWith(".jar")) : [];
    if (code !== 0 || !jars.some((j) => j.startsWith(`kafka_2.13-${version}`))) {
      const tail = output.trimEnd().split("\n").slice(-40).join("\n");
      throw new Error(`mvn could not resolve Kafka ${version} (exit ${code}):\n${tail}`);
    }
    writeFileSync(join(tmp, ".complete"), `${new Date().toISOString()}\n${jars.sort().join("\n")}\n`);
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // Another process won the race (or a stale incomplete dir is in the way).
      if (!existsSync(join(dir, ".complete"))) {
        rmSync(dir, { recursive: true, force: true });
        renameSync(tmp, dir);
      } else {
        void e;
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return result;
}
