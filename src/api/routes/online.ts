import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Deps } from "../../serving/deps.ts";
import { lookupOnlineJsonNow, type OnlineResult } from "../../serving/online.ts";
import { REF_PATTERN } from "../../registry/names.ts";
import type { AppEnv } from "../env.ts";
import { exclusive, jsonText, mount, readJson, requireScope, validate } from "../route.ts";
import { decodeUtf8, LIMITS, OnlineBody, parseJsonBody, OnlineMultiBody, OnlineResponse, OnlineSingleBody, onlineExamples } from "../../schemas.ts";
import { problems, security } from "./common.ts";
import { OnlineRowsBody, OnlineRowsResponse, OnlineServiceMultiBody, OnlineServiceSingleBody } from "../../catalog-schemas.ts";
import { onlineByService } from "./service-forms.ts";

export const onlineRoute = createRoute({
  method: "post",
  path: "/api/v1/features/online",
  operationId: "getOnlineFeatures",
  tags: ["values"],
  summary: "Latest feature values for one or many entities (read)",
  description:
    "`entity_id` answers one result object; `entity_ids` answers `{results: [...]}` in request order. Every feature of a request must share one entity type. Status per value: `present`, `not_found` (never written) or `expired` (event_time <= now - ttl_hours).",
  security,
  request: { body: { required: true, content: { "application/json": { schema: z.union([OnlineBody, OnlineServiceSingleBody, OnlineServiceMultiBody, OnlineRowsBody]) } } } },
  responses: {
    200: { description: "Values with per-feature metadata", content: { "application/json": { schema: z.union([OnlineResponse, OnlineRowsResponse]), examples: onlineExamples } } },
    ...problems(400, 404, 413),
  },
});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A validated online body: one entity (`entity_id`) or many (`entity_ids`). */
export type OnlineRequest = { many: false; entityIds: [string]; featureNames: string[] } | { many: true; entityIds: string[]; featureNames: string[] };

const REF_RE = new RegExp(REF_PATTERN);
/**
 * Longest entity id the fast path accepts, in UTF-16 units: at most 3 UTF-8 bytes each, so it
 * is within MAX_ENTITY_ID_BYTES (512) without counting; longer ids go through zod.
 */
const FAST_ID_MAX = 170;

function fastId(v: unknown): v is string {
  return typeof v === "string" && v.length >= 1 && v.length <= FAST_ID_MAX && !v.includes("\u0000") && v.isWellFormed();
}

/**
 * References seen to match REF_PATTERN (a pure function of the string): a model server sends the
 * same few names over and over, and a set lookup is cheaper than the regular expression. Bounded:
 * it starts over when full.
 */
const validRefs = new Set<string>();
const VALID_REFS_MAX = 10_000;

function fastNames(v: unknown): v is string[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > LIMITS.features) return false;
  for (let i = 0; i < v.length; i++) {
    const n = v[i];
    if (typeof n !== "string") return false;
    if (validRefs.has(n)) continue;
    if (!REF_RE.test(n)) return false;
    if (validRefs.size >= VALID_REFS_MAX) validRefs.clear();
    validRefs.add(n);
  }
  return true;
}

/**
 * The common valid shapes, checked by hand: an object with exactly `entity_id` (or
 * `entity_ids`) and `feature_names`, every value within the schema's limits. Returns
 * `undefined` for anything else, which then goes through zod: every error a client sees comes
 * from zod, and a body accepted here is one zod accepts, with the same values (test/unit/online-body.test.ts).
 */
export function fastOnlineBody(raw: unknown): OnlineRequest | undefined {
  if (!isObject(raw)) return undefined;
  let n = 0;
  for (const k in raw) {
    if (!Object.hasOwn(raw, k)) return undefined;
    n++;
  }
  if (n !== 2 || !fastNames(raw.feature_names)) return undefined;
  const one = raw.entity_id;
  if (one !== undefined) return fastId(one) ? { many: false, entityIds: [one], featureNames: raw.feature_names } : undefined;
  const many = raw.entity_ids;
  if (!Array.isArray(many) || many.length < 1 || many.length > LIMITS.onlineIds) return undefined;
  for (let i = 0; i < many.length; i++) if (!fastId(many[i])) return undefined;
  return { many: true, entityIds: many as string[], featureNames: raw.feature_names };
}

