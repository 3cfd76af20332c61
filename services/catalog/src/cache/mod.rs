//! Read-through cache of products and list pages: an in-process level ([`memory`]) over a
//! shared one in Redis, over Postgres.
//!
//! - A product entry in Redis is `<revision>|<json>` and is only ever replaced by a newer
//!   revision (a Lua script), so a reader that loaded an old row cannot overwrite what a writer
//!   stored. Writers store the new representation (never just delete) before answering; the
//!   same script announces it on the broadcast channel, and the writing instance's own level
//!   holds it at once.
//! - A list page is stored under the list generation read *before* its query; every write
//!   that affects listings increments the generation (and announces it) first, so a page
//!   computed before a write is never served after it. Reservations do not increment it: stock
//!   in listings is advisory (at most `LIST_CACHE_TTL` old); a single product's stock is exact.
//! - Both levels keep the JSON as answered: a hit is served without parsing or encoding.
//! - Concurrent misses (and re-validations) for one key share one load ([`SingleFlight`]).
//! - Redis away: reads come from Postgres (logged, counted); for a second after a failure
//!   Redis is not tried at all, so requests do not each wait for its timeout. Writes that
//!   could not reach Redis are retried in the background; until then other instances may
//!   serve what Redis held before, as they would from Redis alone.

pub mod broadcast;
pub mod memory;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use metrics::Counter;
use sha2::{Digest, Sha256};
use shop_contracts::{Page, ProductId};
use shop_db::Pool;
use shop_http::ApiError;
use shop_redis::{RedisPool, RedisUnavailable, redis};

pub use self::memory::ProductEntry;
use self::memory::{Freshness, ListEntry, Lookup, Memory};
use crate::{
    error::CatalogError,
    models::{Product, ProductResponse},
    repo::{self, ListFilter},
    singleflight::SingleFlight,
};

/// A page of products as listings answer it.
pub type ListPage = Page<ProductResponse>;

const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Stores `ARGV[1]|ARGV[2]` unless the key holds a revision at least as new, and then
/// announces it (`p <id> <revision> <json>`) on channel `ARGV[4]` unless that is empty.
const SET_IF_NEWER: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local revision = tonumber(string.match(current, '^(%d+)|'))
  if revision and revision >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], 'p ' .. ARGV[5] .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
end
return 1
";

/// Increments the list generation and announces it (`l <generation>`) on channel `ARGV[1]`.
const NEXT_GENERATION: &str = r"
local generation = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'l ' .. generation)
return generation
";

/// Lookups by level and result (`shop_cache_requests_total`), registered once.
#[derive(Debug)]
struct Lookups {
    memory_hit: Counter,
    redis_hit: Counter,
    miss: Counter,
}

impl Lookups {
    fn new(cache: &'static str) -> Self {
        let counter = |level: &'static str, result: &'static str| {
            metrics::counter!("shop_cache_requests_total", "service" => "catalog",
                "cache" => cache, "level" => level, "result" => result)
        };
        Self {
            memory_hit: counter("memory", "hit"),
            redis_hit: counter("redis", "hit"),
            miss: counter("redis", "miss"),
        }
    }
}

/// The cache of one catalog instance.
#[derive(Debug)]
pub struct Cache {
    redis: RedisPool,
    memory: Memory,
    channel: String,
    /// The scripts, hashed once.
    set_if_newer: redis::Script,
    next_generation: redis::Script,
    product_ttl: Duration,
    list_ttl: Duration,
    paused_until: Mutex<Option<Instant>>,
    products: SingleFlight<ProductId, Arc<ProductEntry>, ApiError>,
    lists: SingleFlight<String, Bytes, ApiError>,
    unsent_products: Mutex<HashMap<ProductId, Product>>,
    /// Invalidations Redis has not received yet; list reads bypass the cache while non-zero.
    unsent_generation_bumps: AtomicU64,
    fallbacks: AtomicU64,
    product_lookups: Lookups,
    list_lookups: Lookups,
}

/// The JSON a product is answered with (`null` once deleted), made once per write or load and
/// shared by both levels.
fn encode(product: &Product) -> Bytes {
    let value = (product.deleted_at.is_none()).then(|| ProductResponse::from(product));
    serde_json::to_vec(&value).map_or_else(|_| Bytes::from_static(b"null"), Bytes::from)
}

/// A representation's JSON as the cache keeps it; `None` for a deleted product.
fn body(json: Bytes) -> Option<Bytes> {
    (json.as_ref() != b"null").then_some(json)
}

