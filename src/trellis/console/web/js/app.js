// Entry point: hash router, top bar and session check. Each view module exports
// `render(main, params, query)` and may return a cleanup function (timers, graph instance).

import { api, setUnauthorizedHandler } from './api.js';
import { session } from './session.js';
import { h, fill } from './dom.js';
import * as login from './views/login.js';
import * as graph from './views/graph.js';
import * as lists from './views/lists.js';
import * as detail from './views/detail.js';
import * as config from './views/config.js';

const ROUTES = [
  [/^\/login$/, login.render, null],
  [/^\/graph$/, graph.render, 'graph'],
  [/^\/(apps|workloads|services)$/, lists.render, (m) => m[1]],
  [/^\/namespaces\/([^/]+)\/(apps|workloads|services)\/([^/]+)$/, detail.render, (m) => m[2]],
  [/^\/istio$/, config.renderList, 'istio'],
  [/^\/istio\/new$/, config.renderEditor, 'istio'],
  [/^\/istio\/([^/]+)\/([^/]+)\/([^/]+)$/, config.renderDetail, 'istio'],
  [/^\/istio\/([^/]+)\/([^/]+)\/([^/]+)\/edit$/, config.renderEditor, 'istio'],
];

const main = document.getElementById('main');
let cleanup = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/graph';
  const [path, qs = ''] = raw.split('?');
  return { path, query: new URLSearchParams(qs) };
}

async function route() {
  const { path, query } = parseHash();
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  if (!session.loggedIn && path !== '/login') {
    location.hash = '#/login';
    return;
  }
  showChrome(path !== '/login');
  for (const [re, render, nav] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    markNav(typeof nav === 'function' ? nav(m) : nav);
    const params = m.slice(1).map(decodeURIComponent);
    fill(main);
    try {
      cleanup = await render(main, params, query);
    } catch (err) {
      if (err.status !== 401) fill(main, h('h1', { tabindex: '-1' }, 'Error'), h('p', { class: 'error', role: 'alert' }, err.message));
    }
    focusHeading();
    return;
  }
  fill(main, h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, h('a', { href: '#/graph' }, 'Go to the traffic graph')));
}

/** After a page change, keyboard and screen-reader users start at the new page's heading. */
function focusHeading() {
  const heading = main.querySelector('h1');
  if (heading && document.activeElement === document.body) heading.focus({ preventScroll: true });
}

function showChrome(visible) {
  document.getElementById('topbar').hidden = !visible;
  fill(document.getElementById('user'), session.username ? `${session.username} (${session.role})` : '');
}

function markNav(active) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function logout() {
  try { await api.get('/api/logout'); } catch { /* the cookie is cleared either way */ }
  session.set(null);
  location.hash = '#/login';
}

async function start() {
  setUnauthorizedHandler(() => {
    session.set(null);
    if (parseHash().path !== '/login') location.hash = '#/login';
  });
  document.getElementById('logout').addEventListener('click', logout);
  try {
    const info = await api.get('/api/auth/info');
    session.set(info && info.sessionInfo);
  } catch {
    session.set(null);
  }
  window.addEventListener('hashchange', route);
  await route();
}

start();