/** JSON whitespace (RFC 8259: space, tab, line feed, carriage return). */
function isWs(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

/** From `i`, past any whitespace. */
function skipWs(text: string, i: number): number {
  while (i < text.length && isWs(text.charCodeAt(i))) i++;
  return i;
}

/**
 * The end (the closing quote's index) of the JSON string whose content starts at `i`, when it has
 * no escape and no control character (its value is then its text); -1 otherwise.
 */
function plainStringEnd(text: string, i: number): number {
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) return i;
    if (c === 92 || c < 32) return -1;
  }
  return -1;
}

/**
 * `"key"` then `:` at `i` (whitespace around), the index after the colon's whitespace; -1 otherwise.
 */
function keyAt(text: string, i: number, quotedKey: string): number {
  i = skipWs(text, i);
  if (!text.startsWith(quotedKey, i)) return -1;
  i = skipWs(text, i + quotedKey.length);
  return text.charCodeAt(i) === 58 ? skipWs(text, i + 1) : -1;
}

/**
 * Feature-name lists read by {@link scanOnlineBody}, by their exact text (`[` to `]`): a model
 * server sends the same list over and over. Only lists that pass {@link fastNames} are kept; the
 * arrays are shared by the requests that send that text and never changed. Bounded: it starts
 * over when full.
 */
const nameLists = new Map<string, string[]>();
const NAME_LISTS_MAX = 1000;

/** The strings of a JSON array text of plain strings (`["a", "b"]`), or undefined when it is not exactly one. */
function plainStrings(list: string): string[] | undefined {
  const names: string[] = [];
  let i = skipWs(list, 1);
  if (list.charCodeAt(i) === 93) return undefined; // [] (zod's error)
  for (;;) {
    if (list.charCodeAt(i) !== 34) return undefined;
    const end = plainStringEnd(list, i + 1);
    if (end < 0) return undefined;
    names.push(list.slice(i + 1, end));
    i = skipWs(list, end + 1);
    const c = list.charCodeAt(i);
    if (c === 93) return i === list.length - 1 ? names : undefined;
    if (c !== 44) return undefined;
    i = skipWs(list, i + 1);
  }
}

/**
 * The commonest body read from its text without `JSON.parse`: exactly
 * `{"entity_id": "ID", "feature_names": ["REF", ...]}` in that order, whitespace anywhere JSON
 * allows it, every string free of escapes and control characters, the id and the names as
 * {@link fastOnlineBody} accepts them. For such a text this is exactly `fastOnlineBody(JSON.parse(text))`
 * (test/unit/online-body.test.ts compares them on a corpus); for anything else `undefined`,
 * and the body goes the usual way. The list of names is remembered by its text ({@link nameLists}).
 */
export function scanOnlineBody(text: string): OnlineRequest | undefined {
  let i = skipWs(text, 0);
  if (text.charCodeAt(i) !== 123) return undefined;
  i = keyAt(text, i + 1, '"entity_id"');
  if (i < 0 || text.charCodeAt(i) !== 34) return undefined;
  const idEnd = plainStringEnd(text, i + 1);
  if (idEnd < 0) return undefined;
  const id = text.slice(i + 1, idEnd);
  i = skipWs(text, idEnd + 1);
  if (text.charCodeAt(i) !== 44) return undefined;
  const listStart = keyAt(text, i + 1, '"feature_names"');
  if (listStart < 0 || text.charCodeAt(listStart) !== 91) return undefined;
  // the list ends at the last `]`: after it, only `}` and whitespace
  const listEnd = text.lastIndexOf("]");
  if (listEnd < listStart) return undefined;
  i = skipWs(text, listEnd + 1);
  if (text.charCodeAt(i) !== 125 || skipWs(text, i + 1) !== text.length) return undefined;
  const list = text.slice(listStart, listEnd + 1);
  let names = nameLists.get(list);
  if (names === undefined) {
    const read = plainStrings(list);
    if (read === undefined || !fastNames(read)) return undefined;
    if (nameLists.size >= NAME_LISTS_MAX) nameLists.clear();
    nameLists.set(list, read);
    names = read;
  }
  return fastId(id) ? { many: false, entityIds: [id], featureNames: names } : undefined;
}

