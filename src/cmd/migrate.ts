import { createLogger } from "../log.ts";
import { CliError, config, openConfiguredDatabase, parseFlags, type Command } from "./common.ts";

export const command: Command = {
  summary: "apply pending database migrations, then exit",
  help: `Usage: feature-store migrate

Applies the pending migrations (embedded in the binary) to the configured database: PostgreSQL
when POSTGRES_URL is set, else the embedded SQLite database under DATA_DIR. Idempotent: running it
again applies nothing and exits 0. Refuses (exit 1) when an applied migration was changed.`,
  async run(argv) {
    parseFlags(argv, {});
    const cfg = config();
    const log = createLogger(cfg.LOG_LEVEL, 2);
    const db = await openConfiguredDatabase(cfg, log, { location: true, warnIfNew: true });
    try {
      const applied = await db.migrate();
      console.log(applied.length === 0 ? "database is up to date" : applied.map((n) => `applied ${n}`).join("\n"));
      return 0;
    } catch (e) {
      throw new CliError(`migration failed: ${(e as Error).message}`);
    } finally {
      await db.close().catch(() => {});
    }
  },
};
