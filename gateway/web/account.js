// Signing in and registering. Field errors from the API land under their fields; everything
// else is one sentence above the form.

import {
  ApiError, confirmEmail, confirmMfa, confirmPasswordReset, currentUser, enrolMfa, login as signIn,
  refresh, register as signUp, reloadProfile, removeMfa, requestPasswordReset,
} from './api.js';
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

/** What a sign-in's cart merge could not keep as it was, in one sentence (or null). */
function mergeWords(notes) {
  if (!notes?.length) return null;
  const dropped = notes.filter((n) => n.keptQuantity === 0).length;
  const capped = notes.length - dropped;
  const parts = [];
  if (dropped) parts.push(`${dropped} item${dropped === 1 ? ' is' : 's are'} no longer available or did not fit`);
  if (capped) parts.push(`${capped} quantit${capped === 1 ? 'y was' : 'ies were'} lowered to the maximum`);
  return `Your cart from before signing in was added: ${parts.join(', and ')}.`;
}

/** `#/login?next=…`: the password, then the one-time code for an account that has one. */
export async function login(ctx) {
  ctx.setTitle('Sign in');
  const email = field({ label: 'Email', name: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = field({ label: 'Password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const code = field({
    label: 'One-time code', name: 'otp', autocomplete: 'one-time-code', inputmode: 'numeric',
    maxlength: 6, hint: 'The 6-digit code your authenticator app shows for Shop.',
  });
  code.hidden = true;
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const element = form(async () => {
    message.replaceChildren();
    email.setError(null);
    password.setError(null);
    code.setError(null);
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
    const otp = code.hidden ? undefined : code.input.value.trim();
    if (!code.hidden && !/^[0-9]{6}$/.test(otp)) {
      code.setError('Enter the 6 digits your authenticator app shows.');
      code.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const notes = await signIn(email.input.value.trim(), password.input.value, otp);
      ctx.toast(mergeWords(notes) ?? 'Welcome back.');
      ctx.navigate(next(ctx));
    } catch (error) {
      if (ctx.stale()) return;
      if (error instanceof ApiError && error.code === 'mfa-required') {
        code.hidden = false;
        message.replaceChildren(notice('info', 'This account has a second factor: enter the code from your authenticator app.'));
        submit.disabled = false;
        code.input.focus();
        return;
      }
      if (!code.hidden) code.input.value = '';
      else password.input.value = '';
      message.replaceChildren(notice('error', ctx.failed(error, { context: 'login', button: submit })));
      if (!(error instanceof ApiError && error.retryAfter)) submit.disabled = false;
      (code.hidden ? password : code).input.focus();
    }
  },
  h('h1', {}, 'Sign in'),
  message,
  email,
  password,
  code,
  h('div', { class: 'actions' }, submit,
    h('span', {}, h('a', { href: '#/forgot-password' }, 'Forgot your password?')),
    h('span', {}, 'New here? ', h('a', { href: `#/register${ctx.query.has('next') ? `?next=${encodeURIComponent(ctx.query.get('next'))}` : ''}` }, 'Create an account'))));
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
      const notes = await signIn(values.email, values.password);
      ctx.toast(mergeWords(notes) ?? `Your account is ready. We sent a link to ${values.email} to verify it.`);
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

/** `#/forgot-password`: asks for a reset link; the answer is the same for any address. */
export async function forgotPassword(ctx) {
  ctx.setTitle('Forgot your password?');
  const email = field({ label: 'Email', name: 'email', type: 'email', autocomplete: 'email', required: true });
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Send me a link');
  const element = form(async () => {
    message.replaceChildren();
    email.setError(null);
    const value = email.input.value.trim();
    if (!value.includes('@')) {
      email.setError('Enter an email address, like name@example.com.');
      email.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await requestPasswordReset(value);
      message.replaceChildren(notice('success',
        `If ${value} has an account, a link to choose a new password is on its way. It works once, for 30 minutes.`));
    } catch (error) {
      if (ctx.stale()) return;
      message.replaceChildren(notice('error', ctx.failed(error, { context: 'reset', button: submit })));
      if (!(error instanceof ApiError && error.retryAfter)) submit.disabled = false;
    }
  },
  h('h1', {}, 'Forgot your password?'),
  h('p', {}, 'Enter the address you signed up with and we will mail you a link to choose a new password.'),
  message,
  email,
  h('div', { class: 'actions' }, submit, h('a', { href: '#/login' }, 'Back to sign in')));
  show(ctx.main, element);
  email.input.focus();
}

/** `#/reset-password?token=…`: the page the reset mail links to. */
export async function resetPassword(ctx) {
  ctx.setTitle('Choose a new password');
  const token = ctx.query.get('token') ?? '';
  const password = field({ label: 'New password', name: 'newPassword', type: 'password', autocomplete: 'new-password', required: true, hint: '8 to 72 characters.', minlength: 8, maxlength: 72 });
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Set the password');
  const element = form(async () => {
    message.replaceChildren();
    password.setError(null);
    if (password.input.value.length < 8) {
      password.setError('Use at least 8 characters.');
      password.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await confirmPasswordReset(token, password.input.value);
      ctx.toast('Your password is set; every other session was signed out. Sign in with it now.');
      ctx.navigate('#/login');
    } catch (error) {
      if (ctx.stale()) return;
      const text = ctx.failed(error, { context: 'reset', button: submit });
      if (!placeFieldErrors(error, { newPassword: password })) {
        message.replaceChildren(error instanceof ApiError && error.code === 'invalid-token'
          ? notice('error', 'This link is used, expired or replaced by a newer one. ', h('a', { href: '#/forgot-password' }, 'Ask for a new link'))
          : notice('error', text));
      }
      if (!(error instanceof ApiError && error.retryAfter)) submit.disabled = false;
    }
  },
  h('h1', {}, 'Choose a new password'),
  message,
  password,
  h('div', { class: 'actions' }, submit));
  show(ctx.main, element);
  password.input.focus();
}

/** `#/verify-email?token=…`: the page the verification mail links to. */
export async function verifyEmail(ctx) {
  ctx.setTitle('Verify your email');
  const token = ctx.query.get('token') ?? '';
  try {
    await confirmEmail(token);
  } catch (error) {
    if (ctx.stale()) return;
    show(ctx.main, h('h1', {}, 'Verify your email'), error instanceof ApiError && error.code === 'invalid-token'
      ? notice('error', 'This link is used, expired or replaced by a newer one. Sign in and ask for a new one from the banner.')
      : notice('error', ctx.failed(error, { context: 'verify' })));
    return;
  }
  // A signed-in shopper's token says the new state after a refresh.
  if (currentUser()) {
    await refresh().catch(() => {});
    await reloadProfile().catch(() => {});
  }
  if (ctx.stale()) return;
  show(ctx.main, h('h1', {}, 'Verify your email'), notice('success', 'Thank you: your email address is verified.'),
    h('p', {}, h('a', { href: '#/' }, 'Back to the shop')));
}

/**
 * The enrolment's QR code, drawn from the API's SVG: its `viewBox` and its path, set as
 * attributes of elements made here (the page parses no markup; Trusted Types forbid it).
 */
function qrNode(markup) {
  const NS = 'http://www.w3.org/2000/svg';
  const viewBox = /viewBox="([0-9 ]+)"/.exec(markup)?.[1];
  const path = /<path d="([Mhvz0-9,-]+)"/.exec(markup)?.[1];
  if (!viewBox || !path) return h('span', {}, 'The QR code could not be drawn; type the key instead.');
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', viewBox);
  svg.setAttribute('shape-rendering', 'crispEdges');
  const background = document.createElementNS(NS, 'rect');
  background.setAttribute('width', '100%');
  background.setAttribute('height', '100%');
  background.setAttribute('fill', '#fff');
  const modules = document.createElementNS(NS, 'path');
  modules.setAttribute('d', path);
  modules.setAttribute('fill', '#000');
  svg.append(background, modules);
  return svg;
}

/** `#/account`: the profile and the second factor. */
export async function security(ctx) {
  ctx.setTitle('Your account');
  const user = currentUser();
  const section = h('section', {});
  const render = () => {
    const me = currentUser();
    const rows = [
      h('h1', {}, 'Your account'),
      h('p', {}, `${me.name ? `${me.name}, ` : ''}${me.email} — `, me.emailVerified ? 'email verified.' : 'email not verified yet (see the link we mailed you).'),
      h('h2', {}, 'Two-step sign-in'),
    ];
    if (me.mfaEnabled) {
      const code = field({ label: 'Current code', name: 'code', autocomplete: 'one-time-code', inputmode: 'numeric', maxlength: 6 });
      const message = h('div', { 'aria-live': 'polite' });
      const submit = h('button', { type: 'submit' }, 'Turn off two-step sign-in');
      rows.push(h('p', {}, 'On: signing in asks for a code from your authenticator app.'), form(async () => {
        message.replaceChildren();
        code.setError(null);
        submit.disabled = true;
        try {
          await removeMfa(code.input.value.trim());
          await reloadProfile();
          ctx.toast('Two-step sign-in is off.');
          render();
        } catch (error) {
          if (ctx.stale()) return;
          if (!placeFieldErrors(error, { code })) message.replaceChildren(notice('error', ctx.failed(error, { context: 'mfa', button: submit })));
          if (!(error instanceof ApiError && error.retryAfter)) submit.disabled = false;
        }
      }, message, code, h('div', { class: 'actions' }, submit)));
    } else {
      const start = h('button', { type: 'button' }, 'Set up two-step sign-in');
      const area = h('div', { 'aria-live': 'polite' });
      start.addEventListener('click', async () => {
        start.disabled = true;
        try {
          const enrolment = await enrolMfa();
          const code = field({ label: 'Code from the app', name: 'code', autocomplete: 'one-time-code', inputmode: 'numeric', maxlength: 6, required: true });
          const message = h('div', { 'aria-live': 'polite' });
          const submit = h('button', { type: 'submit' }, 'Turn on');
          area.replaceChildren(
            h('p', {}, 'Scan this code with an authenticator app, or type the key into it; then enter the code it shows.'),
            h('div', { class: 'qr', role: 'img', 'aria-label': 'QR code of the key' }, qrNode(enrolment.qrSvg)),
            h('p', {}, 'Key: ', h('span', { class: 'secret', id: 'mfa-secret' }, enrolment.secret)),
            form(async () => {
              message.replaceChildren();
              code.setError(null);
              submit.disabled = true;
              try {
                await confirmMfa(code.input.value.trim());
                await reloadProfile();
                ctx.toast('Two-step sign-in is on. Sign in again with a code where an administrator needs it.');
                render();
              } catch (error) {
                if (ctx.stale()) return;
                if (!placeFieldErrors(error, { code })) message.replaceChildren(notice('error', ctx.failed(error, { context: 'mfa', button: submit })));
                if (!(error instanceof ApiError && error.retryAfter)) submit.disabled = false;
              }
            }, message, code, h('div', { class: 'actions' }, submit)));
          code.input.focus();
        } catch (error) {
          if (ctx.stale()) return;
          area.replaceChildren(notice('error', ctx.failed(error, { context: 'mfa', button: start })));
          if (!(error instanceof ApiError && error.retryAfter)) start.disabled = false;
        }
      });
      rows.push(h('p', {}, 'Off: signing in needs your password only. With it on, it also asks for a code from an authenticator app on your phone.'), start, area);
    }
    show(section, rows);
  };
  if (!user) return;
  render();
  show(ctx.main, section);
}

export { placeFieldErrors };
