/**
 * The request and response schemas: they validate requests and generate /openapi.json, so the
 * document and the behaviour cannot drift. JSON keys are snake_case, as on the wire. Hono-free:
 * the stream worker and the CLI validate with them too (`z` comes from @hono/zod-openapi only for
 * its `.openapi()` metadata).
 */
import { z } from "@hono/zod-openapi";
import { AppError, ERROR_CODES, formatPath, type FieldError } from "./errors.ts";
import { DTYPES } from "./registry/dtype.ts";
import { entityIdProblem, MAX_ENTITY_ID_BYTES, NAME_PATTERN, REF_PATTERN } from "./registry/names.ts";
import { parseTime } from "./lib/time.ts";

/** Request list limits. */
export const LIMITS = { writeRecords: 10_000, onlineIds: 1_000, features: 1_000, batchRows: 100_000, frameRows: 10_000_000 } as const;

export const Name = z.string().regex(new RegExp(NAME_PATTERN), "must match ^[a-z][a-z0-9_]{0,127}$").openapi({ example: "user_age" });
export const EntityType = Name.openapi({ example: "user" });
export const FeatureRef = z
  .string()
  .regex(new RegExp(REF_PATTERN), "must be `name` or `name@N`")
  .openapi({ description: "`name` (highest version) or `name@N`", example: "user_age" });
export const EntityId = z
  .string()
  .min(1)
  .max(MAX_ENTITY_ID_BYTES)
  .superRefine((v, ctx) => {
    const p = entityIdProblem(v);
    if (p) ctx.addIssue({ code: "custom", message: p });
  })
  .openapi({ description: `non-empty, at most ${MAX_ENTITY_ID_BYTES} UTF-8 bytes, no U+0000`, example: "user_123", pattern: "^[^\\u0000]+$" });
/** Free text of a definition's metadata: valid Unicode, no U+0000 (neither store can keep it). */
const MetaText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((v) => v.isWellFormed() && !v.includes("\u0000"), "must be valid Unicode without U+0000")
    .openapi({ pattern: "^[^\\u0000]*$" });

export const Timestamp = z.string().openapi({ format: "date-time", description: "RFC 3339; any offset; truncated to the millisecond", example: "2024-01-15T10:00:00Z" });
/** What {@link validate} answers as `detail` when every issue is a bad timestamp. */
const INVALID_TIMESTAMP = "invalid timestamp";
/** {@link Timestamp} parsed: epoch milliseconds out; not RFC 3339 is an issue "expected an RFC 3339 timestamp". */
const TimestampMs = Timestamp.transform((text, ctx) => {
  const ms = parseTime(text);
  if (ms === null) {
    ctx.addIssue({ code: "custom", message: "expected an RFC 3339 timestamp", params: { detail: INVALID_TIMESTAMP } });
    return z.NEVER;
  }
  return ms;
});
const OutTime = z.string().openapi({ format: "date-time", example: "2024-01-15T10:00:00.000Z" });
const FeatureNames = z.array(FeatureRef).min(1).max(LIMITS.features);

// ---------------------------------------------------------------- examples

/** A definition as the examples of the document show it. */
const DEFINITION_EXAMPLE = {
  name: "user_lifetime_value",
  version: 1,
  dtype: "float64",
  entity_type: "user",
  ttl_hours: 24,
  description: "total spend of the user, in EUR",
  owner: "growth-team",
  tags: { team: "growth" },
  created_at: "2024-01-15T09:00:00.000Z",
  updated_at: "2024-01-15T09:00:00.000Z",
};
const ONLINE_EXAMPLE = {
  entity_id: "user_123",
  features: { user_age: 34, user_lifetime_value: null },
  metadata: {
    user_age: { status: "present", event_time: "2024-01-15T09:58:00.000Z" },
    user_lifetime_value: { status: "not_found", event_time: null },
  },
};
const ONLINE_MULTI_EXAMPLE = {
  results: [
    ONLINE_EXAMPLE,
    {
      entity_id: "user_456",
      features: { user_age: 27, user_lifetime_value: null },
      metadata: {
        user_age: { status: "present", event_time: "2024-01-14T18:30:00.000Z" },
        user_lifetime_value: { status: "expired", event_time: "2024-01-10T08:00:00.000Z" },
      },
    },
  ],
};
const BATCH_RESULT_EXAMPLE = {
  entity_id: "user_1",
  timestamp: "2024-01-15T10:00:00.000Z",
  features: { user_age: 34, user_lifetime_value: 1520.5 },
  metadata: {
    user_age: { status: "present", event_time: "2024-01-12T08:00:00.000Z" },
    user_lifetime_value: { status: "present", event_time: "2024-01-15T09:00:00.000Z" },
  },
};

