/**
 * `feature-store export`: the training-data query of `POST /api/v1/features/batch` from the
 * command line, on the configured database: an entity dataframe file in, a training file out
 * (formats from the extensions), with a progress bar on a terminal and plain lines otherwise.
 */
import { renameSync, rmSync } from "node:fs";
import { extname } from "node:path";
import { SingleBar } from "cli-progress";
import { AppError } from "../errors.ts";
import { decodeFrame, type InputFormat } from "../formats/decode.ts";
import { createEncoder, type OutputFormat } from "../formats/encode.ts";
import { lookupFrame, type FrameOptions } from "../serving/batch.ts";
import { buildDeps, closeDeps, CliError, config, parseFlags, UsageError, type Command } from "./common.ts";

const INPUTS: Record<string, Exclude<InputFormat, "json">> = { ".csv": "csv", ".parquet": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson" };
const OUTPUTS: Record<string, OutputFormat> = { ".csv": "csv", ".parquet": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".arrow": "arrow", ".arrows": "arrow" };
const TENANT_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** An AppError as one line: its message and the first field it names. */
function oneLine(e: AppError): string {
  const first = e.errors?.[0];
  return first && !e.message.includes(first.path) ? `${e.message} (${first.path}: ${first.message})` : e.message;
}

/** Progress on stderr: a bar with rows/s and ETA on a terminal, a plain line a second otherwise. */
function progress(total: number) {
  const started = Date.now();
  if (process.stderr.isTTY === true) {
    const bar = new SingleBar({ format: "export [{bar}] {percentage}% | {value}/{total} rows | {speed} rows/s | ETA {eta_formatted}", hideCursor: true, etaBuffer: 50 }, undefined);
    bar.start(total, 0, { speed: 0 });
    return {
      update: (done: number) => bar.update(done, { speed: Math.round(done / Math.max(0.001, (Date.now() - started) / 1000)) }),
      stop: () => bar.stop(),
    };
  }
  let last = 0;
  const line = (done: number) => {
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    const rate = done / secs;
    const eta = rate > 0 ? Math.ceil((total - done) / rate) : 0;
    process.stderr.write(`export: ${done}/${total} rows (${Math.floor((done / total) * 100)}%), ${Math.round(rate)} rows/s, ETA ${eta} s\n`);
  };
  return {
    update(done: number) {
      if (Date.now() - last >= 1000 && done < total) {
        last = Date.now();
        line(done);
      }
    },
    stop: () => line(total),
  };
}

export const command: Command = {
  summary: "write point-in-time correct training data for an entity dataframe file",
  help: `Usage: feature-store export --entities FILE --features REF,... --out FILE [options]

Reads an entity dataframe (CSV, Parquet or NDJSON, by extension: .csv .parquet .ndjson .jsonl)
with a timestamp column and an id column per entity type, looks up every feature as of each
row's timestamp, and writes the rows back with the features beside them (input columns first,
then per feature its value and <ref>__status) to --out, whose extension picks the format:
.parquet .arrow (Arrow IPC stream) .csv .ndjson .json. Same semantics as POST
/api/v1/features/batch; runs against the configured database (DATA_DIR or POSTGRES_URL).

Options:
  --entities FILE            the entity dataframe
  --features REF,...         feature references (name or name@N), comma-separated or repeated
  --out FILE                 the output file (written whole, then renamed into place)
  --tenant T                 tenant (default "default")
  --entity-columns T:COL,... entity type -> id column (default <type>_id, then <type>, then entity_id)
  --timestamp-column COL     the row timestamp column (default timestamp, then event_timestamp)`,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        entities: { type: "string" },
        features: { type: "string", multiple: true },
        out: { type: "string" },
        tenant: { type: "string" },
        "entity-columns": { type: "string" },
        "timestamp-column": { type: "string" },
      },
      true,
    );
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
    if (!values.entities) throw new UsageError("--entities FILE is required");
    if (!values.out) throw new UsageError("--out FILE is required");
    const featureNames = (values.features ?? []).flatMap((f) => f.split(",")).map((f) => f.trim()).filter((f) => f !== "");
    if (featureNames.length === 0) throw new UsageError("--features is required (feature references, comma-separated)");
    const inFormat = INPUTS[extname(values.entities).toLowerCase()];
    if (!inFormat) throw new UsageError(`--entities: unknown extension ${JSON.stringify(extname(values.entities))}; use ${Object.keys(INPUTS).join(" ")}`);
    const outFormat = OUTPUTS[extname(values.out).toLowerCase()];
    if (!outFormat) throw new UsageError(`--out: unknown extension ${JSON.stringify(extname(values.out))}; use ${Object.keys(OUTPUTS).join(" ")}`);
    const tenant = values.tenant ?? "default";
    if (!TENANT_RE.test(tenant)) throw new UsageError("--tenant must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$");
    const entityColumns: Record<string, string> = {};
    for (const pair of (values["entity-columns"] ?? "").split(",").filter((p) => p !== "")) {
      const at = pair.indexOf(":");
      if (at <= 0 || at === pair.length - 1) throw new UsageError(`--entity-columns: ${JSON.stringify(pair)} is not TYPE:COLUMN`);
      entityColumns[pair.slice(0, at)] = pair.slice(at + 1);
    }
    const options: FrameOptions = { featureNames, entityColumns, ...(values["timestamp-column"] ? { timestampColumn: values["timestamp-column"] } : {}) };

    const file = Bun.file(values.entities);
    if (!(await file.exists())) throw new CliError(`--entities: ${values.entities} does not exist`, 2);
    let frame;
    try {
      frame = await decodeFrame(inFormat, new Uint8Array(await file.arrayBuffer()));
    } catch (e) {
      if (e instanceof AppError) throw new CliError(`--entities ${values.entities}: ${oneLine(e)}`, 2);
      throw new CliError(`--entities: cannot read ${values.entities}: ${(e as Error).message}`, 2);
    }

    const deps = await buildDeps(config());
    const tmp = `${values.out}.tmp-${process.pid}`;
    try {
      let query;
      try {
        query = lookupFrame(deps, tenant, frame, options);
      } catch (e) {
        if (e instanceof AppError) throw new CliError(oneLine(e), 1);
        throw e;
      }
      const enc = createEncoder(outFormat, query.columns);
      const sink = Bun.file(tmp).writer();
      const bar = progress(query.rows);
      let done = 0;
      try {
        sink.write(enc.begin());
        for await (const chunk of query.chunks) {
          sink.write(enc.write(chunk));
          await sink.flush();
          done += chunk.rows;
          bar.update(done);
        }
        sink.write(enc.end());
        await sink.end();
      } catch (e) {
        await sink.end();
        rmSync(tmp, { force: true });
        if (e instanceof AppError) throw new CliError(oneLine(e), 1);
        throw e;
      } finally {
        bar.stop();
      }
      renameSync(tmp, values.out);
      console.log(`wrote ${query.rows} rows x ${new Set(featureNames).size} features to ${values.out} (${outFormat})`);
    } finally {
      await closeDeps(deps);
    }
  },
};
