// What the API says, in words a shopper understands.

/** Order statuses. */
export const STATUS = {
  reserving: 'Reserving stock',
  pending: 'Awaiting payment',
  paid: 'Paid',
  failed: 'Failed',
  cancelled: 'Cancelled',
  shipped: 'Shipped',
  delivered: 'Delivered',
  refunded: 'Refunded',
};

/** Why an order changed (timeline causes). */
const CAUSES = {
  placed: 'Order placed',
  reserved: 'Stock reserved for you',
  insufficient_stock: 'Not enough stock',
  product_unavailable: 'A product is no longer sold',
  unknown_product: 'A product does not exist',
  reservation_refused: 'Stock could not be reserved',
  catalog_unavailable: 'The catalogue was unavailable',
  reservation_abandoned: 'Stock reservation timed out',
  payment_succeeded: 'Payment received',
  payment_failed: 'Payment failed',
  payment_timeout: 'Payment took too long',
  payment_refunded: 'Payment refunded',
  partially_refunded: 'Part of the payment refunded',
  refunded: 'Refunded in full',
  cancelled_by_user: 'Cancelled by you',
  fulfilment: 'Fulfilment update',
  payment: 'Payment update',
};

export function cause(code) {
  if (!code) return '';
  return CAUSES[code] ?? code.replaceAll('_', ' ');
}

/** Who made a change. */
export function actor(text) {
  if (!text) return '';
  if (text.startsWith('user:')) return 'you';
  if (text.startsWith('admin:')) return 'the shop';
  if (text === 'payment') return 'payments';
  return 'the system';
}

/** Payment statuses. */
export const PAYMENT = {
  processing: 'Processing',
  succeeded: 'Succeeded',
  failed: 'Failed',
  cancelled: 'Cancelled',
  refunded: 'Refunded',
};

/** Refund statuses. */
export const REFUND = {
  pending: 'In progress',
  succeeded: 'Refunded',
  failed: 'Failed',
};

/** Live event types, as a line in the order's activity. */
export const EVENTS = {
  'order.created': 'Order confirmed, payment requested',
  'order.paid': 'Order paid',
  'order.failed': 'Order failed',
  'order.cancelled': 'Order cancelled',
  'order.shipped': 'Order shipped',
  'order.delivered': 'Order delivered',
  'order.refunded': 'Order refunded in full',
  'payment.attempt_failed': 'Payment attempt failed',
  'payment.succeeded': 'Payment succeeded',
  'payment.failed': 'Payment failed for good',
  'payment.refunded': 'Payment refunded',
};

function seconds(n) {
  return n === 1 ? '1 second' : `${n} seconds`;
}

/**
 * One sentence for an `ApiError`. `context` names what was being done (`login`, `register`,
 * `checkout`, `load`, `save`, …) where the same code means different things.
 */
