//! [`Live`]: a value the whole process reads and a configuration reload replaces as a whole.

use std::sync::{Arc, RwLock};

/// A value replaced as a whole at run time (the gateway's tunables, the price table, the pool's
/// policy). A reader takes the current `Arc` and works on it to the end of what it does, so a
/// request keeps the settings it started with; the lock is held only to clone the `Arc` (never
/// across an `.await`). Process-local on purpose: each instance reads its own configuration
/// file, so this never goes to a shared backend.
#[derive(Debug)]
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    /// The value now.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the value; readers that already took the old one keep it.
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

impl<T: Default> Default for Live<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}
