/**
 * The container image, without a Docker engine.
 *
 * 1. The Dockerfile and .dockerignore, read statically: pinned images, the Bun version of
 *    package.json, a distroless final stage with no RUN, non-root, the binary as entrypoint, a
 *    healthcheck through the binary, DATA_DIR on a volume, a build context holding only sources.
 * 2. The build stages replayed on the host (context filtered by .dockerignore, `npm ci`, the
 *    pinned Bun's `bun run build`): they produce every file the final stage copies.
 * 3. The compiled binary (dist/feature-store) in a root filesystem holding only what
 *    gcr.io/distroless/base-nossl-debian12 holds (glibc and its loader, CA certificates, tzdata,
 *    /etc/passwd with nonroot 65532, /tmp, no shell) plus what the final stage copies (the binary,
 *    /data). It runs as a container would run it: `unshare` gives it its own mount and PID
 *    namespaces (it is PID 1, with /proc), the root is mounted READ-ONLY, /data is a writable
 *    volume, /tmp a tmpfs, and `chroot --userspec=65532:65532` enters it. Checked from the host
 *    over 127.0.0.1: serve, HTTP, the CLI, `healthcheck`, name resolution through /etc/hosts,
 *    and a SIGTERM drain.
 *
 * Needs root (chroot, mount). Runs in CI (root); skipped elsewhere when not root.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Subprocess } from "bun";
import pkg from "../../package.json" with { type: "json" };
import { loadConfig } from "../../src/config.ts";
import { aptInstall, freePort } from "../harness/services.ts";
import { BIN, CI, cliCommands, dockerfileStages, execForm, isKnownVariable, isRoot, ROOT, sh, type Stage, type Tool, waitFor, which, withTools } from "./support.ts";

const NONROOT = 65532;
const DEFAULTS = loadConfig({});

// ───────────────────────────── the Dockerfile ─────────────────────────────

describe("Dockerfile", () => {
  const stages = dockerfileStages();
  const final = stages.at(-1) as Stage;
  const ops = (s: Stage, op: string) => s.body.filter((i) => i.op === op);

  test("every image is pinned by an explicit tag (never latest)", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) {
      expect(s.image).not.toContain("$"); // no ARG-templated images: the tag is visible and greppable
      const tag = /^[^@]+:([^/:@]+)$/.exec(s.image)?.[1];
      expect(tag, `${s.image} has no tag`).toBeDefined();
      expect(tag).not.toBe("latest");
    }
  });

  test("a stage installs exactly the lockfile (npm ci) and the oven/bun stage, at package.json's Bun version, runs `bun run build`", () => {
    expect(stages.some((s) => ops(s, "RUN").some((r) => /\bnpm ci\b/.test(r.args)))).toBe(true);
    expect(stages.some((s) => ops(s, "COPY").some((c) => c.args.includes("package-lock.json")))).toBe(true);
    const bunStage = stages.find((s) => s.image.startsWith("oven/bun:"));
    expect(bunStage, "no oven/bun build stage").toBeDefined();
    const version = pkg.devDependencies.bun;
    expect((bunStage as Stage).image).toMatch(new RegExp(`^oven/bun:${version.replace(/\./g, "\\.")}(-debian|-slim)?$`)); // glibc, never alpine (musl)
    expect(ops(bunStage as Stage, "RUN").some((r) => /\bbun run build\b/.test(r.args))).toBe(true);
    expect(sh([join(ROOT, "node_modules/.bin/bun"), "--version"]).stdout.trim()).toBe(version);
  });

  test("final stage: distroless, no RUN (no shell), only the binary and the /data volume copied in", () => {
    expect(final.image).toMatch(/^gcr\.io\/distroless\/base(-nossl)?-debian12:/);
    expect(ops(final, "RUN")).toEqual([]);
    const copies = ops(final, "COPY").map((c) => c.args.split(/\s+/).filter((a) => !a.startsWith("--")));
    expect(copies.map((c) => c.at(-1)).sort()).toEqual(["/data", "/feature-store"]);
    const dataCopy = ops(final, "COPY").find((c) => c.args.trim().endsWith(" /data"));
    expect(dataCopy?.args).toContain(`--chown=${NONROOT}:${NONROOT}`);
  });

  test("non-root (numeric 65532, as Kubernetes' runAsNonRoot needs), entrypoint /feature-store, command serve", () => {
    expect(ops(final, "USER").map((u) => u.args)).toEqual([`${NONROOT}:${NONROOT}`]);
    expect(execForm(ops(final, "ENTRYPOINT")[0]?.args ?? "")).toEqual(["/feature-store"]);
    const cmd = execForm(ops(final, "CMD")[0]?.args ?? "");
    expect(cmd).toEqual(["serve"]);
    expect(cliCommands()).toContain("serve");
  });

  test("HEALTHCHECK runs the binary's own healthcheck (exec form: the image has no shell)", () => {
    const hc = ops(final, "HEALTHCHECK");
    expect(hc.length).toBe(1);
    const cmd = execForm((hc[0] as { args: string }).args.replace(/^.*?\bCMD\s+/, ""));
    expect(cmd?.slice(0, 2)).toEqual(["/feature-store", "healthcheck"]);
    expect(cliCommands()).toContain("healthcheck");
  });

  test("state under DATA_DIR=/data, a VOLUME; ENV names are settings; EXPOSE is the API and worker metrics ports", () => {
    const env = new Map<string, string>();
    for (const e of ops(final, "ENV")) for (const m of e.args.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env.set(m[1] as string, m[2] as string);
    expect(env.get("DATA_DIR")).toBe("/data");
    for (const k of env.keys()) expect(isKnownVariable(k), `ENV ${k} is not a setting in src/config.ts`).toBe(true);
    const cfg = loadConfig(Object.fromEntries(env));
    expect(ops(final, "VOLUME").map((v) => execForm(v.args) ?? v.args.split(/\s+/)).flat()).toEqual(["/data"]);
    const exposed = ops(final, "EXPOSE").flatMap((e) => e.args.split(/\s+/)).map((p) => Number(p.replace(/\/tcp$/, "")));
    expect(exposed.sort()).toEqual([cfg.PORT, cfg.WORKER_METRICS_PORT].sort());
    expect([cfg.PORT, cfg.WORKER_METRICS_PORT]).toEqual([8000, 9464]);
  });
});

/** The patterns of .dockerignore, in order. */
function dockerignorePatterns(): string[] {
  return readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/** Docker's rule: the last pattern matching the path or one of its parent folders decides. */
function dockerignored(path: string): boolean {
  let out = false;
  const parts = path.split("/");
  for (const raw of dockerignorePatterns()) {
    const neg = raw.startsWith("!");
    const pat = (neg ? raw.slice(1) : raw).replace(/^\/+/, "").replace(/\/+$/, "");
    const glob = new Bun.Glob(pat);
    for (let i = 1; i <= parts.length; i++) {
      if (glob.match(parts.slice(0, i).join("/"))) {
        out = !neg;
        break;
      }
    }
  }
  return out;
}

describe(".dockerignore", () => {
  const ignored = dockerignored;

  test("the build context holds what the build stages copy, and no dependencies, outputs, data or VCS", () => {
    const copied = dockerfileStages()
      .flatMap((s) => s.body.filter((i) => i.op === "COPY" && !i.args.includes("--from=")))
      .flatMap((c) => c.args.split(/\s+/).filter((a) => !a.startsWith("--")).slice(0, -1));
    expect(copied.length).toBeGreaterThan(0);
    for (const src of copied) {
      expect(existsSync(join(ROOT, src)), `COPY ${src}: missing in the repository`).toBe(true);
      expect(ignored(src), `COPY ${src} is excluded by .dockerignore`).toBe(false);
    }
    for (const f of ["src/cli.ts", "src/config.ts", "migrations/sqlite", "scripts/build.ts"]) expect(ignored(f)).toBe(false);
    for (const f of ["node_modules", "node_modules/hono/package.json", "dist/feature-store", ".git/HEAD", ".cache/venv", "data/feature-store.db", "test/e2e/binary.test.ts", "deploy/k8s", ".env"]) {
      expect(ignored(f), `${f} would be sent to the daemon`).toBe(true);
    }
  });
});

// ───────────────────────────── the build stages, replayed ─────────────────────────────

/**
 * Replays the Dockerfile's build stages on the host, without Docker: the build context is the
 * repository filtered by .dockerignore; each stage gets its own directory for its WORKDIR; COPY
 * copies from the context (or, with --from, from an earlier stage's directory); RUN runs its
 * command there with `sh -c` (BuildKit's --mount flags dropped), with the repository's pinned
 * Bun first on PATH (the same version as the oven/bun tag, checked above) and npm from the host.
 * Then every COPY --from of the final stage must find its source, and the binary must run.
 */
describe("Dockerfile build stages, replayed without Docker", () => {
  const stages = dockerfileStages();
  const npm = which("npm");
  const missing = !npm ? "npm is missing" : undefined;

  test.skipIf(missing !== undefined && !CI)("npm ci from package-lock.json and `bun run build` in a context filtered by .dockerignore produce the final stage's files", () => {
    if (missing) throw new Error(missing);
    const work = mkdtempSync(join(tmpdir(), "fs-docker-build-"));
    try {
      const context = join(work, "context");
      copyContext(context);
      const dirs = new Map<string, { dir: string; workdir: string }>();
      const env = { PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH ?? "/usr/bin:/bin"}`, HOME: process.env.HOME ?? "/root", npm_config_cache: join(process.env.HOME ?? "/root", ".npm") };
      for (const [i, stage] of stages.slice(0, -1).entries()) {
        const dir = join(work, `stage-${i}`);
        let workdir = "/";
        mkdirSync(dir, { recursive: true });
        const at = (p: string) => join(dir, p.startsWith("/") ? p.slice(workdir.length) : p);
        for (const ins of stage.body) {
          if (ins.op === "WORKDIR") workdir = ins.args.endsWith("/") ? ins.args : `${ins.args}/`;
          else if (ins.op === "COPY") copyInstruction(ins.args, context, dirs, at);
          else if (ins.op === "RUN") {
            const cmd = ins.args.replace(/^(--\S+\s+)+/, "");
            const r = sh(["sh", "-c", cmd], { cwd: dir, env, timeoutMs: 600_000 });
            expect(r.code, `stage ${stage.name ?? i}: RUN ${cmd}\n${r.stdout}${r.stderr}`).toBe(0);
          }
        }
        if (stage.name) dirs.set(stage.name, { dir, workdir });
      }
      const final = stages.at(-1) as Stage;
      for (const ins of final.body.filter((x) => x.op === "COPY")) {
        const from = /--from=(\S+)/.exec(ins.args)?.[1];
        expect(from, `final stage: COPY ${ins.args} must come from a build stage`).toBeDefined();
        const src = ins.args.split(/\s+/).filter((a) => !a.startsWith("--"))[0] as string;
        const stage = dirs.get(from as string);
        expect(stage, `no stage ${from}`).toBeDefined();
        const path = join((stage as { dir: string }).dir, src.slice((stage as { workdir: string }).workdir.length));
        expect(existsSync(path), `final stage: COPY --from=${from} ${src}: not produced`).toBe(true);
        if (src.endsWith("/feature-store")) {
          const v = sh([path, "version"]);
          expect(v.stdout.trim()).toBe(pkg.version);
        }
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 600_000);
});

/** Copies the repository into `dest` as the Docker build context: what .dockerignore lets through. */
function copyContext(dest: string): void {
  const walk = (rel: string) => {
    for (const name of readdirSync(join(ROOT, rel))) {
      const p = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(ROOT, p));
      if (st.isDirectory()) {
        // skip whole folders nothing could re-include (node_modules, .git, ...)
        if (dockerignored(p) && !dockerignorePatterns().some((x) => x.startsWith(`!${p}/`) || x.startsWith("!**"))) continue;
        walk(p);
      } else if (st.isFile() && !dockerignored(p)) {
        mkdirSync(join(dest, rel), { recursive: true });
        copyFileSync(join(ROOT, p), join(dest, p));
      }
    }
  };
  walk("");
}

/** Executes one COPY: from the context, or from an earlier stage's directory (--from). */
function copyInstruction(args: string, context: string, stages: Map<string, { dir: string; workdir: string }>, at: (p: string) => string): void {
  const from = /--from=(\S+)/.exec(args)?.[1];
  const parts = args.split(/\s+/).filter((a) => !a.startsWith("--"));
  const target = parts.at(-1) as string;
  for (const src of parts.slice(0, -1)) {
    let origin: string;
    if (from) {
      const st = stages.get(from);
      if (!st) throw new Error(`COPY --from=${from}: no such stage before this one`);
      origin = join(st.dir, src.slice(st.workdir.length));
    } else origin = join(context, src);
    if (!existsSync(origin)) throw new Error(`COPY ${src}: not in the ${from ? `stage ${from}` : "build context"}`);
    const into = target.endsWith("/") || parts.length > 2 ? join(at(target), src.split("/").at(-1) as string) : at(target);
    mkdirSync(dirname(into), { recursive: true });
    const r = sh(["cp", "-a", origin, into]);
    if (r.code !== 0) throw new Error(`COPY ${src} ${target}: ${r.stderr}`);
  }
}

// ───────────────────────────── the binary in a distroless root ─────────────────────────────

/** glibc's own objects (libc6), which every distroless base holds. */
const GLIBC = /^(ld-linux[-\w.]*\.so\.\d+|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|libanl\.so\.1|libnss_(files|dns)\.so\.2|libmvec\.so\.1)$/;
/** In gcr.io/distroless/base-*-debian12 too (from "cc" upward), if the binary needs them. */
const GCC_RUNTIME = /^(libgcc_s\.so\.1|libstdc\+\+\.so\.6)$/;

/** The shared objects `ldd` lists for the binary (resolved paths as the loader finds them). */
function lddObjects(): { path: string; name: string }[] {
  const r = sh(["ldd", BIN]);
  if (r.code !== 0) throw new Error(`ldd ${BIN} failed: ${r.stderr}`);
  const out: { path: string; name: string }[] = [];
  for (const line of r.stdout.split("\n")) {
    if (/not found/.test(line)) throw new Error(`ldd: ${line.trim()}`);
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) out.push({ path: m[1] as string, name: (m[1] as string).split("/").at(-1) as string });
  }
  return out;
}

async function ensureBasePackages(): Promise<Tool> {
  const need: string[] = [];
  if (!existsSync("/etc/ssl/certs/ca-certificates.crt")) need.push("ca-certificates");
  if (!existsSync("/usr/share/zoneinfo/UTC")) need.push("tzdata");
  for (const [tool, deb] of [["chroot", "coreutils"], ["unshare", "util-linux"], ["mount", "mount"], ["ldd", "libc-bin"]] as const) if (!which(tool)) need.push(deb);
  if (need.length > 0) {
    if (!isRoot) return { missing: `missing packages ${need.join(" ")}` };
    try {
      await aptInstall(need);
    } catch (e) {
      return { missing: (e as Error).message };
    }
  }
  return { path: "/" };
}

const jail: Tool = !isRoot
  ? { missing: "chroot and mount need root (CI runs as root)" }
  : !existsSync(BIN)
    ? { missing: `${BIN} is missing: run \`bun run build\` first (npm test does)` }
    : await ensureBasePackages();

if (!existsSync(BIN) && CI) {
  test("dist/feature-store exists", () => {
    throw new Error(`${BIN} is missing: the test runner builds it before this step`);
  });
}

/**
 * Writes a root filesystem like the image's: the distroless base's files, then what the final
 * stage COPYs. Everything is owned by root except /data and /home/nonroot.
 */
function buildRootfs(root: string): void {
  chmodSync(root, 0o755); // mkdtemp made it 0700
  const dirs = ["etc/ssl/certs", "usr/share", "tmp", "home/nonroot", "data", "proc", "dev"];
  for (const d of dirs) mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, "tmp"), 0o1777);
  chownSync(join(root, "home/nonroot"), NONROOT, NONROOT);
  chmodSync(join(root, "home/nonroot"), 0o700);
  chownSync(join(root, "data"), NONROOT, NONROOT);
  // distroless's /etc/passwd and /etc/group
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n");
  writeFileSync(join(root, "etc/group"), "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n");
  writeFileSync(join(root, "etc/nsswitch.conf"), "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n");
  writeFileSync(join(root, "etc/os-release"), 'PRETTY_NAME="Distroless"\nNAME="Debian GNU/Linux"\nID="debian"\nVERSION_ID="12"\nHOME_URL="https://github.com/GoogleContainerTools/distroless"\n');
  // what the container runtime provides: /etc/hosts (here with one extra name, to test resolution)
  writeFileSync(join(root, "etc/hosts"), "127.0.0.1 localhost\n127.0.0.1 feature-store.test\n");
  for (const d of ["null", "zero", "random", "urandom"]) writeFileSync(join(root, "dev", d), "");
  copyFileSync("/etc/ssl/certs/ca-certificates.crt", join(root, "etc/ssl/certs/ca-certificates.crt"));
  const tz = sh(["cp", "-a", "/usr/share/zoneinfo", join(root, "usr/share/zoneinfo")]);
  if (tz.code !== 0) throw new Error(`copying tzdata: ${tz.stderr}`);
  // glibc: the objects ldd lists, at the paths the loader uses, plus the NSS modules it dlopens
  const objects = lddObjects();
  const libc = objects.find((o) => o.name === "libc.so.6");
  if (!libc) throw new Error("ldd lists no libc.so.6");
  const extra = ["libnss_files.so.2", "libnss_dns.so.2", "libresolv.so.2"].map((n) => join(dirname(libc.path), n)).filter((p) => existsSync(p));
  for (const p of [...objects.map((o) => o.path), ...extra]) {
    mkdirSync(join(root, dirname(p)), { recursive: true });
    copyFileSync(realpathSync(p), join(root, p));
  }
  // the final stage's COPY
  copyFileSync(BIN, join(root, "feature-store"));
  chmodSync(join(root, "feature-store"), 0o755);
}

/** Every path in the tree with its type, mode, owner and size. */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel))) {
      const p = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, p));
      out.push(`${p} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isFile() ? st.size : ""}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk("");
  return out.sort();
}

withTools({ jail }, () => {
  describe("dist/feature-store in a distroless root filesystem (read-only, uid 65532, PID 1)", () => {
    let root: string;
    let data: string;
    let port: number;
    let server: Subprocess<"ignore", "pipe", "pipe"> | undefined;
    let serverLog = "";
    let before: string[];
    const mountPath = which("mount") as string;
    const chroot = which("chroot") as string;
    const unshare = which("unshare") as string;
    const envBin = which("env") as string;

    /** The image's ENV plus `extra`, exactly: nothing else from the host reaches the binary. */
    const imageEnv = (extra: Record<string, string> = {}) => ["DATA_DIR=/data", "HOST=0.0.0.0", `PORT=${DEFAULTS.PORT}`, ...Object.entries(extra).map(([k, v]) => `${k}=${v}`)];

    /**
     * argv running `/feature-store ARGS` the way a container runtime would: own mount and PID
     * namespaces, read-only root, /proc, a few /dev nodes, /data (volume) and /tmp (tmpfs)
     * writable, as 65532:65532. The host's sh sets the mounts up; none is inside the root.
     */
    function inJail(args: string[], env: string[]): string[] {
      const script = [
        "set -e",
        `R=${JSON.stringify(root)}`,
        `${mountPath} --bind "$R" "$R"`,
        `${mountPath} -o remount,bind,ro "$R"`,
        `${mountPath} -t proc -o nosuid,nodev,noexec proc "$R/proc"`,
        `for d in null zero random urandom; do ${mountPath} --bind /dev/$d "$R/dev/$d"; done`,
        `${mountPath} -t tmpfs -o mode=1777,nosuid,nodev,size=64m tmpfs "$R/tmp"`,
        `${mountPath} --bind ${JSON.stringify(data)} "$R/data"`,
        `exec ${envBin} -i "$@" ${chroot} --userspec=${NONROOT}:${NONROOT} "$R" /feature-store ${args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")}`,
      ].join("\n");
      return [unshare, "--mount", "--pid", "--fork", "--kill-child", "/bin/sh", "-c", script, "jail", ...env];
    }

    function jailRun(args: string[], extraEnv: Record<string, string> = {}) {
      return sh(inJail(args, imageEnv({ LOG_LEVEL: "warn", ...extraEnv })), { timeoutMs: 30_000 });
    }

    /** Host pid of the jailed server (the child of unshare; PID 1 inside). */
    function serverPid(): number {
      const pid = server?.pid as number;
      const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
      expect(kids.length).toBe(1);
      return Number(kids[0]);
    }

    beforeAll(async () => {
      root = mkdtempSync(join(tmpdir(), "fs-distroless-"));
      data = mkdtempSync(join(tmpdir(), "fs-volume-"));
      chownSync(data, NONROOT, NONROOT);
      buildRootfs(root);
      before = snapshot(root);
      port = await freePort();
      server = Bun.spawn(inJail(["serve", "--port", String(port), "--host", "127.0.0.1"], imageEnv({ LOG_LEVEL: "info", SHUTDOWN_DELAY: "1", SHUTDOWN_TIMEOUT: "2" })), {
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
        env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      });
      const collect = async (s: ReadableStream<Uint8Array>) => {
        for await (const c of s) serverLog += new TextDecoder().decode(c);
      };
      void collect(server.stdout);
      void collect(server.stderr);
      try {
        await waitFor(`http://127.0.0.1:${port}/healthz`, 200, 20_000);
      } catch (e) {
        throw new Error(`${(e as Error).message}\n--- server output ---\n${serverLog}`);
      }
    }, 60_000);

    afterAll(() => {
      server?.kill("SIGKILL"); // --kill-child takes the jailed process with it
      rmSync(root, { recursive: true, force: true });
      rmSync(data, { recursive: true, force: true });
    });

    test("ldd: the binary needs only glibc and its loader (all in the distroless base)", () => {
      const objects = lddObjects();
      expect(objects.some((o) => o.name === "libc.so.6")).toBe(true);
      const foreign = objects.filter((o) => !GLIBC.test(o.name) && !GCC_RUNTIME.test(o.name));
      expect(foreign.map((o) => o.path)).toEqual([]);
      if (which("dpkg-query")) {
        for (const o of objects) {
          const owner = sh(["dpkg-query", "-S", realpathSync(o.path)]);
          if (owner.code !== 0) continue; // e.g. /lib64 loader symlink paths dpkg records differently
          expect(owner.stdout.split(":")[0], o.path).toMatch(/^(libc6|libgcc-s1|libstdc\+\+6)$/);
        }
      }
    });

    test("the root holds no shell and no executable but /feature-store", () => {
      for (const p of ["bin/sh", "usr/bin/sh", "bin/bash", "bin/busybox", "usr/bin/env"]) expect(existsSync(join(root, p)), p).toBe(false);
      const executables = before
        .map((l) => l.split(" "))
        .filter(([p, mode]) => !/\.so(\.\d+)*$/.test(p as string) && (Number.parseInt(mode as string, 8) & 0o170000) === 0o100000 && (Number.parseInt(mode as string, 8) & 0o111) !== 0)
        .map(([p]) => p);
      expect(executables).toEqual(["feature-store"]);
    });

    test("serve answers from the host: /healthz, /readyz (embedded stores), /metrics", async () => {
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: "ok", stores: { database: "ok", cache: "in_process" } });
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toContain("# TYPE feature_store_http_requests_total counter");
    });

    test("the CLI in the same root and volume: migrate, keys create; then register, write and read over HTTP", async () => {
      const m = jailRun(["migrate"]);
      expect(m.code, m.stderr).toBe(0);
      const k = jailRun(["keys", "create", "--tenant", "acme", "--scopes", "admin"]);
      expect(k.code, k.stderr).toBe(0);
      const key = k.stdout.trimEnd().split("\n").at(-1) as string;
      const base = `http://127.0.0.1:${port}`;
      const call = async (path: string, body: unknown) => {
        const deadline = Date.now() + 3000; // a key created by another process is seen within 1 s
        for (;;) {
          const r = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": key }, body: JSON.stringify(body) });
          if (r.status !== 401 || Date.now() > deadline) return r;
          await Bun.sleep(100);
        }
      };
      expect((await call("/api/v1/features/register", { name: "user_age", version: 1, dtype: "int32", entity_type: "user" })).status).toBe(201);
      const t = new Date(Date.now() - 60_000).toISOString();
      const w = await call("/api/v1/features/write", { entity_type: "user", records: [{ entity_id: "u1", event_time: t, features: { user_age: 34 } }] });
      expect(await w.json()).toEqual({ written: 1 });
      const o = (await (await call("/api/v1/features/online", { entity_id: "u1", feature_names: ["user_age"] })).json()) as { features: Record<string, unknown> };
      expect(o.features).toEqual({ user_age: 34 });
      // state went to the volume only
      expect(readdirSync(data).some((f) => f.endsWith(".db"))).toBe(true);
    });

    test("healthcheck inside the root: by URL, by name through /etc/hosts, by PORT (as the image's HEALTHCHECK), and failing on a dead port", async () => {
      expect(jailRun(["healthcheck", `http://127.0.0.1:${port}`]).code).toBe(0);
      const byName = jailRun(["healthcheck", `http://feature-store.test:${port}`]);
      expect(byName.code, byName.stderr).toBe(0);
      expect(jailRun(["healthcheck"], { PORT: String(port) }).code).toBe(0);
      const dead = jailRun(["healthcheck", `http://127.0.0.1:${await freePort()}`]);
      expect(dead.code).toBe(1);
    });

    test("nothing was written outside /data and /tmp (the root is read-only and unchanged)", () => {
      expect(snapshot(root)).toEqual(before);
      const st = statSync(join(root, "data"));
      expect([st.uid, st.gid]).toEqual([NONROOT, NONROOT]);
    });

    test("SIGTERM to PID 1: /readyz 503 during SHUTDOWN_DELAY, then exit 0 within SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT + 3 s", async () => {
      const pid = serverPid();
      const started = Date.now();
      process.kill(pid, "SIGTERM");
      await Bun.sleep(300);
      const during = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(during.status).toBe(503);
      expect(jailRun(["healthcheck", `http://127.0.0.1:${port}`]).code).toBe(1);
      const code = await Promise.race([server?.exited, Bun.sleep((1 + 2 + 3) * 1000).then(() => "timeout")]);
      expect(code, serverLog.split("\n").slice(-5).join("\n")).toBe(0);
      expect(Date.now() - started).toBeLessThan(6000);
      server = undefined;
    }, 15_000);
  });
});
