//! The accessors read the bytes Microsoft's layouts place the fields at (ndis-reference.md
//! C.2-C.4, C.11), checked on raw, 16-byte aligned buffers rather than through our own structs.

#![allow(clippy::multiple_unsafe_ops_per_block, reason = "each block reads one prepared buffer")]

use nbshm::shmem::*;
use nbshm::sys::{NET_BUFFER, NET_BUFFER_LIST, NET_BUFFER_SHARED_MEMORY};

#[repr(C, align(16))]
struct Raw([u8; 0x200]);

impl Raw {
    fn new() -> Box<Self> {
        Box::new(Self([0xEE; 0x200]))
    }
    fn put_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn ptr<T>(&self) -> *const T {
        self.0.as_ptr().cast()
    }
}

#[test]
fn shared_memory_accessors_read_the_documented_offsets() {
    let mut shi = Raw::new();
    shi.put_u64(0x00, 0xFFFF_8000_1234_5670); // NextSharedMemorySegment
    shi.put_u32(0x08, 0xA5A5_0001); // SharedMemoryFlags
    shi.put_u64(0x10, 0xFFFF_9000_0000_0040); // SharedMemoryHandle
    shi.put_u32(0x18, 0x0000_0800); // SharedMemoryOffset
    shi.put_u32(0x1C, 0x0000_05EA); // SharedMemoryLength
    let p: *const NET_BUFFER_SHARED_MEMORY = shi.ptr();
    // SAFETY: `p` points to 0x200 readable bytes.
    unsafe {
        assert_eq!(net_buffer_shared_mem_next_segment(p).addr(), 0xFFFF_8000_1234_5670);
        assert_eq!(net_buffer_shared_mem_flags(p), 0xA5A5_0001);
        assert_eq!(net_buffer_shared_mem_handle(p).addr(), 0xFFFF_9000_0000_0040);
        assert_eq!(net_buffer_shared_mem_offset(p), 0x800);
        assert_eq!(net_buffer_shared_mem_length(p), 0x5EA);
    }
}

#[test]
fn net_buffer_accessors_read_the_documented_offsets() {
    let mut nb = Raw::new();
    nb.put_u64(0x00, 0x1111_0000); // Next
    nb.put_u32(0x18, 1514); // DataLength
    nb.put_u32(0x1C, 0xDEAD); // high half of stDataLength: not part of DataLength
    nb.put_u64(0xA8, 0x2222_0000); // SharedMemoryInfo / ScatterGatherList
    let p: *const NET_BUFFER = nb.ptr();
    // SAFETY: `p` points to 0x200 readable bytes (NET_BUFFER is 0xB0).
    unsafe {
        assert_eq!(net_buffer_next_nb(p).addr(), 0x1111_0000);
        assert_eq!(net_buffer_data_length(p), 1514);
        assert_eq!(net_buffer_first_shared_mem_info(p).addr(), 0x2222_0000);
        assert_eq!((*p).ScatterGatherList().addr(), 0x2222_0000, "same union slot");
    }
}

#[test]
fn net_buffer_list_accessors_read_the_documented_offsets() {
    let mut nbl = Raw::new();
    nbl.put_u64(0x00, 0x3333_0000); // Next
    nbl.put_u64(0x08, 0x4444_0000); // FirstNetBuffer
    let p: *const NET_BUFFER_LIST = nbl.ptr();
    // SAFETY: `p` points to 0x200 readable bytes (NET_BUFFER_LIST is 0x150 with 6.30 headers).
    unsafe {
        assert_eq!(net_buffer_list_next_nbl(p).addr(), 0x3333_0000);
        assert_eq!(net_buffer_list_first_nb(p).addr(), 0x4444_0000);
    }
}