// ---------------------------------------------------------------- registry

export const RegisterBody = z
  .strictObject({
    name: Name,
    version: z.int().min(1).max(2_147_483_647),
    dtype: z.enum(DTYPES).openapi({ description: "a scalar type or its list form `T[]` (`float32[]` is the embedding type)" }),
    entity_type: EntityType,
    ttl_hours: z.number().positive().max(1e9).optional().openapi({ description: "values older than this are served as `expired`; omitted: never expire" }),
    description: MetaText(10_000).optional(),
    owner: MetaText(1_000).optional(),
    tags: z.record(MetaText(256), MetaText(10_000)).optional(),
  })
  .openapi("RegisterBody", {
    example: { name: "user_lifetime_value", version: 1, dtype: "float64", entity_type: "user", ttl_hours: 24 },
  });

export const Definition = z
  .object({
    name: Name,
    version: z.int(),
    dtype: z.enum(DTYPES),
    entity_type: EntityType,
    ttl_hours: z.number().nullable(),
    description: z.string().nullable(),
    owner: z.string().nullable(),
    tags: z.record(z.string(), z.string()),
    created_at: OutTime,
    updated_at: OutTime,
  })
  .openapi("Definition", { example: DEFINITION_EXAMPLE });

export const DefinitionResponse = z.object({ feature: Definition }).openapi("DefinitionResponse", { example: { feature: DEFINITION_EXAMPLE } });
export const DefinitionList = z.object({ features: z.array(Definition) }).openapi("DefinitionList", { example: { features: [DEFINITION_EXAMPLE] } });
export const DefinitionVersions = z
  .object({ name: Name, versions: z.array(Definition) })
  .openapi("DefinitionVersions", {
    example: {
      name: "user_lifetime_value",
      versions: [DEFINITION_EXAMPLE, { ...DEFINITION_EXAMPLE, version: 2, dtype: "float32", created_at: "2024-02-01T12:00:00.000Z", updated_at: "2024-02-01T12:00:00.000Z" }],
    },
  });

// ---------------------------------------------------------------- values

const FeatureValues = z.record(FeatureRef, z.unknown()).openapi({
  description: "feature reference -> value (JSON form of its dtype)",
  example: { user_age: 34, user_lifetime_value: 1520.5 },
});

export const WriteRecord = z.strictObject({
  entity_id: EntityId,
  event_time: Timestamp.openapi({ description: "RFC 3339; any offset; truncated to the millisecond; default: the time of receipt. At most MAX_FUTURE_SKEW (default 5 minutes) ahead of the server clock, else 400." }).optional(),
  features: FeatureValues,
});

export const WriteBody = z
  .strictObject({ entity_type: EntityType, records: z.array(WriteRecord).max(LIMITS.writeRecords) })
  .openapi("WriteBody", {
    example: { entity_type: "user", records: [{ entity_id: "user_123", event_time: "2024-01-15T09:58:00Z", features: { user_age: 34 } }] },
  });
export const WriteResponse = z.object({ written: z.int().min(0) }).openapi("WriteResponse", { example: { written: 2 } });

export const OnlineSingleBody = z.strictObject({ entity_id: EntityId, feature_names: FeatureNames }).openapi("OnlineSingleBody", {
  example: { entity_id: "user_123", feature_names: ["user_age", "user_lifetime_value"] },
});
export const OnlineMultiBody = z
  .strictObject({ entity_ids: z.array(EntityId).min(1).max(LIMITS.onlineIds), feature_names: FeatureNames })
  .openapi("OnlineMultiBody");
export const OnlineBody = z.union([OnlineSingleBody, OnlineMultiBody]).openapi("OnlineBody");

const ValueMeta = z
  .object({ status: z.enum(["present", "not_found", "expired"]), event_time: OutTime.nullable() })
  .openapi("ValueMetadata");
