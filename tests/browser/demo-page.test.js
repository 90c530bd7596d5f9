// Drives the demo page (GET /) of a real ImgFlux release binary in headless
// Chromium: a resize through the form, a wrong key, the page's
// Content-Security-Policy and what the page keeps of the key.
//
// Needs target/release/imgflux, /usr/bin/chromium and the shared corpus
// beside the repository; scripts/test-browser.sh provides all three. The
// screenshot of the page after the resize goes to target/browser/demo-page.png.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.IMGFLUX_BIN || join(repositoryRoot, "target/release/imgflux");
const photo = resolve(repositoryRoot, "../shared/corpus/photos/harvesters_1165x859.jpg");
const policyFile = join(repositoryRoot, "src/web/csp.txt");
const screenshotPath = join(repositoryRoot, "target/browser/demo-page.png");

const apiKey = "browser-test-key-4f1c";
const startupTimeoutMs = 20_000;
const numberFormat = new Intl.NumberFormat("en-US");

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
function findFreePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

/** Starts the service and resolves once GET /health returns 200. */
async function startService(port) {
  const child = spawn(binary, [], {
    env: {
      PATH: process.env.PATH,
      HOST: "127.0.0.1",
      PORT: String(port),
      API_KEYS: apiKey,
      IMGFLUX_SHUTDOWN_TIMEOUT_SECS: "5",
      RUST_LOG: "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = [];
  child.stdout.on("data", (chunk) => log.push(chunk.toString()));
  child.stderr.on("data", (chunk) => log.push(chunk.toString()));

  const deadline = Date.now() + startupTimeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`imgflux exited with ${child.exitCode} at start-up:\n${log.join("")}`);
    }
    try {
      const response = await fetch(`http://127.0.0.1:${port}/health`);
      if (response.status === 200) {
        return { child, log };
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((wake) => setTimeout(wake, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`imgflux did not return 200 for GET /health within ${startupTimeoutMs} ms:\n${log.join("")}`);
}

/** Sends SIGTERM to the service, then SIGKILL if it has not exited after 10 s. */
async function stopService(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const exited = new Promise((done) => child.once("exit", done));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Returns the CSP source ('sha256-...') of the one inline `<tag>` block of a page. */
function inlineHashSource(html, tag) {
  const blocks = [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))];
  assert.equal(blocks.length, 1, `the page must have exactly one inline <${tag}>`);
  const digest = createHash("sha256").update(blocks[0][1], "utf8").digest("base64");
  return `'sha256-${digest}'`;
}

describe("demo page", () => {
  let service;
  let baseUrl;
  let userDataDir;
  let context;
  let page;
  // Console messages, script errors and requests the page caused.
  const consoleProblems = [];
  const pageErrors = [];
  const requests = [];

  before(async () => {
    const port = await findFreePort();
    baseUrl = `http://127.0.0.1:${port}`;
    service = await startService(port);

    userDataDir = mkdtempSync(join(tmpdir(), "imgflux-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
      viewport: { width: 1100, height: 900 },
      deviceScaleFactor: 1,
      colorScheme: "light",
    });
    // Records violations reported to the page itself, as well as the console.
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener("securitypolicyviolation", (event) => {
        window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI}`);
      });
    });
    page = context.pages()[0] || (await context.newPage());
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warning") {
        consoleProblems.push(`${message.type()}: ${message.text()}`);
      }
    });
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("request", (request) => requests.push(request));
  });

  after(async () => {
    if (context) {
      await context.close();
    }
    if (userDataDir) {
      rmSync(userDataDir, { recursive: true, force: true });
    }
    if (service) {
      await stopService(service.child);
    }
  });

  test("page is served with its CSP", async () => {
    const response = await fetch(`${baseUrl}/`);
    const html = await response.text();
    const policy = response.headers.get("content-security-policy");

    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") || "", /^text\/html/);
    assert.equal(policy, readFileSync(policyFile, "utf8").trim(), "the header differs from src/web/csp.txt");
    assert.ok(
      policy.includes(`script-src ${inlineHashSource(html, "script")}`),
      "the policy does not allow the page's script; run scripts/csp-hashes.sh",
    );
    assert.ok(
      policy.includes(`style-src ${inlineHashSource(html, "style")}`),
      "the policy does not allow the page's style; run scripts/csp-hashes.sh",
    );
  });

  test("status line reports the service up", async () => {
    await page.goto(`${baseUrl}/`);

    await page.locator("#service-status", { hasText: "Service is up" }).waitFor({ timeout: 5_000 });
  });

  test("resize to w=300 shows both images", async () => {
    await page.setInputFiles("#image", photo);
    await page.fill("#api-key", apiKey);
    await page.fill("#w", "300");
    assert.equal(await page.textContent("#request-line"), "POST /process?w=300");

    const replyPromise = page.waitForResponse((response) => new URL(response.url()).pathname === "/process");
    await page.click("#submit");
    const reply = await replyPromise;
    // The reply is in memory on the server, so it always has a Content-Length.
    const replyBytes = Number(reply.headers()["content-length"]);
    await page.locator("#result-dimensions", { hasText: "px" }).waitFor({ timeout: 5_000 });
    await page.locator("#original-dimensions", { hasText: "px" }).waitFor({ timeout: 5_000 });

    assert.equal(reply.status(), 200);
    assert.equal(reply.headers()["content-type"], "image/png");
    const natural = await page.$eval("#result-image", (image) => [image.naturalWidth, image.naturalHeight]);
    assert.deepEqual(natural, [300, 221]);
    assert.equal(await page.textContent("#result-dimensions"), "300 × 221 px");
    assert.equal(await page.textContent("#original-dimensions"), "1165 × 859 px");
    const originalBytes = await page.textContent("#original-bytes");
    assert.ok(
      originalBytes.startsWith(`${numberFormat.format(statSync(photo).size)} bytes`),
      `original bytes shown as "${originalBytes}"`,
    );
    const resultBytes = await page.textContent("#result-bytes");
    assert.ok(
      resultBytes.startsWith(`${numberFormat.format(replyBytes)} bytes`),
      `result bytes shown as "${resultBytes}", reply has ${replyBytes}`,
    );
    assert.equal(await page.textContent("#result-type"), "image/png");
    assert.match(await page.textContent("#result-server-timing"), /decode [\d.]+ ms/);
    assert.match(await page.textContent("#result-round-trip"), /^[\d.]+ ms$/);
    assert.equal(await page.textContent("#result-request-id"), reply.headers()["x-request-id"]);
    assert.equal(await page.isVisible("#error"), false);

    mkdirSync(dirname(screenshotPath), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });
  });

  test("wrong key shows a readable 401", async () => {
    await page.fill("#api-key", "wrong-key");

    const replyPromise = page.waitForResponse((response) => new URL(response.url()).pathname === "/process");
    await page.click("#submit");
    const reply = await replyPromise;
    await page.locator("#error").waitFor({ state: "visible", timeout: 5_000 });

    assert.equal(reply.status(), 401);
    assert.match(await page.textContent("#error-title"), /^Error 401/);
    assert.equal(
      await page.textContent("#error-message"),
      "The API key is wrong or missing. Check the key and try again.",
    );
    assert.match(await page.textContent("#error-detail"), /code unauthorized/);
    assert.equal(await page.isVisible("#result"), false);
  });

  test("server error message is shown", async () => {
    await page.fill("#api-key", apiKey);
    await page.fill("#w", "");
    await page.selectOption("#fit", "cover");
    await page.fill("#h", "100");

    const replyPromise = page.waitForResponse((response) => new URL(response.url()).pathname === "/process");
    await page.click("#submit");
    const reply = await replyPromise;
    const body = await reply.json();
    await page.locator("#error").waitFor({ state: "visible", timeout: 5_000 });

    assert.equal(reply.status(), 400);
    assert.equal(body.error.code, "invalid_parameter");
    const shownMessage = await page.textContent("#error-message");
    assert.ok(
      shownMessage.toLowerCase().startsWith(body.error.message.toLowerCase().replace(/[.!?]$/, "")),
      `shown "${shownMessage}", server sent "${body.error.message}"`,
    );
    assert.match(await page.textContent("#error-detail"), /code invalid_parameter · request id \S+/);
  });

  test("key stays in the x-api-key header", async () => {
    const storage = await page.evaluate(() => ({
      local: localStorage.length,
      session: sessionStorage.length,
      cookie: document.cookie,
    }));
    const cookies = await context.cookies();

    assert.deepEqual(storage, { local: 0, session: 0, cookie: "" });
    assert.deepEqual(cookies, []);
    const processRequests = requests.filter((request) => new URL(request.url()).pathname === "/process");
    assert.equal(processRequests.length, 3);
    for (const request of requests) {
      assert.ok(!request.url().includes(apiKey), `the key leaked into ${request.url()}`);
      assert.ok(new URL(request.url()).origin === baseUrl, `the page requested ${request.url()}`);
      const headers = await request.allHeaders();
      const isProcess = new URL(request.url()).pathname === "/process";
      for (const [name, value] of Object.entries(headers)) {
        if (isProcess && name === "x-api-key") {
          continue;
        }
        assert.ok(!value.includes(apiKey), `the key leaked into header ${name} of ${request.url()}`);
      }
      if (isProcess) {
        assert.ok(headers["x-api-key"], "a /process request was sent without x-api-key");
      }
      if (request.postData()) {
        assert.ok(!request.postDataBuffer().includes(apiKey), `the key leaked into the body of ${request.url()}`);
      }
    }
  });

  test("page causes no CSP violation or script error", async () => {
    const violations = await page.evaluate(() => window.__cspViolations);

    assert.deepEqual(violations, []);
    assert.deepEqual(
      consoleProblems.filter((text) => /content security policy/i.test(text)),
      [],
    );
    assert.deepEqual(pageErrors, []);
  });
});
