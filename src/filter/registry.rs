//! Reads the configuration keywords from the service's `Parameters` key at DriverEntry
//! (PASSIVE_LEVEL), with the NDIS configuration functions.
//!
//! `NdisOpenConfigurationEx` with the filter *driver* handle opens the registry location of the
//! driver's parameters; which key exactly is not documented, and the evidence (abi-facts 2.4) is
//! that it is the service key itself, so the driver opens its `Parameters` subkey by name. Every
//! value NDIS returns is validated here (NDIS validates nothing): a missing value, or one that
//! is not an integer, leaves the default; an out-of-range integer is clamped into range and
//! reported once, as a `ConfigClamped` ETW event and a debug print.

use core::ptr;

use crate::config::{CONFIG, Keyword};
use crate::dbgprint;
use crate::etw;
use crate::sys::{
    DPFLTR_ERROR_LEVEL, DPFLTR_INFO_LEVEL, NDIS_CONFIGURATION_OBJECT, NDIS_CONFIGURATION_OBJECT_REVISION_1,
    NDIS_CONFIGURATION_PARAMETER, NDIS_HANDLE, NDIS_OBJECT_HEADER, NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT,
    NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1, NDIS_STATUS, NDIS_STATUS_FAILURE, NDIS_STATUS_SUCCESS,
    NDIS_STRING, NdisCloseConfiguration, NdisOpenConfigurationEx, NdisOpenConfigurationKeyByName,
    NdisParameterHexInteger, NdisParameterInteger, NdisReadConfiguration,
};

/// `Parameters`, the subkey of the service key that holds the keywords.
static PARAMETERS_W: [u16; 10] = crate::utf16!("Parameters");

/// Longest keyword name, in UTF-16 units.
const NAME_MAX: usize = 64;

/// What reading one keyword found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// No such value: the default stays.
    Missing,
    /// The value is not an integer (for example `REG_SZ`): the default stays.
    WrongType,
    /// An integer in range, now in effect.
    Set(u32),
    /// An integer out of range: the clamped value is in effect.
    Clamped {
        /// What the registry holds.
        raw: u32,
        /// What the driver uses.
        used: u32,
    },
}

/// Reads every keyword from `...\Services\nbshm\Parameters` into [`CONFIG`]. A failure to open
/// the keys leaves every default in place (the driver works without any registry value).
pub(crate) fn read(filter_driver_handle: NDIS_HANDLE) {
    let mut object = NDIS_CONFIGURATION_OBJECT {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT,
            Revision: NDIS_CONFIGURATION_OBJECT_REVISION_1,
            Size: NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1,
        },
        NdisHandle: filter_driver_handle,
        Flags: 0,
    };
    let mut service: NDIS_HANDLE = ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; the object and the out pointer live on our stack for the call.
    let status = unsafe { NdisOpenConfigurationEx(&raw mut object, &raw mut service) };
    if status != NDIS_STATUS_SUCCESS || service.is_null() {
        dbgprint::print(
            DPFLTR_ERROR_LEVEL,
            format_args!(
                "nbshm: NdisOpenConfigurationEx failed ({:#010x}): defaults in effect\n",
                status.cast_unsigned()
            ),
        );
        return;
    }
    let mut name = wide_string(&PARAMETERS_W);
    let mut sub_status: NDIS_STATUS = NDIS_STATUS_FAILURE;
    let mut parameters: NDIS_HANDLE = ptr::null_mut();
    // SAFETY: an open configuration handle, a valid NDIS_STRING and out pointers on our stack.
    unsafe {
        NdisOpenConfigurationKeyByName(&raw mut sub_status, service, &raw mut name, &raw mut parameters);
    }
    if sub_status == NDIS_STATUS_SUCCESS && !parameters.is_null() {
        for k in Keyword::ALL {
            // SAFETY: `parameters` is open until the close below.
            let outcome = unsafe { read_keyword(parameters, k) };
            report(k, outcome);
        }
        // SAFETY: opened above; nothing read through it is used after this.
        unsafe { NdisCloseConfiguration(parameters) };
    } else {
        dbgprint::print(DPFLTR_INFO_LEVEL, format_args!("nbshm: no Parameters key: defaults in effect\n"));
    }
    // SAFETY: opened above.
    unsafe { NdisCloseConfiguration(service) };
}

fn wide_string(w: &'static [u16]) -> NDIS_STRING {
    let bytes = u16::try_from(core::mem::size_of_val(w)).unwrap_or(u16::MAX);
    NDIS_STRING { Length: bytes, MaximumLength: bytes, Buffer: w.as_ptr().cast_mut() }
}

/// Reads keyword `k` through `handle` and applies it to [`CONFIG`].
///
/// # Safety
/// `handle` must be an open configuration handle (PASSIVE_LEVEL).
unsafe fn read_keyword(handle: NDIS_HANDLE, k: Keyword) -> ReadOutcome {
    let info = k.info();
    let mut units = [0u16; NAME_MAX];
    let mut n = 0usize;
    for (dst, b) in units.iter_mut().zip(info.name.bytes()) {
        *dst = u16::from(b);
        n += 1;
    }
    let bytes = u16::try_from(n * 2).unwrap_or(0);
    let mut keyword = NDIS_STRING { Length: bytes, MaximumLength: bytes, Buffer: units.as_mut_ptr() };
    let mut status: NDIS_STATUS = NDIS_STATUS_FAILURE;
    let mut value: *mut NDIS_CONFIGURATION_PARAMETER = ptr::null_mut();
    // SAFETY: an open handle (caller), a valid keyword string and out pointers on our stack.
    unsafe {
        NdisReadConfiguration(
            &raw mut status,
            &raw mut value,
            handle,
            &raw mut keyword,
            NdisParameterInteger,
        );
    }
    if status != NDIS_STATUS_SUCCESS || value.is_null() {
        return ReadOutcome::Missing;
    }
    // SAFETY: NDIS returned a parameter that stays valid until the handle is closed.
    let param = unsafe { &*value };
    if param.ParameterType != NdisParameterInteger && param.ParameterType != NdisParameterHexInteger {
        return ReadOutcome::WrongType;
    }
    // SAFETY: the type says the union holds `IntegerData`.
    let raw = unsafe { param.ParameterData.IntegerData };
    match CONFIG.set_clamped(k, raw) {
        (used, true) => ReadOutcome::Clamped { raw, used },
        (used, false) => ReadOutcome::Set(used),
    }
}

fn report(k: Keyword, outcome: ReadOutcome) {
    let name = k.info().name;
    match outcome {
        ReadOutcome::Missing | ReadOutcome::Set(_) => {}
        ReadOutcome::WrongType => dbgprint::print(
            DPFLTR_ERROR_LEVEL,
            format_args!("nbshm: {name} is not a REG_DWORD: default {} in effect\n", k.info().default),
        ),
        ReadOutcome::Clamped { raw, used } => {
            etw::config_clamped(name, raw, used);
            dbgprint::print(
                DPFLTR_ERROR_LEVEL,
                format_args!(
                    "nbshm: {name} = {raw} is outside {}..={}: {used} in effect\n",
                    k.info().min,
                    k.info().max
                ),
            );
        }
    }
}
