//! The Windows transport: `CreateFileW(\\.\Nbshm)` and `DeviceIoControl`. Everything else of
//! the tool is portable (and tested on Linux against the driver in the user-mode NDIS model).

use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_MORE_DATA, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;

use crate::{Completion, Error, Transport, win32_to_status};

/// An open handle to the control device.
#[derive(Debug)]
pub struct Device {
    handle: HANDLE,
}

fn last_error() -> Error {
    // SAFETY: reads the calling thread's last-error value.
    let e = unsafe { GetLastError() };
    win32_to_status(e).map_or(Error::Win32(e), Error::Status)
}

impl Device {
    /// Opens `\\.\Nbshm` with `access` (`FILE_READ_DATA` / `FILE_WRITE_DATA`; the I/O manager
    /// checks each control code's access bits against it).
    ///
    /// # Errors
    /// `STATUS_OBJECT_NAME_NOT_FOUND` (driver not loaded), `STATUS_ACCESS_DENIED` (not an
    /// administrator), or another Windows error.
    pub fn open(access: u32) -> Result<Self, Error> {
        let path: Vec<u16> = nbshm_proto::USER_PATH.encode_utf16().chain(std::iter::once(0)).collect();
        // SAFETY: a NUL-terminated path; no security attributes or template.
        let handle = unsafe {
            CreateFileW(
                path.as_ptr(),
                access,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                ptr::null(),
                OPEN_EXISTING,
                0,
                ptr::null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(last_error());
        }
        Ok(Self { handle })
    }
}

impl Transport for Device {
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<Completion, Error> {
        let in_len = u32::try_from(input.len()).map_err(|_| Error::Usage("input too large".into()))?;
        let out_len = u32::try_from(output.len()).map_err(|_| Error::Usage("output too large".into()))?;
        let mut returned = 0u32;
        // SAFETY: an open handle; the buffers are valid for their lengths for the call
        // (synchronous: no OVERLAPPED).
        let ok = unsafe {
            DeviceIoControl(
                self.handle,
                code,
                input.as_ptr().cast(),
                in_len,
                output.as_mut_ptr().cast(),
                out_len,
                &raw mut returned,
                ptr::null_mut(),
            )
        };
        let bytes = returned as usize;
        if ok != 0 {
            return Ok(Completion { status: nbshm_proto::status::STATUS_SUCCESS, bytes });
        }
        // SAFETY: reads the calling thread's last-error value.
        let e = unsafe { GetLastError() };
        if e == ERROR_MORE_DATA {
            // STATUS_BUFFER_OVERFLOW: a warning, the partial data was copied back.
            return Ok(Completion { status: nbshm_proto::status::STATUS_BUFFER_OVERFLOW, bytes });
        }
        Err(win32_to_status(e).map_or(Error::Win32(e), Error::Status))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: the handle CreateFileW returned, closed once.
        unsafe { CloseHandle(self.handle) };
    }
}
