// An InstantSearch.js storefront pointed at productsearch instead of Algolia.
//
// The only productsearch-specific lines are the three marked "productsearch": the client's
// application id and search key, and the host it talks to (search and Insights events).
// Everything else is a stock InstantSearch set-up.
//
// Configuration comes from the page's query string, so the same bundle runs against any
// service: index.html?host=127.0.0.1:8000&protocol=http&key=ps_...&index=products
import { liteClient as algoliasearch } from 'algoliasearch/lite';
import instantsearch from 'instantsearch.js';
import { createInsightsMiddleware } from 'instantsearch.js/es/middlewares';
import {
  clearRefinements,
  configure,
  hierarchicalMenu,
  hits,
  pagination,
  rangeInput,
  refinementList,
  searchBox,
  stats,
} from 'instantsearch.js/es/widgets';
import aa from 'search-insights';

const query = new URLSearchParams(window.location.search);
const config = {
  appId: query.get('appId') || 'productsearch', // any non-empty id: productsearch ignores it
  apiKey: query.get('key') || '', // a productsearch *search* key (admin keys are refused)
  host: query.get('host') || window.location.host,
  protocol: query.get('protocol') || window.location.protocol.replace(':', ''),
  indexName: query.get('index') || 'products',
};
const origin = `${config.protocol}://${config.host}`;

// productsearch: app id, search key, and the service's host instead of Algolia's.
const searchClient = algoliasearch(config.appId, config.apiKey, {
  hosts: [{ url: config.host, protocol: config.protocol, accept: 'readWrite' }],
  // A search runs the whole ranking pipeline: allow more than the lite client's 2 s.
  timeouts: { connect: 5000, read: 15000, write: 30000 },
});

const search = instantsearch({ indexName: config.indexName, searchClient });

// productsearch: Insights events (clicks) go to the service's POST /1/events.
search.use(
  createInsightsMiddleware({ insightsClient: aa, insightsInitParams: { host: origin } }),
);

// Photos stored with the catalogue are served by the service under the search key; remote
// photos (a CDN) load directly.
async function loadImage(img, url) {
  if (/^https?:/.test(url)) {
    img.src = url;
    return;
  }
  const response = await fetch(origin + url, { headers: { 'X-API-Key': config.apiKey } });
  if (response.ok) img.src = URL.createObjectURL(await response.blob());
}

function price(hit) {
  if (hit.price == null) return '';
  const amount = hit.price.toFixed(2);
  return `${amount} ${hit.currency || ''}`.trim();
}

search.addWidgets([
  configure({ hitsPerPage: 4 }),
  searchBox({ container: '#searchbox', placeholder: 'Search products…', showLoadingIndicator: false }),
  stats({ container: '#stats' }),
  clearRefinements({ container: '#clear' }),
  hierarchicalMenu({
    container: '#categories',
    attributes: ['categories.lvl0', 'categories.lvl1', 'categories.lvl2'],
  }),
  refinementList({ container: '#brand', attribute: 'brand' }),
  refinementList({ container: '#colour', attribute: 'colour' }),
  rangeInput({ container: '#price', attribute: 'price' }),
  hits({
    container: '#hits',
    templates: {
      empty: (results, { html }) => html`<p class="empty">No products for “${results.query}”.</p>`,
      item: (hit, { html, components, sendEvent }) => html`
        <article class="product" data-id=${hit.objectID}>
          ${hit.image ? html`<img class="thumb" alt="" data-src=${hit.image} />` : null}
          <h2 class="title">${components.Highlight({ hit, attribute: 'title' })}</h2>
          <p class="brand">${hit.brand || ''}</p>
          <p class="price" data-price=${hit.price ?? ''}>${price(hit)}</p>
          <p class="categories">${(hit.categories.lvl1 || hit.categories.lvl0 || []).join(', ')}</p>
          <button
            type="button"
            class="view"
            onClick=${() => sendEvent('click', hit, 'Product Clicked')}
          >
            View
          </button>
        </article>
      `,
    },
  }),
  pagination({ container: '#pagination' }),
]);

search.on('render', () => {
  for (const img of document.querySelectorAll('img.thumb[data-src]')) {
    const url = img.getAttribute('data-src');
    img.removeAttribute('data-src');
    loadImage(img, url);
  }
});

search.start();
window.search = search; // for tests and the browser console
