//! The system as separate processes, under load and under faults.
//!
//! - [`system`]: a database and a `redis-server` of the run's own, one process per service
//!   binary on a free port; any process can be killed, stopped, restarted or doubled.
//! - [`api`]: a client of the public API as shoppers and administrators use it, sockets
//!   included.
//! - [`invariant`]: DESIGN.md's stock invariant and exactly-once payment, as queries.
//! - [`bench`] (`shop-bench`, `make bench`) and [`chaos`] (`shop-chaos`, `make chaos`).
//!
//! Nothing here stops or flushes the machine's shared Postgres or Redis, and nothing depends
//! on the services' crates: a workspace build never switches their test features on.

pub mod api;
pub mod bench;
pub mod chaos;
pub mod counts;
pub mod invariant;
mod private_redis;
pub mod procfs;
pub mod stages;
pub mod stats;
pub mod system;

pub use private_redis::PrivateRedis;

/// A free TCP port on loopback (free when asked; a rare race is retried by the callers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on loopback: {e}"))
}
