//! A kernel spin lock (`KSPIN_LOCK` with `KeAcquireSpinLockRaiseToDpc`/`KeReleaseSpinLock`)
//! around the data it protects. Usable at IRQL <= DISPATCH_LEVEL; the guard restores the IRQL.
//! The data path never takes it: only attach/detach, the control device, ETW rundown and the
//! usage timer touch the module list.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use crate::sys::{KIRQL, KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc, KeReleaseSpinLock};

/// Spin lock protecting a `T`.
#[derive(Debug)]
pub struct SpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, which holds the kernel spin lock.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the data with it.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A released lock (`KeInitializeSpinLock` stores 0).
    pub const fn new(value: T) -> Self {
        Self { lock: UnsafeCell::new(0), data: UnsafeCell::new(value) }
    }

    /// Acquires the lock, raising to DISPATCH_LEVEL until the guard drops.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        // SAFETY: `self.lock` is a valid, initialized KSPIN_LOCK for the life of `self`.
        let old_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        SpinLockGuard { owner: self, old_irql }
    }
}

/// Access to a [`SpinLock`]'s data while it is held.
#[derive(Debug)]
pub struct SpinLockGuard<'a, T> {
    owner: &'a SpinLock<T>,
    old_irql: KIRQL,
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's life, so no other reference exists.
        unsafe { &*self.owner.data.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.owner.data.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the lock was acquired by `lock` with this old IRQL.
        unsafe { KeReleaseSpinLock(self.owner.lock.get(), self.old_irql) }
    }
}
