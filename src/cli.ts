#!/usr/bin/env bun
/**
 * The only entrypoint: parses the command name and lazily imports src/cmd/<name>.ts, so each
 * command loads only what it uses (cold start stays small).
 */
import pkg from "../package.json" with { type: "json" };
import { CliError, parseFlags, UsageError, type Command } from "./cmd/command.ts";

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ command: Command }> }> = {
  serve: { summary: "run the HTTP API", load: () => import("./cmd/serve.ts") },
  worker: { summary: "run the Kafka stream worker", load: () => import("./cmd/worker.ts") },
  migrate: { summary: "apply pending database migrations, then exit", load: () => import("./cmd/migrate.ts") },
  register: { summary: "register the feature definitions in a YAML file", load: () => import("./cmd/register.ts") },
  keys: { summary: "create, list and revoke API keys", load: () => import("./cmd/keys.ts") },
  materialize: { summary: "load registered sources (Parquet, CSV, PostgreSQL) into the store", load: () => import("./cmd/materialize.ts") },
  seed: { summary: "generate sample definitions and values", load: () => import("./cmd/seed.ts") },
  export: { summary: "write point-in-time training data for an entity dataframe file", load: () => import("./cmd/export.ts") },
  "import-feast": { summary: "import a Feast registry (feast registry-dump output)", load: () => import("./cmd/import-feast.ts") },
  healthcheck: { summary: "exit 0 when the server answers /readyz with 200", load: () => import("./cmd/healthcheck.ts") },
  version: { summary: "print the version", load: async () => ({ command: version }) },
};

const version: Command = {
  summary: "print the version",
  help: "Usage: feature-store version",
  async run(argv) {
    parseFlags(argv, {});
    console.log(pkg.version);
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    `feature-store ${pkg.version}: an ML feature store in one binary`,
    "",
    "Usage: feature-store <command> [options]",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `feature-store <command> --help` (or `feature-store help <command>`) for a command's options.",
    "Configuration: flags, then environment variables (PORT, HOST, DATA_DIR, POSTGRES_URL, REDIS_URL,",
    "KAFKA_BROKERS, LOG_LEVEL, ...; X_FILE for secrets), then defaults. See the README.",
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [first, ...args] = argv;
  // `help COMMAND` is `COMMAND --help`
  const [name, ...rest] = first === "help" && args.length > 0 ? [args[0], ...args.slice(1), "--help"] : [first, ...args];
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") {
    console.log(pkg.version);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    console.error(`feature-store: unknown command ${JSON.stringify(name)}\n`);
    console.error(usage());
    return 2;
  }
  const { command } = await entry.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.help);
    return 0;
  }
  try {
    return (await command.run(rest)) ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`feature-store ${name}: ${e.message}\n`);
      console.error(command.help);
      return 2;
    }
    if (e instanceof CliError) {
      console.error(`feature-store ${name}: ${e.message}`);
      return e.exitCode;
    }
    console.error(`feature-store ${name}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

// A library's stray rejection (e.g. a connection dropped mid-handshake) must not take a server down.
process.on("unhandledRejection", (reason: unknown) => {
  console.error(JSON.stringify({ level: "error", msg: "unhandled rejection", err: reason instanceof Error ? reason.message : String(reason) }));
});

main(process.argv.slice(2)).then(
  (code) => {
    // Long-running commands (serve, worker) never resolve here until they are done.
    process.exitCode = code;
    if (code !== 0) process.exit(code);
  },
  (e: unknown) => {
    console.error(`feature-store: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
