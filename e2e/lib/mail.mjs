// A real SMTP server of the test's own on loopback (nodemailer's `smtp-server`), keeping every
// message the user service sends, parsed with `mailparser`.

import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

/** Starts the server on a free port; `url` is the system's `SMTP_URL`. */
export async function startMailServer() {
  const messages = [];
  const waiters = new Set();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((mail) => {
          messages.push({
            to: session.envelope.rcptTo.map((r) => r.address.toLowerCase()),
            subject: mail.subject ?? '',
            text: mail.text ?? '',
            html: typeof mail.html === 'string' ? mail.html : '',
            messageId: mail.messageId,
          });
          for (const wake of waiters) wake();
          callback();
        })
        .catch(callback);
    },
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.server.address();
  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    /** The first message to `address` whose subject contains `subject` (waits up to 30 s). */
    async waitFor(address, subject, timeout = 30_000) {
      const find = () => messages.find((m) => m.to.includes(address.toLowerCase()) && m.subject.includes(subject));
      const deadline = Date.now() + timeout;
      for (;;) {
        const found = find();
        if (found) return found;
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(`no mail "${subject}" to ${address}; received: ${JSON.stringify(messages.map((m) => [m.to, m.subject]))}`);
        }
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, left);
          const wake = () => {
            clearTimeout(timer);
            waiters.delete(wake);
            resolve();
          };
          waiters.add(wake);
        });
      }
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** The storefront address (`#/…`) a message's link opens. */
export function linkOf(message) {
  const match = message.text.match(/https?:\/\/\S+?(#\/[^\s]+)/);
  if (!match) throw new Error(`no storefront link in: ${message.text}`);
  return match[1];
}
