/**
 * Decoding and validating one event. The envelope is checked with the write route's own zod
 * schemas and the values with `validateRecords`, so an event is accepted exactly when the same
 * record would be accepted by `POST /api/v1/features/write` for that tenant.
 */
import { z } from "@hono/zod-openapi";
import { EntityType, WriteRecord, zodErrors } from "../schemas.ts";
import type { ErrorCode, FieldError } from "../errors.ts";
import type { Definition } from "../registry/snapshot.ts";
import { validateRecords, type ValidationDeps } from "../serving/write.ts";
import type { ValueWrite } from "../store/types.ts";
import type { SourceRecord } from "./source.ts";

/** The message value: one write record plus its tenant and entity type. Unknown fields are invalid. */
export const EventMessage = z.strictObject({
  tenant: z.string().min(1),
  entity_type: EntityType,
  ...WriteRecord.shape,
});

/** A decoded, schema-valid event. */
export type EventMessage = z.output<typeof EventMessage>;

/** Why an event is dead-lettered: a contract error code and a one-line detail. */
export interface Rejection {
  code: ErrorCode;
  detail: string;
}

/** Longest `error-detail` header, characters. */
const MAX_DETAIL = 1000;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function describe(errors: readonly FieldError[]): string {
  const text = errors.map((e) => (e.path === "" ? e.message : `${e.path}: ${e.message}`)).join("; ");
  return text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL - 1)}…` : text;
}

/**
 * Decodes a record value into an event: strict UTF-8 JSON, the envelope schema, and a tenant
 * from `tenants`. Values are not checked here (see {@link prepareEvent}).
 */
export function decodeEvent(record: SourceRecord, tenants: ReadonlySet<string>): { ok: true; event: EventMessage } | { ok: false; rejection: Rejection } {
  if (record.value === null || record.value.byteLength === 0) {
    return { ok: false, rejection: { code: "invalid_request", detail: "message value is empty; a JSON object is required" } };
  }
  let text: string;
  try {
    text = utf8.decode(record.value);
  } catch {
    return { ok: false, rejection: { code: "invalid_request", detail: "message value is not valid UTF-8" } };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const why = e instanceof SyntaxError ? e.message : "too deeply nested";
    return { ok: false, rejection: { code: "invalid_request", detail: `message value is not valid JSON: ${why}` } };
  }
  const parsed = EventMessage.safeParse(raw);
  if (!parsed.success) return { ok: false, rejection: { code: "invalid_request", detail: describe(zodErrors(parsed.error)) } };
  const event = parsed.data;
  if (!tenants.has(event.tenant)) {
    return { ok: false, rejection: { code: "forbidden", detail: `tenant ${JSON.stringify(event.tenant)} is not accepted by this worker (KAFKA_TENANTS)` } };
  }
  return { ok: true, event };
}

/**
 * Validates an event's values against the tenant's current registry (through
 * `validateRecords`, like a write, with its `MAX_FUTURE_SKEW` limit). A missing `event_time` is
 * the record's timestamp, so a redelivered record yields identical rows and is recognised as a
 * re-send. `staleRegistry` says the registry may just not know the feature yet (registered
 * moments ago elsewhere): the event is worth validating again after a reload.
 */
export function prepareEvent(
  deps: ValidationDeps,
  event: EventMessage,
  recordTimestamp: number,
): { ok: true; rows: ValueWrite[]; defs: Definition[] } | { ok: false; rejection: Rejection; staleRegistry: boolean } {
  const v = validateRecords(deps, event.tenant, event.entity_type, [event], recordTimestamp);
  if (v.ok) return v;
  return {
    ok: false,
    // an event is a single record: paths are relative to it (`features.x`)
    rejection: { code: "invalid_request", detail: describe(v.problems.map((p) => ({ path: p.field, message: p.message }))) },
    staleRegistry: v.problems.some((p) => p.reason === "unknown_feature" || p.reason === "wrong_entity_type"),
  };
}