const ResultFields = {
  features: z.record(z.string(), z.unknown()).openapi({ description: "reference as requested -> value, or null when not present" }),
  metadata: z.record(z.string(), ValueMeta),
};
export const OnlineResult = z.object({ entity_id: z.string(), ...ResultFields }).openapi("OnlineResult", { example: ONLINE_EXAMPLE });
export const OnlineMultiResponse = z.object({ results: z.array(OnlineResult) }).openapi("OnlineMultiResponse", { example: ONLINE_MULTI_EXAMPLE });
export const OnlineResponse = z.union([OnlineResult, OnlineMultiResponse]).openapi("OnlineResponse", { example: ONLINE_EXAMPLE });
/** Named examples of the online response, one per request shape. */
export const onlineExamples = {
  entity_id: { summary: "`entity_id`: one result object", value: ONLINE_EXAMPLE },
  entity_ids: { summary: "`entity_ids`: one result per id, in request order", value: ONLINE_MULTI_EXAMPLE },
};

export const BatchSharedBody = z
  .strictObject({ entity_ids: z.array(EntityId).min(1).max(LIMITS.batchRows), feature_names: FeatureNames, timestamp: Timestamp })
  .openapi("BatchSharedTimeBody", {
    example: { entity_ids: ["user_1", "user_2", "user_3"], feature_names: ["user_age", "user_lifetime_value"], timestamp: "2024-01-15T10:00:00Z" },
  });
export const BatchRowsBody = z
  .strictObject({
    rows: z.array(z.strictObject({ entity_id: EntityId, timestamp: Timestamp })).min(1).max(LIMITS.batchRows),
    feature_names: FeatureNames,
  })
  .openapi("BatchRowsBody");
/**
 * {@link BatchSharedBody} and {@link BatchRowsBody} with their timestamps parsed into epoch
 * milliseconds: what the bulk lane answers from. (The documented bodies keep the text, which the
 * dataframe path passes through as an input column.)
 */
export const BatchSharedQuery = BatchSharedBody.extend({ timestamp: TimestampMs });
export const BatchRowsQuery = BatchRowsBody.extend({ rows: z.array(z.strictObject({ entity_id: EntityId, timestamp: TimestampMs })).min(1).max(LIMITS.batchRows) });
export const BatchFrameBody = z
  .strictObject({
    entity_rows: z
      .array(z.record(z.string(), z.unknown()))
      .min(1)
      .max(LIMITS.frameRows)
      .openapi({ description: "the entity dataframe: one object per row (a timestamp, an id per entity type, any other columns, passed through)" }),
    feature_names: FeatureNames.openapi({ description: "features of any entity types" }),
    entity_columns: z
      .record(EntityType, z.string().min(1))
      .optional()
      .openapi({ description: "entity type -> column of its ids; default `<type>_id`, then `<type>`, then (one entity type) `entity_id`" }),
    timestamp_column: z.string().min(1).optional().openapi({ description: "column of row timestamps; default `timestamp`, then `event_timestamp`" }),
  })
  .openapi("BatchFrameBody", {
    example: {
      entity_rows: [{ user_id: "user_1", merchant_id: "m_7", timestamp: "2024-01-15T10:00:00Z", label: 1 }],
      feature_names: ["user_age", "merchant_risk"],
    },
  });
