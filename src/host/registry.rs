//! The NDIS configuration functions over an in-memory registry: the service key of the driver
//! and its `Parameters` subkey, whose values a test preloads with
//! [`ModelOptions::registry`](super::model::ModelOptions::registry).
//!
//! Readings the model takes where the documentation leaves room (docs/ioctl.md repeats them):
//! * `NdisOpenConfigurationEx` with the filter *driver* handle opens the service key itself
//!   (`...\Services\nbshm`), not `Parameters` (abi-facts 2.4: what a decompiled ndis.sys does);
//!   the driver opens `Parameters` with `NdisOpenConfigurationKeyByName`. The service key holds
//!   no keyword the driver reads.
//! * The header is accepted when `Type == 0xA9`, `Revision >= 1` and `Size >= 0x14` (the same
//!   test the decompiled ndis.sys makes); anything else is `NDIS_STATUS_INVALID_PARAMETER`.
//! * `NdisReadConfiguration` ignores the requested type (the DDI page says so for Windows NT
//!   and later) and returns the value with its registry type: a `REG_DWORD` comes back as
//!   `NdisParameterInteger` (also when `NdisParameterHexInteger` was asked for, as the
//!   `NDIS_CONFIGURATION_PARAMETER` page says), a `REG_SZ` as `NdisParameterString`, a
//!   `REG_BINARY` as `NdisParameterBinary`. Whether Windows converts a digit string to an
//!   integer is not documented; the driver accepts integer types only.
//! * A value that is not there is `NDIS_STATUS_FAILURE`, with `*ParameterValue` left as it was.
//! * The parameters a read returns stay valid until their handle is closed; the model then
//!   poisons them (and keeps the memory) so a use after close reads garbage, not freed memory.

#![allow(non_snake_case, reason = "ndis.sys's exported names")]

use std::collections::HashMap;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys::{
    BINARY_DATA, NDIS_CONFIG_FLAG_FILTER_INSTANCE_CONFIGURATION, NDIS_CONFIGURATION_OBJECT,
    NDIS_CONFIGURATION_PARAMETER, NDIS_CONFIGURATION_PARAMETER_DATA, NDIS_HANDLE,
    NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT, NDIS_PARAMETER_TYPE, NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1,
    NDIS_STATUS, NDIS_STATUS_FAILURE, NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_SUCCESS, NDIS_STRING,
    NdisParameterBinary, NdisParameterInteger, NdisParameterString, PASSIVE_LEVEL, PNDIS_HANDLE,
    PNDIS_STRING,
};

use super::kernel::current_irql;
use super::model::shared;
use super::violations::violation;

/// A registry value of the `Parameters` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_SZ`.
    Sz(String),
    /// `REG_BINARY`.
    Binary(Vec<u8>),
}

/// Which key a configuration handle has open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// `...\Services\nbshm`.
    Service,
    /// `...\Services\nbshm\Parameters`.
    Parameters,
    /// A filter module's key (opened with a module handle).
    Module,
}

/// Memory a read handed out (kept until the model drops, poisoned once its handle closes).
#[derive(Debug)]
struct Handed {
    param: Box<NDIS_CONFIGURATION_PARAMETER>,
    _string: Option<Box<[u16]>>,
    _binary: Option<Box<[u8]>>,
}

// SAFETY: the raw pointers inside point into the boxes stored next to them.
unsafe impl Send for Handed {}

#[derive(Debug)]
struct Open {
    key: Key,
    handed: Vec<Handed>,
}

/// Open configuration handles and the memory reads returned through them.
#[derive(Debug, Default)]
pub struct ConfigState {
    open: Mutex<HashMap<usize, Open>>,
    closed: Mutex<Vec<Handed>>,
    next: AtomicUsize,
    reads: AtomicUsize,
}

const HANDLE_BASE: usize = 0x7200_0000;

impl ConfigState {
    fn insert(&self, key: Key) -> NDIS_HANDLE {
        let id = HANDLE_BASE + 1 + self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, Open { key, handed: Vec::new() });
        ptr::without_provenance_mut(id)
    }

    fn key(&self, handle: NDIS_HANDLE, api: &'static str) -> Option<Key> {
        let k = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&handle.addr())
            .map(|o| o.key);
        if k.is_none() {
            violation(api, format!("{handle:p} is not an open configuration handle"));
        }
        k
    }

    /// Configuration handles still open.
    pub fn open_handles(&self) -> usize {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// `NdisReadConfiguration` calls so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }
}

