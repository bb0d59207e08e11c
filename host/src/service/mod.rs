//! Running unattended (docs/connections.md): the scheduler that runs each
//! stored connection on its interval.

pub mod scheduler;

pub use scheduler::Scheduler;