export function explain(error, context = '', { wait: sayWait = true } = {}) {
  let wait = error.retryAfter ? ` Please try again in ${seconds(error.retryAfter)}.` : ' Please try again in a moment.';
  if (!sayWait) wait = '';
  switch (error.code) {
    case 'network':
      return 'We could not reach the shop. Check your connection and try again.';
    case 'unauthorized':
      return context === 'login'
        ? 'That email and password do not match an account.'
        : 'Your session has ended. Please sign in again.';
    case 'forbidden':
      return 'Your account is not allowed to do that.';
    case 'not-found':
      return context === 'order'
        ? 'We could not find this order.'
        : 'We could not find that. It may have been removed.';
    case 'email-taken':
      return 'An account with this email already exists. Try signing in instead.';
    case 'insufficient-stock':
      return 'Sorry, there is not enough stock for everything in your cart.';
    case 'product-unavailable':
      return 'One of the products is no longer sold. Remove it and try again.';
    case 'version-conflict':
    case 'precondition-failed':
      return 'Someone else changed this product while you were editing it.';
    case 'idempotency-in-progress':
      return 'Your order is still being placed. Give it a moment.';
    case 'idempotency-key-reused':
      return 'Your cart changed while the order was being placed. Please check out again.';
    case 'illegal-transition':
      if (context === 'refund') return 'Only paid, shipped or delivered orders can be refunded.';
      return context === 'cancel'
        ? 'This order can no longer be cancelled: it has moved on meanwhile.'
        : 'The order cannot move to that status from where it is now.';
    case 'address-required':
      return 'This order has no shipping address, so it cannot be shipped.';
    case 'refund-exceeds-captured':
      return 'That is more than is left to refund on this order.';
    case 'order-not-pending':
      return 'This order can no longer be cancelled.';
    case 'payload-too-large':
      return 'That is more than we can take in one go. Try something shorter.';
    case 'validation-failed':
      if (context === 'address') return 'Please check the shipping address: some details need another look.';
      return context === 'checkout'
        ? 'Your cart cannot be ordered as it is.'
        : 'Some of the details need another look.';
    case 'invalid-token':
      return context === 'cart'
        ? 'Your cart from an earlier visit has expired. Add the products again.'
        : 'This link is used, expired or replaced by a newer one. Ask for a new one.';
    case 'mfa-required':
      return context === 'login'
        ? 'Enter the code from your authenticator app.'
        : 'This needs a sign-in with your second factor: set it up under your account, then sign in again with a code.';
    case 'mfa-already-enabled':
      return 'Two-step sign-in is on already.';
    case 'email-unverified':
      return 'Please verify your email address first: follow the link we mailed you, then try again.';
    case 'rate-limited':
      return `You are going faster than the shop allows.${wait}`;
    case 'dependency-unavailable':
      return `Part of the shop is unavailable right now.${wait}`;
    default:
      if (error.status === 503 || error.status === 504) {
        return `Part of the shop is unavailable right now.${wait}`;
      }
      if (error.status >= 500) return 'Something went wrong on our side. Please try again.';
      return error.problem?.detail || 'That did not work. Please try again.';
  }
}

/** Field names in problems → the labels the forms show. */
const FIELDS = {
  email: 'Email',
  password: 'Password',
  name: 'Name',
  description: 'Description',
  priceCents: 'Price',
  stock: 'Stock',
  delta: 'Change',
  reason: 'Reason',
  quantity: 'Quantity',
  newPassword: 'New password',
  code: 'Code',
  line1: 'Address',
  line2: 'Address line 2',
  city: 'City',
  region: 'Region',
  postalCode: 'Postal code',
  country: 'Country',
  phone: 'Phone',
  amountCents: 'Amount',
  carrier: 'Carrier',
  trackingNumber: 'Tracking number',
};

/** A field error's message with the field's label in front. */
export function fieldMessage(field, message) {
  const label = FIELDS[field] ?? field;
  return `${label} ${message}`;
}

/** ISO 3166-1 alpha-2: every code a shipping address may name. */
const COUNTRY_CODES = (
  'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS '
  + 'BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE '
  + 'EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM '
  + 'HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC '
  + 'LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA '
  + 'NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW '
  + 'SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO '
  + 'TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW'
).split(' ');

let regionNames = null;

/** A country's name in the reader's language (`FR` → `France`); the code where none is known. */
export function countryName(code) {
  if (!code) return '';
  try {
    regionNames ??= new Intl.DisplayNames(undefined, { type: 'region' });
    return regionNames.of(code) ?? code;
  } catch {
    return code;
  }
}

/**
 * `[code, name]` for a country list, by name; `extra` (a saved address's code) is kept even
 * if the list above does not know it.
 */
export function countryOptions(extra = '') {
  const codes = extra && !COUNTRY_CODES.includes(extra) ? [...COUNTRY_CODES, extra] : COUNTRY_CODES;
  return codes.map((code) => [code, countryName(code)]).sort((a, b) => a[1].localeCompare(b[1]));
}
