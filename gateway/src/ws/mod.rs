//! Live notifications over WebSocket (DESIGN.md, "Notifications over WebSocket").
//!
//! Every gateway instance tails `notifications` and pushes each event to the sockets of its
//! user (administrators get everything with `?scope=all`). A socket authenticates with its
//! `Authorization` header or a one-use ticket from `POST /ws/ticket`; the subscription exists
//! before the 101, then `{"type":"ready"}` is sent. `?since=<id>` replays from the user's
//! stream (or `notifications` for `scope=all`), or answers `{"type":"resync"}` when that id
//! is older than what is kept. Each socket has a bounded queue (overflow closes that socket),
//! heartbeats and an idle timeout, and is closed with 4401 when its token expires or its
//! session is revoked.

mod connect;
mod hub;
mod socket;
mod tickets;

pub use connect::{__path_connect, connect};
pub use hub::{Hub, SocketLimits};
pub use tickets::{__path_create_ticket, create_ticket};
