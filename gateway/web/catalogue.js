// Browsing: the product list (search, sorting, in-stock filter, pages) and a product's page.

import { ApiError, get } from './api.js';
import { field, h, money, notFound, notice, pageOf, pager, show } from './dom.js';
import { cart } from './cart.js';

const PAGE_SIZE = 12;

const SORTS = [
  ['name', 'Name, A to Z'],
  ['-name', 'Name, Z to A'],
  ['priceCents', 'Price, low to high'],
  ['-priceCents', 'Price, high to low'],
  ['-createdAt', 'Newest first'],
];

/** How much is left, as a badge. */
export function stockBadge(stock) {
  if (stock <= 0) return h('span', { class: 'badge out', 'data-stock': stock }, 'Out of stock');
  if (stock <= 5) return h('span', { class: 'badge low', 'data-stock': stock }, `Only ${stock} left`);
  return h('span', { class: 'badge ok', 'data-stock': stock }, `${stock} in stock`);
}

/**
 * "Add to cart" for one product (a visitor's goes to a guest cart, merged at sign-in); an
 * out-of-stock product gets a disabled button that says so.
 */
function addButton(ctx, product, quantityOf = () => 1) {
  if (product.stock <= 0) {
    return h('button', { type: 'button', disabled: true, 'aria-label': `${product.name} is out of stock` }, 'Out of stock');
  }
  const button = h('button', {
    type: 'button',
    'aria-label': `Add ${product.name} to cart`,
    onclick: async () => {
      const quantity = quantityOf();
      if (!quantity) return;
      button.disabled = true;
      try {
        await cart.add(product.id, quantity);
        ctx.toast(`${product.name} is in your cart.`);
        button.disabled = false;
      } catch (error) {
        ctx.toast(ctx.failed(error, { context: 'cart', button }));
        // A limit or an outage leaves the button counting its wait down.
        if (!(error instanceof ApiError && error.retryAfter)) button.disabled = false;
      }
    },
  }, 'Add to cart');
  return button;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '' && value !== false) search.set(key, value);
  }
  return search;
}

/** `#/?q=&sort=&inStock=&page=`: the catalogue. */
export async function list(ctx) {
  const q = ctx.query.get('q') ?? '';
  const sort = SORTS.some(([value]) => value === ctx.query.get('sort')) ? ctx.query.get('sort') : 'name';
  const inStock = ctx.query.get('inStock') === 'true';
  const page = pageOf(ctx.query);
  ctx.setTitle(q ? `“${q}”` : 'Products');
  document.getElementById('search-q').value = q;

  const body = await get(`/products?${query({ page, limit: PAGE_SIZE, q, sort, inStock: inStock || null })}`, { auth: false });
  if (ctx.stale()) return;

  const go = (changes) => {
    const next = query({ q, sort: sort === 'name' ? null : sort, inStock: inStock || null, page: null, ...changes });
    ctx.navigate(`#/${next.size ? `?${next}` : ''}`);
  };
  const sortField = field({ label: 'Sort by', name: 'sort', options: SORTS, value: sort });
  sortField.input.addEventListener('change', () => go({ sort: sortField.input.value === 'name' ? null : sortField.input.value }));
  const inStockBox = h('input', { type: 'checkbox', id: 'in-stock', name: 'inStock', checked: inStock });
  inStockBox.addEventListener('change', () => go({ inStock: inStockBox.checked || null }));

  const heading = q ? `Results for “${q}”` : 'Products';
  const count = body.total === 1 ? '1 product' : `${body.total} products`;

  const items = body.items.map((product) =>
    h('li', { class: 'card', 'data-product-id': product.id },
      h('h2', {}, h('a', { href: `#/products/${product.id}` }, product.name)),
      h('p', { class: 'description' }, product.description || ''),
      h('p', { class: 'status-line' }, h('span', { class: 'price' }, money(product.priceCents)), stockBadge(product.stock)),
      addButton(ctx, product)));

  show(ctx.main,
    h('h1', {}, heading),
    h('div', { class: 'filters' },
      sortField,
      h('label', { class: 'check', for: 'in-stock' }, inStockBox, 'In stock only'),
      h('p', { class: 'muted', role: 'status' }, count)),
    items.length
      ? h('ul', { class: 'grid' }, items)
      : h('div', { class: 'empty' },
          h('p', {}, q ? `Nothing matches “${q}”.` : 'There are no products yet.'),
          q || inStock ? h('p', {}, h('a', { href: '#/' }, 'Show every product')) : null),
    pager(page, body.total, PAGE_SIZE, (to) => go({ page: to === 1 ? null : to })));
}

/** `#/products/{id}`: one product, with a quantity to add. */
export async function product(ctx, id) {
  let item;
  try {
    item = await get(`/products/${id}`, { auth: false });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      notFound(ctx, 'Product not found', 'This product does not exist or is no longer sold.', ['#/', 'Back to the products']);
      return;
    }
    throw error;
  }
  if (ctx.stale()) return;
  ctx.setTitle(item.name);
  const quantity = field({ label: 'Quantity', name: 'quantity', type: 'number', min: 1, max: Math.max(1, item.stock), value: 1, inputmode: 'numeric' });
  const quantityOf = () => {
    const value = Number(quantity.input.value);
    if (!Number.isInteger(value) || value < 1) {
      quantity.setError('Enter a whole number of at least 1.');
      quantity.input.focus();
      return 0;
    }
    if (value > item.stock) {
      quantity.setError(`Only ${item.stock} in stock.`);
      quantity.input.focus();
      return 0;
    }
    quantity.setError(null);
    return value;
  };
  show(ctx.main,
    h('p', {}, h('a', { href: '#/' }, '← All products')),
    h('article', { class: 'product', 'data-product-id': item.id },
      h('h1', {}, item.name),
      h('p', { class: 'status-line' }, h('span', { class: 'price' }, money(item.priceCents)), stockBadge(item.stock)),
      h('p', {}, item.description || ''),
      item.stock > 0
        ? h('div', { class: 'buy' }, quantity, addButton(ctx, item, quantityOf))
        : notice('info', 'This product is out of stock for now. Check back later.')));
}