fn string(s: PNDIS_STRING) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: non-NULL; the driver passes a valid NDIS_STRING for the call.
    let s = unsafe { &*s };
    if s.Buffer.is_null() || !s.Length.is_multiple_of(2) || s.Length > s.MaximumLength {
        return None;
    }
    // SAFETY: Buffer holds Length bytes (checked shape).
    let w = unsafe { std::slice::from_raw_parts(s.Buffer, usize::from(s.Length / 2)) };
    String::from_utf16(w).ok()
}

fn passive(api: &'static str) {
    if current_irql() != PASSIVE_LEVEL {
        violation(api, "not at PASSIVE_LEVEL".into());
    }
}

/// `NdisOpenConfigurationEx`.
///
/// # Safety
/// Pointers as the DDI requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisOpenConfigurationEx(
    ConfigObject: *mut NDIS_CONFIGURATION_OBJECT,
    ConfigurationHandle: PNDIS_HANDLE,
) -> NDIS_STATUS {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisOpenConfigurationEx";
    let sh = shared();
    passive(api);
    if ConfigObject.is_null() || ConfigurationHandle.is_null() {
        violation(api, "NULL configuration object or handle pointer".into());
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-NULL, the caller's object for the call.
    let o = unsafe { &*ConfigObject };
    if o.Header.Type != NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT
        || o.Header.Revision == 0
        || o.Header.Size < NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1
    {
        violation(api, format!("bad configuration object header {:?}", o.Header));
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    let key = if o.NdisHandle == sh.driver_handle() && sh.registered.load(Ordering::Acquire) {
        if o.Flags != 0 {
            violation(
                api,
                format!(
                    "Flags {:#x} with the filter driver handle (the instance flag is for modules)",
                    o.Flags
                ),
            );
            return NDIS_STATUS_INVALID_PARAMETER;
        }
        Key::Service
    } else if sh.miniport_by_handle(o.NdisHandle, api).is_some() {
        if o.Flags & !NDIS_CONFIG_FLAG_FILTER_INSTANCE_CONFIGURATION != 0 {
            violation(api, format!("unknown Flags {:#x}", o.Flags));
            return NDIS_STATUS_INVALID_PARAMETER;
        }
        Key::Module
    } else {
        return NDIS_STATUS_FAILURE;
    };
    let h = sh.config.insert(key);
    // SAFETY: non-NULL out pointer.
    unsafe { ConfigurationHandle.write(h) };
    NDIS_STATUS_SUCCESS
}

/// `NdisOpenConfigurationKeyByName`: only `Parameters` under the service key exists, and only
/// when the test's registry has it.
///
/// # Safety
/// Pointers as the DDI requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisOpenConfigurationKeyByName(
    Status: *mut NDIS_STATUS,
    ConfigurationHandle: NDIS_HANDLE,
    SubKeyName: PNDIS_STRING,
    SubKeyHandle: PNDIS_HANDLE,
) {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisOpenConfigurationKeyByName";
    let sh = shared();
    passive(api);
    if Status.is_null() || SubKeyHandle.is_null() {
        violation(api, "NULL Status or SubKeyHandle".into());
        return;
    }
    let status = (|| {
        let key = sh.config.key(ConfigurationHandle, api)?;
        let Some(name) = string(SubKeyName) else {
            violation(api, "SubKeyName is not a valid NDIS_STRING".into());
            return None;
        };
        (key == Key::Service && name.eq_ignore_ascii_case("Parameters") && sh.opts.registry.is_some())
            .then(|| sh.config.insert(Key::Parameters))
    })();
    match status {
        Some(h) => {
            // SAFETY: non-NULL out pointers.
            unsafe { SubKeyHandle.write(h) };
            // SAFETY: as above.
            unsafe { Status.write(NDIS_STATUS_SUCCESS) };
        }
        // SAFETY: non-NULL out pointer.
        None => unsafe { Status.write(NDIS_STATUS_FAILURE) },
    }
}

/// `NdisReadConfiguration`.
///
/// # Safety
/// Pointers as the DDI requires.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisReadConfiguration(
    Status: *mut NDIS_STATUS,
    ParameterValue: *mut *mut NDIS_CONFIGURATION_PARAMETER,
    ConfigurationHandle: NDIS_HANDLE,
    Keyword: PNDIS_STRING,
    ParameterType: NDIS_PARAMETER_TYPE,
) {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisReadConfiguration";
    let sh = shared();
    passive(api);
    if Status.is_null() || ParameterValue.is_null() {
        violation(api, "NULL Status or ParameterValue".into());
        return;
    }
    sh.config.reads.fetch_add(1, Ordering::Relaxed);
    if !(0..=4).contains(&ParameterType) {
        violation(api, format!("ParameterType {ParameterType} is not an NDIS_PARAMETER_TYPE"));
    }
    let found = (|| {
        let key = sh.config.key(ConfigurationHandle, api)?;
        let Some(name) = string(Keyword) else {
            violation(api, "Keyword is not a valid NDIS_STRING".into());
            return None;
        };
        if key != Key::Parameters {
            return None;
        }
        let values = sh.opts.registry.as_ref()?;
        values.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)).map(|(_, v)| v.clone())
    })();
    let Some(value) = found else {
        // SAFETY: non-NULL out pointer.
        unsafe { Status.write(NDIS_STATUS_FAILURE) };
        return;
    };
    let mut handed = match value {
        RegValue::Dword(v) => Handed {
            param: Box::new(NDIS_CONFIGURATION_PARAMETER {
                ParameterType: NdisParameterInteger,
                ParameterData: NDIS_CONFIGURATION_PARAMETER_DATA { IntegerData: v },
            }),
            _string: None,
            _binary: None,
        },
        RegValue::Sz(s) => {
            let mut w: Box<[u16]> = s.encode_utf16().collect();
            let bytes = u16::try_from(w.len() * 2).unwrap_or(u16::MAX);
            let data = NDIS_STRING { Length: bytes, MaximumLength: bytes, Buffer: w.as_mut_ptr() };
            Handed {
                param: Box::new(NDIS_CONFIGURATION_PARAMETER {
                    ParameterType: NdisParameterString,
                    ParameterData: NDIS_CONFIGURATION_PARAMETER_DATA { StringData: data },
                }),
                _string: Some(w),
                _binary: None,
            }
        }
        RegValue::Binary(b) => {
            let mut b: Box<[u8]> = b.into_boxed_slice();
            let data = BINARY_DATA {
                Length: u16::try_from(b.len()).unwrap_or(u16::MAX),
                Buffer: b.as_mut_ptr().cast(),
            };
            Handed {
                param: Box::new(NDIS_CONFIGURATION_PARAMETER {
                    ParameterType: NdisParameterBinary,
                    ParameterData: NDIS_CONFIGURATION_PARAMETER_DATA { BinaryData: data },
                }),
                _string: None,
                _binary: Some(b),
            }
        }
    };
    let p: *mut NDIS_CONFIGURATION_PARAMETER = &raw mut *handed.param;
    if let Some(o) = sh
        .config
        .open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_mut(&ConfigurationHandle.addr())
    {
        o.handed.push(handed);
    }
    // SAFETY: non-NULL out pointers.
    unsafe { ParameterValue.write(p) };
    // SAFETY: as above.
    unsafe { Status.write(NDIS_STATUS_SUCCESS) };
}

/// `NdisCloseConfiguration`: frees (here: poisons) what reads through the handle returned.
///
/// # Safety
/// A handle from `NdisOpenConfigurationEx` or `NdisOpenConfigurationKeyByName`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisCloseConfiguration(ConfigurationHandle: NDIS_HANDLE) {
    let _scope = super::kernel::ModelScope::enter();
    let api = "NdisCloseConfiguration";
    let sh = shared();
    passive(api);
    let removed = sh
        .config
        .open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&ConfigurationHandle.addr());
    let Some(open) = removed else {
        violation(
            api,
            format!("{ConfigurationHandle:p} is not an open configuration handle (double close?)"),
        );
        return;
    };
    let mut closed = sh.config.closed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for mut h in open.handed {
        h.param.ParameterType = 0x7EAD_BEEF;
        h.param.ParameterData = NDIS_CONFIGURATION_PARAMETER_DATA { IntegerData: 0xDEAD_BEEF };
        closed.push(h);
    }
}