/** Query parameters of a dataframe query sent as CSV, NDJSON or Parquet (the body is the dataframe itself). */
export const BatchFrameQuery = z.strictObject({
  feature_names: z
    .array(FeatureRef)
    .min(1, "feature_names is required: ?feature_names=a,b (or repeated)")
    .max(LIMITS.features)
    .openapi({ param: { name: "feature_names", in: "query", style: "form", explode: false }, description: "for CSV, NDJSON and Parquet bodies: the feature references, comma-separated or repeated" }),
  entity_columns: z
    .array(z.string().regex(/^[a-z][a-z0-9_]{0,127}:.+$/, "must be ENTITY_TYPE:COLUMN"))
    .optional()
    .openapi({ param: { name: "entity_columns", in: "query", style: "form", explode: false }, description: "for CSV, NDJSON and Parquet bodies: `type:column` pairs, e.g. `user:uid,merchant:mid`" }),
  timestamp_column: z.string().min(1).optional().openapi({ param: { name: "timestamp_column", in: "query" }, description: "for CSV, NDJSON and Parquet bodies: the column of row timestamps" }),
});
/** One output row of a dataframe query: the input columns, then per feature its value and `<ref>__status`. */
const FRAME_ROW_EXAMPLE = { user_id: "user_1", merchant_id: "m_7", timestamp: "2024-01-15T10:00:00.000Z", label: 1, user_age: 34, user_age__status: "present", merchant_risk: null, merchant_risk__status: "not_found" };
export const BatchFrameRow = z.record(z.string(), z.unknown()).openapi("BatchFrameRow", { example: FRAME_ROW_EXAMPLE });
export const BatchFrameResponse = z.object({ rows: z.array(BatchFrameRow) }).openapi("BatchFrameResponse", { example: { rows: [FRAME_ROW_EXAMPLE] } });
/** An entity dataframe or a training table as CSV (header line; lists as JSON text; null as an empty field). */
export const CsvTable = z.string().openapi("CsvTable", {
  description: "CSV with a header line (RFC 4180)",
  example: "user_id,merchant_id,timestamp,label,user_age,user_age__status,merchant_risk,merchant_risk__status\r\nuser_1,m_7,2024-01-15T10:00:00.000Z,1,34,present,,not_found\r\n",
});
/** A Parquet file or an Arrow IPC stream: typed columns (see the README, Training data). */
export const BinaryTable = z.string().openapi("BinaryTable", { format: "binary", description: "binary; the same columns as the CSV form, typed per dtype", example: "(binary)" });
export const BatchBody = z.union([BatchSharedBody, BatchRowsBody, BatchFrameBody]).openapi("BatchBody");
export const BatchResult = z.object({ entity_id: z.string(), timestamp: OutTime, ...ResultFields }).openapi("BatchResult", { example: BATCH_RESULT_EXAMPLE });
const BATCH_RESPONSE_EXAMPLE = {
  results: [
    BATCH_RESULT_EXAMPLE,
    {
      entity_id: "user_2",
      timestamp: "2024-01-15T10:00:00.000Z",
      features: { user_age: null, user_lifetime_value: 88 },
      metadata: { user_age: { status: "not_found", event_time: null }, user_lifetime_value: { status: "present", event_time: "2024-01-14T22:10:00.000Z" } },
    },
  ],
};
export const BatchResponse = z.object({ results: z.array(BatchResult) }).openapi("BatchResponse", { example: BATCH_RESPONSE_EXAMPLE });
/** Examples of the batch 200 per form: the contract forms and entity dataframes. */
export const batchExamples = {
  json: {
    contract: { summary: "`entity_ids` + `timestamp`, or `rows`: one result per row", value: BATCH_RESPONSE_EXAMPLE },
    entity_rows: { summary: "an entity dataframe: its columns, then per feature its value and `<ref>__status`", value: { rows: [FRAME_ROW_EXAMPLE] } },
  },
  ndjson: {
    contract: { summary: "contract forms: one result per line", value: BATCH_RESULT_EXAMPLE },
    entity_rows: { summary: "an entity dataframe: one row object per line", value: FRAME_ROW_EXAMPLE },
  },
};

// ---------------------------------------------------------------- operations and errors

