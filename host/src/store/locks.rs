//! Locks held across processes: a connection's run lock and its
//! token-refresh lock.

use super::StoreError;

/// A held lock: a connection's run lock ([`Locks::try_lock_run`]) or its
/// token-refresh lock ([`Locks::lock_refresh`]), two locks apart. Dropping
/// it lets the next holder in. The lock dies with its process, so a run
/// killed with `kill -9` never blocks the next one.
pub trait Lease: Send {}

/// The locks handle ([`super::Store::locks`]).
pub trait Locks: Send + Sync {
    /// Takes the run lock of `connection`, or `None` if another run holds it
    /// (in this process or another).
    fn try_lock_run(&self, connection: &str) -> Result<Option<Box<dyn Lease>>, StoreError>;
    /// Waits for the token-refresh lock of `connection`: refreshes of one
    /// connection never overlap, in this process or another.
    fn lock_refresh(&self, connection: &str) -> Result<Box<dyn Lease>, StoreError>;
}
