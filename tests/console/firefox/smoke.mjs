#!/usr/bin/env node
// Firefox smoke test of the console web UI: Debian's firefox-esr driven over WebDriver BiDi by
// puppeteer-core (Playwright can only drive its own patched Firefox build, which cannot be
// downloaded here). Run by tests/console/test_console_firefox.py against the fixture server.
//
//   node smoke.mjs URL TOKEN [EXPECTED_NODES]
//
// Logs in, waits for the graph canvas and the accessible node list, walks to a workload page with
// Tab/Enter only, opens the Istio config view and validates a broken VirtualService. Prints one
// JSON line ({"ok": true|false, ...}) and exits non-zero on any failure or page JavaScript error.
// Screenshots go to $TRELLIS_TEST_ARTIFACTS/console/firefox-*.png.
//
// Firefox must reach nothing but the console on 127.0.0.1: a fresh temporary profile with the
// background services switched off, and every HTTP(S) proxy pointed at a local sinkhole that
// records and drops whatever still tries to leave (reported as "offsite").

import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const FIREFOX = process.env.TRELLIS_FIREFOX || '/usr/bin/firefox-esr';
const STEP_TIMEOUT_MS = 15_000;
const TOTAL_TIMEOUT_MS = 120_000;
const MAX_TABS = 30;

const [baseArg, token, expectedArg] = process.argv.slice(2);
const result = { ok: false, browser: null, steps: [], screenshots: [], pageErrors: [], consoleErrors: [], offsite: [] };

function finish(error) {
  if (error) result.error = String(error && error.stack ? error.stack.split('\n')[0] : error);
  result.ok = !error && result.pageErrors.length === 0;
  if (!error && result.pageErrors.length) result.error = 'JavaScript errors in the page';
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exitCode = result.ok ? 0 : 1;
}

// Pref names are Firefox's; values switch off everything that would call home.
function quietPrefs(sinkPort) {
  return {
    // Updates (application, add-ons, search engines, system add-ons, media plugins).
    'app.update.disabledForTesting': true,
    'app.update.auto': false,
    'app.update.checkInstallTime': false,
    'extensions.update.enabled': false,
    'extensions.update.autoUpdateDefault': false,
    'extensions.systemAddon.update.enabled': false,
    'extensions.getAddons.cache.enabled': false,
    'extensions.blocklist.enabled': false,
    'browser.search.update': false,
    'media.gmp-manager.url': '',
    'media.gmp-gmpopenh264.enabled': false,
    // Telemetry and data reporting.
    'toolkit.telemetry.enabled': false,
    'toolkit.telemetry.unified': false,
    'toolkit.telemetry.archive.enabled': false,
    'toolkit.telemetry.server': '',
    'toolkit.telemetry.shutdownPingSender.enabled': false,
    'toolkit.telemetry.newProfilePing.enabled': false,
    'toolkit.telemetry.firstShutdownPing.enabled': false,
    'toolkit.telemetry.updatePing.enabled': false,
    'toolkit.telemetry.bhrPing.enabled': false,
    'datareporting.healthreport.uploadEnabled': false,
    'datareporting.policy.dataSubmissionEnabled': false,
    'browser.ping-centre.telemetry': false,
    'browser.newtabpage.activity-stream.telemetry': false,
    'browser.newtabpage.activity-stream.feeds.telemetry': false,
    // Captive portal and connectivity checks.
    'network.captive-portal-service.enabled': false,
    'network.connectivity-service.enabled': false,
    'captivedetect.canonicalURL': '',
    // Safe browsing lists.
    'browser.safebrowsing.malware.enabled': false,
    'browser.safebrowsing.phishing.enabled': false,
    'browser.safebrowsing.blockedURIs.enabled': false,
    'browser.safebrowsing.downloads.enabled': false,
    'browser.safebrowsing.downloads.remote.enabled': false,
    'browser.safebrowsing.provider.google.updateURL': '',
    'browser.safebrowsing.provider.google4.updateURL': '',
    'browser.safebrowsing.provider.mozilla.updateURL': '',
    // Remote settings (collections synced from a server), including certificate lists.
    'services.settings.server': 'data:,#remote-settings-disabled/v1',
    'security.remote_settings.crlite_filters.enabled': false,
    'security.remote_settings.intermediates.enabled': false,
    // Normandy / Shield studies and experiments.
    'app.normandy.enabled': false,
    'app.normandy.api_url': '',
    'app.shield.optoutstudies.enabled': false,
    'messaging-system.rsexperimentloader.enabled': false,
    // Other background traffic: region lookup, geolocation, push, DoH, prefetching,
    // speculative connections, OCSP, sponsored tiles.
    'browser.region.network.url': '',
    'browser.region.update.enabled': false,
    'geo.provider.network.url': '',
    'dom.push.enabled': false,
    'dom.push.connection.enabled': false,
    'network.trr.mode': 5,
    'network.dns.disablePrefetch': true,
    'network.prefetch-next': false,
    'network.http.speculative-parallel-limit': 0,
    'browser.places.speculativeConnect.enabled': false,
    'browser.urlbar.speculativeConnect.enabled': false,
    'security.OCSP.enabled': 0,
    'browser.topsites.contile.enabled': false,
    'browser.newtabpage.activity-stream.feeds.section.topstories': false,
    'browser.discovery.enabled': false,
    // Anything left over goes to the sinkhole; loopback is never proxied.
    'network.proxy.type': 1,
    'network.proxy.http': '127.0.0.1',
    'network.proxy.http_port': sinkPort,
    'network.proxy.ssl': '127.0.0.1',
    'network.proxy.ssl_port': sinkPort,
    'network.proxy.share_proxy_settings': false,
    'network.proxy.allow_hijacking_localhost': false,
    'network.proxy.no_proxies_on': '127.0.0.1',
  };
}