export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    code: z.enum(Object.keys(ERROR_CODES) as [keyof typeof ERROR_CODES, ...(keyof typeof ERROR_CODES)[]]),
    request_id: z.string(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .openapi("Problem", { description: "RFC 9457 problem details" });

export const ServiceIndex = z
  .object({
    name: z.literal("feature-store"),
    version: z.string(),
    docs: z.string().openapi({ description: "the interactive API reference (works offline)" }),
    openapi: z.string().openapi({ description: "the OpenAPI 3.1 document" }),
    health: z.string(),
    ready: z.string(),
    metrics: z.string(),
  })
  .openapi("ServiceIndex");

export const Readiness = z
  .object({
    status: z.enum(["ok", "degraded", "down"]),
    stores: z.object({ database: z.enum(["ok", "down"]), cache: z.enum(["ok", "down", "in_process"]) }),
  })
  .openapi("Readiness", { example: { status: "ok", stores: { database: "ok", cache: "in_process" } } });

/**
 * Wording of zod issues a client can act on (pass as `safeParse(raw, { error: issueWording })`):
 * a missing field is `required` (zod says "expected array, received undefined"), an empty string
 * or list `must not be empty`. Anything else keeps zod's message.
 */
export const issueWording: z.core.$ZodErrorMap = (issue) => {
  if (issue.input === undefined && (issue.code === "invalid_type" || issue.code === "invalid_value")) return "required";
  if (issue.code === "too_small" && issue.minimum === 1 && (issue.origin === "string" || issue.origin === "array")) return "must not be empty";
  return undefined;
};

/** Turns zod issues into `errors` entries: at most one per path (the first), at most 100. */
export function zodErrors(error: z.ZodError): FieldError[] {
  const out: FieldError[] = [];
  const seen = new Set<string>();
  const add = (path: string, message: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    out.push({ path, message });
  };
  for (const i of error.issues) {
    if (i.code === "unrecognized_keys") {
      for (const k of i.keys) add(formatPath([...i.path, k]), `unknown field ${JSON.stringify(k)}`);
    } else {
      add(formatPath(i.path) || "(body)", i.message);
    }
    if (out.length >= 100) break;
  }
  return out.slice(0, 100);
}

// ───────────────────────────── decoding request bodies (Hono-free) ─────────────────────────────

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** Decodes a request body as strict UTF-8 JSON (the bulk lane's workers call it off the serving thread too); 400 when it is not. */
export function decodeJson(buf: ArrayBuffer | Uint8Array): unknown {
  return parseJsonBody(decodeUtf8(buf));
}

/** A request body's text, decoded as strict UTF-8 (a leading BOM dropped); 400 when it is not UTF-8. */
export function decodeUtf8(buf: ArrayBuffer | Uint8Array): string {
  try {
    return utf8.decode(buf);
  } catch {
    throw new AppError("invalid_request", "request body is not valid UTF-8");
  }
}

/** The JSON value of a request body's text ({@link decodeJson} after decoding); 400 when it is not one. */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === "") throw new AppError("invalid_request", "request body is empty; a JSON object is required");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const why = e instanceof SyntaxError ? e.message : "too deeply nested";
    throw new AppError("invalid_request", `request body is not valid JSON: ${why}`);
  }
  if ((text.includes("__proto__") || text.includes("\\u")) && hasProtoKey(value)) {
    throw new AppError("invalid_request", "`__proto__` is not allowed as a key in a request body");
  }
  return value;
}

/** Whether any object in a parsed JSON value has an own `__proto__` key (it would be dropped or misread). */
function hasProtoKey(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== "object" || v === null) continue;
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x === "object" && x !== null) stack.push(x);
      continue;
    }
    if (Object.hasOwn(v, "__proto__")) return true;
    for (const x of Object.values(v)) if (typeof x === "object" && x !== null) stack.push(x);
  }
  return false;
}

/**
 * Validates a value against `schema`; 400 with `errors` on failure. Its detail is "request does
 * not match the schema", or the one every issue names (`params.detail`, e.g. "invalid timestamp").
 */
export function validate<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const r = schema.safeParse(raw, { error: issueWording });
  if (!r.success) throw new AppError("invalid_request", issuesDetail(r.error), { errors: zodErrors(r.error) });
  return r.data;
}

function issuesDetail(error: z.ZodError): string {
  const named = (i: z.core.$ZodIssue): unknown => (i.code === "custom" ? i.params?.detail : undefined);
  const first = named(error.issues[0] as z.core.$ZodIssue);
  return typeof first === "string" && error.issues.every((i) => named(i) === first) ? first : "request does not match the schema";
}

/**
 * Bodies with alternative shapes (`entity_id` | `entity_ids`; `rows` | `entity_ids` + `timestamp`):
 * when `raw` has `field` and any of `others`, a 400 saying they are mutually exclusive (rather
 * than calling one of them an unknown field of the other shape). `choice` says what to send.
 */
export function exclusive(raw: unknown, field: string, others: readonly string[], choice: string): void {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || !(field in raw)) return;
  const errors = others.filter((o) => o in raw).map((o) => ({ path: o, message: `\`${field}\` and \`${o}\` are mutually exclusive: send ${choice}` }));
  if (errors.length > 0) throw new AppError("invalid_request", "request does not match the schema", { errors });
}
