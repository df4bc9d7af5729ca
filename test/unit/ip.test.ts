/** src/lib/ip.ts's isIP against node:net's on a corpus of addresses and near misses. */
import { expect, test } from "bun:test";
import { isIP as nodeIsIP } from "node:net";
import { isIP } from "../../src/lib/ip.ts";

const CORPUS = [
  "", " ", "0.0.0.0", "127.0.0.1", "255.255.255.255", "256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", " 1.2.3.4", "1.2.3.4 ", "999.1.1.1", "1..2.3",
  "::", "::1", "::ffff:127.0.0.1", "fe80::1%eth0", "fe80::1%", "2001:db8::8a2e:370:7334", "2001:0db8:0000:0000:0000:ff00:0042:8329", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
  "1::2::3", ":::", "12345::", "g::1", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "[::1]", "localhost", "db.internal", "0", "1", "a", "::ffff:1.2.3.256", "FE80::ABCD",
];

test("isIP answers as node:net's", () => {
  for (const s of CORPUS) expect({ s, v: isIP(s) }).toEqual({ s, v: nodeIsIP(s) as 0 | 4 | 6 });
});