/** A "proxy" that records the first request line of every connection and drops it. */
async function startSinkhole() {
  const server = net.createServer((sock) => {
    sock.once('data', (data) => {
      result.offsite.push(data.toString('latin1').split('\r\n')[0].slice(0, 200));
      sock.destroy();
    });
    sock.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

async function step(name, fn) {
  const started = Date.now();
  const entry = { name, ok: false };
  result.steps.push(entry);
  Object.assign(entry, (await fn()) || {});
  entry.ok = true;
  entry.ms = Date.now() - started;
}

async function screenshot(page, dir, name) {
  const file = path.join(dir, `firefox-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
}

const textOf = (page, selector) => page.$eval(selector, (el) => el.textContent.trim());

async function run(page, base, dir, expected) {
  await step('login', async () => {
    await page.goto(`${base}/#/login`);
    await page.waitForSelector('#token');
    await screenshot(page, dir, 'login');
    await page.type('#token', token);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => location.hash.startsWith('#/graph'));
    return { user: await textOf(page, '#user') };
  });

  await step('graph', async () => {
    await page.waitForSelector('#graph-canvas[data-state="ready"]');
    await page.waitForFunction(
      () => document.querySelectorAll('#graph-nodes > li').length
        === Number(document.querySelector('#graph-canvas').dataset.nodes),
    );
    const counts = await page.evaluate(() => {
      const canvas = document.querySelector('#graph-canvas');
      return {
        nodes: Number(canvas.dataset.nodes),
        edges: Number(canvas.dataset.edges),
        listedNodes: document.querySelectorAll('#graph-nodes > li').length,
        listedEdges: document.querySelectorAll('#graph-edges > li').length,
        // cytoscape draws on <canvas> layers; a 0x0 layer would be a blank graph.
        canvasLayers: [...canvas.querySelectorAll('canvas')].filter((c) => c.width > 0 && c.height > 0).length,
      };
    });
    if (expected !== null && counts.nodes !== expected) {
      throw new Error(`graph has ${counts.nodes} nodes, expected ${expected}`);
    }
    if (counts.canvasLayers === 0) throw new Error('the graph canvas drew no <canvas> layer');
    await screenshot(page, dir, 'graph');
    return counts;
  });

  await step('keyboard', async () => {
    await page.evaluate(() => [...document.querySelectorAll('button')]
      .find((b) => b.textContent.trim() === 'Refresh now').focus());
    let tabs = 0;
    let focused = null;
    while (tabs < MAX_TABS && !focused) {
      await page.keyboard.press('Tab');
      tabs += 1;
      focused = await page.evaluate(() => {
        const el = document.activeElement;
        return el && el.closest('#graph-nodes') && el.tagName === 'A'
          ? { text: el.textContent, href: el.getAttribute('href') } : null;
      });
    }
    if (!focused) throw new Error(`no node link of the list took focus after ${tabs} Tab presses`);
    await page.keyboard.press('Enter');
    await page.waitForFunction((href) => location.hash === href, {}, focused.href);
    await page.waitForFunction(() => {
      const h1 = document.querySelector('main h1');
      return h1 && h1.textContent.startsWith('Workload: ');
    });
    await page.waitForSelector('#metrics-inbound svg polyline');
    const heading = await textOf(page, 'main h1');
    const name = heading.slice('Workload: '.length);
    if (!focused.text.startsWith(`${name} `)) {
      throw new Error(`focused "${focused.text}" but the page is "${heading}"`);
    }
    await screenshot(page, dir, 'workload');
    return { tabs, link: focused.text, heading };
  });

  await step('config-validation', async () => {
    await page.click('a[data-nav="istio"]');
    await page.waitForSelector('#config-list tbody tr');
    const found = await page.waitForFunction(() => [...document.querySelectorAll('#config-list tbody tr')]
      .find((tr) => tr.textContent.includes('VirtualService'))?.querySelector('a'));
    await found.asElement().click();
    await page.waitForSelector('#config-yaml');
    await page.click('#edit-config');
    await page.waitForSelector('#config-editor');
    await page.waitForFunction(() => document.querySelector('#config-editor').value.includes('host: '));
    const host = await page.$eval('#config-editor', (el) => el.value.match(/host: (\S+)/)[1]);
    // Replace the first destination host by typing, as a user would.
    await page.$eval('#config-editor', (el, h) => {
      const at = el.value.indexOf(`host: ${h}`) + 'host: '.length;
      el.focus();
      el.setSelectionRange(at, at + h.length);
    }, host);
    await page.keyboard.type('nowhere');
    await page.click('#validate-config');
    await page.waitForFunction(() => {
      const v = document.querySelector('#validation-results #validation');
      return v && v.querySelector('table');
    });
    const checks = await page.evaluate(() => {
      const v = document.querySelector('#validation-results #validation');
      return {
        text: v.textContent,
        severity: v.querySelector('.sev-error')?.textContent || null,
        edited: document.querySelector('#config-editor').value.includes('host: nowhere'),
      };
    });
    if (!checks.edited) throw new Error('typing into the YAML editor did not change it');
    const code = (checks.text.match(/IST\d{4}/) || [null])[0];
    await screenshot(page, dir, 'config-validation');
    return { code, severity: checks.severity, message: checks.text.slice(0, 300) };
  });
}

async function main() {
  if (!baseArg || !token) throw new Error('usage: node smoke.mjs URL TOKEN [EXPECTED_NODES]');
  const base = new URL(baseArg);
  if (base.hostname !== '127.0.0.1') throw new Error(`only 127.0.0.1 may be visited, not ${base.hostname}`);
  const expected = expectedArg === undefined ? null : Number(expectedArg);
  const dir = path.join(process.env.TRELLIS_TEST_ARTIFACTS || 'test-artifacts', 'console');
  mkdirSync(dir, { recursive: true });
  const sinkhole = await startSinkhole();
  let browser = null;
  try {
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      headless: true,
      args: ['--no-remote'],
      extraPrefsFirefox: quietPrefs(sinkhole.address().port),
      defaultViewport: { width: 1400, height: 900 },
      timeout: 60_000,
      // Firefox's own test switch: refuse non-loopback connections, and honour the remote
      // settings server pref above (release builds ignore it otherwise).
      env: { ...process.env, MOZ_DISABLE_NONLOCAL_CONNECTIONS: '1' },
    });
    result.browser = await browser.version();
    const page = await browser.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on('pageerror', (err) => result.pageErrors.push(String(err && err.message ? err.message : err)));
    page.on('console', (msg) => { if (msg.type() === 'error') result.consoleErrors.push(msg.text()); });
    page.on('request', (req) => {
      const u = req.url();
      if (!u.startsWith(`${base.origin}/`) && !/^(about|data|blob):/.test(u)) result.offsite.push(`page: ${u}`);
    });
    await run(page, base.origin, dir, expected);
  } finally {
    if (browser) await browser.close();
    sinkhole.close();
  }
}

const watchdog = setTimeout(() => {
  finish(new Error(`timed out after ${TOTAL_TIMEOUT_MS} ms`));
  process.exit(1);  // puppeteer kills the browser it launched on exit
}, TOTAL_TIMEOUT_MS);

main().then(() => finish(null), (err) => finish(err)).finally(() => clearTimeout(watchdog));
