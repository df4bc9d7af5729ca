/** Feature views and feature services: register (admin), list and read (read). */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { AppError } from "../../errors.ts";
import type { BulkLane } from "../../lane/pool.ts";
import { serviceJson, viewJson, type CatalogOutcome, type GroupInput } from "../../serving/catalog.ts";
import type { Deps } from "../../serving/deps.ts";
import type { GroupKind, GroupRow } from "../../store/types.ts";
import type { AppEnv } from "../env.ts";
import { mount, parseBody, requireScope } from "../route.ts";
import { Name } from "../../schemas.ts";
import { ServiceBody, ServiceList, ServiceResponse, ServiceVersions, ViewBody, ViewList, ViewResponse, ViewVersions } from "../../catalog-schemas.ts";
import { problems, security } from "./common.ts";

const NameParam = z.object({ name: Name.openapi({ param: { name: "name", in: "path" } }) });

/** Per kind: its path segment, schemas and response bodies (one, the list, one's versions). */
const KINDS = {
  view: {
    path: "feature-views", label: "feature view", Body: ViewBody, One: ViewResponse, List: ViewList, Versions: ViewVersions, op: "FeatureView",
    one: (g: GroupRow) => ({ feature_view: viewJson(g) }),
    list: (gs: readonly GroupRow[]) => ({ feature_views: gs.map(viewJson) }),
    versions: (name: string, gs: readonly GroupRow[]) => ({ name, versions: gs.map(viewJson) }),
  },
  service: {
    path: "feature-services", label: "feature service", Body: ServiceBody, One: ServiceResponse, List: ServiceList, Versions: ServiceVersions, op: "FeatureService",
    one: (g: GroupRow) => ({ feature_service: serviceJson(g) }),
    list: (gs: readonly GroupRow[]) => ({ feature_services: gs.map(serviceJson) }),
    versions: (name: string, gs: readonly GroupRow[]) => ({ name, versions: gs.map(serviceJson) }),
  },
} as const;

function routes(kind: GroupKind) {
  const k = KINDS[kind];
  const register = createRoute({
    method: "post",
    path: `/api/v1/${k.path}/register`,
    operationId: `register${k.op}`,
    tags: ["registry"],
    summary: `Register a ${k.label} (admin)`,
    description:
      kind === "view"
        ? "A named, versioned group of features of one entity type. 201 when new; 200 when name@version exists with the same entity_type, join_keys, features and push_source (description, owner and tags are replaced); 409 when it exists with a different definition; 400 listing the unknown references when a feature is not registered. Runs in the bulk lane: when it is full, 503 `unavailable` with `Retry-After`."
        : "A named, versioned set of feature references (possibly spanning entity types) for one model. 201 when new; 200 when name@version exists with the same features (metadata replaced); 409 when it exists with different features; 400 listing the unknown references when a feature or view is not registered. Runs in the bulk lane: when it is full, 503 `unavailable` with `Retry-After`.",
    security,
    request: { body: { required: true, content: { "application/json": { schema: k.Body } } } },
    responses: {
      200: { description: "Already registered (metadata replaced)", content: { "application/json": { schema: k.One } } },
      201: { description: "Registered", content: { "application/json": { schema: k.One } } },
      ...problems(400, 409, 413),
    },
  });
  const list = createRoute({
    method: "get",
    path: `/api/v1/${k.path}`,
    operationId: `list${k.op}s`,
    tags: ["registry"],
    summary: `List ${k.label}s (highest version of each)`,
    security,
    responses: { 200: { description: `Highest version of every ${k.label} of the tenant`, content: { "application/json": { schema: k.List } } }, ...problems() },
  });
  const get = createRoute({
    method: "get",
    path: `/api/v1/${k.path}/{name}`,
    operationId: `get${k.op}`,
    tags: ["registry"],
    summary: `Every version of one ${k.label}`,
    security,
    request: { params: NameParam },
    responses: { 200: { description: "Its versions, ascending", content: { "application/json": { schema: k.Versions } } }, ...problems(404) },
  });
  return { register, list, get };
}

/** A validated view or service body as a registration input. */
export function toGroupInput(kind: GroupKind, body: z.output<typeof ViewBody> | z.output<typeof ServiceBody>): GroupInput {
  const { name, version, description, owner, tags, ...spec } = body;
  return { kind, name, version, description, owner, tags, spec };
}

/** Registration's store transaction runs in the bulk lane (src/lane), as the features' does. */
export function mountCatalog(app: OpenAPIHono<AppEnv>, deps: Deps, lane: BulkLane): void {
  for (const kind of ["view", "service"] as const) {
    const k = KINDS[kind];
    const r = routes(kind);
    mount(app, r.register, async (c) => {
      const { tenant } = requireScope(c, "admin");
      const input = toGroupInput(kind, await parseBody(c, k.Body));
      const { outcomes } = await lane.register(tenant, { what: "catalog", features: [], groups: [{ input }] });
      const o = outcomes[0] as CatalogOutcome | undefined;
      if (o?.status === "invalid") {
        const errors = (o.unknown ?? []).map((ref) => ({ path: `features[${input.spec.features.indexOf(ref)}]`, message: `unknown feature reference ${JSON.stringify(ref)}` }));
        throw new AppError("invalid_request", o.reason ?? `invalid ${k.label}`, errors.length > 0 ? { errors } : {});
      }
      if (!o?.group || o.status === "conflict") throw new AppError("conflict", o?.reason ?? `${k.label} conflicts with the registry`);
      return c.json(k.one(o.group), o.status === "new" ? 201 : 200);
    });
    mount(app, r.list, (c) => {
      const { tenant } = requireScope(c, "read");
      return c.json(k.list(deps.registry.current.latestGroups(tenant, kind)), 200);
    });
    mount(app, r.get, (c) => {
      const { tenant } = requireScope(c, "read");
      const name = c.req.param("name");
      const versions = deps.registry.current.groupVersions(tenant, kind, name);
      if (versions.length === 0) throw new AppError("not_found", `unknown ${k.label} ${JSON.stringify(name)}`);
      return c.json(k.versions(name, versions), 200);
    });
  }
}
