/**
 * Grafana: the provisioned data source and dashboard provider agree with the compose stack,
 * the dashboard is well-formed, has the panels operations need, and every query is valid
 * PromQL (parsed by promtool, as recording rules).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { dashboardQueries, DEPLOY, grafanaToPromql, type Json, loadYaml, promtool, sh, withTools } from "./support.ts";

const DASHBOARD = join(DEPLOY, "grafana/dashboards/feature-store.json");
const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Json;
const datasources = (loadYaml(join(DEPLOY, "grafana/provisioning/datasources/prometheus.yml"))[0] as Json).datasources as Json[];
const providers = (loadYaml(join(DEPLOY, "grafana/provisioning/dashboards/feature-store.yml"))[0] as Json).providers as Json[];
const compose = loadYaml(join(DEPLOY, "docker-compose.yml"))[0] as Json;

/** All panels, rows' nested ones included. */
function allPanels(panels: Json[] = dashboard.panels): Json[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}
const queries = dashboardQueries(dashboard);
const exprs = queries.map((q) => q.expr.replace(/\s+/g, " "));

describe("Grafana provisioning", () => {
  test("one Prometheus data source, at the compose service's address, with the uid the dashboard uses", () => {
    expect(datasources.length).toBe(1);
    const ds = datasources[0];
    expect(ds.type).toBe("prometheus");
    const u = new URL(ds.url);
    expect(Object.keys(compose.services)).toContain(u.hostname);
    const promPort = (compose.services[u.hostname].ports as string[]).map((p) => Number(String(p).split(":").at(-1)));
    expect(promPort).toContain(Number(u.port));
    const uids = new Set<string>();
    for (const p of allPanels()) {
      if (p.datasource) uids.add(p.datasource.uid);
      for (const t of p.targets ?? []) if (t.datasource) uids.add(t.datasource.uid);
    }
    for (const v of dashboard.templating.list) if (v.datasource) uids.add(v.datasource.uid);
    expect([...uids]).toEqual([ds.uid]);
  });

  test("the dashboard provider reads the folder compose mounts the dashboards into", () => {
    expect(providers.length).toBe(1);
    const path = providers[0].options.path;
    const mounts = (compose.services.grafana.volumes as string[]).map((v) => v.split(":"));
    expect(mounts.some((m) => m[0] === "./grafana/dashboards" && m[1] === path)).toBe(true);
    const home = compose.services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    expect(home).toBe(`${path}/feature-store.json`);
  });
});

describe("Grafana dashboard", () => {
  test("well-formed: uid and title, unique panel ids, panels inside the 24-column grid and not overlapping", () => {
    expect(dashboard.uid).toBe("feature-store");
    expect(dashboard.title).toBeTruthy();
    expect(dashboard.id ?? null).toBeNull(); // provisioned dashboards carry no database id
    const panels = allPanels();
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const g = p.gridPos;
      expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          const k = `${x},${y}`;
          expect(cells.has(k), `${p.title} overlaps another panel at ${k}`).toBe(false);
          cells.add(k);
        }
      }
      if (p.type !== "row") {
        expect(p.targets?.length, p.title).toBeGreaterThan(0);
        expect(new Set(p.targets.map((t: Json) => t.refId)).size).toBe(p.targets.length);
        expect(p.fieldConfig?.defaults?.unit, `${p.title} has no unit`).toBeTruthy();
      }
    }
  });

  test("has the panels operations need: request rate, p50 and p99 by route, errors, cache hit rate, worker throughput, lag, freshness", () => {
    const has = (re: RegExp, what: string) => expect(exprs.some((e) => re.test(e)), what).toBe(true);
    has(/sum by \(route\) \(rate\(feature_store_http_requests_total\b/, "request rate by route");
    has(/histogram_quantile\(0\.5, sum by \(le, route\) \(rate\(feature_store_http_request_duration_seconds_bucket\b/, "p50 by route");
    has(/histogram_quantile\(0\.99, sum by \(le, route\) \(rate\(feature_store_http_request_duration_seconds_bucket\b/, "p99 by route");
    has(/feature_store_http_requests_total\{[^}]*status=~"5\.\."/, "5xx error rate");
    has(/feature_store_cache_requests_total\{[^}]*result="hit"[^}]*\}.*\/ *sum\(rate\(feature_store_cache_requests_total\b/, "cache hit rate");
    has(/rate\(feature_store_worker_messages_total\b/, "worker throughput");
    has(/feature_store_worker_consumer_lag\b/, "consumer lag");
    has(/feature_store_worker_freshness_seconds_bucket\b/, "worker freshness");
    has(/feature_store_served_value_age_seconds_bucket\b/, "served value age");
    has(/feature_store_store_up\b/, "store health");
  });
});

withTools({ promtool: await promtool() }, ({ promtool: bin }) => {
  describe("Grafana dashboard queries are valid PromQL", () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-grafana-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test(`promtool parses all ${queries.length} queries (as recording rules, Grafana variables substituted)`, () => {
      const file = join(dir, "dashboard-queries.yml");
      const rules = queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: grafanaToPromql(q.expr) }));
      writeFileSync(file, stringify({ groups: [{ name: "dashboard", rules }] }, { lineWidth: 0 }));
      const r = sh([bin, "check", "rules", file]);
      expect(r.code, `${r.stdout}${r.stderr}\n${queries.map((q, i) => `query_${i}: ${q.where}`).join("\n")}`).toBe(0);
      expect(r.stdout + r.stderr).toContain(`SUCCESS: ${queries.length} rules found`);
    });
  });
});
