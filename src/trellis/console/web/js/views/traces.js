// Traces through a workload (Jaeger JSON) and a span timeline: one bar per span, placed by
// startTime and sized by duration (both microseconds) relative to the whole trace.

import { api, seg } from '../api.js';
import { h, fill } from '../dom.js';

export function traceSummary(trace) {
  const spans = trace.spans || [];
  const start = Math.min(...spans.map((s) => s.startTime));
  const end = Math.max(...spans.map((s) => s.startTime + s.duration));
  const root = spans.find((s) => !(s.references || []).some((r) => r.refType === 'CHILD_OF')) || spans[0];
  return { start, end, total: Math.max(end - start, 1), root };
}

function serviceOf(trace, span) {
  const p = (trace.processes || {})[span.processID];
  return p ? p.serviceName : span.processID || '';
}

export function timeline(trace) {
  const { start, total } = traceSummary(trace);
  const spans = [...(trace.spans || [])].sort((a, b) => a.startTime - b.startTime);
  return h('div', { class: 'timeline', role: 'list', 'aria-label': `Span timeline of trace ${trace.traceID}` },
    spans.map((s) => {
      const left = ((s.startTime - start) / total) * 100;
      const width = (s.duration / total) * 100;
      const text = `${serviceOf(trace, s)}: ${s.operationName}`;
      return h('div', { class: 'row', role: 'listitem', 'data-span-id': s.spanID },
        h('span', {}, text),
        h('span', { class: 'track', title: `${(s.duration / 1000).toFixed(2)} ms` },
          h('span', { class: 'bar', style: `left:${left.toFixed(2)}%;width:${width.toFixed(2)}%`,
            'aria-label': `starts at ${((s.startTime - start) / 1000).toFixed(2)} ms, lasts ${(s.duration / 1000).toFixed(2)} ms` })));
    }));
}

export async function tracesSection(ns, kind, name) {
  const section = h('section', { 'aria-labelledby': 'traces-title' }, h('h2', { id: 'traces-title' }, 'Traces'));
  const view = h('div', { id: 'trace-timeline' });
  let body;
  try {
    body = await api.get(`/api/namespaces/${seg(ns)}/${kind}/${seg(name)}/traces?limit=20&lookback=3600`);
  } catch (err) {
    section.append(h('p', { class: 'error' }, err.message));
    return section;
  }
  const traces = (body && body.data) || [];
  if (!traces.length) {
    section.append(h('p', { class: 'notice' }, 'No traces in the last hour.'));
    return section;
  }
  const list = h('ul', { id: 'trace-list' }, traces.map((t) => {
    const { root, total } = traceSummary(t);
    const label = `${root ? root.operationName : t.traceID} — ${(t.spans || []).length} spans, ${(total / 1000).toFixed(1)} ms`;
    return h('li', {}, h('button', { type: 'button', onclick: () => fill(view, timeline(t)) }, label));
  }));
  fill(view, timeline(traces[0]));
  section.append(list, view);
  return section;
}
