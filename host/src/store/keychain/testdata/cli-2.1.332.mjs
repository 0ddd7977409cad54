// The keychain command lines of the `claude` CLI 2.1.332, produced by the CLI's own code.
//
// The functions below are copied verbatim from the bundle of
// @anthropic-ai/claude-code-darwin-x64@2.1.332 (its keychain module: `x`, `fe`, the write
// decision of `update` and the item's service `$4(RLe)`; `wje`, `Mre`, `rt` from the
// secure-storage module); only what they import is stood in for (`_` is JSON.stringify there,
// `un()` the OAuth config, `process.env` and `userInfo` the case's environment). Run with `node cli-2.1.332.mjs > cli-2.1.332.json`; the
// keychain store's tests check ours against the output.
import { createHash as A } from "crypto";
import { join as i } from "path";

let env = {};
let osUser = "";
const _ = (e, n, r) => JSON.stringify(e, n, r);
const un = () => ({ OAUTH_FILE_SUFFIX: "" });
const O = () => env.HOME;
const z = () => {
  if (osUser === null) throw new Error("no such user");
  return { username: osUser };
};
const _Re = () => env.CLAUDE_CONFIG_DIR;
const rt = () => (_Re() ?? i(O(), ".claude")).normalize("NFC");

// --- verbatim from 2.1.332 (process.env read as the case's env) ---
var X = 4032;
var RLe = "-credentials";
function x(e, r, n) { return `add-generic-password -U -a "${e}" -s "${r}" -X "${fe(n)}"
`; }
function fe(e) { let r = _(e).replace(/[^\x20-\x7e]/g, (n) => `\\u${n.charCodeAt(0).toString(16).padStart(4, "0")}`); return Buffer.from(r, "utf-8").toString("hex"); }
function wje(t = "") { let e = env.CLAUDE_SECURESTORAGE_CONFIG_DIR, n = e !== void 0 ? !e : !env.CLAUDE_CONFIG_DIR, o = e !== void 0 ? e.normalize("NFC") : rt(), r = n ? "" : `-${A("sha256").update(o).digest("hex").substring(0, 8)}`; return `Claude Code${un().OAUTH_FILE_SUFFIX}${t}${r}`; }
var P = /^[a-zA-Z0-9._-]+$/;
function Mre() { let t; try { t = env.USER || z().username; } catch { t = "claude-code-user"; } if (!P.test(t)) return "claude-code-user"; return t; }
// ---

// The read (`de`: vt("security", ["find-generic-password","-a",o,"-w","-s",n])) and the write
// (`update`: `s = x(o, n, i)`; over X characters, unsealed: argv; else `security -i` with `s`).
function transcript(document) {
  const n = wje(RLe), o = Mre(), i = JSON.parse(document), s = x(o, n, i);
  const write = s.length > X
    ? { argv: ["add-generic-password", "-U", "-a", o, "-s", n, "-X", fe(i)] }
    : { argv: ["-i"], stdin: s };
  return { service: n, account: o, read: ["find-generic-password", "-a", o, "-w", "-s", n], write };
}

const padded = (target) => {
  // A document whose `security -i` line is `target` characters long for account "ada" and the
  // default service.
  env = { HOME: "/Users/ada", USER: "ada" };
  const base = (pad) => JSON.stringify({ claudeAiOauth: { accessToken: "sk-ant-oat01-a", pad } });
  const length = (pad) => x("ada", wje(RLe), JSON.parse(base(pad))).length;
  let pad = "";
  while (length(pad) < target) pad += "x";
  if (length(pad) !== target) throw new Error(`cannot pad to ${target}`);
  return base(pad);
};

const plain = '{"claudeAiOauth":{"accessToken":"sk-ant-oat01-a","refreshToken":"sk-ant-ort01-b","expiresAt":1900000000000,"scopes":["user:inference","user:profile"]},"mcpOAuth":{"k":{"accessToken":"v"}}}';
const unicode = '{"claudeAiOauth":{"accessToken":"sk-ant-oat01-a","refreshToken":"sk-ant-ort01-b","expiresAt":1},"note":"café 日本 😀 \u2028 \u007f tab\\tnewline\\n quote\\" slash\\\\"}';
const cases = [
  { name: "plain", env: { HOME: "/Users/ada", USER: "ada" }, osUser: "ada", document: plain },
  { name: "non-ASCII escaped before hex", env: { HOME: "/Users/ada", USER: "ada" }, osUser: "ada", document: unicode },
  { name: "USER unset: the system's name", env: { HOME: "/Users/ada" }, osUser: "ada.b-c_1", document: plain },
  { name: "USER not [a-zA-Z0-9._-]+", env: { HOME: "/Users/jose", USER: "José" }, osUser: "jose", document: plain },
  { name: "USER with a space", env: { HOME: "/Users/x", USER: "a b" }, osUser: "ab", document: plain },
  { name: "no user at all", env: { HOME: "/Users/x" }, osUser: null, document: plain },
  { name: "CLAUDE_CONFIG_DIR", env: { HOME: "/Users/ada", USER: "ada", CLAUDE_CONFIG_DIR: "/Users/ada/.claude-work" }, osUser: "ada", document: plain },
  { name: "CLAUDE_SECURESTORAGE_CONFIG_DIR first", env: { HOME: "/Users/ada", USER: "ada", CLAUDE_CONFIG_DIR: "/c", CLAUDE_SECURESTORAGE_CONFIG_DIR: "/Users/ada/Secure Dir" }, osUser: "ada", document: plain },
  { name: "CLAUDE_SECURESTORAGE_CONFIG_DIR empty", env: { HOME: "/Users/ada", USER: "ada", CLAUDE_CONFIG_DIR: "/c", CLAUDE_SECURESTORAGE_CONFIG_DIR: "" }, osUser: "ada", document: plain },
  { name: "config dir NFC", env: { HOME: "/Users/ada", USER: "ada", CLAUDE_CONFIG_DIR: "/Users/ada/cafe\u0301" }, osUser: "ada", document: plain },
  { name: "a line of 4032 characters: stdin", env: { HOME: "/Users/ada", USER: "ada" }, osUser: "ada", document: padded(4032) },
  { name: "a line of 4034 characters (lines grow two at a time): argv", env: { HOME: "/Users/ada", USER: "ada" }, osUser: "ada", document: padded(4034) },
];
const out = cases.map((c) => {
  env = c.env;
  osUser = c.osUser;
  return { ...c, expected: transcript(c.document) };
});
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
