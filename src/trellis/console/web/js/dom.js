// Tiny element builder: text always goes through textContent, so API data is never parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function healthBadge(status) {
  const s = ['Healthy', 'Degraded', 'Failure'].includes(status) ? status : 'NA';
  return h('span', { class: `badge health-${s}` }, s === 'NA' ? 'No health' : s);
}

export function proxyStatus(status) {
  const s = status || 'NOT CONNECTED';
  return h('span', { class: `proxy-${s.replace(' ', '_')}` }, s);
}

/** A table from column headings and rows of cells (strings or nodes). */
export function table(caption, headings, rows) {
  return h('table', {},
    caption ? h('caption', { class: 'notice' }, caption) : null,
    h('thead', {}, h('tr', {}, headings.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.length
      ? rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: headings.length, class: 'notice' }, 'None'))));
}

export function pageTitle(text) {
  return h('h1', { tabindex: '-1' }, text);
}
