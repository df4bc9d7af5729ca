/**
 * What cli.ts and every command share, and nothing else (cli.ts loads this alone at start):
 * the command's shape, argument parsing with usage errors, and the one-line CLI error.
 */
import type { ParseArgsConfig, parseArgs } from "node:util";

/** A usage error: help is printed and the process exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A failure to report as one line (exit code given). */
export class CliError extends Error {
  override name = "CliError";
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** A command module's shape. */
export interface Command {
  /** one-line summary for the top-level help */
  summary: string;
  /** full help text */
  help: string;
  run(argv: string[]): Promise<number | void>;
}

/**
 * The arguments of the usual forms (`--name value`, `--name=value` for a string option, `--name`
 * for a boolean one, each a known option) as util.parseArgs reads them in strict mode, without
 * loading node:util (its primordials were a tenth of the CPU of a server's start); anything else
 * (a positional, a short option, `--`, a value starting with `-`, an unknown name): `undefined`.
 */
function simpleFlags(argv: string[], options: NonNullable<ParseArgsConfig["options"]>): { values: Record<string, string | boolean>; positionals: string[] } | undefined {
  const values: Record<string, string | boolean> = Object.create(null);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith("--") || arg === "--") return undefined;
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const opt = Object.hasOwn(options, name) ? options[name] : undefined;
    if (opt === undefined || opt.multiple) return undefined;
    if (opt.type === "boolean") {
      if (eq >= 0) return undefined;
      values[name] = true;
    } else if (eq >= 0) {
      values[name] = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("-")) return undefined;
      values[name] = next;
      i++;
    }
  }
  return { values, positionals: [] };
}

/** util.parseArgs in strict mode; unknown flags and bad positionals are usage errors. */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T, allowPositionals = false) {
  const all = { ...options, help: { type: "boolean", short: "h" } } as const;
  type Parsed = ReturnType<typeof parseArgs<{ args: string[]; options: typeof all; strict: true; allowPositionals: boolean }>>;
  const simple = simpleFlags(argv, all);
  if (simple !== undefined) return simple as unknown as Parsed;
  try {
    const util = require("node:util") as typeof import("node:util");
    return util.parseArgs({ args: argv, options: all, strict: true, allowPositionals });
  } catch (e) {
    throw new UsageError(parseArgsMessage(e as Error & { code?: string }, Object.keys(all)));
  }
}

/** A parseArgs failure in one line a user can act on (its own messages explain its internals). */
function parseArgsMessage(e: Error & { code?: string }, options: string[]): string {
  const quoted = /'([^']+)'/.exec(e.message)?.[1] ?? "";
  const flag = quoted.split(/[ ,]/).find((w) => w.startsWith("--")) ?? quoted;
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${quoted} (options: ${options.map((o) => `--${o}`).join(", ")})`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return e.message.includes("argument missing") ? `${flag} needs a value` : `${flag} takes no value`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${JSON.stringify(quoted)}`;
    default:
      return e.message.split("\n")[0] ?? e.message;
  }
}
