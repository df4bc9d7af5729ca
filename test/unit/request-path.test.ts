/**
 * The fast path's check of a request's path (src/api/healthz.ts `isPath`) against the path taken
 * as a string: from the first `/` after the authority, the query string included.
 */
import { expect, test } from "bun:test";
import { isPath } from "../../src/api/healthz.ts";

const pathOf = (url: string): string => {
  const at = url.indexOf("/", url.indexOf("//") + 2);
  return at < 0 ? "/" : url.slice(at);
};

test("isPath(url, p) is pathOf(url) === p", () => {
  const urls = [
    "http://127.0.0.1:8000/api/v1/features/online",
    "http://127.0.0.1:8000/api/v1/features/online?x=1",
    "http://127.0.0.1:8000/api/v1/features/online/",
    "http://127.0.0.1:8000/api/v1/features/onlin",
    "http://h/api/v1/features/online#f",
    "http://[::1]:8000/healthz",
    "http://[::1]:8000/healthz?",
    "http://h:1//healthz",
    "http://h:1/",
    "http://h:1",
    "https://example.com/healthz",
  ];
  let matched = 0;
  for (const url of urls) {
    for (const p of ["/api/v1/features/online", "/healthz", "/"]) {
      expect(isPath(url, p)).toBe(pathOf(url) === p);
      if (isPath(url, p)) matched++;
    }
  }
  expect(matched).toBe(5);
});
