// Login with Kiali's token strategy: the token is exchanged for an HttpOnly session cookie.

import { api } from '../api.js';
import { session } from '../session.js';
import { h } from '../dom.js';

export async function render(main) {
  const error = h('p', { class: 'error', role: 'alert', id: 'login-error' });
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
    'aria-describedby': 'token-help login-error',
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title', tabindex: '-1' }, 'Log in to Trellis'),
    h('label', { for: 'token' }, 'Token'),
    input,
    h('p', { id: 'token-help', class: 'notice' }, 'Print one with: trellis console token'),
    submit,
    error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      const info = await api.authenticate(input.value.trim());
      session.set(info);
      input.value = '';
      location.hash = '#/graph';
    } catch (err) {
      error.textContent = err.status === 401 ? 'Invalid token.' : err.message;
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  input.focus();
}