/// `<revision>|<json>` (as stored in Redis), without parsing the JSON.
fn decode(entry: Bytes) -> Option<(i64, Option<Bytes>)> {
    let bar = entry.iter().position(|&b| b == b'|')?;
    let revision = std::str::from_utf8(&entry[..bar]).ok()?.parse().ok()?;
    let json = entry.slice(bar + 1..);
    (!json.is_empty()).then(|| (revision, body(json)))
}

fn entry_of(product: &Product, json: Bytes, checked: Instant) -> ProductEntry {
    ProductEntry::new(product.revision, body(json), checked)
}

fn list_key_part(filter: &ListFilter) -> String {
    let canonical = format!(
        "q={:?}&min={:?}&max={:?}&in={:?}&sort={:?}&page={}&limit={}",
        filter.q,
        filter.min_price_cents,
        filter.max_price_cents,
        filter.in_stock,
        filter.sort,
        filter.page,
        filter.limit
    );
    Sha256::digest(canonical.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Cache {
    pub fn new(
        redis: RedisPool,
        sync: Duration,
        product_ttl: Duration,
        list_ttl: Duration,
    ) -> Self {
        let channel = redis.key("catalog:cache");
        // Exported at zero from the start, so that the first fallback is a change.
        metrics::counter!("shop_cache_fallbacks_total", "service" => "catalog").increment(0);
        Self {
            redis,
            memory: Memory::new(Arc::new(Freshness::new(sync)), product_ttl, list_ttl),
            channel,
            set_if_newer: redis::Script::new(SET_IF_NEWER),
            next_generation: redis::Script::new(NEXT_GENERATION),
            product_ttl,
            list_ttl,
            paused_until: Mutex::new(None),
            products: SingleFlight::default(),
            lists: SingleFlight::default(),
            unsent_products: Mutex::default(),
            unsent_generation_bumps: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            product_lookups: Lookups::new("product"),
            list_lookups: Lookups::new("list"),
        }
    }

    /// Reads served from Postgres because Redis was away.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// The in-process level.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The broadcast channel between catalog instances.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The shared level.
    pub fn redis(&self) -> &RedisPool {
        &self.redis
    }

    fn product_key(&self, id: ProductId) -> String {
        self.redis.key(&format!("catalog:product:{id}"))
    }

    fn generation_key(&self) -> String {
        self.redis.key("catalog:list-generation")
    }

    fn paused(&self) -> bool {
        let paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paused.is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, error: &RedisUnavailable, during: &str) {
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if paused.is_none_or(|until| Instant::now() >= until) {
            tracing::warn!(
                %error,
                during,
                cache.fallbacks = self.fallbacks(),
                "redis away; serving from postgres"
            );
        }
        *paused = Some(Instant::now() + PAUSE_AFTER_FAILURE);
    }

    /// Runs a Redis operation unless Redis is paused; `None` means "go to Postgres".
    async fn try_redis<T, F, Fut>(&self, during: &str, op: F) -> Option<T>
    where
        F: FnOnce(RedisPool) -> Fut,
        Fut: Future<Output = Result<T, RedisUnavailable>>,
    {
        if self.paused() {
            return None;
        }
        match op(self.redis.clone()).await {
            Ok(value) => Some(value),
            Err(error) => {
                self.failed(&error, during);
                None
            }
        }
    }

    async fn get_bytes(&self, during: &str, key: String) -> Option<Option<Bytes>> {
        self.try_redis(during, |redis| async move {
            let mut conn = redis.get().await?;
            let entry: Option<Vec<u8>> =
                redis::cmd("GET").arg(&key).query_async(&mut *conn).await?;
            Ok(entry.map(Bytes::from))
        })
        .await
    }

    fn note_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shop_cache_fallbacks_total", "service" => "catalog").increment(1);
    }

    /// A product as the cache holds it (`body` is `None` if it does not exist or was
    /// deleted).
    pub async fn product(
        self: &Arc<Self>,
        id: ProductId,
        pool: &Pool,
    ) -> Result<Arc<ProductEntry>, CatalogError> {
        if let Lookup::Fresh(entry) = self.memory.product(&id) {
            self.product_lookups.memory_hit.increment(1);
            return Ok(entry);
        }
        let cache = self.clone();
        let pool = pool.clone();
        self.products
            .run(id, async move { cache.load_product(id, &pool).await })
            .await
            .map_err(CatalogError::Api)
    }

    /// Re-validates a product from Redis, else Postgres, into the in-process level.
    async fn load_product(
        &self,
        id: ProductId,
        pool: &Pool,
    ) -> Result<Arc<ProductEntry>, ApiError> {
        let checked = Instant::now();
        // A write this instance could not send yet makes Redis' entry untrustworthy.
        let unsent = self
            .unsent_products
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&id);
        let cached = if unsent {
            Some(None)
        } else {
            self.get_bytes("reading a product", self.product_key(id))
                .await
        };
        match cached {
            Some(Some(entry)) => {
                if let Some((revision, body)) = decode(entry) {
                    self.product_lookups.redis_hit.increment(1);
                    let entry = ProductEntry::new(revision, body, checked);
                    return Ok(self.memory.install_product(id, entry));
                }
                self.product_lookups.miss.increment(1);
            }
            Some(None) => self.product_lookups.miss.increment(1),
            None => self.note_fallback(),
        }
        let mut conn = shop_db::conn(pool).await.map_err(ApiError::from)?;
        let product = repo::find(&mut conn, id)
            .await
            .map_err(|e| ApiError::from(shop_db::DbError::from(e)))?;
        drop(conn);
        match product {
            Some(product) => {
                let json = encode(&product);
                self.store_loaded(&product, &json).await;
                Ok(self
                    .memory
                    .install_product(id, entry_of(&product, json, checked)))
            }
            // Ids that never existed are not kept: a scan of random ids must not evict products.
            None => Ok(Arc::new(ProductEntry::new(0, None, checked))),
        }
    }

    async fn set_if_newer(
        &self,
        product: &Product,
        json: &[u8],
        announce: bool,
    ) -> Result<(), RedisUnavailable> {
        let mut conn = self.redis.get().await?;
        let ttl = u64::try_from(self.product_ttl.as_millis()).unwrap_or(u64::MAX);
        let _: i64 = self
            .set_if_newer
            .key(self.product_key(product.id))
            .arg(product.revision)
            .arg(json)
            .arg(ttl)
            .arg(if announce { self.channel.as_str() } else { "" })
            .arg(product.id.to_string())
            .invoke_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// Fills the cache with a row a read loaded; set-if-newer keeps it from replacing a newer
    /// entry, and a failure costs nothing but the next read's miss.
    async fn store_loaded(&self, product: &Product, json: &[u8]) {
        if let Err(error) = self.set_if_newer(product, json, false).await {
            self.failed(&error, "filling the cache");
        }
    }

    /// Stores a committed representation (a deleted product is stored as gone). Writes always
    /// try Redis, even while reads skip it: another instance may be reading from it.
    pub async fn store_product(&self, product: &Product) {
        // Reads from now on must not join a load that began before this write.
        self.products.forget(&product.id);
        let json = encode(product);
        self.memory
            .install_product(product.id, entry_of(product, json.clone(), Instant::now()));
        if let Err(error) = self.set_if_newer(product, &json, true).await {
            self.failed(&error, "storing a product");
            self.remember_unsent(product);
        }
    }

    fn remember_unsent(&self, product: &Product) {
        let mut unsent = self
            .unsent_products
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = unsent
            .get(&product.id)
            .is_none_or(|held| held.revision < product.revision);
        if newer {
            unsent.insert(product.id, product.clone());
        }
    }

    async fn bump_generation(&self) -> Result<(), RedisUnavailable> {
        let mut conn = self.redis.get().await?;
        let generation: u64 = self
            .next_generation
            .key(self.generation_key())
            .arg(&self.channel)
            .invoke_async(&mut *conn)
            .await?;
        self.memory.learn_generation(generation);
        Ok(())
    }

    /// Invalidates every cached list page.
    pub async fn listings_changed(&self) {
        self.lists.forget_all();
        self.memory.forget_lists();
        if let Err(error) = self.bump_generation().await {
            self.failed(&error, "invalidating listings");
            self.unsent_generation_bumps.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Sends what could not be sent while Redis was away; returns whether anything is left.
    /// Each entry stays marked (and bypassed by reads) until Redis has accepted it.
    pub async fn flush_unsent(&self) -> bool {
        if self.paused() {
            return true;
        }
        let bumps = self.unsent_generation_bumps.load(Ordering::SeqCst);
        if bumps > 0 {
            if let Err(error) = self.bump_generation().await {
                self.failed(&error, "retrying an invalidation");
                return true;
            }
            self.unsent_generation_bumps
                .fetch_sub(bumps, Ordering::SeqCst);
        }
        let pending: Vec<Product> = self
            .unsent_products
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for product in &pending {
            if let Err(error) = self.set_if_newer(product, &encode(product), true).await {
                self.failed(&error, "retrying a product store");
                return true;
            }
            let mut unsent = self
                .unsent_products
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A newer write may have been queued meanwhile: it stays.
            if unsent
                .get(&product.id)
                .is_some_and(|held| held.revision == product.revision)
            {
                unsent.remove(&product.id);
            }
        }
        self.unsent_generation_bumps.load(Ordering::SeqCst) > 0
            || !self
                .unsent_products
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_empty()
    }

    /// A page of live products, as JSON.
    pub async fn list(
        self: &Arc<Self>,
        filter: ListFilter,
        pool: &Pool,
    ) -> Result<Bytes, CatalogError> {
        let part = list_key_part(&filter);
        // An invalidation this instance could not send yet: no cached page can be trusted.
        let bypass = self.unsent_generation_bumps.load(Ordering::SeqCst) > 0;
        if !bypass && let Lookup::Fresh(entry) = self.memory.list(&part) {
            self.list_lookups.memory_hit.increment(1);
            return Ok(entry.body.clone());
        }
        let cache = self.clone();
        let pool = pool.clone();
        self.lists
            .run(part.clone(), async move {
                cache.load_list(filter, part, bypass, &pool).await
            })
            .await
            .map_err(CatalogError::Api)
    }

    /// Re-validates a page against the generation in Redis, else loads it from Postgres.
    async fn load_list(
        &self,
        filter: ListFilter,
        part: String,
        bypass: bool,
        pool: &Pool,
    ) -> Result<Bytes, ApiError> {
        let checked = Instant::now();
        let generation = if bypass {
            None
        } else {
            let key = self.generation_key();
            self.try_redis("reading the list generation", |redis| async move {
                let mut conn = redis.get().await?;
                let generation: Option<u64> =
                    redis::cmd("GET").arg(&key).query_async(&mut *conn).await?;
                Ok(generation.unwrap_or(0))
            })
            .await
        };
        let key = generation.map(|g| (g, self.redis.key(&format!("catalog:list:{g}:{part}"))));
        if let Some((generation, key)) = &key {
            self.memory.learn_generation(*generation);
            // The page held is still current: checked again, not reloaded.
            if let Lookup::Fresh(held) | Lookup::Stale(held) = self.memory.list(&part)
                && held.generation == *generation
            {
                self.list_lookups.redis_hit.increment(1);
                let entry = ListEntry::new(*generation, held.body.clone(), checked);
                return Ok(self.memory.install_list(part, entry).body.clone());
            }
            let cached = self.get_bytes("reading a list page", key.clone()).await;
            if let Some(Some(body)) = cached {
                self.list_lookups.redis_hit.increment(1);
                let entry = ListEntry::new(*generation, body, checked);
                return Ok(self.memory.install_list(part, entry).body.clone());
            }
            self.list_lookups.miss.increment(1);
        } else {
            self.note_fallback();
        }
        let mut conn = shop_db::conn(pool).await.map_err(ApiError::from)?;
        let (items, total) = repo::list(&mut conn, &filter)
            .await
            .map_err(|e| ApiError::from(shop_db::DbError::from(e)))?;
        drop(conn);
        let page = ListPage {
            items: items.iter().map(ProductResponse::from).collect(),
            page: filter.page,
            limit: filter.limit,
            total: u64::try_from(total).unwrap_or_default(),
        };
        let body = Bytes::from(serde_json::to_vec(&page).map_err(ApiError::internal)?);
        if let Some((generation, key)) = key {
            self.store_page(key, body.clone()).await;
            self.memory
                .install_list(part, ListEntry::new(generation, body.clone(), checked));
        }
        Ok(body)
    }

    async fn store_page(&self, key: String, page: Bytes) {
        let ttl = u64::try_from(self.list_ttl.as_millis()).unwrap_or(u64::MAX);
        self.try_redis("storing a list page", |redis| async move {
            let mut conn = redis.get().await?;
            let () = redis::cmd("SET")
                .arg(&key)
                .arg(page.as_ref())
                .arg("PX")
                .arg(ttl)
                .query_async(&mut *conn)
                .await?;
            Ok(())
        })
        .await;
    }
}

/// Flushes unsent cache writes every second until cancelled.
pub async fn flush_unsent_writes(cache: Arc<Cache>, cancel: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        cache.flush_unsent().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_without_their_json_being_parsed() {
        let decoded = |s: &'static str| decode(Bytes::from_static(s.as_bytes()));
        assert_eq!(decoded("7|null"), Some((7, None)));
        assert_eq!(
            decoded("12|{\"id\":1}"),
            Some((12, Some(Bytes::from_static(b"{\"id\":1}"))))
        );
        assert_eq!(decoded("garbage"), None);
        assert_eq!(decoded("x|null"), None);
        assert_eq!(decoded("7|"), None);
    }
}
