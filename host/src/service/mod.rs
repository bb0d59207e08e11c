//! Running unattended (docs/connections.md, docs/webhooks.md): the scheduler
//! that runs each stored connection on its interval or when its provider
//! notifies a change, and the deliverer of webhooks to the user's application.

pub mod scheduler;
pub mod webhooks;

pub use scheduler::Scheduler;
pub use webhooks::{Deliverer, DeliveryPolicy};