/** The online body, validated by zod (the schema of the OpenAPI document); 400 with zod's errors. */
export function zodOnlineBody(raw: unknown): OnlineRequest {
  exclusive(raw, "entity_id", ["entity_ids"], "`entity_id` (one entity) or `entity_ids` (many)");
  if (isObject(raw) && "entity_ids" in raw) {
    const body = validate(OnlineMultiBody, raw);
    return { many: true, entityIds: body.entity_ids, featureNames: body.feature_names };
  }
  const body = validate(OnlineSingleBody, raw);
  return { many: false, entityIds: [body.entity_id], featureNames: body.feature_names };
}

/** The online body: the hand-written check for the common valid shapes, else zod. */
export function parseOnlineBody(raw: unknown): OnlineRequest {
  return fastOnlineBody(raw) ?? zodOnlineBody(raw);
}

/** What the online route answers with 200, as the type of the value its JSON text renders. */
export type OnlineAnswer = OnlineResult | { results: OnlineResult[] } | Exclude<Awaited<ReturnType<typeof onlineByService>>, undefined>;

/**
 * The 200 body of the online route for a decoded request body, as JSON text (what `c.json` of
 * the result would send, byte for byte); throws the route's 400/404/503 (AppError). Shared by the
 * Hono route and the online fast path (api/fast-online.ts). Answered synchronously (the text, no
 * promise) when the body has a common valid shape and every value is held in this process (the
 * in-process cache); a promise otherwise. Its 400/404 are thrown synchronously when the body has
 * a common shape, else the promise rejects with them.
 */
export function onlineAnswerNow(deps: Deps, tenant: string, raw: unknown): string | Promise<string> {
  const body = fastOnlineBody(raw);
  // the response text is built directly (what c.json(result) would send, byte for byte)
  if (body !== undefined) return lookupOnlineJsonNow(deps, tenant, body.entityIds, body.featureNames, body.many);
  return otherOnlineBody(deps, tenant, raw);
}

/**
 * {@link onlineAnswerNow} of a request body's bytes (the online fast path): the commonest body is
 * read from its text ({@link scanOnlineBody}), any other is decoded as the app decodes JSON.
 */
export function onlineAnswerBody(deps: Deps, tenant: string, buf: ArrayBuffer): string | Promise<string> {
  const text = decodeUtf8(buf);
  const body = scanOnlineBody(text);
  if (body !== undefined) return lookupOnlineJsonNow(deps, tenant, body.entityIds, body.featureNames, false);
  return onlineAnswerNow(deps, tenant, parseJsonBody(text));
}

/** {@link onlineAnswerNow} of a body that is not one of the common valid shapes: a feature service, entity rows, or zod's verdict. */
async function otherOnlineBody(deps: Deps, tenant: string, raw: unknown): Promise<string> {
  exclusive(raw, "entity_id", ["entity_ids"], "`entity_id` (one entity) or `entity_ids` (many)");
  exclusive(raw, "entity_rows", ["entity_id", "entity_ids"], "`entity_rows` (an entity per entity type) or `entity_id`/`entity_ids`");
  const byService = await onlineByService(deps, tenant, raw);
  if (byService) return JSON.stringify(byService);
  const body = zodOnlineBody(raw);
  return lookupOnlineJsonNow(deps, tenant, body.entityIds, body.featureNames, body.many);
}

export function mountOnline(app: OpenAPIHono<AppEnv>, deps: Deps): void {
  mount(app, onlineRoute, async (c) => {
    const { tenant } = requireScope(c, "read");
    const raw = await readJson(c);
    return jsonText<OnlineAnswer, 200>(c, await onlineAnswerNow(deps, tenant, raw), 200);
  });
}
