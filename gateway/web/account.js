// Signing in and registering. Field errors from the API land under their fields; everything
// else is one sentence above the form.

import { ApiError, login as signIn, register as signUp } from './api.js';
import { field, h, notice, show } from './dom.js';
import { fieldMessage } from './words.js';

/** Where to go after signing in: `next` if it is one of this page's own addresses. */
function next(ctx) {
  const target = ctx.query.get('next') ?? '';
  return target.startsWith('#/') && !target.startsWith('#/login') && !target.startsWith('#/register') ? target : '#/';
}

/** Puts each of a 422's field errors under its field; returns whether any was placed. */
function placeFieldErrors(error, fields) {
  if (!(error instanceof ApiError) || error.status !== 422) return false;
  let placed = false;
  for (const [name, message] of Object.entries(error.fields)) {
    const target = fields[name];
    if (target) {
      target.setError(fieldMessage(name, message));
      placed = true;
    }
  }
  const first = Object.keys(error.fields).map((name) => fields[name]).find(Boolean);
  first?.input.focus();
  return placed;
}

function form(onSubmit, ...children) {
  const element = h('form', { class: 'form', novalidate: true }, ...children);
  element.addEventListener('submit', (event) => {
    event.preventDefault();
    onSubmit(element);
  });
  return element;
}

/** `#/login?next=…` */
export async function login(ctx) {
  ctx.setTitle('Sign in');
  const email = field({ label: 'Email', name: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = field({ label: 'Password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const element = form(async () => {
    message.replaceChildren();
    email.setError(null);
    password.setError(null);
    if (!email.input.value.trim()) {
      email.setError('Enter your email address.');
      email.input.focus();
      return;
    }
    if (!password.input.value) {
      password.setError('Enter your password.');
      password.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await signIn(email.input.value.trim(), password.input.value);
      ctx.toast('Welcome back.');
      ctx.navigate(next(ctx));
    } catch (error) {
      if (ctx.stale()) return;
      password.input.value = '';
      message.replaceChildren(notice('error', ctx.failed(error, { context: 'login', button: submit })));
      if (!(error instanceof ApiError && error.retryAfter)) submit.disabled = false;
      password.input.focus();
    }
  },
  h('h1', {}, 'Sign in'),
  message,
  email,
  password,
  h('div', { class: 'actions' }, submit, h('span', {}, 'New here? ', h('a', { href: `#/register${ctx.query.has('next') ? `?next=${encodeURIComponent(ctx.query.get('next'))}` : ''}` }, 'Create an account'))));
  show(ctx.main, element);
  email.input.focus();
}

/** `#/register` */
export async function register(ctx) {
  ctx.setTitle('Create an account');
  const name = field({ label: 'Name', name: 'name', autocomplete: 'name', hint: 'Optional. Shown in the header when you are signed in.', maxlength: 200 });
  const email = field({ label: 'Email', name: 'email', type: 'email', autocomplete: 'email', required: true });
  const password = field({ label: 'Password', name: 'password', type: 'password', autocomplete: 'new-password', required: true, hint: '8 to 72 characters.', minlength: 8, maxlength: 72 });
  const fields = { name, email, password };
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Create account');
  const element = form(async () => {
    message.replaceChildren();
    for (const f of Object.values(fields)) f.setError(null);
    const values = { name: name.input.value.trim(), email: email.input.value.trim(), password: password.input.value };
    if (!values.email.includes('@')) {
      email.setError('Enter an email address, like name@example.com.');
      email.input.focus();
      return;
    }
    if (values.password.length < 8) {
      password.setError('Use at least 8 characters.');
      password.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await signUp(values.email, values.password, values.name);
    } catch (error) {
      if (ctx.stale()) return;
      const text = ctx.failed(error, { context: 'register', button: submit });
      if (!placeFieldErrors(error, fields)) {
        message.replaceChildren(notice('error', text,
          error instanceof ApiError && error.code === 'email-taken' ? [' ', h('a', { href: '#/login' }, 'Sign in')] : null));
        if (error instanceof ApiError && error.code === 'email-taken') email.setError('This email already has an account.');
      }
      if (!(error instanceof ApiError && error.retryAfter)) submit.disabled = false;
      return;
    }
    try {
      await signIn(values.email, values.password);
      ctx.toast('Your account is ready.');
      ctx.navigate(next(ctx));
    } catch {
      // The account exists; only signing in did not work this time.
      ctx.toast('Your account is ready. Please sign in.');
      ctx.navigate(`#/login${ctx.query.has('next') ? `?next=${encodeURIComponent(ctx.query.get('next'))}` : ''}`);
    }
  },
  h('h1', {}, 'Create an account'),
  message,
  name,
  email,
  password,
  h('div', { class: 'actions' }, submit, h('span', {}, 'Have an account? ', h('a', { href: '#/login' }, 'Sign in'))));
  show(ctx.main, element);
  name.input.focus();
}

export { placeFieldErrors };
