/**
 * What cli.ts and every command share, and nothing else (cli.ts loads this alone at start):
 * the command's shape, argument parsing with usage errors, and the one-line CLI error.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

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

/** util.parseArgs in strict mode; unknown flags and bad positionals are usage errors. */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T, allowPositionals = false) {
  const all = { ...options, help: { type: "boolean", short: "h" } } as const;
  try {
    return parseArgs({ args: argv, options: all, strict: true, allowPositionals });
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
