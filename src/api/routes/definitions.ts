import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { AppError } from "../../errors.ts";
import type { Deps } from "../../serving/deps.ts";
import { definitionJson } from "../../serving/register.ts";
import type { AppEnv } from "../env.ts";
import { mount, requireScope, validate } from "../route.ts";
import { DefinitionList, DefinitionVersions, EntityType, Name } from "../../schemas.ts";
import { problemsFor, security } from "./common.ts";

const ListQuery = z.object({ entity_type: EntityType.optional() });
const NameParam = z.object({ name: Name.openapi({ param: { name: "name", in: "path" } }) });

export const listRoute = createRoute({
  method: "get",
  path: "/api/v1/features",
  operationId: "listFeatures",
  tags: ["registry"],
  summary: "List features (latest version of each)",
  security,
  request: { query: ListQuery },
  responses: {
    200: { description: "Latest version of every feature of the tenant", content: { "application/json": { schema: DefinitionList } } },
    ...problemsFor({ 400: { code: "invalid_request", detail: "request does not match the schema", errors: [{ path: "entity_type", message: "must match ^[a-z][a-z0-9_]{0,127}$" }] } }, 400),
  },
});

export const getRoute = createRoute({
  method: "get",
  path: "/api/v1/features/{name}",
  operationId: "getFeature",
  tags: ["registry"],
  summary: "Every version of one feature",
  security,
  request: { params: NameParam },
  responses: {
    200: { description: "The feature's versions, ascending", content: { "application/json": { schema: DefinitionVersions } } },
    ...problemsFor({ 404: { code: "not_found", detail: 'unknown feature "user_agee"' } }, 404),
  },
});

export function mountDefinitions(app: OpenAPIHono<AppEnv>, deps: Deps): void {
  mount(app, listRoute, (c) => {
    const { tenant } = requireScope(c, "read");
    const q = validate(ListQuery, c.req.query());
    const features = deps.registry.current.latest(tenant, q.entity_type).map(definitionJson);
    return c.json({ features }, 200);
  });
  mount(app, getRoute, (c) => {
    const { tenant } = requireScope(c, "read");
    // Any name that is not registered, well-formed or not, is simply unknown.
    const name = c.req.param("name") ?? "";
    const versions = deps.registry.current.versions(tenant, name);
    if (versions.length === 0) throw new AppError("not_found", `unknown feature ${JSON.stringify(name)}`);
    return c.json({ name, versions: versions.map(definitionJson) }, 200);
  });
}
